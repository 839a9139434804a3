"""Shared modeling pieces (registered on import)."""
from .poolers import POOLER_TYPES, ROIPooler  # noqa: F401
from .layers import conv_block, conv_tower, instance_bitmasks, norm_layer  # noqa: F401
from .distributed import reduce_mean, reduce_sum  # noqa: F401
from .retinanet import NormRetinaNet, NormRetinaNetHead  # noqa: F401  (registers NormRetinaNet)
from .backbone import (  # noqa: F401
    LastLevelP6,
    build_slim_resnet_backbone,
    build_slim_resnet_fpn,
    build_slim_resnet_fpn_backbone,
    build_slim_resnet_fpn_p67_backbone,
    fpn_with_top_levels,
    slim_resnet,
)

__all__ = [
    "LastLevelP6",
    "NormRetinaNet",
    "NormRetinaNetHead",
    "POOLER_TYPES",
    "ROIPooler",
    "build_slim_resnet_backbone",
    "build_slim_resnet_fpn",
    "build_slim_resnet_fpn_backbone",
    "build_slim_resnet_fpn_p67_backbone",
    "conv_block",
    "conv_tower",
    "fpn_with_top_levels",
    "instance_bitmasks",
    "norm_layer",
    "reduce_mean",
    "reduce_sum",
    "slim_resnet",
]
