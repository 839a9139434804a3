"""DeepMask / SharpMask training samples: patches shrink by exact area averaging (no aliasing), mask
samples are category-balanced over the training set as in the authors' sampler."""
import cv2
import numpy as np
import pytest

from model_inputs import config

from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

from sharpmask import PatchGeometry, PatchSampler, SharpMaskDatasetMapper
from sharpmask.sampler import area_resample, patch_affine

DEEPMASK = "configs/SharpMask/shapes_deepmask_R_18.yaml"
SHARPMASK = "configs/SharpMask/shapes_sharpmask_R_18.yaml"


def _true_area_average(image, x0, y0, step, size, fill):
    """Independent exact reference: separable pixel-overlap weight matrices."""
    h, w = image.shape[:2]

    def weights(start, n_img):
        e = start + step * np.arange(size + 1)
        lo, hi = e[:-1, None], e[1:, None]
        px = np.arange(n_img)[None, :]
        return np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0, None) / step  # (size, n_img)

    wy, wx = weights(y0, h), weights(x0, w)
    img = image.reshape(h, w, -1).astype(np.float64)
    out = np.einsum("ih,hwc,jw->ijc", wy, img, wx, optimize=True)  # two contractions, not one 5-deep loop
    outside = 1.0 - wy.sum(1)[:, None] * wx.sum(1)[None, :]
    return out + np.asarray(fill, np.float64) * outside[..., None]


def test_training_patch_shrink_is_area_averaged():
    g = PatchGeometry()
    sampler = PatchSampler(g)
    yy, xx = np.mgrid[0:1024, 0:1024]
    checker = np.repeat((((yy + xx) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)
    # 4x shrink of a 1-px checkerboard: every 4x4 footprint (half-pixel offset here) averages to 127.5
    patch = sampler.cut(checker, 512.5, 512.5, 0.25, False, (127.5, 127.5, 127.5)).astype(np.float64)
    assert np.abs(patch - 127.5).max() <= 0.5 and patch.std() < 0.5
    # the old cut, INTER_AREA through warpAffine (which falls back to bilinear), and a plain bilinear
    # warp sample one pixel every 4 there, all of one colour: the pattern aliases to black
    m = patch_affine(512.5, 512.5, 0.25, g.patch)
    for flags in (cv2.INTER_AREA, cv2.INTER_LINEAR):
        aliased = cv2.warpAffine(checker, m, (g.patch, g.patch), flags=flags).astype(np.float64)
        assert np.abs(aliased - 127.5).min() == 127.5
    # uniform noise (std 73.9) shrunk 4x: each patch pixel averages 4x4 pixels, weights (.5, 1, 1, 1, .5) / 4
    # per axis here, so std 73.9 x 3.5 / 16 = 16.2; point sampling keeps all of it
    noise = np.random.default_rng(0).integers(0, 256, size=(1024, 1024, 3)).astype(np.uint8)
    ours = sampler.cut(noise, 512.5, 512.5, 0.25, False, (127.5,) * 3).astype(np.float64)
    aliased = cv2.warpAffine(noise, m, (g.patch, g.patch), flags=cv2.INTER_AREA).astype(np.float64)
    assert abs(ours.std() - 73.9 * 3.5 / 16) < 0.5 and aliased.std() > 70
    # any offset and step, partly outside the image (filled): equal to the exact area average
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(300, 420, 3)).astype(np.uint8)
    for cx, cy, scale in ((211.37, 140.81, 0.3), (20.5, 280.2, 0.41), (400.0, 10.0, 0.125)):
        x0 = cx - g.patch / (2 * scale)
        y0 = cy - g.patch / (2 * scale)
        exact = _true_area_average(noise, x0, y0, 1 / scale, g.patch, (90.0, 100.0, 110.0))
        ours = area_resample(noise, x0, y0, 1 / scale, g.patch, (90.0, 100.0, 110.0))
        assert np.abs(ours - exact).max() < 1e-6
        patch = sampler.cut(noise, cx, cy, scale, False, (90.0, 100.0, 110.0)).astype(np.float64)
        assert np.abs(patch - exact).max() <= 0.5 + 1e-6  # rounded to uint8
        flipped = sampler.cut(noise, cx, cy, scale, True, (90.0, 100.0, 110.0))
        assert np.array_equal(flipped, patch[:, ::-1].astype(np.uint8))
    # masks: a window pixel is foreground when the instance covers at least half of it
    mask = np.zeros((400, 400), np.uint8)
    mask[100:300, 120:250] = 1
    target = sampler.cut_mask(mask, 184.0, 200.0, 0.5, False)
    exact = _true_area_average(mask, 184.0 - 160, 200.0 - 160, 2.0, 160, 0.0)[..., 0] >= 0.5
    assert np.array_equal(target.astype(bool), exact) and target.sum() == 65 * 100


GREYS = {0: 60, 1: 130, 2: 200}


@pytest.fixture
def skewed_dataset(tmp_path):
    """12 images of 3x3 separate 30-px squares: 90 of category 0, 9 of category 1, 3 of category 2,
    each category drawn in its own grey (so a patch's centre tells its instance's category)."""
    cats = [0] * 90 + [1] * 9 + [2] * 3
    np.random.default_rng(0).shuffle(cats)
    dicts = []
    for i in range(12):
        img = np.zeros((160, 160, 3), np.uint8)
        anns = []
        for k, cat in enumerate(cats[9 * i : 9 * i + 9]):
            x0, y0 = 10 + 50 * (k % 3), 10 + 50 * (k // 3)
            img[y0 : y0 + 30, x0 : x0 + 30] = GREYS[cat]
            mask = np.zeros((160, 160), np.uint8)
            mask[y0 : y0 + 30, x0 : x0 + 30] = 1
            poly = [[x0, y0, x0 + 30, y0, x0 + 30, y0 + 30, x0, y0 + 30]]
            anns.append({"bbox": [x0, y0, 30, 30], "bbox_mode": BoxMode.XYWH_ABS, "segmentation": poly,
                         "area": 900.0, "iscrowd": 0, "category_id": cat})
        path = str(tmp_path / f"{i}.png")
        cv2.imwrite(path, img)
        dicts.append({"file_name": path, "height": 160, "width": 160, "image_id": i, "annotations": anns})
    name = f"sharpmask_skewed_{tmp_path.name}"
    DatasetCatalog.register(name, lambda: dicts)
    yield name, dicts
    DatasetCatalog.remove(name)


def _mask_sample_categories(mapper, dicts, n_calls):
    cats = []
    for i in range(n_calls):
        out = mapper(dicts[i % len(dicts)])
        for p in out["patches"][out["mask_sample"]]:
            centre = int(p[0, 88:104, 88:104].float().median())
            cats.append(min(GREYS, key=lambda c: abs(GREYS[c] - centre)))
    return np.bincount(cats, minlength=3) / len(cats)


def test_mask_samples_are_category_balanced(skewed_dataset):
    name, dicts = skewed_dataset
    opts = ["DATASETS.TRAIN", f"('{name}',)", "MODEL.SHARPMASK.SAMPLES_PER_IMAGE", "8", "INPUT.FORMAT", "BGR"]
    np.random.seed(0)
    balanced = SharpMaskDatasetMapper(config(DEEPMASK, *opts), True)
    assert balanced.mask_index.categories == [0, 1, 2] and len(balanced.mask_index) == 102
    freq = _mask_sample_categories(balanced, dicts, 80)  # ~320 mask samples
    assert np.abs(freq - 1 / 3).max() < 0.08, freq
    # per image (the old rule) the frequencies follow the instance counts, 88 / 9 / 3 %
    np.random.seed(0)
    per_image = SharpMaskDatasetMapper(config(DEEPMASK, *opts, "MODEL.SHARPMASK.MASK_SAMPLING", "image"), True)
    assert per_image.mask_index is None
    freq = _mask_sample_categories(per_image, dicts, 80)
    assert freq[0] > 0.75 and freq[2] < 0.1, freq
    # score samples still come from the mapped image (uniform over images, as the authors): an image
    # with category-0 squares only gives category-0 positives
    only0 = next(d for d in dicts if all(a["category_id"] == 0 for a in d["annotations"]))
    centres = []
    for _ in range(20):
        out = balanced(only0)
        score_pos = (~out["mask_sample"]) & (out["labels"] == 1)
        centres += [int(p[0, 88:104, 88:104].float().median()) for p in out["patches"][score_pos]]
    assert len(centres) > 10 and all(abs(c - GREYS[0]) < 20 for c in centres)
    # stage 2: every sample is a category-balanced mask sample
    stage2 = SharpMaskDatasetMapper(config(SHARPMASK, *opts), True)
    out = stage2(dicts[0])
    assert out["mask_sample"].all() and len(out["mask_sample"]) == 8


def test_mapper_from_explicit_arguments_equals_the_config_one(skewed_dataset):
    """What a LazyConfig builds (explicit arguments, ``mask_datasets``) samples exactly what the
    yacs config's mapper does, seeded; giving both an index and ``mask_datasets`` is an error."""
    import torch

    from segzoo.errors import ConfigError

    name, dicts = skewed_dataset
    opts = ["DATASETS.TRAIN", f"('{name}',)", "MODEL.SHARPMASK.SAMPLES_PER_IMAGE", "8", "INPUT.FORMAT", "BGR",
            "SEED", "3"]
    from_cfg = SharpMaskDatasetMapper(config(DEEPMASK, *opts), True)
    s = from_cfg.sampler
    explicit = SharpMaskDatasetMapper(
        sampler=PatchSampler(PatchGeometry(160, 16, 92.0), samples_per_image=8, mask_sample_fraction=0.5,
                             neg_scale_range=s.neg_scale_range, min_area=s.min_area),
        image_format="BGR", fill=from_cfg.fill, mask_datasets=[name], seed=3)
    assert vars(explicit.sampler).keys() == vars(s).keys()
    assert {k: v for k, v in vars(explicit.sampler).items() if k != "g"} == {k: v for k, v in vars(s).items() if k != "g"}
    assert explicit.mask_index.categories == from_cfg.mask_index.categories and len(explicit.mask_index) == 102
    for d in dicts[:4]:
        a, b = from_cfg(d), explicit(d)
        for k in ("patches", "masks", "labels", "mask_sample"):
            assert torch.equal(a[k], b[k]), k
    with pytest.raises(ConfigError, match="mask_datasets or mask_index"):
        SharpMaskDatasetMapper(sampler=s, image_format="BGR", fill=from_cfg.fill, mask_index=from_cfg.mask_index,
                               dataset=from_cfg.dataset, mask_datasets=[name])


def test_inside_the_training_stream_patches_follow_the_sample_seed(skewed_dataset):
    """In segzoo's training stream the mapper draws from the sample's seed (so a resumed run maps
    an image as the uninterrupted one did), not from its own per-image counter."""
    import torch

    from segzoo.data.stream import seeded_rng

    name, dicts = skewed_dataset
    mapper = SharpMaskDatasetMapper(config(DEEPMASK, "DATASETS.TRAIN", f"('{name}',)", "SEED", "3"), True)
    with seeded_rng((3, 7)):
        a = mapper(dicts[0])
    with seeded_rng((3, 7)):
        b = mapper(dicts[0])  # second mapping of the image, same sample seed
    with seeded_rng((3, 8)):
        c = mapper(dicts[0])
    assert torch.equal(a["patches"], b["patches"]) and torch.equal(a["masks"], b["masks"])
    assert not torch.equal(a["patches"], c["patches"])
    d, e = mapper(dicts[0]), mapper(dicts[0])  # outside the stream: the per-image counter, as before
    assert not torch.equal(d["patches"], e["patches"])
