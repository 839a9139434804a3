"""DeepMask / SharpMask inference geometry: the test-time padding is what the windows need, and inside a
detector the pyramid runs on the original image size."""
import numpy as np
import pytest
import torch

from model_inputs import config, model_from, synthetic_batch

from segzoo.errors import ConfigError

DEEPMASK = "configs/SharpMask/shapes_deepmask_R_18.yaml"
SHARPMASK = "configs/SharpMask/shapes_sharpmask_R_18.yaml"


def test_test_time_padding_is_what_the_windows_need():
    model = model_from(DEEPMASK, "MODEL.SHARPMASK.TEST.SCALES", "[1.0, 0.5]").eval()
    x = model.normalize(torch.rand(3, 50, 70) * 255)
    pyramid = list(model.scale_pyramid(x))
    # scale 1: 4 x 5 window centres (every 16 px); each window's 192-px patch (window + context) fits
    # exactly: 96 px of padding on the top / left, 16 * (n - 1) + 96 - size on the bottom / right
    (size1, grid1, padded1), (size2, grid2, padded2) = pyramid
    assert size1 == (50, 70) and grid1 == (4, 5) and tuple(padded1.shape[-2:]) == (16 * 3 + 192, 16 * 4 + 192)
    assert size2 == (25, 35) and grid2 == (2, 3) and tuple(padded2.shape[-2:]) == (16 * 1 + 192, 16 * 2 + 192)
    # the mean fill: the image sits at (96, 96)
    torch.testing.assert_close(padded1[0, :, 96:146, 96:166], x)
    assert float(padded1[0, :, :96].abs().max()) == 0 and float(padded1[0, :, 146:].abs().max()) == 0
    with torch.no_grad():
        per_scale, idx, logits = model.dense_windows(x)
    assert [tuple(s["emb"].shape[1:]) for s in per_scale] == [(4, 5), (2, 3)] and len(logits) == 20 + 6


def _sorted_rows(t):
    t = t.double()
    order = np.lexsort(t.numpy().T[::-1])
    return t[torch.as_tensor(order)]


def test_pyramid_on_a_resized_image_follows_the_original_size():
    model = model_from(DEEPMASK, "MODEL.SHARPMASK.TEST.SCALES", "[0.5, 1.0, 2.0]").eval()
    g = torch.Generator().manual_seed(0)
    original = torch.rand(3, 60, 90, generator=g) * 255
    resized = torch.nn.functional.interpolate(original[None], size=(150, 225), mode="bilinear")[0]  # x 2.5
    with torch.no_grad():
        a = model.select_windows(model.normalize(original), top_n=10 ** 6)
        b = model.select_windows(model.normalize(resized), top_n=10 ** 6, base_size=(60, 90))
        sizes_a = [s for s, _, _ in model.scale_pyramid(model.normalize(original))]
        pyr_b = list(model.scale_pyramid(model.normalize(resized), base_size=(60, 90)))
    # same scaled images (so the same trunk compute) and the same windows, in the input's pixels
    assert [s for s, _, _ in pyr_b] == sizes_a == [(30, 45), (60, 90), (120, 180)]
    assert len(a) == len(b) == 2 * 3 + 4 * 6 + 8 * 12
    torch.testing.assert_close(_sorted_rows(b.boxes), _sorted_rows(a.boxes * 2.5), rtol=0, atol=1e-3)
    # without base_size the scales apply to the resized image: 2.5x the windows' image pixels
    with torch.no_grad():
        c = model.select_windows(model.normalize(resized), top_n=10 ** 6)
    assert len(c) == 5 * 7 + 10 * 15 + 19 * 29  # (75, 112), (150, 225), (300, 450)


def test_proposal_generator_runs_the_pyramid_on_the_original_size(tmp_path):
    torch.save({"model": model_from(SHARPMASK).state_dict()}, tmp_path / "sharpmask.pth")
    opts = ["MODEL.SHARPMASK.PROPOSAL_CONFIG", str(tmp_path / "proposer.yaml"),
            "MODEL.SHARPMASK.PROPOSAL_WEIGHTS", str(tmp_path / "sharpmask.pth"), "MODEL.SHARPMASK.PROPOSAL_TOPK_TEST", "30"]
    (tmp_path / "proposer.yaml").write_text(config(SHARPMASK, "MODEL.SHARPMASK.TEST.SCALES", "[1.0]").dump())
    model = model_from("configs/SharpMask/shapes_mask_rcnn_R_18_FPN_sharpmask.yaml", *opts).eval()
    gen = model.proposal_generator
    batch = synthetic_batch()
    for d in batch:  # the detector sees images 2x their original size
        d["height"], d["width"] = d["image"].shape[1] // 2, d["image"].shape[2] // 2
    calls = []
    propose = gen.model.propose_boxes
    gen.model.propose_boxes = lambda image, size, **kw: calls.append((tuple(image.shape[-2:]), size, kw)) or propose(
        image, size, **kw)
    images = model.preprocess_image(batch)
    assert images.original_sizes == [(64, 80), (64, 64)]
    with torch.no_grad():
        proposals, _ = gen(images, None)
    assert [(c[0], c[1], c[2]["base_size"]) for c in calls] == [
        ((128, 160), (128, 160), (64, 80)), ((128, 128), (128, 128), (64, 64))]
    for p, (h, w) in zip(proposals, images.image_sizes):
        b = p.proposal_boxes.tensor
        assert 0 < len(p) <= 30 and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
    with pytest.raises(ConfigError, match="SharpMaskRCNN"):
        model_from("configs/SharpMask/shapes_mask_rcnn_R_18_FPN_sharpmask.yaml", *opts,
                   "MODEL.META_ARCHITECTURE", "GeneralizedRCNN")
