"""The comparison's outputs: a Markdown table, a JSON file and a plot of mask AP against latency."""
import json
import math
import os
import textwrap
from typing import Dict, List, Optional

__all__ = ["markdown_table", "plot_ap_latency", "write_report"]

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
