"""RoIAlign family: parity with torchvision, an independent pure-PyTorch reference, gradcheck,
edge cases, the Detectron2 pooler drop-in, and CUDA-vs-CPU (skipped without CUDA)."""
import math

import pytest
import torch
import torchvision

from segzoo import ops
from segzoo.ops import roi_align_family

MODES = ["avg", "max", "warp", "pool"]


# ----------------------------------------------------------------------------- reference
def _bilinear(feat, y, x):
    """torchvision's bilinear sampling rule, vectorised over points. feat (C,H,W); y, x (S,)."""
    C, H, W = feat.shape
    outside = (y < -1.0) | (y > H) | (x < -1.0) | (x > W)
    y = y.clamp(min=0)
    x = x.clamp(min=0)
    y_low = y.floor().long()
    x_low = x.floor().long()
    y_top = y_low >= H - 1
    x_top = x_low >= W - 1
    y_low = torch.where(y_top, torch.full_like(y_low, H - 1), y_low)
    x_low = torch.where(x_top, torch.full_like(x_low, W - 1), x_low)
    y_high = torch.where(y_top, y_low, y_low + 1)
    x_high = torch.where(x_top, x_low, x_low + 1)
    y = torch.where(y_top, y_low.to(y.dtype), y)
    x = torch.where(x_top, x_low.to(x.dtype), x)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    v = (hy * hx) * feat[:, y_low, x_low] + (hy * lx) * feat[:, y_low, x_high] \
        + (ly * hx) * feat[:, y_high, x_low] + (ly * lx) * feat[:, y_high, x_high]
    return torch.where(outside, torch.zeros_like(v), v)


def _round_half_away(v):
    return torch.sign(v) * torch.floor(v.abs() + 0.5)


def reference(input, rois, out_size, scale, sr, aligned, mode):
    """Pure-PyTorch RoIAlign avg/max and RoIWarp, written from the definitions."""
    ph_n, pw_n = out_size
    outs = []
    for r in rois:
        b = int(r[0])
        feat = input[b]
        if mode == "warp":
            x1, y1, x2, y2 = (_round_half_away(c * scale) for c in r[1:])
            aligned_ = False
        else:
            off = 0.5 if aligned else 0.0
            x1, y1, x2, y2 = (c * scale - off for c in r[1:])
            aligned_ = aligned
        rw, rh = x2 - x1, y2 - y1
        if not aligned_:
            rw, rh = rw.clamp(min=1), rh.clamp(min=1)
        bh, bw = rh / ph_n, rw / pw_n
        gh = sr if sr > 0 else int(math.ceil(float(rh) / ph_n))
        gw = sr if sr > 0 else int(math.ceil(float(rw) / pw_n))
        out = input.new_zeros(feat.shape[0], ph_n, pw_n)
        if gh * gw == 0:
            outs.append(out)
            continue
        rows = []
        for ph in range(ph_n):
            cols = []
            for pw in range(pw_n):
                iy = torch.arange(gh, dtype=input.dtype)
                ix = torch.arange(gw, dtype=input.dtype)
                ys = y1 + ph * bh + (iy + 0.5) * bh / gh
                xs = x1 + pw * bw + (ix + 0.5) * bw / gw
                yy, xx = torch.meshgrid(ys, xs, indexing="ij")
                v = _bilinear(feat, yy.reshape(-1), xx.reshape(-1))
                cols.append(v.max(dim=1).values if mode == "max" else v.mean(dim=1))
            rows.append(torch.stack(cols, 1))
        outs.append(torch.stack(rows, 1))
    return torch.stack(outs) if outs else input.new_zeros(0, input.shape[1], ph_n, pw_n)


def _data(dtype=torch.float32, n=2, c=5, h=23, w=29, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    rois = torch.tensor([
        [0, 2.3, 3.1, 40.7, 30.2],
        [1, 10.0, 12.0, 11.0, 12.5],   # tiny
        [1, -8.0, -4.0, 25.0, 60.0],   # partly outside
        [0, 30.0, 5.5, 58.0, 44.9],
        [1, 70.0, 70.0, 90.0, 95.0],   # wholly outside the 2x-downsampled map
    ], dtype=dtype)
    return x.to(device), rois.to(device)


# ----------------------------------------------------------------------------- parity
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sr", [0, 2])
@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_avg_equals_torchvision_roi_align(aligned, sr, scale):
    x, rois = _data()
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    ours = ops.roi_align(x1, rois, (7, 6), scale, sr, aligned)
    ref = torchvision.ops.roi_align(x2, rois, (7, 6), scale, sr, aligned)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    w = torch.randn_like(ref)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-5)


@pytest.mark.parametrize("scale", [0.5, 0.25, 1.0])
def test_pool_equals_torchvision_roi_pool(scale):
    x, rois = _data()
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    ours = ops.roi_pool(x1, rois, (7, 7), scale)
    ref = torchvision.ops.roi_pool(x2, rois, (7, 7), scale)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    w = torch.randn_like(ref)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-5)


def test_reference_itself_matches_torchvision():
    # the pure-PyTorch reference is trusted for max/warp because its avg mode equals torchvision
    x, rois = _data(torch.float64)
    for aligned in (False, True):
        for sr in (0, 2):
            ref = reference(x, rois, (4, 5), 0.5, sr, aligned, "avg")
            tv = torchvision.ops.roi_align(x, rois, (4, 5), 0.5, sr, aligned)
            torch.testing.assert_close(ref, tv, rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode", ["max", "warp"])
@pytest.mark.parametrize("sr", [0, 2])
@pytest.mark.parametrize("aligned", [False, True])
def test_max_and_warp_match_reference(mode, sr, aligned):
    x, rois = _data()
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    ours = roi_align_family(x1, rois, (4, 5), 0.5, sr, aligned, mode)
    ref = reference(x2, rois, (4, 5), 0.5, sr, aligned, mode)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    assert ours.abs().sum() > 0
    w = torch.randn_like(ref)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-5)


def test_warp_differs_from_align_when_boxes_are_off_grid():
    x, rois = _data()
    warp = ops.roi_warp(x, rois, (7, 7), 0.25, 2)
    align = ops.roi_align(x, rois, (7, 7), 0.25, 2, aligned=False)
    assert (warp - align).abs().max() > 1e-3
    # on grid-aligned boxes (integer feature coords) warp == unaligned RoIAlign
    grid_rois = torch.tensor([[0, 4.0, 8.0, 40.0, 44.0], [1, 0.0, 0.0, 64.0, 32.0]])
    torch.testing.assert_close(ops.roi_warp(x, grid_rois, (7, 7), 0.25, 2),
                               ops.roi_align(x, grid_rois, (7, 7), 0.25, 2, aligned=False))


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_fp64(mode):
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.3, 2.2, 15.7, 13.1], [1, 4.0, 3.1, 9.9, 17.0], [1, -2.0, -3.0, 6.0, 5.0]],
                        dtype=torch.float64)

    def f(inp):
        return roi_align_family(inp, rois, (3, 4), 0.6, 2, True, mode)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("mode", MODES)
def test_empty_box_list(mode):
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = roi_align_family(x, torch.zeros(0, 5), (7, 7), 1.0, 2, True, mode)
    assert out.shape == (0, 3, 7, 7)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    out = roi_align_family(x, [torch.zeros(0, 4), torch.zeros(0, 4)], (7, 7), 1.0, 2, True, mode)
    assert out.shape == (0, 3, 7, 7)


@pytest.mark.parametrize("mode", MODES)
def test_zero_size_and_outside_boxes_are_finite(mode):
    x = torch.randn(1, 3, 10, 10, requires_grad=True)
    rois = torch.tensor([[0, 4.0, 4.0, 4.0, 4.0], [0, 50.0, 50.0, 60.0, 60.0], [0, -30.0, -30.0, -20.0, -20.0]])
    out = roi_align_family(x, rois, (3, 3), 1.0, 0, True, mode)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    if mode in ("avg", "max"):
        assert out[1:].abs().max() == 0  # nothing to sample outside the map


@pytest.mark.parametrize("mode", MODES)
def test_non_contiguous_inputs(mode):
    x, rois = _data(c=6)
    xt = x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)  # same values, other strides
    assert not xt.is_contiguous()
    x_cl = x.to(memory_format=torch.channels_last)
    rois_nc = rois.t().contiguous().t()
    assert not rois_nc.is_contiguous()
    ref = roi_align_family(x, rois, (5, 5), 0.5, 2, True, mode)
    for inp in (xt, x_cl):
        torch.testing.assert_close(roi_align_family(inp, rois_nc, (5, 5), 0.5, 2, True, mode), ref)


def test_clear_errors():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(IndexError, match=r"batch indices in \[0, 1\]"):
        ops.roi_align(x, torch.tensor([[2, 0.0, 0.0, 4.0, 4.0]]), 2)
    with pytest.raises(IndexError, match="batch indices"):
        ops.roi_align(x, torch.tensor([[-1, 0.0, 0.0, 4.0, 4.0]]), 2)
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        ops.roi_align(x, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match="4-D"):
        ops.roi_align(x[0], torch.zeros(0, 5), 2)
    with pytest.raises(TypeError, match="same dtype"):
        ops.roi_align(x, torch.zeros(1, 5, dtype=torch.float64), 2)
    with pytest.raises(TypeError, match="not supported on cpu"):
        ops.roi_align(x.half(), torch.zeros(1, 5).half(), 2)
    with pytest.raises(ValueError, match="mode must be one of"):
        roi_align_family(x, torch.zeros(1, 5), 2, mode="median")
    with pytest.raises(ValueError, match="output_size"):
        ops.roi_align(x, torch.zeros(1, 5), (0, 3))


def test_autocast_cpu_bf16():
    x, rois = _data()
    ref = ops.roi_align(x, rois, (7, 7), 0.5, 2, True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ops.roi_align(x.bfloat16(), rois, (7, 7), 0.5, 2, True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=3e-2)


def test_module_wrapper():
    m = ops.ROIAlignFamily((3, 3), spatial_scale=0.5, sampling_ratio=2, aligned=True, mode="max")
    x, rois = _data()
    torch.testing.assert_close(m(x, rois), roi_align_family(x, rois, (3, 3), 0.5, 2, True, "max"))
    assert "mode=max" in repr(m)


# ----------------------------------------------------------------------------- Detectron2 pooler
def _pooler_inputs():
    from detectron2.structures import Boxes

    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(2, 4, 64 // s, 64 // s, generator=g) for s in (4, 8, 16, 32)]
    boxes = [Boxes(torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 60.0, 62.0], [10, 10, 13, 12]])),
             Boxes(torch.tensor([[0.0, 0.0, 63.0, 63.0], [20.5, 3.3, 25.1, 50.0]]))]
    return feats, boxes


@pytest.mark.parametrize("pooler_type", ["ROIAlign", "ROIAlignV2", "ROIPool"])
def test_pooler_matches_detectron2(pooler_type):
    from detectron2.modeling.poolers import ROIPooler as D2ROIPooler

    from segzoo.modeling import ROIPooler

    feats, boxes = _pooler_inputs()
    kw = dict(output_size=7, scales=(1 / 4, 1 / 8, 1 / 16, 1 / 32), sampling_ratio=0, pooler_type=pooler_type,
              canonical_box_size=32)
    ours, ref = ROIPooler(**kw), D2ROIPooler(**kw)
    torch.testing.assert_close(ours(feats, boxes), ref(feats, boxes), rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooler_type,mode,aligned", [("ROIAlignMax", "max", True), ("ROIWarp", "warp", False)])
def test_pooler_new_types(pooler_type, mode, aligned):
    from segzoo.modeling import ROIPooler

    feats, boxes = _pooler_inputs()
    p = ROIPooler(7, scales=(1 / 4,), sampling_ratio=2, pooler_type=pooler_type)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b.tensor], 1) for i, b in enumerate(boxes)])
    torch.testing.assert_close(p(feats[:1], boxes), roi_align_family(feats[0], rois, 7, 0.25, 2, aligned, mode))
    with pytest.raises(ValueError, match="Unknown pooler type"):
        ROIPooler(7, scales=(1 / 4,), sampling_ratio=2, pooler_type="ROIAlignRotated")


@pytest.mark.parametrize("pooler_type", ["ROIAlignV2", "ROIAlignMax", "ROIWarp", "ROIPool"])
def test_mask_rcnn_heads_use_the_pooler_from_yaml(pooler_type, repo_root):
    import os

    from detectron2.modeling import build_model

    import maskrcnn_roialign  # noqa: F401
    from segzoo.config import load_config
    from segzoo.modeling.poolers import _LevelPooler

    cfg = load_config(os.path.join(repo_root, "configs/MaskRCNN/shapes_R_18_FPN.yaml"), [
        "MODEL.ROI_HEADS.NAME", "AlignFamilyROIHeads", "MODEL.DEVICE", "cpu",
        "MODEL.ROI_BOX_HEAD.POOLER_TYPE", pooler_type, "MODEL.ROI_MASK_HEAD.POOLER_TYPE", pooler_type])
    model = build_model(cfg)
    for p in (model.roi_heads.box_pooler, model.roi_heads.mask_pooler):
        assert p.pooler_type == pooler_type and all(isinstance(l, _LevelPooler) for l in p.level_poolers)
    from detectron2.structures import BitMasks, Boxes, Instances

    inst = Instances((128, 128))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 60.0, 70.0]]))
    inst.gt_classes = torch.tensor([2])
    m = torch.zeros(1, 128, 128, dtype=torch.bool)
    m[0, 10:70, 10:60] = True
    inst.gt_masks = BitMasks(m)
    from detectron2.utils.events import EventStorage

    with EventStorage():
        losses = model([{"image": torch.randint(0, 255, (3, 128, 128)).float(), "instances": inst}])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.roi_heads.mask_head.predictor.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- CUDA
CUDA_DTYPES = [(torch.float32, 1e-5), (torch.float64, 1e-10), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)]


@pytest.mark.cuda
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,tol", CUDA_DTYPES)
def test_cuda_matches_cpu(mode, dtype, tol):
    assert ops.cuda_compiled(), "extension built without CUDA kernels"
    x, rois = _data(torch.float64, c=8, h=40, w=50)
    xc = x.clone().requires_grad_()
    ref = roi_align_family(xc, rois, (7, 7), 0.5, 2, True, mode)
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    xg = x.to("cuda", dtype).requires_grad_()
    out = roi_align_family(xg, rois.to("cuda", dtype), (7, 7), 0.5, 2, True, mode)
    (out * w.to("cuda", dtype)).sum().backward()
    torch.testing.assert_close(out.double().cpu(), ref.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(xg.grad.double().cpu(), xc.grad, rtol=tol, atol=tol * 4)


@pytest.mark.cuda
@pytest.mark.parametrize("mode", MODES)
def test_cuda_autocast_and_empty(mode):
    x, rois = _data(c=8, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        out = roi_align_family(x.half(), rois, (7, 7), 0.5, 2, True, mode)
    assert out.dtype == torch.float16
    ref = roi_align_family(x, rois, (7, 7), 0.5, 2, True, mode)
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    assert roi_align_family(x, torch.zeros(0, 5, device="cuda"), 7, 0.5, 2, True, mode).shape == (0, 8, 7, 7)
