"""Helpers shared by the benchmarks (the comparison's, the ops' and the plugins' own): timing,
memory, models with random weights, random inputs, command-line flags, JSON results."""
import json
import os
import re
import statistics
import time
from typing import Callable, List, Optional

import torch

__all__ = [
    "add_run_args",
    "build_eval_model",
    "build_model_from",
    "median_ms",
    "peak_memory_mb",
    "peak_rss_mb",
    "random_inputs",
    "saved_for_backward_mb",
    "start_run",
    "write_json",
]


def median_ms(fn: Callable[[], object], device: str = "cpu", repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds (CUDA synchronised around each call)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Peak CUDA memory allocated during ``fn()`` above what was allocated before, in MB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _rss_hwm_kb():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def peak_rss_mb(fn: Callable[[], object]) -> Optional[float]:
    """Peak resident memory of this process during ``fn()`` above its resident memory before,
    in MB (Linux: the high-water mark is reset through /proc/self/clear_refs); None where the
    kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _rss_hwm_kb()
    except OSError:
        return None
    fn()
    return max(0.0, (_rss_hwm_kb() - base) / 1024)


def saved_for_backward_mb(fn: Callable[[], object]) -> float:
    """MB of tensors autograd keeps for backward while running ``fn()`` (any device)."""
    seen = {}

    def pack(t):
        seen[(t.data_ptr(), t.numel(), t.dtype)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) / 2**20


def build_model_from(config: str, opts=(), weights: str = ""):
    """A model in eval mode and its config from a yaml config + ``KEY VALUE`` overrides
    (:func:`segzoo.config.runtime_config`: every plugin registered, the config's datasets
    registered, the CPU when CUDA is asked for and absent), ``weights`` loaded when given."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from .config import runtime_config

    cfg = runtime_config(config, opts)
    model = build_model(cfg).eval()
    if weights:
        DetectionCheckpointer(model).load(weights)
    return model, cfg


def build_eval_model(config: str, opts=(), device: str = "cpu", seed: int = 0):
    """A model in eval mode from a yaml config (every plugin registered), random weights."""
    torch.manual_seed(seed)
    return build_model_from(config, ["MODEL.DEVICE", device, "MODEL.WEIGHTS", "", *opts])[0]


def random_inputs(size: int, device: str = "cpu", count: int = 1, seed: int = 0) -> List[dict]:
    """``count`` model inputs, each a random ``size`` x ``size`` RGB image (values in [0, 255)),
    drawn one after the other from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return [{"image": (torch.rand(3, size, size, generator=g) * 255).to(device), "height": size, "width": size}
            for _ in range(count)]


def add_run_args(parser, output: str, repeats: int = 10, warmup: int = 2) -> None:
    """The flags every model benchmark takes: --device --repeats --warmup --threads --output."""
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave default)")
    parser.add_argument("--output", default=output, help="JSON file with the results")


def start_run(parser, args) -> None:
    """Check the device, apply --threads, print what runs where."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}", flush=True)


def write_json(path: str, obj, indent: int = 2) -> None:
    """Write ``obj`` as JSON, atomically (a crash never leaves a half-written file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=indent)
    os.replace(path + ".tmp", path)
