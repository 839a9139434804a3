"""Slim ResNet backbones for small-data / CPU configs, and the one ResNet-FPN builder.

Detectron2's ``build_resnet_backbone`` insists on ``RES2_OUT_CHANNELS = 64`` for the
BasicBlock depths (R18/R34). The builders here accept any width (e.g. 32), otherwise
building exactly the same network from Detectron2's own ``ResNet``, ``BasicStem`` and
``BasicBlock``, and put Detectron2's ``FPN`` on top.

:func:`build_slim_resnet_fpn` is the FPN builder; its ``top_levels`` (0, 1 or 2) are the extra
levels above the FPN's own: P6 by max-pooling P5 (Detectron2's ``LastLevelMaxPool``, as Mask
R-CNN) or by a stride-2 conv (:class:`LastLevelP6`, as AdelaiDet's FCOS with P3-P6), or
P6 / P7 by two stride-2 convs (Detectron2's ``LastLevelP6P7``, as RetinaNet / FCOS / RDSNet).
"""
from torch import nn

import fvcore.nn.weight_init as weight_init
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, ResNet, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem

__all__ = [
    "LastLevelP6",
    "TOP_LEVEL_P6_KINDS",
    "build_slim_resnet_backbone",
    "build_slim_resnet_fpn",
    "build_slim_resnet_fpn_backbone",
    "build_slim_resnet_fpn_p67_backbone",
    "fpn_with_top_levels",
    "slim_resnet",
]

# how a single extra level (top_levels=1) is computed
TOP_LEVEL_P6_KINDS = ("max_pool", "conv")


def slim_resnet(*, depth: int, stem_out_channels: int, res2_out_channels: int, norm="BN", in_channels: int = 3,
                out_features=("res2", "res3", "res4", "res5"), freeze_at: int = 0) -> ResNet:
    """A basic-block ResNet (R-18 / R-34) whose stem and res2 widths are free (Detectron2's builder
    fixes res2 at 64 for them): widths double per stage from ``res2_out_channels``. The
    config-free builder behind ``build_slim_resnet_backbone`` (and LazyConfig)."""
    if depth not in (18, 34):
        raise ValueError(f"slim ResNets are R-18 / R-34, got depth {depth}")
    stem = BasicStem(in_channels, stem_out_channels, norm=norm)
    blocks_per_stage = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth]
    in_channels, out_channels = stem_out_channels, res2_out_channels
    stages = []
    for idx, num_blocks in enumerate(blocks_per_stage):
        first_stride = 1 if idx == 0 else 2
        stages.append(
            ResNet.make_stage(
                block_class=BasicBlock,
                num_blocks=num_blocks,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=norm,
            )
        )
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=list(out_features), freeze_at=freeze_at)


@BACKBONE_REGISTRY.register()
def build_slim_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    depth = cfg.MODEL.RESNETS.DEPTH
    if depth not in (18, 34):
        # Bottleneck depths have no width restriction in Detectron2: use its builder.
        return build_resnet_backbone(cfg, input_shape)
    if cfg.MODEL.RESNETS.NUM_GROUPS != 1 or cfg.MODEL.RESNETS.RES5_DILATION != 1 or any(
        cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE
    ):
        raise ValueError("R18/R34 support neither groups, res5 dilation nor deformable conv")
    r = cfg.MODEL.RESNETS
    return slim_resnet(depth=depth, stem_out_channels=r.STEM_OUT_CHANNELS, res2_out_channels=r.RES2_OUT_CHANNELS,
                       norm=r.NORM, in_channels=input_shape.channels, out_features=r.OUT_FEATURES,
                       freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


class LastLevelP6(nn.Module):
    """One extra level: P6 = conv3x3/2(``in_feature``), c2-xavier initialised (AdelaiDet's)."""

    def __init__(self, in_channels, out_channels, in_feature="p5"):
        super().__init__()
        self.num_levels = 1
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        weight_init.c2_xavier_fill(self.p6)

    def forward(self, x):
        return [self.p6(x)]


def fpn_with_top_levels(bottom_up, *, in_features, out_channels: int, top_levels: int, p6: str = "max_pool",
                        top_in_feature: str = "p5", norm="", fuse_type: str = "sum") -> FPN:
    """Detectron2's ``FPN`` over ``bottom_up``'s ``in_features`` plus ``top_levels`` extra levels
    computed from ``top_in_feature`` (an FPN output such as "p5", or a bottom-up feature such as
    "res5"):

    - 0: none;
    - 1: P6, ``p6="max_pool"`` (Detectron2's ``LastLevelMaxPool``, from "p5" only) or
      ``p6="conv"`` (:class:`LastLevelP6`);
    - 2: P6 and P7 (Detectron2's ``LastLevelP6P7``).

    Raises ValueError for anything else (callers that read the value from a config key re-raise
    it naming their key). The config-free builder behind :func:`build_slim_resnet_fpn`."""
    if top_levels not in (0, 1, 2):
        raise ValueError(f"top_levels must be 0, 1 or 2, got {top_levels!r}")
    if p6 not in TOP_LEVEL_P6_KINDS:
        raise ValueError(f"p6 must be one of {TOP_LEVEL_P6_KINDS}, got {p6!r}")
    top_block = None
    if top_levels:
        if top_in_feature.startswith("p"):  # an FPN output
            in_channels = out_channels
        else:
            shapes = bottom_up.output_shape()
            if top_in_feature not in shapes:
                raise ValueError(f"top levels from {top_in_feature!r}: not a bottom-up output ({sorted(shapes)})")
            in_channels = shapes[top_in_feature].channels
        if top_levels == 2:
            top_block = LastLevelP6P7(in_channels, out_channels, in_feature=top_in_feature)
        elif p6 == "conv":
            top_block = LastLevelP6(in_channels, out_channels, in_feature=top_in_feature)
        elif top_in_feature == "p5":
            top_block = LastLevelMaxPool()
        else:
            raise ValueError(f"a max-pooled P6 comes from p5, got top_in_feature {top_in_feature!r}")
    return FPN(bottom_up=bottom_up, in_features=list(in_features), out_channels=out_channels, norm=norm,
               top_block=top_block, fuse_type=fuse_type)


def build_slim_resnet_fpn(
    cfg, input_shape: ShapeSpec, *, top_levels: int, p6: str = "max_pool", top_in_feature: str = "p5"
) -> FPN:
    """:func:`build_slim_resnet_backbone` + :func:`fpn_with_top_levels` over ``MODEL.FPN.*``."""
    f = cfg.MODEL.FPN
    return fpn_with_top_levels(build_slim_resnet_backbone(cfg, input_shape), in_features=f.IN_FEATURES,
                               out_channels=f.OUT_CHANNELS, top_levels=top_levels, p6=p6, top_in_feature=top_in_feature,
                               norm=f.NORM, fuse_type=f.FUSE_TYPE)


@BACKBONE_REGISTRY.register()
def build_slim_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """Slim ResNet + FPN with P6 from max-pooling P5 (as Mask R-CNN's FPN)."""
    return build_slim_resnet_fpn(cfg, input_shape, top_levels=1, p6="max_pool")


@BACKBONE_REGISTRY.register()
def build_slim_resnet_fpn_p67_backbone(cfg, input_shape: ShapeSpec):
    """Slim ResNet + FPN with P6/P7 computed from P5 (as FCOS / RetinaNet / RDSNet)."""
    return build_slim_resnet_fpn(cfg, input_shape, top_levels=2)
