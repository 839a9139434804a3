"""The model-zoo comparison: every method on one dataset, schedule, backbone and input size
(tools/model_zoo.py), and the per-method benchmark (tools/bench_zoo.py)."""
from .measure import count_parameters, inference_stats, peak_memory, train_stats
from .methods import BACKBONES, METHODS, Harness, Method, Schedule, detections_opts, harness_opts, method_order
from .report import markdown_table, plot_ap_latency, seed_summary, write_report, write_seed_summary
from .runner import Zoo

__all__ = [
    "BACKBONES",
    "Harness",
    "METHODS",
    "Method",
    "Schedule",
    "Zoo",
    "count_parameters",
    "detections_opts",
    "harness_opts",
    "inference_stats",
    "markdown_table",
    "method_order",
    "peak_memory",
    "plot_ap_latency",
    "seed_summary",
    "train_stats",
    "write_report",
    "write_seed_summary",
]
