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
