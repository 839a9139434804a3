#!/usr/bin/env python
"""Benchmarks of BlendMask.

1. The blender: segzoo's fused op vs the PyTorch composition (interpolate + softmax +
   weighted sum), forward and forward+backward, for N instances (default 10, 100, 300),
   K=4, M=14, R=56. Memory: on CUDA the peak allocation of forward+backward; on any device
   the bytes autograd keeps for backward.
2. End-to-end inference latency of BlendMask vs Detectron2's Mask R-CNN with the same ResNet
   and the same input size, against the number of detections per image (forced: score
   threshold 0, NMS off, the per-image cap set to n). Weights are random: latency does not
   depend on them once the number of detections is fixed.

    python tools/bench_blendmask.py                         # CPU, shapes-sized models (R-18, 256 px)
    python tools/bench_blendmask.py --preset coco --size 512
    python tools/bench_blendmask.py --device cuda --preset coco --size 800

Medians of --repeats runs; ratios are against the baseline measured in the same run.
Writes a JSON file (--output) and prints Markdown tables.
"""
import argparse

import torch

import segzoo  # noqa: E402,F401
from segzoo.benchmark import (  # noqa: E402
    add_run_args,
    build_eval_model,
    median_ms,
    peak_memory_mb,
    saved_for_backward_mb,
    start_run,
    write_json,
)
from segzoo.ops import blender, blender_composition  # noqa: E402

PRESETS = {
    "shapes": ("configs/MaskRCNN/shapes_R_18_FPN.yaml", "configs/BlendMask/shapes_R_18.yaml"),
    "coco": ("configs/MaskRCNN/mask_rcnn_R_50_FPN_1x.yaml", "configs/BlendMask/R_50_1x.yaml"),
}


def bench_blender(args, device):
    rows = []
    g = torch.Generator().manual_seed(0)
    for n in args.instances:
        crops = torch.randn(n, args.k, args.r, args.r, generator=g).to(device)
        attn = torch.randn(n, args.k, args.m, args.m, generator=g).to(device)
        row = {"N": n}
        for name, fn in (("composition", blender_composition), ("fused", blender)):
            c = crops.clone().requires_grad_()
            a = attn.clone().requires_grad_()
            grad = torch.ones(n, args.r, args.r, device=device)

            def fwd():
                with torch.no_grad():
                    return fn(c, a)

            def fwd_bwd():
                out = fn(c, a)
                torch.autograd.grad(out, (c, a), grad)

            row[f"{name}_fwd_ms"] = median_ms(fwd, device, args.repeats, args.warmup)
            row[f"{name}_fwdbwd_ms"] = median_ms(fwd_bwd, device, args.repeats, args.warmup)
            row[f"{name}_saved_mb"] = saved_for_backward_mb(lambda: fn(c, a))
            if device == "cuda":
                row[f"{name}_peak_mb"] = peak_memory_mb(fwd_bwd)
        row["speedup_fwd"] = row["composition_fwd_ms"] / row["fused_fwd_ms"]
        row["speedup_fwdbwd"] = row["composition_fwdbwd_ms"] / row["fused_fwdbwd_ms"]
        row["saved_ratio"] = row["fused_saved_mb"] / row["composition_saved_mb"]
        if device == "cuda":
            row["peak_ratio"] = row["fused_peak_mb"] / row["composition_peak_mb"]
        rows.append(row)
        print(f"  blender N={n}: fused {row['fused_fwdbwd_ms']:.2f} ms vs composition "
              f"{row['composition_fwdbwd_ms']:.2f} ms (fwd+bwd)", flush=True)
    return rows


def bench_models(args, device):
    maskrcnn_cfg, blendmask_cfg = PRESETS[args.preset]
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, args.size, args.size, generator=g) * 255).to(device)
    inputs = [{"image": image, "height": args.size, "width": args.size}]
    rows = []
    for n in args.detections:
        row = {"detections": n}
        models = {
            "maskrcnn": build_eval_model(maskrcnn_cfg, [
                "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.ROI_HEADS.NMS_THRESH_TEST", "1.0",
                "TEST.DETECTIONS_PER_IMAGE", str(n),
                "MODEL.RPN.POST_NMS_TOPK_TEST", str(max(1000, n)),
            ], device),
            "blendmask": build_eval_model(blendmask_cfg, [
                "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.NMS_TH", "1.0",
                "MODEL.FCOS.POST_NMS_TOPK_TEST", str(n),
            ], device),
        }
        for name, model in models.items():
            with torch.no_grad():
                got = len(model(inputs)[0]["instances"])
                row[f"{name}_ms"] = median_ms(lambda: model(inputs), device, args.repeats, args.warmup)
            row[f"{name}_detections"] = got
        row["ratio"] = row["blendmask_ms"] / row["maskrcnn_ms"]
        rows.append(row)
        print(f"  inference n={n}: BlendMask {row['blendmask_ms']:.1f} ms ({row['blendmask_detections']} dets), "
              f"Mask R-CNN {row['maskrcnn_ms']:.1f} ms ({row['maskrcnn_detections']} dets)", flush=True)
    return rows


def markdown(blender_rows, model_rows, device):
    lines = [f"Blender, K=4, M=14, R=56 ({device}), median ms:", "",
             "| N | composition fwd | fused fwd | speed-up | composition fwd+bwd | fused fwd+bwd | speed-up "
             "| saved for bwd (MB) comp / fused |" + (" peak MB comp / fused |" if device == "cuda" else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if device == "cuda" else "")]
    for r in blender_rows:
        line = (f"| {r['N']} | {r['composition_fwd_ms']:.2f} | {r['fused_fwd_ms']:.2f} | {r['speedup_fwd']:.2f}x "
                f"| {r['composition_fwdbwd_ms']:.2f} | {r['fused_fwdbwd_ms']:.2f} | {r['speedup_fwdbwd']:.2f}x "
                f"| {r['composition_saved_mb']:.1f} / {r['fused_saved_mb']:.1f} |")
        if device == "cuda":
            line += f" {r['composition_peak_mb']:.1f} / {r['fused_peak_mb']:.1f} |"
        lines.append(line)
    if model_rows:
        lines += ["", f"Inference latency per image ({device}), median ms:", "",
                  "| detections | Mask R-CNN | BlendMask | BlendMask / Mask R-CNN |", "|---|---|---|---|"]
        for r in model_rows:
            lines.append(f"| {r['detections']} | {r['maskrcnn_ms']:.1f} | {r['blendmask_ms']:.1f} | {r['ratio']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, nargs="+", default=[10, 100, 300])
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--m", type=int, default=14)
    p.add_argument("--r", type=int, default=56)
    p.add_argument("--preset", default="shapes", choices=sorted(PRESETS))
    p.add_argument("--size", type=int, default=256, help="input image side for the model latency")
    p.add_argument("--detections", type=int, nargs="+", default=[10, 50, 100, 300])
    p.add_argument("--skip-models", action="store_true", help="only the blender benchmark")
    add_run_args(p, "output/bench/blendmask.json")
    args = p.parse_args(argv)
    start_run(p, args)
    blender_rows = bench_blender(args, args.device)
    model_rows = [] if args.skip_models else bench_models(args, args.device)
    result = {"device": args.device, "args": vars(args), "blender": blender_rows, "inference": model_rows}
    write_json(args.output, result)
    print()
    print(markdown(blender_rows, model_rows, args.device))
    return result


if __name__ == "__main__":
    main()
