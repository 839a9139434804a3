"""Reading results back from a finished run's output folder."""
import json
import os

__all__ = ["last_eval_metrics"]


def last_eval_metrics(output_dir: str) -> dict:
    """The last record of ``<output_dir>/metrics.json`` holding evaluation results (``bbox/*``,
    ``segm/*``), as Detectron2's EvalHook writes them; ``{}`` when there is none."""
    path = os.path.join(output_dir, "metrics.json")
    last = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if any(k.startswith(("bbox/", "segm/")) for k in record):
                    last = record
    return last
