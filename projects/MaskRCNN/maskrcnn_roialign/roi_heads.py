"""StandardROIHeads whose box / mask poolers come from segzoo's RoIAlign family."""
import torch
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads

from segzoo.modeling.poolers import ROIPooler

__all__ = ["AlignFamilyROIHeads"]

_D2_POOLER_TYPES = {"ROIAlign", "ROIAlignV2", "ROIPool", "ROIAlignRotated"}


def _d2_buildable(cfg, head):
    """A cfg copy whose pooler type Detectron2's own builder accepts (ours is swapped in after)."""
    if cfg.MODEL[head].POOLER_TYPE in _D2_POOLER_TYPES or not cfg.MODEL[head].POOLER_TYPE:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL[head].POOLER_TYPE = "ROIAlignV2"
    return cfg


def _family_pooler(cfg, head, input_shape):
    in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
    h = cfg.MODEL[head]
    return ROIPooler(
        output_size=h.POOLER_RESOLUTION,
        scales=tuple(1.0 / input_shape[k].stride for k in in_features),
        sampling_ratio=h.POOLER_SAMPLING_RATIO,
        pooler_type=h.POOLER_TYPE,
    )


@ROI_HEADS_REGISTRY.register()
class AlignFamilyROIHeads(StandardROIHeads):
    """Detectron2's StandardROIHeads; POOLER_TYPE of the box and mask heads may be any of
    ``segzoo.modeling.POOLER_TYPES`` and is served by segzoo's op."""

    # constants for scripting, as Detectron2's export code declares them for StandardROIHeads
    mask_on: torch.jit.Final[bool]
    keypoint_on: torch.jit.Final[bool]

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(_d2_buildable(cfg, "ROI_BOX_HEAD"), input_shape)
        ret["box_pooler"] = _family_pooler(cfg, "ROI_BOX_HEAD", input_shape)
        return ret

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        ret = super()._init_mask_head(_d2_buildable(cfg, "ROI_MASK_HEAD"), input_shape)
        if ret.get("mask_pooler") is not None:
            ret["mask_pooler"] = _family_pooler(cfg, "ROI_MASK_HEAD", input_shape)
        return ret
