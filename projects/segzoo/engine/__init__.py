"""Training / evaluation glue shared by train_net.py and the tools."""
from .defaults import EVALUATORS, Trainer, register_datasets_from_cfg, setup_cfg

__all__ = ["EVALUATORS", "Trainer", "register_datasets_from_cfg", "setup_cfg"]
