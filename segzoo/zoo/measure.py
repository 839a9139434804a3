"""What the comparison measures on a built model: parameters, median per-image latency and
peak memory of inference, training throughput."""
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch

from ..benchmark import peak_memory_mb, peak_rss_mb

__all__ = ["count_parameters", "inference_stats", "peak_memory", "run_isolated", "timed_inference", "train_stats"]


def _sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory(fn: Callable[[], object], device: str) -> Optional[float]:
    """Peak memory of ``fn()`` in MB: CUDA memory allocated on a GPU, resident memory on the CPU."""
    if device.startswith("cuda"):
        return peak_memory_mb(fn)
    return peak_rss_mb(fn)


def count_parameters(model: torch.nn.Module) -> int:
    """Every parameter of the model, trainable or frozen (a frozen proposal network included)."""
    return sum(p.numel() for p in model.parameters())


def timed_inference(model, inputs: List[dict], device: str, repeats: int = 1, warmup: int = 1):
    """Median latency (ms) of ``model([x])`` over the inputs x ``repeats`` after ``warmup`` calls
    on the first input, and the mean number of instances returned."""
    times, counts = [], []
    with torch.no_grad():
        for _ in range(warmup):
            model(inputs[:1])
        for x in inputs:
            for _ in range(repeats):
                _sync(device)
                t = time.perf_counter()
                out = model([x])
                _sync(device)
                times.append((time.perf_counter() - t) * 1000)
            counts.append(len(out[0]["instances"]))
    return statistics.median(times), statistics.mean(counts)


def inference_stats(model, inputs: List[dict], device: str, repeats: int = 1, warmup: int = 1) -> Dict:
    """Peak memory of the first (cold) ``model([inputs[0]])``, then :func:`timed_inference`. Run it
    in a fresh process (:func:`run_isolated`) for a meaningful peak: memory a process already
    holds is reused without showing up."""
    model.eval()
    with torch.no_grad():
        memory = peak_memory(lambda: model([inputs[0]]), device)
    ms, count = timed_inference(model, inputs, device, repeats, warmup)
    return {"latency_ms": ms, "instances": count, "inference_peak_mb": memory, "timed_images": len(inputs)}


def train_stats(model, optimizer, batches: List[List[dict]], device: str, warmup: int = 1) -> Dict:
    """Peak memory of the first (cold) training iteration (forward, backward, optimizer step),
    then the median time of one iteration over the remaining ``batches`` after ``warmup`` of
    them, as seconds and images/s."""
    from detectron2.utils.events import EventStorage

    model.train()

    def step(batch):
        losses = model(batch)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    times = []
    with EventStorage(0):  # the models log training statistics
        memory = peak_memory(lambda: step(batches[0]), device)  # cold: first iteration
        for b in batches[1:1 + warmup]:
            step(b)
        for b in batches[1 + warmup:] or batches[-1:]:
            _sync(device)
            t = time.perf_counter()
            step(b)
            _sync(device)
            times.append(time.perf_counter() - t)
    it = statistics.median(times)
    return {"train_s_per_iter": it, "train_images_per_s": len(batches[0]) / it, "train_peak_mb": memory}


def _child(conn, fn, args):
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as e:  # noqa: BLE001  (reported to the parent)
        import traceback

        conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))
    finally:
        conn.close()


def run_isolated(fn: Callable, *args):
    """``fn(*args)`` in a fresh (spawned) Python process, so that its memory peak is its own;
    ``fn`` must be a module-level function and its arguments and result picklable."""
    import multiprocessing as mp

    from ..errors import UserError

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    try:
        msg = parent.recv()
    except EOFError:
        proc.join()
        msg = ("error", f"the measuring process died (exit status {proc.exitcode})", "")
    proc.join()
    if msg[0] != "ok":
        raise UserError(f"{getattr(fn, '__name__', fn)}: {msg[1]}\n{msg[2]}".rstrip())
    return msg[1]
