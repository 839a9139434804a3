"""Timing helpers shared by the benchmark scripts in tools/."""
import statistics
import time
from typing import Callable

import torch

__all__ = ["median_ms", "peak_memory_mb", "saved_for_backward_mb"]


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


def saved_for_backward_mb(fn: Callable[[], object]) -> float:
    """MB of tensors autograd keeps for backward while running ``fn()`` (any device)."""
    seen = {}

    def pack(t):
        seen[(t.data_ptr(), t.numel(), t.dtype)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) / 2**20
