"""segzoo's custom ops through export: ONNX (standard operators, run with onnxruntime) and
TorchScript (the ops as they are), against the eager op, with dynamic sizes and no boxes."""
import io

import numpy as np
import onnxruntime as ort
import pytest
import torch

from segzoo.export import MIN_OPSET, register_onnx_symbolics
from segzoo.ops import blender, roi_align_family, roi_align_max_composition

ROI_CASES = [  # (mode, sampling_ratio, aligned): every mode, adaptive and fixed sampling
    ("avg", 0, True),
    ("avg", 0, False),
    ("avg", 2, True),
    ("warp", 0, False),
    ("warp", 2, False),
    ("pool", 0, False),
    ("max", 0, True),
    ("max", 0, False),
    ("max", 2, True),
    ("max", 3, False),
]


def _rois(k, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(0, n, (k, 1), generator=g).float()
    xy = torch.rand(k, 2, generator=g) * 90 - 5
    wh = torch.rand(k, 2, generator=g) * 60
    if k >= 3:
        wh[0] = torch.tensor([150.0, 4.0])  # long and thin: many samples along x
        wh[1] = 0  # empty box
        xy[2] = torch.tensor([-30.0, 70.0])  # partly outside the map
    return torch.cat([b, xy, xy + wh], 1)


class _Pool(torch.nn.Module):
    def __init__(self, mode, sampling_ratio, aligned):
        super().__init__()
        self.args = (0.25, sampling_ratio, aligned, mode)

    def forward(self, x, rois):
        return roi_align_family(x, rois, (7, 5), *self.args, check_batch_index=False)


def _onnx(module, args, names, dynamic_axes):
    register_onnx_symbolics(18)
    f = io.BytesIO()
    torch.onnx.export(module, args, f, dynamo=False, opset_version=18, input_names=names[:-1],
                      output_names=names[-1:], dynamic_axes=dynamic_axes)
    return ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])


def _feeds():
    g = torch.Generator().manual_seed(1)
    yield torch.randn(2, 3, 20, 24, generator=g), _rois(12)
    yield torch.randn(2, 3, 33, 17, generator=g), _rois(30, seed=1)  # other map size, more boxes
    yield torch.randn(2, 3, 20, 24, generator=g), _rois(0)  # no boxes


@pytest.mark.parametrize("mode,sampling_ratio,aligned", ROI_CASES)
def test_roi_align_family_onnx_matches_op(mode, sampling_ratio, aligned):
    module = _Pool(mode, sampling_ratio, aligned)
    x, rois = next(_feeds())
    sess = _onnx(module, (x, rois), ["x", "rois", "out"],
                 {"x": {2: "h", 3: "w"}, "rois": {0: "k"}, "out": {0: "k"}})
    for x, rois in _feeds():
        ref = module(x, rois).numpy()
        out = sess.run(None, {"x": x.numpy(), "rois": rois.numpy()})[0]
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=2e-5, rtol=0)


def test_onnx_graph_uses_standard_operators_only():
    import onnx

    register_onnx_symbolics(18)
    x, rois = next(_feeds())
    for mode, sr, aligned in ROI_CASES:
        f = io.BytesIO()
        torch.onnx.export(_Pool(mode, sr, aligned), (x, rois), f, dynamo=False, opset_version=18)
        model = onnx.load_from_string(f.getvalue())
        onnx.checker.check_model(model, full_check=True)
        assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, mode


def test_max_composition_equals_op_including_adaptive_grids():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 31, 29, generator=g, dtype=torch.float64)
    rois = _rois(40, seed=3).double()
    for aligned in (True, False):
        ref = roi_align_family(x, rois, (7, 7), 0.25, 0, aligned, "max")
        torch.testing.assert_close(roi_align_max_composition(x, rois, (7, 7), 0.25, aligned), ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("k", [4, 1])
@pytest.mark.parametrize("interp", ["bilinear", "nearest"])
def test_blender_onnx_matches_op(k, interp):
    class Blend(torch.nn.Module):  # the op itself (its symbolic) and the wrapper (its export-time composition)
        def forward(self, crops, attentions):
            return torch.ops.segzoo.blender(crops, attentions, interp), blender(crops, attentions, interp)

    g = torch.Generator().manual_seed(0)
    crops, attn = torch.randn(5, k, 56, 56, generator=g), torch.randn(5, k, 14, 14, generator=g)
    register_onnx_symbolics(18)
    f = io.BytesIO()
    torch.onnx.export(Blend(), (crops, attn), f, dynamo=False, opset_version=18, input_names=["crops", "attentions"],
                      output_names=["op", "wrapper"], dynamic_axes={
                          "crops": {0: "n", 2: "h", 3: "w"}, "attentions": {0: "n", 2: "m", 3: "m2"},
                          "op": {0: "n", 1: "h", 2: "w"}, "wrapper": {0: "n", 1: "h", 2: "w"}})
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    for n, r, m in [(5, 56, 14), (0, 56, 14), (3, 28, 7), (2, 13, 5)]:
        c, a = crops[:n, :, :r, :r].contiguous(), attn[:n, :, :m, :m].contiguous()
        ref = blender(c, a, interp).numpy()
        for out in sess.run(None, {"crops": c.numpy(), "attentions": a.numpy()}):
            assert out.shape == ref.shape == (n, r, r)
            np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_torchscript_runs_the_ops_as_they_are(tmp_path):
    class Both(torch.nn.Module):
        def forward(self, x, rois, crops, attentions):
            pooled = roi_align_family(x, rois, (7, 7), 0.25, 0, True, "max", check_batch_index=False)
            return pooled, blender(crops, attentions, "bilinear")

    x, rois = next(_feeds())
    crops, attn = torch.randn(3, 4, 28, 28), torch.randn(3, 4, 7, 7)
    traced = torch.jit.trace(Both(), (x, rois, crops, attn))
    graph = str(traced.graph)
    assert "segzoo::roi_align_family" in graph and "segzoo::blender" in graph
    traced.save(str(tmp_path / "ops.ts"))
    loaded = torch.jit.load(str(tmp_path / "ops.ts"))
    for (x, rois), n in zip(_feeds(), (3, 1, 0)):
        got = loaded(x, rois, crops[:n], attn[:n])
        ref = Both()(x, rois, crops[:n], attn[:n])
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_opset_below_roialign_modes_is_one_clear_error():
    with pytest.raises(ValueError, match=f"opset >= {MIN_OPSET}"):
        register_onnx_symbolics(11)


@pytest.mark.parametrize("size", [(45, 61), (128, 96), (300, 211)])
def test_antialiased_resize_onnx_matches_pytorch(size):
    """Downscaling with antialias (SharpMask's pyramid) as ONNX Resize-18, dynamic sizes."""
    import torch.nn.functional as F

    class Down(torch.nn.Module):
        def forward(self, x):
            h, w = (torch.as_tensor(v, dtype=torch.float64) for v in x.shape[-2:])
            size = tuple(torch.round(v * 2 ** -1.5).clamp(min=1).long() for v in (h, w))
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    x = torch.randn(1, 3, 256, 200, generator=torch.Generator().manual_seed(0))
    sess = _onnx(Down(), (x,), ["x", "out"], {"x": {2: "h", 3: "w"}, "out": {2: "oh", 3: "ow"}})
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    out = sess.run(None, {"x": x.numpy()})[0]
    ref = Down()(x).numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=5e-5, rtol=0)
