"""Micro-benchmarks of segzoo's C++/CUDA ops against the PyTorch / torchvision code they replace
(tools/bench_ops.py, ``python -m segzoo.ops.bench``).

``roi_align_family``: forward and forward+backward time of every RoIAlign-family mode against
torchvision's ``roi_align`` / ``roi_pool`` at realistic Mask R-CNN sizes (default: 512 RoIs over 2
images, 256 channels, a stride-16 FPN map of an 800x1088 input, 7x7 and 14x14 outputs, sampling
ratio 2).

``blender``: the fused blender vs its PyTorch composition (interpolate + softmax + weighted sum),
forward and forward+backward, for N instances (default 10, 100, 300), K=4, M=14, R=56. Memory: on
CUDA the peak allocation of forward+backward; on any device the bytes autograd keeps for backward.

    python tools/bench_ops.py                                  # CPU, both
    python tools/bench_ops.py --device cuda --ops roi_align_family
    python tools/bench_ops.py --ops blender --instances 10 100

Medians of --repeats runs (default: RoI ops 10 on the CPU, 50 on CUDA; blender 10); ratios are
against the baseline measured in the same run. Prints Markdown tables and writes a JSON file
(--output).
"""
import argparse
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from ..benchmark import median_ms, peak_memory_mb, saved_for_backward_mb, write_json
from .blender import blender, blender_composition
from .roi_align_family import roi_align_family

__all__ = [
    "OPS",
    "ROI_BASELINE",
    "bench_blender",
    "bench_roi_align_family",
    "blender_markdown",
    "main",
    "roi_candidates",
    "roi_inputs",
]

OPS = ("roi_align_family", "blender")


# --- RoIAlign family ---------------------------------------------------------------------------

def roi_inputs(rois: int = 512, images: int = 2, channels: int = 256, map_size: Sequence[int] = (50, 68),
               scale: float = 1 / 16, device: str = "cpu", dtype=torch.float32, seed: int = 0):
    """Random features ``(images, channels, *map_size)`` and ``rois`` boxes ``[batch_idx, x1, y1,
    x2, y2]`` of 20..490 px (log-uniform) over the input image the map is ``scale`` of."""
    g = torch.Generator().manual_seed(seed)
    h, w = map_size
    x = torch.randn(images, channels, h, w, generator=g).to(device, dtype)
    img_h, img_w = h / scale, w / scale
    size = torch.exp(torch.empty(rois, 2).uniform_(3.0, 6.2, generator=g))  # 20..490 px
    ctr = torch.rand(rois, 2, generator=g) * torch.tensor([img_w, img_h])
    boxes = torch.cat([ctr - size / 2, ctr + size / 2], 1)
    idx = torch.randint(0, images, (rois, 1), generator=g).float()
    return x, torch.cat([idx, boxes], 1).to(device, dtype)


def roi_candidates(rois, out: Tuple[int, int], scale: float, sr: int) -> Dict[str, Callable]:
    """Op name -> ``fn(features)`` pooling ``rois`` to ``out``."""
    import torchvision

    return {
        "torchvision roi_align": lambda t: torchvision.ops.roi_align(t, rois, out, scale, sr, True),
        "ours RoIAlign avg": lambda t: roi_align_family(t, rois, out, scale, sr, True, "avg", check_batch_index=False),
        "ours RoIAlign max": lambda t: roi_align_family(t, rois, out, scale, sr, True, "max", check_batch_index=False),
        "ours RoIWarp": lambda t: roi_align_family(t, rois, out, scale, sr, False, "warp", check_batch_index=False),
        "torchvision roi_pool": lambda t: torchvision.ops.roi_pool(t, rois, out, scale),
        "ours RoIPool": lambda t: roi_align_family(t, rois, out, scale, 0, False, "pool", check_batch_index=False),
    }


ROI_BASELINE = {  # row -> the row its ratio is taken against
    "ours RoIAlign avg": "torchvision roi_align",
    "ours RoIAlign max": "ours RoIAlign avg",
    "ours RoIWarp": "ours RoIAlign avg",
    "ours RoIPool": "torchvision roi_pool",
}


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"


def bench_roi_align_family(device: str = "cpu", dtype: str = "float32", rois: int = 512, images: int = 2,
                           channels: int = 256, map_size: Sequence[int] = (50, 68), scale: float = 1 / 16,
                           sampling_ratio: int = 2, outputs: Sequence[int] = (7, 14), repeats: int = 0,
                           warmup: int = 3, say: Callable[[str], None] = print) -> List[Dict]:
    """Forward and forward+backward median ms of every candidate (:func:`roi_candidates`) per
    output size, with ratios against :data:`ROI_BASELINE`; ``say`` gets the Markdown table line by
    line as it is measured. ``repeats`` 0: 10 on the CPU, 50 on CUDA."""
    repeats = repeats or (50 if device == "cuda" else 10)
    x, boxes = roi_inputs(rois, images, channels, map_size, scale, device, getattr(torch, dtype))
    say(f"# RoI ops on {_device_name(device)}: {rois} RoIs, {images}x{channels}x{map_size[0]}x"
        f"{map_size[1]} {dtype}, sampling ratio {sampling_ratio}, median of {repeats}")
    say("| output | op | forward ms | ratio | fwd+bwd ms | ratio |")
    say("|---|---|---:|---:|---:|---:|")
    results = []
    for out in outputs:
        rows = {}
        for name, fn in roi_candidates(boxes, (out, out), scale, sampling_ratio).items():
            with torch.no_grad():
                fwd = median_ms(lambda: fn(x), device, repeats, warmup)
            xg = x.clone().requires_grad_()
            grad = torch.randn(rois, channels, out, out, device=device, dtype=x.dtype)

            def fwd_bwd():
                xg.grad = None
                fn(xg).backward(grad)

            rows[name] = (fwd, median_ms(fwd_bwd, device, repeats, warmup))
        for name, (fwd, fb) in rows.items():
            base = ROI_BASELINE.get(name)
            r_f = f"{fwd / rows[base][0]:.2f} vs {base}" if base else ""
            r_b = f"{fb / rows[base][1]:.2f}" if base else ""
            say(f"| {out}x{out} | {name} | {fwd:.2f} | {r_f} | {fb:.2f} | {r_b} |")
            results.append(dict(output=out, op=name, forward_ms=fwd, fwd_bwd_ms=fb, baseline=base,
                                forward_ratio=fwd / rows[base][0] if base else None,
                                fwd_bwd_ratio=fb / rows[base][1] if base else None))
    return results


# --- blender -----------------------------------------------------------------------------------

def bench_blender(instances: Sequence[int] = (10, 100, 300), k: int = 4, m: int = 14, r: int = 56,
                  device: str = "cpu", repeats: int = 10, warmup: int = 2,
                  say: Callable[[str], None] = print) -> List[Dict]:
    """Per N: forward and forward+backward median ms of the composition and the fused op, the MB
    autograd keeps for backward (and the CUDA peak of forward+backward), with their ratios."""
    rows = []
    g = torch.Generator().manual_seed(0)
    for n in instances:
        crops = torch.randn(n, k, r, r, generator=g).to(device)
        attn = torch.randn(n, k, m, m, generator=g).to(device)
        row = {"N": n}
        for name, fn in (("composition", blender_composition), ("fused", blender)):
            c = crops.clone().requires_grad_()
            a = attn.clone().requires_grad_()
            grad = torch.ones(n, r, r, device=device)

            def fwd():
                with torch.no_grad():
                    return fn(c, a)

            def fwd_bwd():
                out = fn(c, a)
                torch.autograd.grad(out, (c, a), grad)

            row[f"{name}_fwd_ms"] = median_ms(fwd, device, repeats, warmup)
            row[f"{name}_fwdbwd_ms"] = median_ms(fwd_bwd, device, repeats, warmup)
            row[f"{name}_saved_mb"] = saved_for_backward_mb(lambda: fn(c, a))
            if device == "cuda":
                row[f"{name}_peak_mb"] = peak_memory_mb(fwd_bwd)
        row["speedup_fwd"] = row["composition_fwd_ms"] / row["fused_fwd_ms"]
        row["speedup_fwdbwd"] = row["composition_fwdbwd_ms"] / row["fused_fwdbwd_ms"]
        row["saved_ratio"] = row["fused_saved_mb"] / row["composition_saved_mb"]
        if device == "cuda":
            row["peak_ratio"] = row["fused_peak_mb"] / row["composition_peak_mb"]
        rows.append(row)
        say(f"  blender N={n}: fused {row['fused_fwdbwd_ms']:.2f} ms vs composition "
            f"{row['composition_fwdbwd_ms']:.2f} ms (fwd+bwd)")
    return rows


def blender_markdown(rows: List[Dict], device: str, k: int = 4, m: int = 14, r: int = 56) -> str:
    cuda = device == "cuda"
    lines = [f"Blender, K={k}, M={m}, R={r} ({device}), median ms:", "",
             "| N | composition fwd | fused fwd | speed-up | composition fwd+bwd | fused fwd+bwd | speed-up "
             "| saved for bwd (MB) comp / fused |" + (" peak MB comp / fused |" if cuda else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if cuda else "")]
    for x in rows:
        line = (f"| {x['N']} | {x['composition_fwd_ms']:.2f} | {x['fused_fwd_ms']:.2f} | {x['speedup_fwd']:.2f}x "
                f"| {x['composition_fwdbwd_ms']:.2f} | {x['fused_fwdbwd_ms']:.2f} | {x['speedup_fwdbwd']:.2f}x "
                f"| {x['composition_saved_mb']:.1f} / {x['fused_saved_mb']:.1f} |")
        if cuda:
            line += f" {x['composition_peak_mb']:.1f} / {x['fused_peak_mb']:.1f} |"
        lines.append(line)
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------

def main(argv=None) -> Dict:
    p = argparse.ArgumentParser(prog="tools/bench_ops.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=0, help="0: each op's default (see above)")
    p.add_argument("--warmup", type=int, default=-1, help="-1: each op's default (RoI ops 3, blender 2)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave default)")
    p.add_argument("--output", "--json", default="output/bench/ops.json", help="JSON file with the results")
    g = p.add_argument_group("roi_align_family")
    g.add_argument("--dtype", default="float32")
    g.add_argument("--rois", type=int, default=512)
    g.add_argument("--images", type=int, default=2)
    g.add_argument("--channels", type=int, default=256)
    g.add_argument("--map-size", type=int, nargs=2, default=[50, 68])
    g.add_argument("--scale", type=float, default=1 / 16)
    g.add_argument("--sampling-ratio", type=int, default=2)
    g.add_argument("--outputs", type=int, nargs="+", default=[7, 14])
    g = p.add_argument_group("blender")
    g.add_argument("--instances", type=int, nargs="+", default=[10, 100, 300])
    g.add_argument("--k", type=int, default=4)
    g.add_argument("--m", type=int, default=14)
    g.add_argument("--r", type=int, default=56)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda needs a CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"device": args.device, "device_name": _device_name(args.device), "args": vars(args)}
    if "roi_align_family" in args.ops:
        result["roi_align_family"] = bench_roi_align_family(
            args.device, args.dtype, args.rois, args.images, args.channels, args.map_size, args.scale,
            args.sampling_ratio, args.outputs, args.repeats, 3 if args.warmup < 0 else args.warmup,
            say=lambda s: print(s, flush=True))
    if "blender" in args.ops:
        if "roi_align_family" in args.ops:
            print()
        rows = bench_blender(args.instances, args.k, args.m, args.r, args.device, args.repeats or 10,
                             2 if args.warmup < 0 else args.warmup, say=lambda s: print(s, flush=True))
        result["blender"] = rows
        print()
        print(blender_markdown(rows, args.device, args.k, args.m, args.r))
    write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
