"""Correlation of object kernels with pixel embeddings, and the box crops around them."""
from typing import Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["correlate", "crop_masks", "expand_boxes", "pixel_ranges", "sample_maps", "window_masks"]


def correlate(kernels: Tensor, embeddings: Tensor) -> Tensor:
    """Per-instance 2-class mask logits of one image.

    Args:
        kernels: (N, 2*d) object representations, background kernel then foreground kernel.
        embeddings: (d, H, W) pixel embeddings.
    Returns:
        (N, 2, H, W) logits; softmax over dim 1, channel 1 = foreground.
    """
    d, h, w = embeddings.shape
    if kernels.dim() != 2 or kernels.shape[1] != 2 * d:
        raise ValueError(f"kernels must be (N, {2 * d}) for {d}-dim embeddings, got {tuple(kernels.shape)}")
    return (kernels.reshape(-1, d) @ embeddings.reshape(d, h * w)).reshape(-1, 2, h, w)


def expand_boxes(
    boxes: Tensor, factor: float, min_margin: float = 1.0, image_size: Tuple[int, int] = None
) -> Tensor:
    """(N, 4) XYXY boxes with each side moved out by max((factor - 1) / 2 * size, min_margin)
    (factor 1.5: 0.25 of the width left and right), clamped to ``image_size`` (h, w)."""
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    mx = ((x1 - x0) * (factor - 1) / 2).clamp(min=min_margin)
    my = ((y1 - y0) * (factor - 1) / 2).clamp(min=min_margin)
    out = torch.stack([x0 - mx, y0 - my, x1 + mx, y1 + my], dim=1)
    if image_size is not None:
        h, w = image_size
        out = torch.minimum(out.clamp(min=0), _vector((w, h, w, h), out))
    return out


def _vector(values, like: Tensor) -> Tensor:
    """A 1-D tensor of ``values`` (numbers, or 0-dim tensors when traced) like ``like``."""
    return torch.stack([torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in values])


def pixel_ranges(boxes: Tensor, stride: float, height: int, width: int) -> Tensor:
    """(N, 4) int64 half-open pixel ranges (x_lo, y_lo, x_hi, y_hi) of a ``stride`` grid whose
    pixel centres, (i + 0.5) * stride in image coordinates, lie inside each box; clipped to
    the (height, width) grid and never empty (a box between centres gets the nearest pixel)."""
    c = boxes / stride - 0.5
    lo = torch.ceil(c[:, :2])
    hi = torch.floor(c[:, 2:]) + 1
    empty = hi <= lo
    nearest = torch.round((c[:, :2] + c[:, 2:]) / 2)
    lo = torch.where(empty, nearest, lo)
    hi = torch.where(empty, nearest + 1, hi)
    size = _vector((width, height), boxes)
    lo = torch.minimum(lo.clamp(min=0), size - 1)
    hi = torch.maximum(hi.clamp(max=size), lo + 1)
    return torch.cat([lo, hi], dim=1).long()


def crop_masks(boxes: Tensor, height: int, width: int, stride: float = 1.0) -> Tensor:
    """(N, height, width) bool: True on the pixels of :func:`pixel_ranges`."""
    return window_masks(pixel_ranges(boxes, stride, height, width), height, width)


def window_masks(windows: Tensor, height: int, width: int) -> Tensor:
    """(N, height, width) bool: True inside each (N, 4) int64 pixel range x_lo, y_lo, x_hi, y_hi."""
    xs = torch.arange(width, device=windows.device)
    ys = torch.arange(height, device=windows.device)
    in_x = (xs[None] >= windows[:, 0:1]) & (xs[None] < windows[:, 2:3])
    in_y = (ys[None] >= windows[:, 1:2]) & (ys[None] < windows[:, 3:4])
    return in_y[:, :, None] & in_x[:, None, :]


def sample_maps(
    maps: Tensor, out_size: Tuple[int, int], scale: Tuple[float, float], stride: float, origins: Tensor = None
) -> Tensor:
    """Bilinearly resample (N, h, w) maps of a ``stride`` grid over the input image to an
    (H, W) output grid, output pixel (x, y) sitting at ((x + 0.5) * scale_x, (y + 0.5) * scale_y)
    in input coordinates (``scale`` = input size / output size, per axis). With scale 1 this is
    ``F.interpolate(scale_factor=stride, mode="bilinear", align_corners=False)``.
    ``origins`` (N, 2) = (x0, y0) per map: sample only the window of output pixels
    [x0, x0 + W) x [y0, y0 + H) of each map."""
    n, h, w = maps.shape
    H, W = out_size
    if n == 0 and not torch.jit.is_tracing():
        return maps.new_zeros((0, H, W))
    sy, sx = scale
    dev, dt = maps.device, maps.dtype
    if origins is None:
        origins = torch.zeros((n, 2), device=dev, dtype=dt)
    origins = origins.to(dt)
    u = (torch.arange(W, device=dev, dtype=dt)[None] + origins[:, :1] + 0.5) * sx / stride  # map pixels
    v = (torch.arange(H, device=dev, dtype=dt)[None] + origins[:, 1:] + 0.5) * sy / stride
    gx = (2 * u / w - 1)[:, None, :].expand(n, H, W)
    gy = (2 * v / h - 1)[:, :, None].expand(n, H, W)
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(
        maps[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )[:, 0]
