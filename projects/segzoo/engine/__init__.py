"""Training / evaluation glue shared by train_net.py and the tools."""
from .defaults import EVALUATORS, Trainer, register_datasets_from_cfg, setup_cfg
from .results import last_eval_metrics

__all__ = ["EVALUATORS", "Trainer", "last_eval_metrics", "register_datasets_from_cfg", "setup_cfg"]
