"""Checked loading of COCO-format instance annotations.

Detectron2's ``load_coco_json`` trusts its input: an annotation without ``bbox`` or with an unknown
``category_id`` fails much later, inside a data-loader worker, with a ``KeyError`` that names neither
the file nor the annotation; an RLE of the wrong size fails in a tensor stack. Here the file is
checked first and every problem that would make training wrong or crash is one :class:`UserError`
naming the file, the image / annotation id and the field. What can be repaired without changing
the data's meaning is repaired and counted in one warning per dataset:

* boxes reaching outside their image are clipped to it; boxes with no area inside it are dropped
  (with their masks);
* polygons with fewer than 3 points or all points on one line (no area) are dropped from their
  annotation; an annotation left without a polygon is dropped (Detectron2 drops those with fewer
  than 3 points already);
* self-intersecting polygons are kept: pycocotools fills them as drawn.

Extra fields anywhere are ignored. Category ids need not be contiguous (Detectron2 maps them).
"""
import json
import logging
import math
from typing import Dict, List

import numpy as np

from ..errors import UserError

__all__ = ["check_coco_instances", "load_checked_coco_json", "repair_records"]

logger = logging.getLogger(__name__)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_coco_instances(json_file: str, name: str = "") -> dict:
    """Parse and check a COCO instances file; return the parsed dict or raise UserError."""
    where = f"dataset '{name}' ({json_file})" if name else json_file
    try:
        with open(json_file) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: not valid JSON: {e}") from e
    except OSError as e:
        raise UserError(f"{where}: cannot read it: {e}") from e
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise UserError(f"{where}: '{key}' is missing or not a list")

    categories = set()
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise UserError(f"{where}: categories[{i}] needs an integer 'id' and a string 'name', got {c!r:.80}")
        if c["id"] in categories:
            raise UserError(f"{where}: category id {c['id']} appears twice")
        categories.add(c["id"])

    sizes: Dict[int, tuple] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            raise UserError(f"{where}: images[{i}] is not an object")
        missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
        if missing:
            raise UserError(f"{where}: image {img.get('id', f'#{i}')} lacks {', '.join(missing)}")
        if not isinstance(img["id"], int) or not isinstance(img["file_name"], str):
            raise UserError(f"{where}: image #{i}: 'id' must be an integer and 'file_name' a string")
        h, w = img["height"], img["width"]
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            raise UserError(f"{where}: image {img['id']} ({img['file_name']}): height and width must be "
                            f"positive integers, got {h!r} x {w!r}")
        if img["id"] in sizes:
            raise UserError(f"{where}: image id {img['id']} appears twice")
        sizes[img["id"]] = (h, w)

    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict):
            raise UserError(f"{where}: annotations[{i}] is not an object")
        aid = a.get("id", f"#{i}")
        missing = [k for k in ("image_id", "category_id", "bbox") if k not in a]
        if missing:
            raise UserError(f"{where}: annotation {aid} lacks {', '.join(missing)}")
        if a["image_id"] not in sizes:
            raise UserError(f"{where}: annotation {aid} refers to image {a['image_id']!r}, which is not in 'images'")
        if a["category_id"] not in categories:
            raise UserError(f"{where}: annotation {aid} has category_id {a['category_id']!r}, which is not in "
                            f"'categories' {sorted(categories)}")
        box = a["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)) or box[2] < 0 or box[3] < 0:
            raise UserError(f"{where}: annotation {aid}: 'bbox' must be [x, y, width, height] with finite numbers "
                            f"and width, height >= 0, got {box!r:.80}")
        segm = a.get("segmentation")
        if isinstance(segm, dict):
            h, w = sizes[a["image_id"]]
            if "counts" not in segm or list(segm.get("size", [])) != [h, w]:
                raise UserError(f"{where}: annotation {aid}: RLE 'size' {segm.get('size')!r} is not its image's "
                                f"[height, width] [{h}, {w}] (or 'counts' is missing)")
        elif segm is not None and not (isinstance(segm, list) and all(
                isinstance(p, list) and all(_number(v) for v in p) for p in segm)):
            raise UserError(f"{where}: annotation {aid}: 'segmentation' must be a list of polygons (lists of "
                            "numbers) or an RLE object")
    return data


def _degenerate(p) -> bool:
    """Fewer than 3 points, or all points on one line (zero area; a self-intersecting polygon is
    not degenerate even when its signed area cancels out)."""
    if len(p) < 6 or len(p) % 2:
        return True
    d = np.asarray(p, dtype=np.float64).reshape(-1, 2)
    d = d - d[0]
    nonzero = np.flatnonzero(np.abs(d).sum(1))
    if len(nonzero) == 0:
        return True
    v = d[nonzero[0]]
    return not np.any(d[:, 0] * v[1] - d[:, 1] * v[0])


def repair_records(records: List[dict], name: str = "") -> List[dict]:
    """Clip boxes to their image, drop annotations without area inside it and degenerate polygons
    (see the module doc); one warning with the counts. Boxes must be XYWH_ABS (as loaded)."""
    clipped = dropped_boxes = dropped_polys = dropped_anns = 0
    for r in records:
        h, w = r["height"], r["width"]
        kept = []
        for obj in r.get("annotations", []):
            x, y, bw, bh = obj["bbox"]
            x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
            if x1 <= x0 or y1 <= y0:
                dropped_boxes += 1
                continue
            if (x0, y0, x1, y1) != (x, y, x + bw, y + bh):
                clipped += 1
                obj["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            segm = obj.get("segmentation")
            if isinstance(segm, list):
                good = [p for p in segm if not _degenerate(p)]
                dropped_polys += len(segm) - len(good)
                if not good:
                    dropped_anns += 1
                    continue
                obj["segmentation"] = good
            kept.append(obj)
        r["annotations"] = kept
    if clipped or dropped_boxes or dropped_polys:
        logger.warning(
            f"dataset '{name}': {clipped} boxes clipped to their image, {dropped_boxes} annotations dropped (no area "
            f"inside their image), {dropped_polys} degenerate polygons dropped ({dropped_anns} annotations left "
            "without a polygon dropped)")
    return records


def load_checked_coco_json(json_file: str, image_root: str, name: str) -> List[dict]:
    """:func:`check_coco_instances`, then Detectron2's ``load_coco_json``, then :func:`repair_records`."""
    from detectron2.data.datasets import load_coco_json

    check_coco_instances(json_file, name)
    return repair_records(load_coco_json(json_file, image_root, name), name)
