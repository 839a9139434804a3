"""The RoIAlign family: RoIAlign (avg / max), RoIWarp and RoIPool.

All modes take NCHW features and boxes as a ``(K, 5)`` tensor
``[batch_idx, x1, y1, x2, y2]`` (or a list of per-image ``(Ki, 4)`` tensors, as
torchvision accepts) in input-image coordinates, scaled by ``spatial_scale``.

=========  ==================================================================
mode       semantics
=========  ==================================================================
``avg``    RoIAlign (= ``torchvision.ops.roi_align``), ``aligned`` shifts by
           half a pixel (Detectron2's ``ROIAlignV2``)
``max``    RoIAlign with max instead of average over each bin's samples
``warp``   RoIWarp (MNC): box corners rounded to the feature grid
           (``round(coord * spatial_scale)``), then unaligned RoIAlign avg
``pool``   RoIPool (= ``torchvision.ops.roi_pool``): quantised box and bins, max
=========  ==================================================================

``sampling_ratio > 0`` samples that many points per bin side; ``<= 0`` uses
``ceil(roi_size / output_size)`` (adaptive). RoIPool ignores both
``sampling_ratio`` and ``aligned``; RoIWarp ignores ``aligned``.
"""
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._ext import load_extension

__all__ = [
    "ROI_MODES",
    "ROIAlignFamily",
    "roi_align_family",
    "roi_align",
    "roi_align_max",
    "roi_warp",
    "roi_pool",
    "roi_align_max_composition",
]

# Pooling modes, passed by name to the op (``str mode`` in its schema).
ROI_MODES = ("avg", "max", "warp", "pool")

_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

BoxesLike = Union[Tensor, Sequence[Tensor]]


def _pair(size) -> Tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"output_size must be a positive int or (h, w) pair, got {size}")
    return size


def _boxes_to_rois(boxes: BoxesLike, input: Tensor) -> Tensor:
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise ValueError(
                f"boxes must be a (K, 5) tensor [batch_idx, x1, y1, x2, y2] or a list of "
                f"(Ki, 4) tensors, got a tensor of shape {tuple(boxes.shape)}"
            )
        return boxes
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"boxes must be a Tensor or a list of Tensors, got {type(boxes).__name__}")
    rois: List[Tensor] = []
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor) or b.dim() != 2 or b.size(1) != 4:
            shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
            raise ValueError(f"boxes[{i}] must be a (Ki, 4) tensor, got {shape}")
        rois.append(torch.cat([torch.full_like(b[:, :1], i), b], dim=1))
    if not rois:
        return input.new_zeros((0, 5))
    return torch.cat(rois, dim=0)


def _check(input: Tensor, rois: Tensor, check_batch_index: bool) -> None:
    if not isinstance(input, Tensor) or input.dim() != 4:
        shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise ValueError(f"input must be a 4-D (N, C, H, W) tensor, got {shape}")
    if input.device != rois.device:
        raise ValueError(
            f"input and boxes must be on the same device, got {input.device} and {rois.device}"
        )
    autocast = torch.is_autocast_enabled(input.device.type)
    # under autocast the op computes in fp32 (see csrc/ops/autocast), so half types are fine
    allowed = _CUDA_DTYPES if (input.is_cuda or autocast) else _CPU_DTYPES
    if input.dtype not in allowed:
        raise TypeError(
            f"input dtype {input.dtype} is not supported on {input.device.type} "
            f"(supported: {', '.join(str(d) for d in allowed)})"
        )
    if rois.dtype != input.dtype and not autocast:
        raise TypeError(
            f"boxes must have the same dtype as input, got {rois.dtype} and {input.dtype}"
        )
    if check_batch_index and rois.numel() > 0:
        idx = rois[:, 0]
        lo, hi = float(idx.min()), float(idx.max())
        if lo < 0 or hi > input.size(0) - 1 or not torch.equal(idx, idx.floor()):
            raise IndexError(
                f"boxes[:, 0] must hold integer batch indices in [0, {input.size(0) - 1}], "
                f"got values in [{lo}, {hi}]"
            )


def roi_align_family(
    input: Tensor,
    boxes: BoxesLike,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    mode: str = "avg",
    check_batch_index: bool = True,
) -> Tensor:
    """Pool ``(K, C, *output_size)`` features for each box; see the module docstring."""
    if mode not in ROI_MODES:
        raise ValueError(f"mode must be one of {list(ROI_MODES)}, got {mode!r}")
    oh, ow = _pair(output_size)
    ops = load_extension()
    rois = _boxes_to_rois(boxes, input)
    if mode == "max" and sampling_ratio <= 0 and torch.onnx.is_in_onnx_export():
        # ONNX's RoiAlign has one sample grid for all boxes: compose the adaptive max instead
        return roi_align_max_composition(input, rois, (oh, ow), spatial_scale, aligned)
    _check(input, rois, check_batch_index)
    out, _ = ops.roi_align_family(
        input, rois, float(spatial_scale), oh, ow, int(sampling_ratio), bool(aligned), mode
    )
    return out


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """Average RoIAlign, same semantics as ``torchvision.ops.roi_align``."""
    return roi_align_family(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, "avg")


def roi_align_max(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True):
    """RoIAlign with max aggregation over the bilinear samples of each bin."""
    return roi_align_family(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, "max")


def roi_warp(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1):
    """RoIWarp: box quantised to the feature grid, then bilinear average sampling."""
    return roi_align_family(input, boxes, output_size, spatial_scale, sampling_ratio, False, "warp")


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """RoIPool, same semantics as ``torchvision.ops.roi_pool``."""
    return roi_align_family(input, boxes, output_size, spatial_scale, 0, False, "pool")


class ROIAlignFamily(nn.Module):
    """Module form of :func:`roi_align_family`."""

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, mode="avg"):
        super().__init__()
        if mode not in ROI_MODES:
            raise ValueError(f"mode must be one of {list(ROI_MODES)}, got {mode!r}")
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.mode = mode

    def forward(self, input: Tensor, boxes: BoxesLike) -> Tensor:
        return roi_align_family(
            input, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned, self.mode
        )

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode}, output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )


def roi_align_max_composition(input: Tensor, rois: Tensor, output_size, spatial_scale: float = 1.0,
                              aligned: bool = True) -> Tensor:
    """RoIAlign max with adaptive sampling (``ceil(roi_size / output_size)`` samples per bin
    side, per box), written with gather and elementwise ops so that it traces to standard
    ONNX operators with dynamic shapes.

    Every box is sampled on the grid of the largest one; sample indices past a box's own
    grid repeat its last sample, which leaves the max unchanged. Memory is
    ``K x C x (oh*S) x (ow*S)`` for the largest grid ``S``.
    """
    oh, ow = output_size
    c, h, w = input.shape[1:]
    dtype = input.dtype
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x1
    roi_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / oh
    bin_w = roi_w / ow
    grid_h = torch.ceil(bin_h)  # (K,); 0 for an empty box (aligned): the op outputs 0 there
    grid_w = torch.ceil(bin_w)
    empty = (grid_h <= 0) | (grid_w <= 0)
    grid_h = grid_h.clamp(min=1.0)
    grid_w = grid_w.clamp(min=1.0)
    one = torch.ones(1, dtype=dtype, device=input.device)  # keeps max() defined with no boxes
    sy = torch.arange(torch.cat([grid_h, one]).max().to(torch.int64), dtype=dtype, device=input.device)
    sx = torch.arange(torch.cat([grid_w, one]).max().to(torch.int64), dtype=dtype, device=input.device)
    iy = torch.minimum(sy[None, :], grid_h[:, None] - 1)  # (K, Sy), repeats past the own grid
    ix = torch.minimum(sx[None, :], grid_w[:, None] - 1)
    ph = torch.arange(oh, dtype=dtype, device=input.device)
    pw = torch.arange(ow, dtype=dtype, device=input.device)
    # (K, oh, Sy) and (K, ow, Sx), flattened to (K, oh*Sy) and (K, ow*Sx)
    y = y1[:, None, None] + ph[None, :, None] * bin_h[:, None, None] + (iy[:, None, :] + 0.5) * (bin_h / grid_h)[:, None, None]
    x = x1[:, None, None] + pw[None, :, None] * bin_w[:, None, None] + (ix[:, None, :] + 0.5) * (bin_w / grid_w)[:, None, None]
    y = y.flatten(1)
    x = x.flatten(1)

    def axis(v, size):
        outside = (v < -1.0) | (v > size)
        v = v.clamp(min=0.0)
        low = v.floor().clamp(max=size - 1)
        high = (low + 1).clamp(max=size - 1)
        v = torch.where(low >= size - 1, low, v)
        return low.to(torch.int64), high.to(torch.int64), v - low, outside

    yl, yh, ly, oy = axis(y, h)
    xl, xh, lx, ox = axis(x, w)
    fb = input.flatten(2).index_select(0, rois[:, 0].to(torch.int64))  # (K, C, H*W)

    def gather(yi, xi):
        idx = (yi[:, :, None] * w + xi[:, None, :]).flatten(1)  # (K, Ty*Tx)
        g = torch.gather(fb, 2, idx[:, None, :].expand(-1, c, -1))
        return g.unflatten(2, (yi.shape[1], xi.shape[1]))  # (K, C, Ty, Tx)

    hy, hx = (1 - ly)[:, None, :, None], (1 - lx)[:, None, None, :]
    ly, lx = ly[:, None, :, None], lx[:, None, None, :]
    val = hy * hx * gather(yl, xl) + hy * lx * gather(yl, xh) + ly * hx * gather(yh, xl) + ly * lx * gather(yh, xh)
    outside = (oy[:, :, None] | ox[:, None, :])[:, None]
    val = torch.where(outside, torch.zeros((), dtype=dtype), val)
    # (K, C, oh*Sy, ow*Sx) -> (K, C, oh, Sy, ow, Sx) -> max over the samples
    val = val.unflatten(3, (ow, sx.shape[0])).unflatten(2, (oh, sy.shape[0])).amax(dim=(3, 5))
    return torch.where(empty[:, None, None, None], torch.zeros((), dtype=dtype), val)
