"""Latency of each method in PyTorch eager, exported TorchScript and ONNX Runtime, on the same
images, with the same number of detections (the harness's forced-n overrides, untrained
weights: latency does not depend on them).

    python tools/bench_export.py                                   # every exportable method, CPU
    python tools/bench_export.py --methods blendmask mask_rcnn_ROIAlignV2 --detections 100

Each method is exported (tracing) to a temporary folder; then, image by image, eager
``model.inference(..., do_postprocess=False)``, the TorchScript module and the ONNX Runtime
session run the same resized image (raw outputs: what each format computes; the shared
postprocessing is left out). Reported: median ms per image and the ratio to eager.
"""
import argparse
import json
import os
import sys
import tempfile
from typing import Dict, List

import torch

from ..benchmark import add_run_args, build_eval_model, median_ms, random_inputs, start_run, write_json
from ..errors import UserError
from .model import ExportedPredictor, check_raw_inference, export_model, raw_inference

__all__ = ["bench_method", "main"]

def bench_method(method, n: int, size: int, images: int, repeats: int, warmup: int) -> Dict:
    """Median latency (ms) of eager / TorchScript / ONNX Runtime for one harness method."""
    from ..zoo import detections_opts

    model = build_eval_model(method.config_file, [*detections_opts(method, n),
                                                  "INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size)])
    inputs = [x["image"] for x in random_inputs(size, count=images)]
    row = {"method": method.name, "label": method.label, "detections": n, "size": size}
    with tempfile.TemporaryDirectory() as d:
        check_raw_inference(model)
        runners = {"eager": lambda im: raw_inference(model, [{"image": im}])}
        for fmt in ("torchscript", "onnx"):
            out = os.path.join(d, fmt)
            export_model(model, inputs[0], out, fmt)
            runners[fmt] = ExportedPredictor(out).run
        for name, run in runners.items():
            per_image = []
            for im in inputs:
                with torch.no_grad():
                    per_image.append(median_ms(lambda: run(im), repeats=repeats, warmup=warmup))
            row[f"{name}_ms"] = sorted(per_image)[len(per_image) // 2]
    for fmt in ("torchscript", "onnx"):
        row[f"{fmt}_vs_eager"] = row[f"{fmt}_ms"] / row["eager_ms"]
    return row


def main(argv=None) -> int:
    from ..zoo import methods

    # instance segmentation and segment-proposal methods that are not fed proposals by another model
    known = {k: m for k, m in methods().items() if m.kind in ("instance", "proposals") and m.proposals is None}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(known), help=f"default: {', '.join(known)}")
    p.add_argument("--detections", type=int, default=50, help="forced detections per image")
    p.add_argument("--size", type=int, default=256, help="input side")
    p.add_argument("--images", type=int, default=5, help="random images; median over them")
    add_run_args(p, "output/bench/export.json", repeats=5, warmup=1)
    args = p.parse_args(argv)
    start_run(p, args)
    if args.device != "cpu":
        p.error("the export benchmark runs on the CPU (ONNX Runtime's CPU provider)")
    unknown = [m for m in args.methods if m not in known]
    if unknown:
        print(f"error: not exportable or unknown: {unknown}; exportable: {list(known)}", file=sys.stderr)
        return 2
    rows: List[Dict] = []
    try:
        for name in args.methods:
            rows.append(bench_method(known[name], args.detections, args.size, args.images, args.repeats, args.warmup))
            r = rows[-1]
            print(f"{r['label']:<28} eager {r['eager_ms']:7.1f} ms | TorchScript {r['torchscript_ms']:7.1f} "
                  f"({r['torchscript_vs_eager']:.2f}x) | ONNX Runtime {r['onnx_ms']:7.1f} ({r['onnx_vs_eager']:.2f}x)",
                  flush=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    try:
        import onnxruntime

        settings["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    write_json(args.output, {"settings": settings, "rows": rows})
    print(json.dumps({"written": args.output}))
    return 0
