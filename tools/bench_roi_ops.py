#!/usr/bin/env python
"""Benchmark segzoo's RoIAlign family against torchvision's roi_align / roi_pool.

Forward and forward+backward time of every mode at realistic Mask R-CNN sizes (default: 512
RoIs over 2 images, 256 channels, a stride-16 FPN map of an 800x1088 input, 7x7 and 14x14
outputs, sampling ratio 2). Reports medians of repeated runs and ratios measured in the same run.

    python tools/bench_roi_ops.py                      # CPU
    python tools/bench_roi_ops.py --device cuda        # GPU
"""
import argparse
import json

import torch
import torchvision

from segzoo.benchmark import median_ms  # noqa: E402
from segzoo.ops import roi_align_family  # noqa: E402


def make_inputs(args, device, dtype):
    g = torch.Generator().manual_seed(0)
    h, w = args.map_size
    x = torch.randn(args.images, args.channels, h, w, generator=g).to(device, dtype)
    img_h, img_w = h / args.scale, w / args.scale
    size = torch.exp(torch.empty(args.rois, 2).uniform_(3.0, 6.2, generator=g))  # 20..490 px
    ctr = torch.rand(args.rois, 2, generator=g) * torch.tensor([img_w, img_h])
    boxes = torch.cat([ctr - size / 2, ctr + size / 2], 1)
    idx = torch.randint(0, args.images, (args.rois, 1), generator=g).float()
    rois = torch.cat([idx, boxes], 1).to(device, dtype)
    return x, rois


def timeit(fn, device, repeats, warmup):
    return median_ms(fn, device, repeats, warmup)


def candidates(x, rois, out, scale, sr):
    return {
        "torchvision roi_align": lambda t: torchvision.ops.roi_align(t, rois, out, scale, sr, True),
        "ours RoIAlign avg": lambda t: roi_align_family(t, rois, out, scale, sr, True, "avg", check_batch_index=False),
        "ours RoIAlign max": lambda t: roi_align_family(t, rois, out, scale, sr, True, "max", check_batch_index=False),
        "ours RoIWarp": lambda t: roi_align_family(t, rois, out, scale, sr, False, "warp", check_batch_index=False),
        "torchvision roi_pool": lambda t: torchvision.ops.roi_pool(t, rois, out, scale),
        "ours RoIPool": lambda t: roi_align_family(t, rois, out, scale, 0, False, "pool", check_batch_index=False),
    }


BASELINE = {  # row -> the row its ratio is taken against
    "ours RoIAlign avg": "torchvision roi_align",
    "ours RoIAlign max": "ours RoIAlign avg",
    "ours RoIWarp": "ours RoIAlign avg",
    "ours RoIPool": "torchvision roi_pool",
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rois", type=int, default=512)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--map-size", type=int, nargs=2, default=[50, 68])
    p.add_argument("--scale", type=float, default=1 / 16)
    p.add_argument("--sampling-ratio", type=int, default=2)
    p.add_argument("--outputs", type=int, nargs="+", default=[7, 14])
    p.add_argument("--repeats", type=int, default=None, help="default: 10 on CPU, 50 on CUDA")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    repeats = args.repeats or (50 if args.device == "cuda" else 10)
    dtype = getattr(torch, args.dtype)

    x, rois = make_inputs(args, args.device, dtype)
    results = []
    env = (f"{torch.cuda.get_device_name()}" if args.device == "cuda" else
           f"CPU, {torch.get_num_threads()} threads")
    print(f"# RoI ops on {env}: {args.rois} RoIs, {args.images}x{args.channels}x{args.map_size[0]}x"
          f"{args.map_size[1]} {args.dtype}, sampling ratio {args.sampling_ratio}, median of {repeats}")
    print("| output | op | forward ms | ratio | fwd+bwd ms | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for out in args.outputs:
        rows = {}
        for name, fn in candidates(x, rois, (out, out), args.scale, args.sampling_ratio).items():
            with torch.no_grad():
                fwd = timeit(lambda: fn(x), args.device, repeats, args.warmup)
            xg = x.clone().requires_grad_()
            grad = torch.randn(args.rois, args.channels, out, out, device=args.device, dtype=dtype)

            def fwd_bwd():
                xg.grad = None
                fn(xg).backward(grad)

            fb = timeit(fwd_bwd, args.device, repeats, args.warmup)
            rows[name] = (fwd, fb)
        for name, (fwd, fb) in rows.items():
            base = BASELINE.get(name)
            r_f = f"{fwd / rows[base][0]:.2f} vs {base}" if base else ""
            r_b = f"{fb / rows[base][1]:.2f}" if base else ""
            print(f"| {out}x{out} | {name} | {fwd:.2f} | {r_f} | {fb:.2f} | {r_b} |")
            results.append(dict(output=out, op=name, forward_ms=fwd, fwd_bwd_ms=fb, baseline=base,
                                forward_ratio=fwd / rows[base][0] if base else None,
                                fwd_bwd_ratio=fb / rows[base][1] if base else None))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=env, args=vars(args), results=results), f, indent=1)


if __name__ == "__main__":
    main()
