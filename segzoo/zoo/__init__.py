"""The model-zoo comparison: every installed plugin's methods on one dataset, schedule, backbone
and input size (tools/model_zoo.py), and the per-method benchmark (tools/bench_zoo.py)."""
from .measure import count_parameters, inference_stats, peak_memory, train_stats
from .methods import (
    BACKBONES,
    Harness,
    Method,
    ProposalSource,
    Schedule,
    detections_opts,
    harness_opts,
    method_order,
    methods,
    rcnn_detections,
    retinanet_detections,
)
from .report import markdown_table, plot_ap_latency, seed_summary, write_report, write_seed_summary
from .runner import Zoo

__all__ = [
    "BACKBONES",
    "Harness",
    "Method",
    "ProposalSource",
    "Schedule",
    "Zoo",
    "count_parameters",
    "detections_opts",
    "harness_opts",
    "inference_stats",
    "markdown_table",
    "method_order",
    "methods",
    "peak_memory",
    "plot_ap_latency",
    "rcnn_detections",
    "retinanet_detections",
    "seed_summary",
    "train_stats",
    "write_report",
    "write_seed_summary",
]
