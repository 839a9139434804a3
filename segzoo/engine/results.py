"""Reading results back from a finished run's output folder."""
import json
import os
import statistics

__all__ = ["EVAL_PREFIXES", "last_eval_metrics", "median_iteration_time"]

EVAL_PREFIXES = ("bbox/", "segm/", "box_proposals/", "segm_proposals/")


def last_eval_metrics(output_dir: str) -> dict:
    """The last record of ``<output_dir>/metrics.json`` holding evaluation results (``bbox/*``,
    ``segm/*``, or the proposal evaluator's ``box_proposals/*``, ``segm_proposals/*``), as
    Detectron2's EvalHook writes them; ``{}`` when there is none."""
    path = os.path.join(output_dir, "metrics.json")
    last = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if any(k.startswith(EVAL_PREFIXES) for k in record):
                    last = record
    return last


def median_iteration_time(output_dir: str):
    """Median seconds per training iteration logged in ``<output_dir>/metrics.json`` (None if
    nothing was logged)."""
    path = os.path.join(output_dir, "metrics.json")
    times = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                t = json.loads(line).get("time")
                if t is not None:
                    times.append(t)
    return statistics.median(times) if times else None
