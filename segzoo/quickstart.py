"""`make demo` (tools/quickstart.py): generate the synthetic data, train and evaluate small models on
this machine, and write visualisations of their predictions.

Each run lives in <output>/<name>; rerunning resumes unfinished runs and re-evaluates finished ones.
Training is ``python -m segzoo.train_net`` in a subprocess (:func:`segzoo.engine.run_train_net`),
its results are read back with :func:`segzoo.engine.last_eval_metrics`.
"""
import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from .errors import UserError

__all__ = ["DemoRun", "config_path", "main", "print_summary", "run_quickstart"]


@dataclass(frozen=True)
class DemoRun:
    """One model of the demo: its name (the folder under the output), its config (a file, or one of
    segzoo's configs by its path under the configs folder) and the score threshold of its
    visualisations."""

    name: str
    config: str
    vis_thresh: float = 0.5


def config_path(config: str) -> str:
    """``config`` if it is a file, else one of segzoo's configs (:func:`segzoo.model_zoo.get_config_file`)."""
    from .model_zoo import get_config_file

    return os.path.abspath(config) if os.path.isfile(config) else get_config_file(config)


def run_quickstart(runs: Sequence[DemoRun], output: str = "output/demo", num_vis: int = 8,
                   only: Optional[Sequence[str]] = None, say: Callable[[str], None] = print) -> List[Dict]:
    """Train + evaluate each run (``only``: these names), then draw ``num_vis`` images of its test
    set with its final weights. Returns per run: name, mask and box AP, seconds of training and
    evaluation."""
    from detectron2.data import DatasetCatalog
    from detectron2.engine import DefaultPredictor

    from .config import runtime_config
    from .engine import last_eval_metrics, run_train_net
    from .engine.visualize import write_visualizations

    runs = [r for r in runs if not only or r.name in only]
    t0 = time.time()
    datasets = {}
    for run in runs:  # generates the synthetic data on first use
        cfg = runtime_config(config_path(run.config), device="cpu")
        datasets.update(dict.fromkeys([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]))
    for name in datasets:
        say(f"[demo] dataset {name}: {len(DatasetCatalog.get(name))} images")
    say(f"[demo] data ready in {time.time() - t0:.0f}s")

    summary = []
    for run in runs:
        shown = os.path.join(output, run.name)
        out_dir = os.path.abspath(shown)
        config_file = config_path(run.config)
        say(f"[demo] training {run.name} ({run.config}) -> {shown}")
        t = time.time()
        run_train_net(config_file, ["OUTPUT_DIR", out_dir], resume=True, what=f"{run.name}: training")
        train_s = time.time() - t
        metrics = last_eval_metrics(out_dir)

        cfg = runtime_config(config_file, ["OUTPUT_DIR", out_dir,
                                           "MODEL.WEIGHTS", os.path.join(out_dir, "model_final.pth")])
        predictor = DefaultPredictor(cfg)
        dataset = cfg.DATASETS.TEST[0]
        written = write_visualizations(predictor, DatasetCatalog.get(dataset)[:num_vis], dataset,
                                       os.path.join(out_dir, "vis"), score_thresh=run.vis_thresh)
        say(f"[demo] {run.name}: wrote {len(written)} visualisations to {os.path.join(shown, 'vis')}")
        summary.append({"name": run.name, "dataset": dataset, "segm/AP": metrics.get("segm/AP", float("nan")),
                        "bbox/AP": metrics.get("bbox/AP", float("nan")), "train_s": train_s})
    return summary


def print_summary(rows: List[Dict]) -> None:
    tested = ", ".join(dict.fromkeys(r["dataset"] for r in rows))
    print(f"\n[demo] results on {tested} (COCO AP)")
    print(f"{'model':<14}{'mask AP':>9}{'box AP':>9}{'train+eval (s)':>16}")
    for r in rows:
        print(f"{r['name']:<14}{r['segm/AP']:>9.1f}{r['bbox/AP']:>9.1f}{r['train_s']:>16.0f}")


def main(runs: Sequence[DemoRun], argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output", default="output/demo")
    p.add_argument("--num-vis", type=int, default=8, help="validation images to visualise per model")
    p.add_argument("--only", nargs="*", help="run only these demo names")
    args = p.parse_args(argv)
    t0 = time.time()
    try:
        rows = run_quickstart(runs, args.output, args.num_vis, args.only, say=lambda s: print(s, flush=True))
    except UserError as e:
        print(f"[demo] error: {e}", file=sys.stderr)
        return 1
    print_summary(rows)
    print(f"[demo] total {time.time() - t0:.0f}s")
    return 0
