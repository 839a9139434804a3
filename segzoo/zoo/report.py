"""The comparison's outputs: a Markdown table, a JSON file and a plot of mask AP against latency."""
import json
import math
import os
import textwrap
from typing import Dict, List, Optional

__all__ = ["markdown_table", "plot_ap_latency", "seed_summary", "write_report", "write_seed_summary"]

# (header, metric key) of the table's accuracy columns; mask AP breakdown as the papers give it
AP_COLUMNS = [
    ("box AP", "bbox/AP"), ("mask AP", "segm/AP"), ("AP50", "segm/AP50"), ("AP75", "segm/AP75"),
    ("APs", "segm/APs"), ("APm", "segm/APm"), ("APl", "segm/APl"),
    ("mask AR@100", "segm_proposals/AR@100"), ("mask AR@1000", "segm_proposals/AR@1000"),
    ("box AR@100", "box_proposals/AR@100"),
]


def _num(v: Optional[float], fmt: str = "{:.1f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt.format(v)


def markdown_table(rows: List[Dict], title: str = "") -> str:
    head = ["method", *[h for h, _ in AP_COLUMNS], "params (M)", "latency (ms)", "peak mem (MB)",
            "train (s/it)"]
    lines = [title, ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        m = r["metrics"]
        cells = [r["label"], *[_num(m.get(k)) for _, k in AP_COLUMNS], _num(r["parameters"] / 1e6, "{:.2f}"),
                 _num(r["latency_ms"], "{:.0f}"), _num(r.get("inference_peak_mb"), "{:.0f}"),
                 _num(r.get("train_s_per_iter"), "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{r['label']}: {r['note']}" for r in rows if r.get("note")]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def plot_ap_latency(rows: List[Dict], path: str, title: str = "") -> Optional[str]:
    """Mask AP (instance methods) or mask AR@100 (segment proposals, hollow markers) against
    median latency. Returns the path, or None when no row has either."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for r in rows:
        ap, ar = r["metrics"].get("segm/AP"), r["metrics"].get("segm_proposals/AR@100")
        if ap is not None and not math.isnan(ap):
            points.append((r["latency_ms"], ap, r["label"], True))
        elif ar is not None:
            points.append((r["latency_ms"], ar, r["label"] + " (AR@100)", False))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for x, y, label, filled in points:
        ax.scatter([x], [y], s=40, facecolors=None if filled else "none", edgecolors="C0" if not filled else None)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("median inference latency per image (ms)")
    ax.set_ylabel("mask AP  (hollow: mask AR@100 of proposals)")
    xs = [x for x, *_ in points]
    if min(xs) > 0 and max(xs) / min(xs) > 10:
        ax.set_xscale("log")
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(rows: List[Dict], settings: Dict, output: str, title: str) -> Dict[str, str]:
    """``zoo.md``, ``zoo.json`` and ``zoo.png`` in ``output``; returns their paths."""
    os.makedirs(output, exist_ok=True)
    paths = {"markdown": os.path.join(output, "zoo.md"), "json": os.path.join(output, "zoo.json"),
             "plot": os.path.join(output, "zoo.png")}
    with open(paths["markdown"], "w") as f:
        f.write(markdown_table(rows, title))
    with open(paths["json"], "w") as f:
        json.dump({"settings": settings, "rows": rows}, f, indent=1)
    if plot_ap_latency(rows, paths["plot"], title) is None:
        del paths["plot"]
    return paths


def seed_summary(rows_by_seed: Dict[int, List[Dict]]) -> List[Dict]:
    """Per method (in the first seed's order): every accuracy metric present in all seeds, as
    per-seed values, mean and sample standard deviation (0 for one seed)."""
    seeds = list(rows_by_seed)
    by_method = [{r["method"]: r for r in rows_by_seed[s]} for s in seeds]
    out = []
    for r in rows_by_seed[seeds[0]]:
        name = r["method"]
        if not all(name in m for m in by_method):
            continue
        stats = {}
        for _, key in AP_COLUMNS:
            values = [m[name]["metrics"].get(key) for m in by_method]
            if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
                continue
            mean = sum(values) / len(values)
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            stats[key] = {"values": values, "mean": mean, "sd": sd}
        out.append({"method": name, "label": r["label"], "seeds": seeds, "metrics": stats})
    return out


def write_seed_summary(rows_by_seed: Dict[int, List[Dict]], output: str, title: str) -> Dict[str, str]:
    """``seeds.md`` (mean ± sd over seeds of every accuracy column) and ``seeds.json``."""
    summary = seed_summary(rows_by_seed)
    keys = [(h, k) for h, k in AP_COLUMNS if any(k in r["metrics"] for r in summary)]
    lines = [title, "", f"mean ± sd over seeds {list(rows_by_seed)}", "",
             "| method | " + " | ".join(h for h, _ in keys) + " |", "|---|" + "---:|" * len(keys)]
    for r in summary:
        cells = [f"{r['metrics'][k]['mean']:.1f} ± {r['metrics'][k]['sd']:.1f}" if k in r["metrics"] else "–"
                 for _, k in keys]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    os.makedirs(output, exist_ok=True)
    paths = {"markdown": os.path.join(output, "seeds.md"), "json": os.path.join(output, "seeds.json")}
    with open(paths["markdown"], "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(paths["json"], "w") as f:
        json.dump({"title": title, "rows": summary}, f, indent=1)
    return paths
