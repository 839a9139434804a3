"""Mask R-CNN with the RoI-op family of its paper (Table 2c): RoIPool, RoIWarp, RoIAlign avg/max.

Importing registers ``AlignFamilyROIHeads`` (Detectron2's ``StandardROIHeads`` whose box and
mask poolers are segzoo's :class:`segzoo.modeling.ROIPooler`), so

    MODEL.ROI_HEADS.NAME: "AlignFamilyROIHeads"
    MODEL.ROI_BOX_HEAD.POOLER_TYPE: "ROIWarp"      # ROIAlign | ROIAlignV2 | ROIPool | ROIAlignMax | ROIWarp
    MODEL.ROI_MASK_HEAD.POOLER_TYPE: "ROIAlignMax"

chooses the op of each head from yaml.
"""
import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)

from .roi_heads import AlignFamilyROIHeads  # noqa: E402
from .plugin import PLUGIN  # noqa: E402  (the entry point's target)

__all__ = ["PLUGIN", "AlignFamilyROIHeads"]
