#!/usr/bin/env python
"""Inference latency of RDSNet vs its RetinaNet, same backbone, anchors, head and input.

The RetinaNet is built from the RDSNet config as ``NormRetinaNet`` (Detectron2's RetinaNet)
with RDSNet's cls / box towers (MODEL.RETINANET.NORM = MODEL.RDSNET.HEAD_NORM), so everything
but RDSNet's additions is identical. The
number of detections is forced (score threshold 0, NMS off, per-image cap n): latency does not
depend on the (random) weights once it is fixed. RDSNet is timed with the regressed boxes
(BOX_REFINEMENT none), with MBRM, and with the masks' tight boxes (direct).

    python tools/bench_rdsnet.py                                   # CPU, shapes-sized (R-18, 256 px)
    python tools/bench_rdsnet.py --preset coco --size 800 --repeats 5
    python tools/bench_rdsnet.py --device cuda --preset coco --size 800
    python tools/bench_rdsnet.py --preset coco --size 800 MODEL.RDSNET.REPR_NUM_CONVS 2

Medians of --repeats runs; ratios are against RetinaNet measured in the same run. Writes a
JSON file (--output) and prints a Markdown table.
"""
import argparse

import torch

import segzoo  # noqa: E402,F401
from segzoo.benchmark import add_run_args, build_eval_model, median_ms, start_run, write_json  # noqa: E402

PRESETS = {"shapes": "configs/RDSNet/shapes_R_18.yaml", "coco": "configs/RDSNet/R_50_1x.yaml"}
VARIANTS = {
    "retinanet": ["MODEL.META_ARCHITECTURE", "NormRetinaNet"],  # + MODEL.RETINANET.NORM, see bench()
    "rdsnet": ["MODEL.RDSNET.BOX_REFINEMENT", "none"],
    "rdsnet_mbrm": ["MODEL.RDSNET.BOX_REFINEMENT", "mbrm"],
    "rdsnet_direct": ["MODEL.RDSNET.BOX_REFINEMENT", "direct"],
}


def bench(args, device):
    config = PRESETS[args.preset]
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, args.size, args.size, generator=g) * 255).to(device)
    inputs = [{"image": image, "height": args.size, "width": args.size}]
    from segzoo.config import load_config

    head_norm = load_config(config, list(args.opts)).MODEL.RDSNET.HEAD_NORM
    variants = dict(VARIANTS, retinanet=[*VARIANTS["retinanet"], "MODEL.RETINANET.NORM", head_norm])
    rows = []
    for n in args.detections:
        forced = [
            "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0", "MODEL.RETINANET.NMS_THRESH_TEST", "1.0",
            "TEST.DETECTIONS_PER_IMAGE", str(n),
        ]
        row = {"detections": n}
        for name, opts in variants.items():
            model = build_eval_model(config, [*forced, *args.opts, *opts], device)
            with torch.no_grad():
                row[f"{name}_detections"] = len(model(inputs)[0]["instances"])
                row[f"{name}_ms"] = median_ms(lambda: model(inputs), device, args.repeats, args.warmup)
        for name in VARIANTS:
            row[f"{name}_ratio"] = row[f"{name}_ms"] / row["retinanet_ms"]
        rows.append(row)
        print("  n={}: ".format(n) + ", ".join(f"{k} {row[k + '_ms']:.1f} ms" for k in VARIANTS), flush=True)
    return rows


def markdown(rows, args, device):
    lines = [
        f"Inference latency per image, {args.preset} preset, {args.size} px ({device}), median ms "
        "(ratio to RetinaNet):",
        "",
        "| detections | RetinaNet | RDSNet | RDSNet + MBRM | RDSNet, direct boxes |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{r['retinanet_ms']:.1f}"] + [
            f"{r[k + '_ms']:.1f} ({r[k + '_ratio']:.2f}x)" for k in ("rdsnet", "rdsnet_mbrm", "rdsnet_direct")
        ]
        lines.append(f"| {r['detections']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="shapes", choices=sorted(PRESETS))
    p.add_argument("--size", type=int, default=256, help="input (and output) image side")
    p.add_argument("--detections", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every model")
    add_run_args(p, "output/bench/rdsnet.json")
    args = p.parse_args(argv)
    start_run(p, args)
    rows = bench(args, args.device)
    write_json(args.output, {"device": args.device, "args": vars(args), "inference": rows})
    print()
    print(markdown(rows, args, args.device))
    return rows


if __name__ == "__main__":
    main()
