"""Training / evaluation glue shared by train_net.py and the tools."""
from .defaults import EVALUATORS, Trainer, register_datasets_from_cfg, setup_cfg
from .distributed import cpu_ddp
from .launch import run_command, run_train_net, train_net_command
from .results import last_eval_metrics, median_iteration_time

__all__ = ["EVALUATORS", "Trainer", "cpu_ddp", "last_eval_metrics", "median_iteration_time", "register_datasets_from_cfg",
           "run_command", "run_train_net", "setup_cfg", "train_net_command"]
