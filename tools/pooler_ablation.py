#!/usr/bin/env python
"""Mask R-CNN pooler ablation (the paper's Table 2c) on one dataset and schedule.

Trains configs/MaskRCNN/shapes_R_18_FPN_pooler_<TYPE>.yaml for every pooler type (finished runs
are reused: each run resumes from its last checkpoint) and prints a Markdown table of mask and box AP.

    python tools/pooler_ablation.py [--types ROIPool ROIWarp ...] [--output output/pooler_ablation]
"""
import argparse
import json
import os
import subprocess
import sys

from segzoo.engine import last_eval_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = ["ROIPool", "ROIWarp", "ROIAlign", "ROIAlignMax", "ROIAlignV2"]
DESCRIPTION = {
    "ROIPool": "quantised box + bins, max",
    "ROIWarp": "quantised box, bilinear avg",
    "ROIAlign": "bilinear avg, unaligned",
    "ROIAlignMax": "bilinear max, aligned",
    "ROIAlignV2": "bilinear avg, aligned",
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--types", nargs="+", default=TYPES, choices=TYPES)
    p.add_argument("--output", default="output/pooler_ablation")
    p.add_argument("--json", help="also write the table as JSON")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE config overrides")
    args = p.parse_args()
    rows = []
    for t in args.types:
        out = os.path.join(args.output, t)
        cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--resume", "--config-file",
               os.path.join(REPO, f"configs/MaskRCNN/shapes_R_18_FPN_pooler_{t}.yaml"), "OUTPUT_DIR", out,
               *args.opts]
        print(f"[ablation] {t}: {' '.join(cmd[1:])}", flush=True)
        if subprocess.run(cmd, cwd=REPO).returncode != 0:
            sys.exit(f"[ablation] {t} failed")
        m = last_eval_metrics(out)
        rows.append(dict(pooler=t, **{k: m.get(k) for k in
                                       ("segm/AP", "segm/AP50", "segm/AP75", "bbox/AP", "bbox/AP75")}))
    print("\n| pooler | op | mask AP | mask AP50 | mask AP75 | box AP | box AP75 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pooler']} | {DESCRIPTION[r['pooler']]} | {r['segm/AP']:.1f} | {r['segm/AP50']:.1f} | "
              f"{r['segm/AP75']:.1f} | {r['bbox/AP']:.1f} | {r['bbox/AP75']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
