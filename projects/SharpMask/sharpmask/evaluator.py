"""Class-agnostic recall of segment and box proposals (COCO AR, ``useCats=0``).

Detectron2's COCOEvaluator measures box-proposal recall only; this evaluator scores the
``instances`` a proposal model outputs (``pred_masks``, ``pred_boxes``, ``scores``) as the
SharpMask paper does: pycocotools COCOeval with ``useCats = 0`` and ``maxDets`` (10, 100,
1000), AR averaged over IoU .50:.05:.95, overall and for small / medium / large objects.
Crowd ground truth is ignored (matching it neither helps nor hurts), as in COCO.

``AUC`` (and ``AUC{s,m,l}``), the papers' summary metric, is AR "averaged across all proposal
counts": the area under the AR-versus-number-of-proposals curve with the count on a log axis
(as the papers plot it), from 1 to the largest maxDets (1000), divided by that axis' length.
AR(n) is a step function of the count n, so the area is exactly
sum_{n=1}^{N-1} AR(n) (log(n + 1) - log(n)) / log(N), with AR(n) read from the same COCOeval
matching for every n (COCOeval matches each image's proposals greedily in score order, so the
top n proposals' matches do not depend on the proposals after them).
"""
import contextlib
import copy
import io
import itertools
import json
import logging
import os
from collections import OrderedDict

import numpy as np
import pycocotools.mask as mask_util
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

__all__ = ["SegmentProposalEvaluator", "auc_log", "proposal_recall", "recall_curves"]

logger = logging.getLogger(__name__)

_AREAS = ("all", "small", "medium", "large")


def proposal_recall(coco_gt: COCO, results, iou_type: str, max_dets=(10, 100, 1000), img_ids=None):
    """AR (in %) of class-agnostic proposals ``results`` (COCO result dicts) against
    ``coco_gt``: ``AR@k`` for each k in ``max_dets``, ``AR{s,m,l}@k`` by object size, and
    ``AUC``, ``AUC{s,m,l}`` (AR averaged over log proposal counts 1..max(max_dets))."""
    max_dets = sorted(int(m) for m in max_dets)
    out = OrderedDict()
    if len(results) == 0:
        for m in max_dets:
            out[f"AR@{m}"] = 0.0
            for a in _AREAS[1:]:
                out[f"AR{a[0]}@{m}"] = 0.0
        for a in _AREAS:
            out["AUC" if a == "all" else f"AUC{a[0]}"] = 0.0
        return out
    cat = sorted(coco_gt.getCatIds())[0] if coco_gt.getCatIds() else 1
    results = [dict(r, category_id=cat) for r in results]
    if iou_type == "bbox":  # loadRes would derive boxes from masks otherwise
        results = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.useCats = 0
        ev.params.maxDets = max_dets
        if img_ids is not None:
            ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
    recall = ev.eval["recall"]  # [T, K=1, A, M]
    for mi, m in enumerate(max_dets):
        for ai, a in enumerate(_AREAS):
            r = recall[:, 0, ai, mi]
            r = r[r > -1]
            value = float(r.mean() * 100) if len(r) else float("nan")
            out[f"AR@{m}" if a == "all" else f"AR{a[0]}@{m}"] = value
    curves = recall_curves(ev)
    for a in _AREAS:
        out["AUC" if a == "all" else f"AUC{a[0]}"] = auc_log(curves[a])
    return out


def recall_curves(ev: COCOeval):
    """AR (in %) for every proposal count 1..max(maxDets), per area range, from an evaluated
    (``evaluate()``) class-agnostic COCOeval: {area name: array of N values} (NaN where the
    range has no ground truth). Equals COCOeval's own AR at its maxDets."""
    n_max, n_thr = ev.params.maxDets[-1], len(ev.params.iouThrs)
    n_areas = len(ev.params.areaRng)
    curves = {}
    for ai, a in enumerate(_AREAS[:n_areas]):
        hits = np.zeros((n_thr, n_max))  # matched, non-ignored proposals at each rank, summed over images
        n_gt = 0
        for e in ev.evalImgs[ai * len(ev.params.imgIds) : (ai + 1) * len(ev.params.imgIds)]:
            if e is None:
                continue
            n_gt += int(np.count_nonzero(~np.asarray(e["gtIgnore"], bool)))
            matched = np.asarray(e["dtMatches"])[:, :n_max] > 0
            ignored = np.asarray(e["dtIgnore"], bool)[:, :n_max]
            tp = matched & ~ignored
            hits[:, : tp.shape[1]] += tp
        if n_gt == 0:
            curves[a] = np.full(n_max, np.nan)
            continue
        curves[a] = (np.cumsum(hits, axis=1) / n_gt).mean(0) * 100
    return curves


def auc_log(ar) -> float:
    """Area under the step curve AR(n), n = 1..N, over log n in [0, log N], divided by log N."""
    ar = np.asarray(ar, np.float64)
    if len(ar) < 2 or np.isnan(ar).any():
        return float(ar[0]) if len(ar) == 1 else float("nan")
    n = np.arange(1, len(ar) + 1, dtype=np.float64)
    return float((ar[:-1] * np.diff(np.log(n))).sum() / np.log(n[-1]))


class SegmentProposalEvaluator(DatasetEvaluator):
    """AR@10/100/1000 (+ by size) of segment and box proposals on a COCO-format dataset.

    ``coco_gt``: the dataset's ground truth as a pycocotools ``COCO`` (what
    :func:`proposal_recall` scores against)."""

    def __init__(self, dataset_name, tasks=("bbox", "segm"), max_dets=(10, 100, 1000), distributed=True,
                 output_dir=None):
        self.dataset_name = dataset_name
        self.tasks = tuple(tasks)
        self.max_dets = tuple(max_dets)
        self.distributed = distributed
        self.output_dir = output_dir
        meta = MetadataCatalog.get(dataset_name)
        if not hasattr(meta, "json_file"):
            if output_dir is None:
                raise ValueError(f"dataset '{dataset_name}' has no json_file: give an output_dir to convert it")
            meta.json_file = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
            convert_to_coco_json(dataset_name, meta.json_file)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco_gt = COCO(PathManager.get_local_path(meta.json_file))
        self.reset()

    @classmethod
    def from_cfg(cls, cfg, dataset_name, output_dir):
        tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON or cfg.MODEL.META_ARCHITECTURE == "SharpMask" else ("bbox",)
        return cls(dataset_name, tasks=tasks, output_dir=output_dir)

    def reset(self):
        self._results = []
        self._img_ids = []

    def process(self, inputs, outputs):
        top = max(self.max_dets)
        for inp, out in zip(inputs, outputs):
            self._img_ids.append(inp["image_id"])
            inst = out["instances"].to("cpu")
            if len(inst) == 0:
                continue
            order = torch.argsort(inst.scores, descending=True)[:top]
            inst = inst[order]
            boxes = inst.pred_boxes.tensor.numpy().astype(np.float64)
            boxes[:, 2:] -= boxes[:, :2]
            masks = inst.pred_masks.numpy() if inst.has("pred_masks") else None
            for i in range(len(inst)):
                r = {"image_id": inp["image_id"], "category_id": 1, "bbox": boxes[i].tolist(),
                     "score": float(inst.scores[i])}
                if masks is not None and "segm" in self.tasks:
                    rle = mask_util.encode(np.asfortranarray(masks[i].astype(np.uint8)))
                    rle["counts"] = rle["counts"].decode("ascii")
                    r["segmentation"] = rle
                self._results.append(r)

    def evaluate(self):
        results, img_ids = self._results, self._img_ids
        if self.distributed:
            comm.synchronize()
            results = list(itertools.chain(*comm.gather(results, dst=0)))
            img_ids = list(itertools.chain(*comm.gather(img_ids, dst=0)))
            if not comm.is_main_process():
                return {}
        if not img_ids:
            logger.warning("SegmentProposalEvaluator: no images were processed")
            return {}
        out = OrderedDict()
        for task in self.tasks:
            if task == "segm" and results and "segmentation" not in results[0]:
                raise ValueError("segment-proposal recall needs pred_masks in the model's outputs")
            key = "box_proposals" if task == "bbox" else "segm_proposals"
            out[key] = proposal_recall(self.coco_gt, results, task, self.max_dets, img_ids)
            logger.info("%s AR: %s", key, ", ".join(f"{k} {v:.1f}" for k, v in out[key].items()))
        if self.output_dir:
            PathManager.mkdirs(self.output_dir)
            with PathManager.open(os.path.join(self.output_dir, "proposal_recall.json"), "w") as f:
                json.dump(out, f, indent=2)
        return out
