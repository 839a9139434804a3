"""Per-method benchmark on the comparison's harness, untrained weights: inference latency against
the number of instances per image (forced: score threshold 0, NMS off, cap n), training
throughput and peak memory. Every measurement runs in a fresh process (:func:`run_isolated`)."""
import os
from typing import Dict, List, Sequence

import torch

from ..benchmark import build_model_from, random_inputs
from .measure import inference_stats, run_isolated, train_stats
from .methods import Harness, Method, detections_opts, harness_opts, methods

__all__ = ["bench_method", "markdown_tables", "method_opts"]


def _parent_config(m: Method, h: Harness, workdir: str) -> str:
    """The config of ``m``'s parent on the harness, written where ``m`` can read it."""
    from ..config import load_config

    parent = methods()[m.parent]
    cfg = load_config(parent.config_file, [*harness_opts(parent, h), "MODEL.WEIGHTS", ""])
    path = os.path.join(workdir, f"{parent.name}_proposer.yaml")
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
        f.write(cfg.dump())
    return path


def method_opts(m: Method, h: Harness, workdir: str) -> List[str]:
    """Harness overrides with random weights; a detector on another method's proposals gets that
    (untrained) proposer running inside it."""
    opts = [*harness_opts(m, h), "MODEL.WEIGHTS", ""]
    if m.proposals is not None:
        opts += [*m.proposals.online_opts(_parent_config(m, h, workdir), "", h.proposals),
                 "DATASETS.PROPOSAL_FILES_TRAIN", "()", "DATASETS.PROPOSAL_FILES_TEST", "()"]
    return opts


def _inference(config, opts, by_n: Dict[int, List[str]], size, repeats, device, threads) -> List[Dict]:
    torch.set_num_threads(threads)
    inputs = random_inputs(size, device)
    rows = []
    for i, n in enumerate(sorted(by_n, reverse=True)):  # the largest first: its memory peak is cold
        torch.manual_seed(0)
        model, _ = build_model_from(config, [*opts, *by_n[n]])
        stats = inference_stats(model, inputs, device, repeats=repeats)
        if i:
            stats["inference_peak_mb"] = None
        rows.append({"instances_requested": n, **stats})
    return sorted(rows, key=lambda r: r["instances_requested"])


def _training(config, opts, iters, batch, device, threads, seed=0) -> Dict:
    from detectron2.data import DatasetCatalog

    from ..data import build_train_mapper
    from ..engine.optim import build_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, cfg = build_model_from(config, opts)  # registers the config's datasets
    mapper = build_train_mapper(cfg)
    dicts = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])
    batches = []
    for it in range(iters):
        batch_dicts = [dicts[(it * batch + j) % len(dicts)] for j in range(batch)]
        batches.append([mapper(d) for d in batch_dicts])
    return train_stats(model, build_optimizer(cfg, model), batches, device)


def bench_method(m: Method, h: Harness, instances: Sequence[int], workdir: str, repeats: int = 5,
                 train_iters: int = 5, threads: int = 0) -> Dict:
    threads = threads or torch.get_num_threads()
    opts = method_opts(m, h, workdir)
    by_n = {n: detections_opts(m, n) for n in instances}
    inference = run_isolated(_inference, m.config_file, opts, by_n, h.size, repeats, h.device, threads)
    row = {"method": m.name, "label": m.label, "inference": inference}
    if train_iters:
        row.update(run_isolated(_training, m.config_file, opts, train_iters, h.schedule.batch, h.device, threads))
    return row


def markdown_tables(rows: List[Dict], title: str) -> str:
    ns = sorted({r["instances_requested"] for row in rows for r in row["inference"]})
    lines = [title, "", "| method | " + " | ".join(f"{n} inst. (ms)" for n in ns)
             + " | inference peak (MB) | train (img/s) | train peak (MB) |",
             "|---|" + "---:|" * (len(ns) + 3)]
    for row in rows:
        by_n = {r["instances_requested"]: r for r in row["inference"]}
        lat = [f"{by_n[n]['latency_ms']:.0f}" if n in by_n else "–" for n in ns]
        peak = next((r["inference_peak_mb"] for r in row["inference"] if r["inference_peak_mb"] is not None), None)

        def fmt(v, f):
            return "–" if v is None else f.format(v)

        lines.append(f"| {row['label']} | " + " | ".join(lat) + f" | {fmt(peak, '{:.0f}')} | "
                     f"{fmt(row.get('train_images_per_s'), '{:.2f}')} | {fmt(row.get('train_peak_mb'), '{:.0f}')} |")
    return "\n".join(lines) + "\n"
