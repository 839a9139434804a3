"""The fused blender op (segzoo.ops.blender / blendmask.blender) against its PyTorch
composition: values, gradients, gradcheck, empty input, reduced precision, errors, and
that backward does not keep the upsampled attentions."""
import pytest
import torch

from blendmask import blender, blender_composition

INTERPS = ["bilinear", "nearest"]


def _inputs(n, k, r, m, dtype=torch.float32, seed=0, rw=None, mw=None):
    g = torch.Generator().manual_seed(seed)
    crops = torch.randn(n, k, r, rw or r, generator=g, dtype=dtype) * 3
    attn = torch.randn(n, k, m, mw or m, generator=g, dtype=dtype) * 3
    return crops.requires_grad_(), attn.requires_grad_()


def _fwd_bwd(fn, crops, attn, interp, grad=None):
    c = crops.detach().clone().requires_grad_()
    a = attn.detach().clone().requires_grad_()
    out = fn(c, a, interp)
    if grad is None:
        grad = torch.randn_like(out)
    out.backward(grad)
    return out.detach(), c.grad, a.grad, grad


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("k", [4, 1, 3])
@pytest.mark.parametrize("shape", [(56, 14), (28, 14), (13, 5), (7, 7), (9, 11)])
def test_fused_equals_composition_fp32(interp, k, shape):
    r, m = shape
    crops, attn = _inputs(7, k, r, m)
    o1, gc1, ga1, g = _fwd_bwd(blender, crops, attn, interp)
    o2, gc2, ga2, _ = _fwd_bwd(blender_composition, crops, attn, interp, g)
    assert o1.shape == (7, r, r)
    torch.testing.assert_close(o1, o2, atol=1e-5, rtol=0)
    torch.testing.assert_close(gc1, gc2, atol=1e-5, rtol=0)
    torch.testing.assert_close(ga1, ga2, atol=1e-5, rtol=0)


def test_non_square_and_non_contiguous():
    crops, attn = _inputs(4, 4, 20, 6, rw=33, mw=9)
    c_nc = crops.detach().transpose(2, 3).contiguous().transpose(2, 3)  # same values, strided
    a_nc = attn.detach()[:, :, :, :].permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    assert not c_nc.is_contiguous() and not a_nc.is_contiguous()
    for interp in INTERPS:
        o1, gc1, ga1, g = _fwd_bwd(blender, c_nc, a_nc, interp)
        o2, gc2, ga2, _ = _fwd_bwd(blender_composition, crops, attn, interp, g)
        torch.testing.assert_close(o1, o2, atol=1e-5, rtol=0)
        torch.testing.assert_close(gc1, gc2, atol=1e-5, rtol=0)
        torch.testing.assert_close(ga1, ga2, atol=1e-5, rtol=0)


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("k", [4, 1])
def test_gradcheck_fp64(interp, k):
    crops, attn = _inputs(3, k, 9, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda c, a: blender(c, a, interp), (crops, attn))


def test_softmax_semantics_by_hand():
    # attention equal to the crop grid size (no resize): plain softmax-weighted sum
    crops = torch.tensor([[[[1.0]], [[3.0]]]])  # N=1, K=2, 1x1
    attn = torch.tensor([[[[0.0]], [[torch.log(torch.tensor(3.0))]]]])  # weights 1/4, 3/4
    assert blender(crops, attn).item() == pytest.approx(1 * 0.25 + 3 * 0.75, abs=1e-6)
    one = blender(torch.tensor([[[[0.0]]]]), torch.tensor([[[[0.0]]]]))  # K=1: sig(0)*sig(0)
    assert one.item() == pytest.approx(0.25, abs=1e-7)


@pytest.mark.parametrize("interp", INTERPS)
def test_empty(interp):
    crops = torch.zeros(0, 4, 56, 56, requires_grad=True)
    attn = torch.zeros(0, 4, 14, 14, requires_grad=True)
    out = blender(crops, attn, interp)
    assert out.shape == (0, 56, 56)
    out.sum().backward()
    assert crops.grad.shape == crops.shape and attn.grad.shape == attn.shape


def test_backward_saves_only_the_inputs():
    crops, attn = _inputs(10, 4, 56, 14)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        blender(crops, attn)
    assert sum(saved) == crops.numel() + attn.numel()

    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        blender_composition(crops, attn)
    # the composition keeps at least the (N, K, R, R) upsampled attentions as well
    assert sum(saved) >= crops.numel() + 10 * 4 * 56 * 56


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 0.1), (torch.float16, 0.02)])
def test_reduced_precision_cpu(dtype, tol):
    crops, attn = _inputs(5, 4, 28, 14)
    ref = blender_composition(crops.detach(), attn.detach())
    out = blender(crops.detach().to(dtype), attn.detach().to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)


def test_autocast_cpu_bf16_mixed_inputs():
    crops, attn = _inputs(5, 4, 28, 14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = blender(crops, attn.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert crops.grad is not None and crops.grad.dtype == torch.float32
    ref = blender_composition(crops.detach(), attn.detach())
    torch.testing.assert_close(out.float(), ref, atol=0.15, rtol=0.1)


def test_clear_errors():
    c, a = _inputs(2, 4, 8, 4)
    with pytest.raises(ValueError, match="must agree in N"):
        blender(c, a[:1])
    with pytest.raises(ValueError, match="must agree in N"):
        blender(c, a[:, :3])
    with pytest.raises(ValueError, match=r"\(N, K, H, W\)"):
        blender(c[0], a)
    with pytest.raises(TypeError, match="same dtype"):
        blender(c, a.double())
    with pytest.raises(TypeError, match="floating"):
        blender(c.long(), a.long())
    with pytest.raises(ValueError, match="interp"):
        blender(c, a, "bicubic")


@pytest.mark.cuda
@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("k,m", [(4, 14), (1, 14), (8, 40)])  # (8, 40): beyond shared memory
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_cuda_matches_cpu(interp, k, m, dtype, tol):
    crops, attn = _inputs(6, k, 56, m, dtype=dtype)
    o1, gc1, ga1, g = _fwd_bwd(blender, crops, attn, interp)
    o2, gc2, ga2, _ = _fwd_bwd(blender, crops.cuda(), attn.cuda(), interp, g.cuda())
    torch.testing.assert_close(o2.cpu(), o1, atol=tol, rtol=0)
    torch.testing.assert_close(gc2.cpu(), gc1, atol=tol, rtol=0)
    torch.testing.assert_close(ga2.cpu(), ga1, atol=tol * 10, rtol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast(dtype):
    crops, attn = _inputs(6, 4, 56, 14)
    crops, attn = crops.detach().cuda().requires_grad_(), attn.detach().cuda().requires_grad_()
    with torch.autocast("cuda", dtype=dtype):
        out = blender(crops, attn)
    assert out.dtype == dtype
    out.float().sum().backward()
    ref = blender_composition(crops.detach(), attn.detach())
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
    assert torch.isfinite(attn.grad).all()
    empty = blender(torch.zeros(0, 4, 56, 56, device="cuda"), torch.zeros(0, 4, 14, 14, device="cuda"))
    assert empty.shape == (0, 56, 56)
