#!/usr/bin/env python
"""`make demo` (tools/quickstart.py): generate the synthetic data, train and evaluate the small models on this machine,
and write visualisations of their predictions.

Each run lives in <output>/<name>; rerunning resumes unfinished runs and re-evaluates finished ones.
"""
import argparse
import os
import subprocess
import sys
import time

import segzoo  # noqa: F401  (first: Detectron2 compat, datasets)
import torch
from detectron2.data import DatasetCatalog
from detectron2.engine import DefaultPredictor

from segzoo.config import load_config
from segzoo.engine import last_eval_metrics
from segzoo.engine.visualize import write_visualizations
from segzoo.plugins import import_plugins

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, config, score threshold of the visualisations); `make demo` trains each in turn.
# FCOS scores are sqrt(cls * centerness) from a focal-loss classifier: lower than Mask R-CNN's
# softmax scores for the same quality, hence the lower threshold.
DEMO_RUNS = [
    ("mask_rcnn", "configs/MaskRCNN/shapes_R_18_FPN.yaml", 0.5),
    ("blendmask", "configs/BlendMask/shapes_R_18.yaml", 0.3),
]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output", default="output/demo")
    p.add_argument("--num-vis", type=int, default=8, help="validation images to visualise per model")
    p.add_argument("--only", nargs="*", help="run only these demo names")
    args = p.parse_args()
    import_plugins()  # registers the plugins' meta-architectures for DefaultPredictor

    t0 = time.time()
    for name in ("shapes_train", "shapes_val"):
        print(f"[demo] dataset {name}: {len(DatasetCatalog.get(name))} images", flush=True)
    print(f"[demo] data ready in {time.time() - t0:.0f}s", flush=True)

    summary = []
    for name, config, vis_thresh in DEMO_RUNS:
        if args.only and name not in args.only:
            continue
        out_dir = os.path.join(args.output, name)
        print(f"[demo] training {name} ({config}) -> {out_dir}", flush=True)
        t = time.time()
        cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", config, "--resume",
               "OUTPUT_DIR", out_dir]
        r = subprocess.run(cmd, cwd=REPO)
        if r.returncode != 0:
            sys.exit(f"[demo] {name}: train_net.py failed with status {r.returncode}")
        train_s = time.time() - t
        metrics = last_eval_metrics(out_dir)

        cfg = load_config(os.path.join(REPO, config), ["OUTPUT_DIR", out_dir,
                                                       "MODEL.WEIGHTS", os.path.join(out_dir, "model_final.pth")])
        if not torch.cuda.is_available():
            cfg.MODEL.DEVICE = "cpu"
        predictor = DefaultPredictor(cfg)
        dataset = cfg.DATASETS.TEST[0]
        vis_dir = os.path.join(out_dir, "vis")
        written = write_visualizations(predictor, DatasetCatalog.get(dataset)[: args.num_vis], dataset, vis_dir,
                                       score_thresh=vis_thresh)
        print(f"[demo] {name}: wrote {len(written)} visualisations to {vis_dir}", flush=True)
        summary.append((name, metrics.get("segm/AP", float("nan")), metrics.get("bbox/AP", float("nan")),
                        train_s))

    print("\n[demo] results on shapes_val (COCO AP)")
    print(f"{'model':<14}{'mask AP':>9}{'box AP':>9}{'train+eval (s)':>16}")
    for name, segm, bbox, secs in summary:
        print(f"{name:<14}{segm:>9.1f}{bbox:>9.1f}{secs:>16.0f}")
    print(f"[demo] total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
