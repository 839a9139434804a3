"""A deterministic synthetic instance-segmentation dataset ("shapes"), written as COCO files.

Each image has a textured background and 0-20 instances of five shape classes, drawn in
depth order: later shapes occlude earlier ones and every instance mask is its *visible*
part (RLE-encoded, so holes and split parts are exact). Object sizes span COCO's small,
medium and large area ranges; some images have no object at all. The crowded preset
(:data:`CROWDED_SPEC`: ``min_instances`` > 0) draws 150-400 small objects into every image, of
which a few hundred stay visible, as in cell-nuclei, crowd or aerial data.

Generation is deterministic (one RNG stream per image, seeded from ``seed`` and the image
index) and atomic: the set is written to a temporary folder that is renamed into place
only once complete, so an interrupted run never leaves a set that looks finished.
"""
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pycocotools.mask as mask_util

__all__ = ["CROWDED_SPEC", "SHAPE_CLASSES", "ShapesSpec", "generate_shapes", "shapes_split_dir", "render_image"]

logger = logging.getLogger(__name__)

SHAPE_CLASSES = ["circle", "rectangle", "triangle", "star", "ring"]
FORMAT_VERSION = 1  # bump when the rendering changes, so caches regenerate


@dataclass(frozen=True)
class ShapesSpec:
    """What a split looks like; every field enters the cache folder's name."""

    num_images: int = 1000
    image_size: int = 256  # images are square, image_size x image_size
    max_instances: int = 20
    empty_fraction: float = 0.05  # fraction of images with no object
    min_object_size: float = 10.0  # object diameter range in pixels (log-uniform)
    max_object_size: float = 150.0
    seed: int = 0
    # 0: few objects in most images, some crowded (the default mix); > 0: every non-empty image
    # draws between min_instances and max_instances objects (uniformly)
    min_instances: int = 0

    def key(self) -> str:
        crowd = f"_m{self.min_instances}" if self.min_instances else ""
        return (
            f"v{FORMAT_VERSION}_n{self.num_images}_s{self.image_size}_k{self.max_instances}{crowd}"
            f"_e{self.empty_fraction:g}_o{self.min_object_size:g}-{self.max_object_size:g}_seed{self.seed}"
        )


# hundreds of small objects per image (shapes_crowded_*): 150-400 drawn, 6-24 px across, 140-360 visible
CROWDED_SPEC = ShapesSpec(num_images=200, max_instances=400, min_instances=150, empty_fraction=0.0,
                          min_object_size=6.0, max_object_size=24.0)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: gradients, stripes, checkerboards or blurred noise."""
    kind = rng.integers(4)
    base = rng.uniform(40, 215, size=3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # linear gradient
        d = rng.uniform(-1, 1, size=2)
        t = (xx * d[0] + yy * d[1])[..., None]
        img = base + t * rng.uniform(-80, 80, size=3)
    elif kind == 1:  # stripes
        period = rng.uniform(6, 30)
        ang = rng.uniform(0, np.pi)
        s = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * size * 2 * np.pi / period)[..., None]
        img = base + s * rng.uniform(10, 45, size=3)
    elif kind == 2:  # checkerboard
        cell = int(rng.integers(8, 40))
        c = ((np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2)[..., None]
        img = base + (c - 0.5) * rng.uniform(15, 60, size=3)
    else:  # smooth blobs
        low = rng.uniform(-1, 1, size=(8, 8, 3)).astype(np.float32)
        img = base + cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC) * 50
    img = img + rng.normal(0, 6, size=(size, size, 3))
    return img


def _shape_mask(rng: np.random.Generator, cls: int, size: int, cx: float, cy: float, d: float) -> np.ndarray:
    """Full (unoccluded) mask of one shape of diameter ~d centred at (cx, cy)."""
    m = np.zeros((size, size), np.uint8)
    r = d / 2
    shift = 4  # sub-pixel precision for cv2 drawing
    S = 1 << shift

    def pts(p):
        return [np.round(np.asarray(p) * S).astype(np.int32)]

    if cls == 0:  # circle / ellipse
        axes = (r, r * rng.uniform(0.7, 1.0))
        cv2.ellipse(m, (int(cx * S), int(cy * S)), (int(axes[0] * S), int(axes[1] * S)),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1, cv2.LINE_8, shift)
    elif cls == 1:  # rotated rectangle
        w, h = r * 2 * rng.uniform(0.55, 0.75), r * 2 * rng.uniform(0.45, 0.75)
        box = cv2.boxPoints(((cx, cy), (w, h), float(rng.uniform(0, 90))))
        cv2.fillPoly(m, pts(box), 1, cv2.LINE_8, shift)
    elif cls == 2:  # triangle
        a0 = rng.uniform(0, 2 * np.pi)
        angles = a0 + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
        p = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)
        cv2.fillPoly(m, pts(p), 1, cv2.LINE_8, shift)
    elif cls == 3:  # five-pointed star
        a0 = rng.uniform(0, 2 * np.pi)
        angles = a0 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.38, 0.5))
        p = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(m, pts(p), 1, cv2.LINE_8, shift)
    else:  # ring (a mask with a hole)
        cv2.circle(m, (int(cx * S), int(cy * S)), int(r * S), 1, -1, cv2.LINE_8, shift)
        cv2.circle(m, (int(cx * S), int(cy * S)), int(r * rng.uniform(0.45, 0.6) * S), 0, -1, cv2.LINE_8, shift)
    return m.astype(bool)


def render_image(spec: ShapesSpec, index: int):
    """Render image ``index`` of a split. Returns (BGR uint8 image, list of (class, visible mask))."""
    rng = np.random.default_rng([spec.seed, index, FORMAT_VERSION])
    size = spec.image_size
    img = _background(rng, size)
    if rng.random() < spec.empty_fraction:
        n = 0
    elif spec.min_instances:
        n = int(rng.integers(spec.min_instances, spec.max_instances + 1))
    else:
        # many images with a few objects, some crowded ones
        n = int(min(spec.max_instances, 1 + rng.geometric(0.18) - 1)) if rng.random() < 0.8 else int(
            rng.integers(1, spec.max_instances + 1))
        n = max(n, 1)
    shapes = []
    for _ in range(n):
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        d = float(np.exp(rng.uniform(np.log(spec.min_object_size), np.log(spec.max_object_size))))
        cx, cy = rng.uniform(-0.1 * d, size + 0.1 * d, size=2)
        full = _shape_mask(rng, cls, size, cx, cy, d)
        color = rng.uniform(0, 255, size=3)
        shapes.append((cls, full, color))

    # visible parts: later shapes occlude earlier ones; drop mostly hidden or tiny ones
    kept = []
    cover = np.zeros((size, size), bool)
    for cls, full, color in reversed(shapes):
        vis = full & ~cover
        full_area = full.sum()
        if full_area >= 12 and vis.sum() >= max(12, 0.25 * full_area):
            kept.append((cls, full, color))
            cover |= full
    kept.reverse()

    instances = []
    cover = np.zeros((size, size), bool)
    for cls, full, color in reversed(kept):  # front to back
        instances.append((cls, full & ~cover))
        cover |= full
    instances.reverse()

    for cls, full, color in kept:  # back to front
        if spec.min_instances:  # crowded: noise drawn for the object's own pixels only (hundreds per image)
            img[full] = color + rng.normal(0, 10, size=(int(full.sum()), 3)) * rng.uniform(0.3, 1.0)
        else:
            shade = color + rng.normal(0, 10, size=(size, size, 3)) * rng.uniform(0.3, 1.0)
            img[full] = shade[full]
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img, instances


def _annotation(ann_id: int, image_id: int, cls: int, mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    x, y, w, h = (float(v) for v in mask_util.toBbox(rle))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cls + 1,
        "segmentation": rle,
        "area": float(mask_util.area(rle)),
        "bbox": [x, y, w, h],
        "iscrowd": 0,
    }


def shapes_split_dir(root: str, split: str, spec: ShapesSpec) -> str:
    return os.path.join(os.path.expanduser(root), f"shapes_{split}_{spec.key()}")


def generate_shapes(root: str, split: str, spec: ShapesSpec) -> str:
    """Generate a split under ``root`` if it is not there yet; return its folder.

    The folder holds ``images/*.png`` and ``instances.json`` (COCO instances format).
    """
    out = shapes_split_dir(root, split, spec)
    if os.path.isfile(os.path.join(out, "instances.json")):
        return out
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(out)}-", dir=parent)
    try:
        logger.info(f"Generating synthetic dataset {split} ({spec.num_images} images) into {out} ...")
        os.makedirs(os.path.join(tmp, "images"))
        images, annotations = [], []
        for i in range(spec.num_images):
            img, instances = render_image(spec, i)
            file_name = f"{i:06d}.png"
            if not cv2.imwrite(os.path.join(tmp, "images", file_name), img):
                raise OSError(f"could not write {file_name} under {tmp}")
            images.append({"id": i + 1, "file_name": file_name, "height": spec.image_size,
                           "width": spec.image_size})
            for cls, mask in instances:
                annotations.append(_annotation(len(annotations) + 1, i + 1, cls, mask))
        coco = {
            "info": {"description": f"segzoo synthetic shapes, split {split}", "version": spec.key(),
                     "spec": asdict(spec)},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": n, "supercategory": "shape"}
                           for i, n in enumerate(SHAPE_CLASSES)],
        }
        with open(os.path.join(tmp, "instances.json"), "w") as f:
            json.dump(coco, f)
        try:
            os.rename(tmp, out)
        except OSError:
            # another process finished the same split first: keep theirs
            if not os.path.isfile(os.path.join(out, "instances.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
