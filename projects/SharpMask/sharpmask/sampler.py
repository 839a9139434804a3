"""Patch sampling for DeepMask / SharpMask training, from any Detectron2 instance dataset.

A training sample is a square patch of ``WINDOW + 2 * CONTEXT`` pixels (192) cut from the
image at some centre and scale (optionally mirrored); shrinking averages the image over each
patch pixel's footprint (exact area resampling: no aliasing), enlarging is bilinear. Two kinds,
as in the authors' sampler:

* **mask samples**: a usable instance (not crowd, area >= 100, both sides >= 5) at the
  canonical size (max side 92 px) times 2^U(-1/4, 1/4), its centre shifted by up to 16 px;
  target = that instance's mask over the central WINDOW x WINDOW region. With
  ``MASK_SAMPLING: "category"`` (the authors') the instance is drawn category-balanced from the
  whole training set (:class:`CategoryBalancedIndex`), otherwise from the mapped image.
* **score samples**, from the mapped image (images drawn uniformly, as the authors): half
  positives drawn as the mask samples from that image (label 1), half negatives (label 0): a
  uniformly random centre at an image scale 2^U(-3, 2) whose window is farther than 32 px from
  every object centre, or more than 2^1 off that object's canonical scale.

"Positive" is the geometric rule :func:`is_positive`: an object centred within 16 px (each
axis, in window pixels) at a scale within 2^(1/4) of canonical.
"""
import copy
import logging
import zlib
from typing import List, Optional, Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch

from detectron2.config import configurable
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.data.common import DatasetFromList

from segzoo.data.stream import current_sample_seed
from segzoo.errors import ConfigError, UserError

__all__ = [
    "CategoryBalancedIndex",
    "PatchGeometry",
    "PatchSampler",
    "SharpMaskDatasetMapper",
    "area_resample",
    "instance_mask",
    "is_positive",
    "patch_affine",
]

logger = logging.getLogger(__name__)


class PatchGeometry:
    """Window size, context and canonical object size (window pixels)."""

    def __init__(self, window=160, context=16, canonical=92.0):
        self.window, self.context, self.canonical = int(window), int(context), float(canonical)
        self.patch = self.window + 2 * self.context

    @classmethod
    def from_cfg(cls, cfg):
        s = cfg.MODEL.SHARPMASK
        return cls(s.WINDOW, s.CONTEXT, s.CANONICAL_SIZE)


def patch_affine(cx, cy, scale, patch, flip=False):
    """2x3 matrix taking image pixel indices to patch pixel indices for a patch of side
    ``patch`` centred on the continuous image point (cx, cy) at ``scale``, mirrored if
    ``flip`` (pixel centres at index + 0.5, as cv2.warpAffine)."""
    sx = -scale if flip else scale
    half = patch / 2.0
    return np.array(
        [[sx, 0.0, sx * (0.5 - cx) + half - 0.5], [0.0, scale, scale * (0.5 - cy) + half - 0.5]],
        dtype=np.float64,
    )


def _lerp_rows(table, pos):
    """``table`` (L + 1, ...) linearly interpolated at the fractional rows ``pos`` (in [0, L])."""
    i0 = np.minimum(np.floor(pos).astype(np.int64), table.shape[0] - 2)
    t = (pos - i0).reshape(-1, *([1] * (table.ndim - 1)))
    return table[i0] * (1.0 - t) + table[i0 + 1] * t


def area_resample(image, x0, y0, step, size, fill=0.0) -> np.ndarray:
    """(size, size, C) float64: pixel (i, j) is the mean of ``image`` (H, W[, C]) over the square
    [x0 + j step, x0 + (j + 1) step) x [y0 + i step, y0 + (i + 1) step) of image coordinates (pixel
    p covers [p, p + 1)), ``fill`` outside the image. Exact for any step and offset: the integral
    image is bilinear within each pixel, so it is sampled at the squares' corners."""
    h, w = image.shape[:2]
    img = image.reshape(h, w, -1)
    fill = np.resize(np.asarray(fill, np.float64), img.shape[2])
    xc = np.clip(x0 + step * np.arange(size + 1), 0.0, w)
    yc = np.clip(y0 + step * np.arange(size + 1), 0.0, h)
    r0, r1 = int(np.floor(yc[0])), int(np.ceil(yc[-1]))
    c0, c1 = int(np.floor(xc[0])), int(np.ceil(xc[-1]))
    if r1 <= r0 or c1 <= c0:  # the square lies outside the image
        return np.broadcast_to(fill, (size, size, img.shape[2])).copy()
    integral = np.zeros((r1 - r0 + 1, c1 - c0 + 1, img.shape[2]))
    integral[1:, 1:] = img[r0:r1, c0:c1].astype(np.float64).cumsum(0).cumsum(1)
    corners = _lerp_rows(_lerp_rows(integral, yc - r0).transpose(1, 0, 2), xc - c0).transpose(1, 0, 2)
    sums = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    inside = np.diff(yc)[:, None, None] * np.diff(xc)[None, :, None]  # area of each square in the image
    return (sums + fill * (step * step - inside)) / (step * step)


def _resample(image, cx, cy, scale, size, flip, fill):
    """The (size, size[, C]) region of ``image`` centred on (cx, cy) at ``scale``, mirrored if
    ``flip``: area-averaged when shrinking (float64), bilinear otherwise (``image``'s dtype)."""
    if scale < 1.0:
        out = area_resample(image, cx - size / (2 * scale), cy - size / (2 * scale), 1.0 / scale, size, fill)
        out = out[:, ::-1] if flip else out
        return out if image.ndim == 3 else out[:, :, 0]
    m = patch_affine(cx, cy, scale, size, flip)
    border = tuple(float(v) for v in np.atleast_1d(np.asarray(fill, np.float64)))
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border)


def _log2_ratio(size, scale, canonical):
    return np.abs(np.log2(np.maximum(size * scale, 1e-6) / canonical))


def _offsets(boxes, cx, cy, scale):
    """Max-axis distance, in window pixels, of each box centre from the window centre."""
    ox = (boxes[:, 0] + boxes[:, 2]) / 2 - cx
    oy = (boxes[:, 1] + boxes[:, 3]) / 2 - cy
    return np.maximum(np.abs(ox), np.abs(oy)) * scale


def is_positive(boxes, cx, cy, scale, geometry: PatchGeometry, shift=16.0, scale_jitter=0.25):
    """Per box (XYXY, image px): is the window at (cx, cy, scale) a positive for it — its
    centre within ``shift`` window pixels on each axis and its max side within
    2^``scale_jitter`` of the canonical size."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return (_offsets(boxes, cx, cy, scale) <= shift + 1e-6) & (
        _log2_ratio(size, scale, geometry.canonical) <= scale_jitter + 1e-9
    )


def is_negative(boxes, cx, cy, scale, geometry: PatchGeometry, shift_margin=32.0, scale_margin=1.0):
    """True when no box is near the window: each is farther than ``shift_margin`` window
    pixels from its centre or more than 2^``scale_margin`` off the canonical scale."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return True
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    near = (_offsets(boxes, cx, cy, scale) <= shift_margin) & (
        _log2_ratio(size, scale, geometry.canonical) <= scale_margin
    )
    return not near.any()


def instance_mask(segmentation, height, width) -> np.ndarray:
    """Decode a COCO/Detectron2 segmentation (polygons, RLE or a bitmask) to (H, W) uint8."""
    if isinstance(segmentation, list):
        if len(segmentation) == 0:
            return np.zeros((height, width), np.uint8)
        rle = mask_util.merge(mask_util.frPyObjects([np.asarray(p, np.float64).ravel().tolist()
                                                     for p in segmentation], height, width))
    elif isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle["counts"], list):
            rle = mask_util.frPyObjects(rle, *rle["size"])
    elif isinstance(segmentation, np.ndarray):
        return (segmentation > 0).astype(np.uint8)
    else:
        raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")
    return mask_util.decode(rle).astype(np.uint8)


class PatchSampler:
    """Draws mask / score samples from one image and its annotations."""

    def __init__(self, geometry: PatchGeometry, *, samples_per_image=4, mask_sample_fraction=0.5,
                 scale_jitter=0.25, shift_jitter=16.0, neg_scale_range=(-3.0, 2.0), neg_shift_margin=32.0,
                 neg_scale_margin=1.0, min_area=100.0, min_side=5.0, flip_prob=0.5, max_tries=50):
        self.g = geometry
        self.samples_per_image = int(samples_per_image)
        self.mask_sample_fraction = float(mask_sample_fraction)
        self.scale_jitter, self.shift_jitter = float(scale_jitter), float(shift_jitter)
        self.neg_scale_range = tuple(float(v) for v in neg_scale_range)
        self.neg_shift_margin, self.neg_scale_margin = float(neg_shift_margin), float(neg_scale_margin)
        self.min_area, self.min_side = float(min_area), float(min_side)
        self.flip_prob = float(flip_prob)
        self.max_tries = int(max_tries)

    @staticmethod
    def boxes_of(annotations) -> np.ndarray:
        from detectron2.structures import BoxMode

        if not annotations:
            return np.zeros((0, 4))
        return np.array([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations],
                        dtype=np.float64).reshape(-1, 4)

    def usable(self, annotations, boxes) -> List[int]:
        """Indices of the instances that can be mask samples / positives."""
        out = []
        for i, a in enumerate(annotations):
            w, h = boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1]
            area = a.get("area", w * h)
            if a.get("iscrowd", 0) or "segmentation" not in a:
                continue
            if min(w, h) < self.min_side or area < self.min_area:
                continue
            out.append(i)
        return out

    def positive_window(self, box, rng):
        """(cx, cy, scale) of a jittered positive window for one box."""
        size = max(box[2] - box[0], box[3] - box[1])
        scale = self.g.canonical * 2.0 ** rng.uniform(-self.scale_jitter, self.scale_jitter) / size
        shift = rng.uniform(-self.shift_jitter, self.shift_jitter, size=2) / scale
        return (box[0] + box[2]) / 2 + shift[0], (box[1] + box[3]) / 2 + shift[1], scale

    def negative_window(self, height, width, boxes, rng):
        """(cx, cy, scale) of a window near no object, or None after ``max_tries``."""
        for _ in range(self.max_tries):
            scale = 2.0 ** rng.uniform(*self.neg_scale_range)
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            if is_negative(boxes, cx, cy, scale, self.g, self.neg_shift_margin, self.neg_scale_margin):
                return cx, cy, scale
        return None

    def cut(self, image, cx, cy, scale, flip, fill):
        """The (P, P, C) uint8 patch; outside the image filled with ``fill`` (the pixel mean)."""
        out = _resample(image, cx, cy, scale, self.g.patch, flip, fill)
        return out if out.dtype == np.uint8 else np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def cut_mask(self, mask, cx, cy, scale, flip):
        """The WINDOW x WINDOW target: the instance mask over the central region (pixels at
        least half covered by the instance when shrinking, bilinear >= 0.5 when enlarging)."""
        out = _resample(mask * 255, cx, cy, scale, self.g.window, flip, 0.0)
        return (out >= 127.5).astype(np.uint8)

    def __call__(self, image, annotations, fill, rng: Optional[np.random.Generator] = None, mask_sources=None):
        """Samples of one image (H, W, C uint8). Returns a dict of arrays: ``patches``
        (K, P, P, C), ``masks`` (K, WINDOW, WINDOW), ``labels`` (K,) 1/0, ``mask_sample``
        (K,) bool — True for samples whose mask is a target, ``windows`` (K, 4): centre x, y
        (image px), scale and flip of each patch.

        ``mask_sources``: None — each sample is a mask sample with probability
        ``mask_sample_fraction``, of a random usable instance of ``image``. Otherwise a list of
        (image, annotation) pairs drawn elsewhere (e.g. :class:`CategoryBalancedIndex`): one
        mask sample each, first; the other samples are score samples of ``image``."""
        rng = rng if rng is not None else np.random.default_rng(np.random.randint(2 ** 31))
        height, width = image.shape[:2]
        boxes = self.boxes_of(annotations)
        usable = self.usable(annotations, boxes)
        k, w = self.samples_per_image, self.g.window
        if mask_sources is not None and len(mask_sources) > k:
            raise ValueError(f"{len(mask_sources)} mask sources for {k} samples")
        patches = np.empty((k, self.g.patch, self.g.patch, image.shape[2]), np.uint8)
        masks = np.zeros((k, w, w), np.uint8)
        labels = np.zeros(k, np.float32)
        mask_sample = np.zeros(k, bool)
        windows = np.zeros((k, 4))
        decoded = {}
        for j in range(k):
            if mask_sources is not None and j < len(mask_sources):
                src, ann = mask_sources[j]
                cx, cy, scale = self.positive_window(self.boxes_of([ann])[0], rng)
                flip = rng.uniform() < self.flip_prob
                target = instance_mask(ann["segmentation"], *src.shape[:2])
                masks[j] = self.cut_mask(target, cx, cy, scale, flip)
                mask_sample[j], labels[j] = True, 1.0
                windows[j] = cx, cy, scale, flip
                patches[j] = self.cut(src, cx, cy, scale, flip, fill).reshape(patches.shape[1:])
                continue
            want_mask = mask_sources is None and rng.uniform() < self.mask_sample_fraction
            positive = want_mask or rng.uniform() < 0.5
            window = None
            if not positive:
                window = self.negative_window(height, width, boxes, rng)
                positive = window is None  # crowded image: no negative found, take a positive
            if positive and not usable:
                window = self.negative_window(height, width, boxes, rng)
                if window is None:  # nothing usable and nothing empty: a blank negative patch
                    window = (width / 2, height / 2, 1e-3)
                positive = want_mask = False
            flip = rng.uniform() < self.flip_prob
            if positive:
                i = usable[rng.integers(len(usable))]
                cx, cy, scale = self.positive_window(boxes[i], rng)
                if want_mask:
                    if i not in decoded:
                        decoded[i] = instance_mask(annotations[i]["segmentation"], height, width)
                    masks[j] = self.cut_mask(decoded[i], cx, cy, scale, flip)
                    mask_sample[j] = True
                labels[j] = 1.0
            else:
                cx, cy, scale = window
            windows[j] = cx, cy, scale, flip
            patches[j] = self.cut(image, cx, cy, scale, flip, fill).reshape(patches.shape[1:])
        return {"patches": patches, "masks": masks, "labels": labels, "mask_sample": mask_sample,
                "windows": windows}


class CategoryBalancedIndex:
    """The usable instances of a list of dataset dicts by category; :meth:`draw` picks a
    category uniformly, then one of its instances uniformly (the authors' mask-sample draw:
    every category is equally frequent among mask samples, whatever its instance count)."""

    def __init__(self, dataset_dicts, sampler: PatchSampler):
        by_cat = {}
        for d_idx, d in enumerate(dataset_dicts):
            anns = d.get("annotations", [])
            for a_idx in sampler.usable(anns, sampler.boxes_of(anns)):
                by_cat.setdefault(anns[a_idx].get("category_id", 0), []).append((d_idx, a_idx))
        self.categories = sorted(by_cat)
        self.instances = [np.asarray(by_cat[c], np.int64) for c in self.categories]

    def __len__(self):
        return sum(len(v) for v in self.instances)

    def draw(self, rng: np.random.Generator):
        """(dataset index, annotation index) of one instance."""
        pool = self.instances[rng.integers(len(self.instances))]
        d_idx, a_idx = pool[rng.integers(len(pool))]
        return int(d_idx), int(a_idx)


class SharpMaskDatasetMapper:
    """Dataset mapper for DeepMask / SharpMask training: one Detectron2 dataset dict ->
    ``SAMPLES_PER_IMAGE`` patches (``patches`` uint8 (K, 3, P, P) in INPUT.FORMAT, ``masks``,
    ``labels``, ``mask_sample``). Stage 2 trains only the refined mask: all mask samples.

    With a :class:`CategoryBalancedIndex` over the training set (``MASK_SAMPLING: "category"``)
    the number of mask samples is Binomial(K, MASK_SAMPLE_FRACTION) and each comes from its own
    category-balanced draw (its image is read for it); the rest are score samples of the
    mapped image."""

    @configurable
    def __init__(self, sampler: PatchSampler, image_format: str, fill, mask_index: Optional[CategoryBalancedIndex] = None,
                 dataset=None, seed: int = -1, mask_datasets: Optional[Sequence[str]] = None):
        """Mask samples come from the mapped image, or category-balanced (the authors') from
        ``dataset`` through ``mask_index``, or from the registered datasets ``mask_datasets``
        (both then built here)."""
        self.sampler = sampler
        self.image_format = image_format
        self.fill = fill
        if mask_datasets:
            if mask_index is not None or dataset is not None:
                raise ConfigError("SharpMaskDatasetMapper: give mask_datasets or mask_index + dataset, not both")
            dicts = [d for name in mask_datasets for d in DatasetCatalog.get(name)]
            mask_index = CategoryBalancedIndex(dicts, sampler)
            dataset = DatasetFromList(dicts, copy=False, serialize=True)  # compact, shared by workers
            logger.info("SharpMask mask samples: category-balanced over %d usable instances of %d categories",
                        len(mask_index), len(mask_index.categories))
        self.mask_index, self.dataset = mask_index, dataset
        self.seed = seed
        self._mapped = {}  # image key -> how often this mapper has mapped it
        if mask_index is not None and (dataset is None or len(mask_index) == 0):
            raise UserError("category-balanced mask sampling needs training data with usable instances "
                            "(not crowd, area >= MIN_INSTANCE_AREA, sides >= MIN_INSTANCE_SIDE)")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        s = cfg.MODEL.SHARPMASK
        mean = list(cfg.MODEL.PIXEL_MEAN)
        sampler = PatchSampler(
            PatchGeometry.from_cfg(cfg),
            samples_per_image=s.SAMPLES_PER_IMAGE,
            mask_sample_fraction=1.0 if s.STAGE == 2 else s.MASK_SAMPLE_FRACTION,
            scale_jitter=s.SCALE_JITTER, shift_jitter=s.SHIFT_JITTER, neg_scale_range=s.NEG_SCALE_RANGE,
            neg_shift_margin=s.NEG_SHIFT_MARGIN, neg_scale_margin=s.NEG_SCALE_MARGIN,
            min_area=s.MIN_INSTANCE_AREA, min_side=s.MIN_INSTANCE_SIDE, flip_prob=s.FLIP_PROB,
        )
        out = {"sampler": sampler, "image_format": cfg.INPUT.FORMAT, "fill": mean, "seed": cfg.SEED}
        if s.MASK_SAMPLING not in ("category", "image"):
            raise ConfigError(f"MODEL.SHARPMASK.MASK_SAMPLING must be 'category' or 'image', got {s.MASK_SAMPLING!r}")
        if s.MASK_SAMPLING == "category":
            out["mask_datasets"] = list(cfg.DATASETS.TRAIN)
        return out

    def _read(self, d):
        name = d.get("file_name", "?")
        try:
            image = utils.read_image(name, format=self.image_format)
            utils.check_image_size(d, image)
        except (OSError, SyntaxError) as e:
            raise UserError(f"cannot read image {name}: {e}. Fix or remove it from the dataset.") from e
        return image[:, :, None] if image.ndim == 2 else image

    def rng(self, d) -> np.random.Generator:
        """The sampling stream of one mapping of ``d``. Inside segzoo's training stream it is the
        sample's own seed (:func:`segzoo.data.stream.current_sample_seed`: the run's seed, rank and
        position in the stream, so a resumed run draws what an uninterrupted one would). Elsewhere,
        with ``SEED`` >= 0 it depends only on the seed, the image and how often this mapper has
        mapped it, not on the process or the order images arrive in; with ``SEED`` < 0 it is a
        draw from the global RNG, which Detectron2 seeds per process and data-loader worker."""
        stream_key = current_sample_seed()
        if stream_key is not None:
            return np.random.default_rng(list(stream_key))
        if self.seed < 0:
            return np.random.default_rng(np.random.randint(2 ** 31))
        key = d.get("image_id")
        if not isinstance(key, int) or key < 0:
            key = zlib.crc32(str(d.get("file_name", key)).encode())
        n = self._mapped.get(key, 0)
        self._mapped[key] = n + 1
        return np.random.default_rng([self.seed, key, n])

    def __call__(self, dataset_dict):
        d = copy.deepcopy(dataset_dict)
        rng = self.rng(d)
        k, sources = self.sampler.samples_per_image, None
        if self.mask_index is not None:
            sources = []
            for _ in range(rng.binomial(k, self.sampler.mask_sample_fraction)):
                d_idx, a_idx = self.mask_index.draw(rng)
                src = self.dataset[d_idx]
                sources.append((self._read(src), src["annotations"][a_idx]))
        annotations = d.get("annotations", [])
        if sources is not None and self.sampler.mask_sample_fraction >= 1.0:  # stage 2: no score samples
            image, annotations = sources[0][0], []
        else:
            image = self._read(d)
        samples = self.sampler(image, annotations, self.fill, rng=rng, mask_sources=sources)
        return {
            "file_name": d.get("file_name", "?"),
            "image_id": d.get("image_id"),
            "height": self.sampler.g.patch,  # all patches are square: one aspect-ratio group
            "width": self.sampler.g.patch,
            "patches": torch.as_tensor(np.ascontiguousarray(samples["patches"].transpose(0, 3, 1, 2))),
            "masks": torch.as_tensor(samples["masks"]),
            "labels": torch.as_tensor(samples["labels"]),
            "mask_sample": torch.as_tensor(samples["mask_sample"]),
        }
