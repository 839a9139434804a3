"""Reading results back from a finished run's output folder."""
import json
import os
import statistics
from typing import List

__all__ = ["EVAL_PREFIXES", "last_eval_metrics", "median_iteration_time", "metrics_records"]

EVAL_PREFIXES = ("bbox/", "segm/", "box_proposals/", "segm_proposals/")


def last_eval_metrics(output_dir: str) -> dict:
    """The last record of ``<output_dir>/metrics.json`` holding evaluation results (``bbox/*``,
    ``segm/*``, or the proposal evaluator's ``box_proposals/*``, ``segm_proposals/*``), as
    Detectron2's EvalHook writes them; ``{}`` when there is none."""
    last = {}
    for record in metrics_records(output_dir):
        if any(k.startswith(EVAL_PREFIXES) for k in record):
            last = record
    return last


def metrics_records(output_dir: str) -> List[dict]:
    """The records of ``<output_dir>/metrics.json`` (Detectron2's JSONWriter: one JSON object per
    line). A line cut short by a killed process (and the record a resumed run appended to it) is
    skipped, not fatal."""
    path = os.path.join(output_dir, "metrics.json")
    records = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
    return records


def median_iteration_time(output_dir: str):
    """Median seconds per training iteration logged in ``<output_dir>/metrics.json`` (None if
    nothing was logged)."""
    times = [r["time"] for r in metrics_records(output_dir) if r.get("time") is not None]
    return statistics.median(times) if times else None
