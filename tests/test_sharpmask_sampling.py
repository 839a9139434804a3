"""DeepMask / SharpMask training samples: patches shrink by exact area averaging (no aliasing)."""
import cv2
import numpy as np

from sharpmask import PatchGeometry, PatchSampler
from sharpmask.sampler import area_resample, patch_affine


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
    out = np.einsum("ih,hwc,jw->ijc", wy, img, wx)
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
