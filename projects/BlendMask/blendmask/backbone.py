"""ResNet-FPN backbone of FCOS / BlendMask: P3-P5 from res3-res5, plus 0, 1 or 2 extra
levels (P6, P7) computed from P5 by stride-2 convs (``MODEL.FCOS.TOP_LEVELS``), as AdelaiDet
builds it: segzoo's :func:`~segzoo.modeling.build_slim_resnet_fpn`."""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from segzoo.errors import ConfigError
from segzoo.modeling import LastLevelP6, build_slim_resnet_fpn

__all__ = ["LastLevelP6", "build_fcos_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet (any depth; R18/R34 of any width) + FPN + ``MODEL.FCOS.TOP_LEVELS`` extra levels."""
    top_levels = cfg.MODEL.FCOS.TOP_LEVELS
    if top_levels not in (0, 1, 2):
        raise ConfigError(f"MODEL.FCOS.TOP_LEVELS must be 0, 1 or 2, got {top_levels}")
    return build_slim_resnet_fpn(cfg, input_shape, top_levels=top_levels, p6="conv", top_in_feature="p5")
