"""Inference latency of RDSNet vs its RetinaNet, same backbone, anchors, head and input
(``python -m rdsnet.bench``, also tools/bench_rdsnet.py).

The RetinaNet is built from the RDSNet config as ``NormRetinaNet`` (Detectron2's RetinaNet) with
RDSNet's cls / box towers (MODEL.RETINANET.NORM = MODEL.RDSNET.HEAD_NORM), so everything but
RDSNet's additions is identical. The number of detections is forced with the overrides the
comparison's methods declare (``detections(n)`` of ``retinanet_gn`` for the RetinaNet, of
``rdsnet`` / ``rdsnet_mbrm`` for RDSNet: score threshold 0, NMS off, per-image cap n), as
``python -m segzoo.zoo.cli bench`` forces them: latency does not depend on the (random) weights
once it is fixed. RDSNet is timed with the regressed boxes (BOX_REFINEMENT none), with MBRM, and
with the masks' tight boxes (direct).

    python -m rdsnet.bench                                   # CPU, shapes-sized (R-18, 256 px)
    python -m rdsnet.bench --preset coco --size 800 --repeats 5
    python -m rdsnet.bench --device cuda --preset coco --size 800
    python -m rdsnet.bench --preset coco --size 800 MODEL.RDSNET.REPR_NUM_CONVS 2

Medians of --repeats runs on one random image; ratios are against RetinaNet measured in the same
run. Writes a JSON file (--output) and prints a Markdown table.
"""
import argparse
from typing import Callable, Dict, List, Sequence

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.benchmark import add_run_args, build_eval_model, random_inputs, start_run, write_json
from segzoo.config import runtime_config
from segzoo.model_zoo import get_config_file
from segzoo.zoo import detections_opts
from segzoo.zoo.measure import timed_inference

__all__ = ["DETECTIONS_FROM", "PRESETS", "VARIANTS", "bench", "forced_detections", "main", "markdown", "variant_opts"]

PRESETS = {"shapes": "RDSNet/shapes_R_18.yaml", "coco": "RDSNet/R_50_1x.yaml"}
VARIANTS = {
    "retinanet": ["MODEL.META_ARCHITECTURE", "NormRetinaNet"],  # + MODEL.RETINANET.NORM, see variant_opts()
    "rdsnet": ["MODEL.RDSNET.BOX_REFINEMENT", "none"],
    "rdsnet_mbrm": ["MODEL.RDSNET.BOX_REFINEMENT", "mbrm"],
    "rdsnet_direct": ["MODEL.RDSNET.BOX_REFINEMENT", "direct"],
}
# variant -> the comparison method whose declared detections(n) force n detections on it
DETECTIONS_FROM = {"retinanet": "retinanet_gn", "rdsnet": "rdsnet", "rdsnet_mbrm": "rdsnet_mbrm",
                   "rdsnet_direct": "rdsnet"}


def forced_detections(variant: str, n: int) -> List[str]:
    """The overrides making ``variant`` output exactly ``n`` detections per image."""
    return detections_opts(DETECTIONS_FROM[variant], n)


def variant_opts(config_file: str, opts: Sequence[str] = ()) -> Dict[str, List[str]]:
    """Variant -> its overrides of the RDSNet config (the RetinaNet gets RDSNet's head norm)."""
    head_norm = runtime_config(config_file, opts, device="cpu").MODEL.RDSNET.HEAD_NORM
    return dict(VARIANTS, retinanet=[*VARIANTS["retinanet"], "MODEL.RETINANET.NORM", head_norm])


def bench(preset: str = "shapes", size: int = 256, detections: Sequence[int] = (10, 50, 100), opts: Sequence[str] = (),
          device: str = "cpu", repeats: int = 10, warmup: int = 2, say: Callable[[str], None] = print) -> List[Dict]:
    """Per number of detections: every variant's median latency (ms), detections returned and
    ratio to the RetinaNet."""
    config = get_config_file(PRESETS[preset])
    inputs = random_inputs(size, device)
    variants = variant_opts(config, opts)
    rows = []
    for n in detections:
        row = {"detections": n}
        for name, v_opts in variants.items():
            model = build_eval_model(config, [*forced_detections(name, n), *opts, *v_opts], device)
            ms, count = timed_inference(model, inputs, device, repeats, warmup)
            row[f"{name}_detections"], row[f"{name}_ms"] = round(count), ms
        for name in VARIANTS:
            row[f"{name}_ratio"] = row[f"{name}_ms"] / row["retinanet_ms"]
        rows.append(row)
        say("  n={}: ".format(n) + ", ".join(f"{k} {row[k + '_ms']:.1f} ms" for k in VARIANTS))
    return rows


def markdown(rows: List[Dict], preset: str, size: int, device: str) -> str:
    lines = [
        f"Inference latency per image, {preset} preset, {size} px ({device}), median ms "
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


def main(argv=None) -> List[Dict]:
    p = argparse.ArgumentParser(prog="python -m rdsnet.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="shapes", choices=sorted(PRESETS))
    p.add_argument("--size", type=int, default=256, help="input (and output) image side")
    p.add_argument("--detections", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every model")
    add_run_args(p, "output/bench/rdsnet.json")
    args = p.parse_args(argv)
    start_run(p, args)
    rows = bench(args.preset, args.size, args.detections, list(args.opts), args.device, args.repeats, args.warmup,
                 say=lambda s: print(s, flush=True))
    write_json(args.output, {"device": args.device, "args": vars(args), "inference": rows})
    print()
    print(markdown(rows, args.preset, args.size, args.device))
    return rows


if __name__ == "__main__":
    main()
