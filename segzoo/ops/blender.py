"""BlendMask's blender as one fused op, and the PyTorch composition it replaces.

``crops`` ``(N, K, H, W)`` are the K bases cropped by each instance's box (RoIAlign,
``H = W = R``); ``attentions`` ``(N, K, M, M)`` are the instance's attention maps. The
blender resizes the attentions to ``H x W`` (bilinear with ``align_corners=False`` or
nearest, exactly as :func:`torch.nn.functional.interpolate`), normalises them over K and
sums the weighted crops:

* ``K > 1``: ``sum_k crops[:, k] * softmax_k(up(attentions))[:, k]`` -- mask **logits**;
* ``K = 1``: ``sigmoid(crops[:, 0]) * sigmoid(up(attentions)[:, 0])`` -- mask
  **probabilities** (BlendMask's one-basis variant).

:func:`blender` runs the fused C++/CUDA kernel (``torch.ops.segzoo.blender``): it never
materialises the ``(N, K, H, W)`` upsampled attentions, in forward or backward.
:func:`blender_composition` is the same function written with PyTorch ops.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from ._ext import load_extension

__all__ = ["BLENDER_INTERP", "blender", "blender_composition"]

# Interpolation modes, passed by name to the op (``str interp`` in its schema).
BLENDER_INTERP = ("bilinear", "nearest")

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check(crops: Tensor, attentions: Tensor, interp: str) -> None:
    for name, t, dims in (("crops", crops, "(N, K, H, W)"), ("attentions", attentions, "(N, K, M, M)")):
        if not isinstance(t, Tensor):
            raise TypeError(f"blender: {name} must be a Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"blender: {name} must be {dims}, got shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES:
            raise TypeError(f"blender: {name} must be a floating tensor, got {t.dtype}")
    if crops.shape[:2] != attentions.shape[:2]:
        raise ValueError(
            f"blender: crops {tuple(crops.shape)} and attentions {tuple(attentions.shape)} "
            "must agree in N (instances) and K (bases)"
        )
    if crops.size(1) < 1 or min(crops.shape[2:]) < 1 or min(attentions.shape[2:]) < 1:
        raise ValueError(
            f"blender: K and spatial sizes must be >= 1, got crops {tuple(crops.shape)}, "
            f"attentions {tuple(attentions.shape)}"
        )
    if crops.device != attentions.device:
        raise ValueError(
            f"blender: crops ({crops.device}) and attentions ({attentions.device}) must be "
            "on the same device"
        )
    if interp not in BLENDER_INTERP:
        raise ValueError(f"blender: interp must be one of {list(BLENDER_INTERP)}, got {interp!r}")


def blender(crops: Tensor, attentions: Tensor, interp: str = "bilinear") -> Tensor:
    """Fused blender: ``(N, K, H, W)`` crops + ``(N, K, M, M)`` attentions -> ``(N, H, W)``.

    Differentiable w.r.t. both inputs. Under autocast it runs in the autocast dtype (both
    inputs are cast to it) with fp32 accumulation; outside autocast both inputs must have
    the same dtype.
    """
    _check(crops, attentions, interp)
    if crops.dtype != attentions.dtype and not torch.is_autocast_enabled(crops.device.type):
        raise TypeError(
            f"blender: crops ({crops.dtype}) and attentions ({attentions.dtype}) must have the "
            "same dtype (or run under torch.autocast)"
        )
    if torch.onnx.is_in_onnx_export():
        # ONNX: standard operators; K is fixed by the model, the number of instances is not
        return _compose(crops, attentions, interp, int(attentions.shape[1]))
    ops = load_extension()
    return ops.blender(crops, attentions, interp)


def blender_composition(crops: Tensor, attentions: Tensor, interp: str = "bilinear") -> Tensor:
    """The blender written with PyTorch ops (interpolate + softmax + weighted sum)."""
    _check(crops, attentions, interp)
    if crops.shape[0] == 0:
        # interpolate rejects empty batches on some backends; keep the graph connected
        return crops.sum(dim=1) + attentions.sum() * 0
    return _compose(crops, attentions, interp, crops.shape[1])


def _compose(crops: Tensor, attentions: Tensor, interp: str, k: int) -> Tensor:
    kwargs = {"align_corners": False} if interp == "bilinear" else {}
    up = F.interpolate(attentions, size=crops.shape[-2:], mode=interp, **kwargs)
    if k == 1:
        return (crops.sigmoid() * up.sigmoid())[:, 0]
    return (crops * up.softmax(dim=1)).sum(dim=1)
