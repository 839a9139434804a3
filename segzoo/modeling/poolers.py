"""A drop-in for Detectron2's ``ROIPooler`` served by segzoo's RoIAlign-family op.

``pooler_type`` accepts Detectron2's names with their exact semantics plus two more:

==================  ==============================================================
``"ROIAlign"``      RoIAlign avg, unaligned (Detectron2 / torchvision ``aligned=False``)
``"ROIAlignV2"``    RoIAlign avg, aligned (half-pixel shift)
``"ROIPool"``       RoIPool: quantised box and bins, max
``"ROIAlignMax"``   RoIAlign max over the bilinear samples, aligned
``"ROIWarp"``       RoIWarp: box rounded to the feature grid, bilinear avg
==================  ==============================================================

Level assignment, box conversion and the forward pass are Detectron2's own (inherited).
"""
from typing import Dict, Tuple

import torch
from detectron2.modeling.poolers import ROIPooler as _D2ROIPooler
from torch import Tensor, nn

from ..ops import ROIAlignFamily
from ..ops.roi_align_family import roi_align_family

__all__ = ["ROIPooler", "POOLER_TYPES"]

# pooler_type -> (mode, aligned)
POOLER_TYPES: Dict[str, Tuple[str, bool]] = {
    "ROIAlign": ("avg", False),
    "ROIAlignV2": ("avg", True),
    "ROIPool": ("pool", False),
    "ROIAlignMax": ("max", True),
    "ROIWarp": ("warp", False),
}


class _LevelPooler(ROIAlignFamily):
    """One FPN level; boxes come from Detectron2's ``convert_boxes_to_pooler_format`` whose
    batch indices are valid by construction, so the per-call index check is skipped."""

    def forward(self, input: Tensor, boxes: Tensor) -> Tensor:
        if torch.jit.is_scripting():  # the op itself (the wrapper's checks are Python)
            return torch.ops.segzoo.roi_align_family(
                input, boxes, self.spatial_scale, self.output_size[0], self.output_size[1], self.sampling_ratio,
                self.aligned, self.mode,
            )[0]
        return roi_align_family(
            input, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned,
            self.mode, check_batch_index=False,
        )


class ROIPooler(_D2ROIPooler):
    """Same constructor and call as ``detectron2.modeling.poolers.ROIPooler``."""

    def __init__(
        self,
        output_size,
        scales,
        sampling_ratio,
        pooler_type,
        canonical_box_size=224,
        canonical_level=4,
    ):
        if pooler_type not in POOLER_TYPES:
            raise ValueError(
                f"Unknown pooler type: {pooler_type!r}; segzoo's ROIPooler supports "
                f"{sorted(POOLER_TYPES)} (use Detectron2's ROIPooler for ROIAlignRotated)"
            )
        # Detectron2 validates sizes/scales and computes the level range ...
        super().__init__(
            output_size,
            scales=scales,
            sampling_ratio=sampling_ratio,
            pooler_type="ROIAlignV2",
            canonical_box_size=canonical_box_size,
            canonical_level=canonical_level,
        )
        # ... and we serve every level with our op.
        mode, aligned = POOLER_TYPES[pooler_type]
        self.pooler_type = pooler_type
        self.level_poolers = nn.ModuleList(
            _LevelPooler(self.output_size, spatial_scale=scale, sampling_ratio=sampling_ratio,
                         aligned=aligned, mode=mode)
            for scale in scales
        )
