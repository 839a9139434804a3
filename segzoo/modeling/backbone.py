"""Slim ResNet backbones for small-data / CPU configs.

Detectron2's ``build_resnet_backbone`` insists on ``RES2_OUT_CHANNELS = 64`` for the
BasicBlock depths (R18/R34). The builders here accept any width (e.g. 32), otherwise
building exactly the same network from Detectron2's own ``ResNet``, ``BasicStem`` and
``BasicBlock``, and put Detectron2's ``FPN`` on top.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, ResNet, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem

__all__ = [
    "build_slim_resnet_backbone",
    "build_slim_resnet_fpn_backbone",
    "build_slim_resnet_fpn_p67_backbone",
]


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
    norm = cfg.MODEL.RESNETS.NORM
    stem = BasicStem(input_shape.channels, cfg.MODEL.RESNETS.STEM_OUT_CHANNELS, norm=norm)
    blocks_per_stage = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth]
    in_channels = cfg.MODEL.RESNETS.STEM_OUT_CHANNELS
    out_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
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
    return ResNet(
        stem, stages, out_features=cfg.MODEL.RESNETS.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT
    )


def _fpn(cfg, bottom_up, top_block):
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_slim_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """Slim ResNet + FPN with P6 from max-pooling P5 (as Mask R-CNN's FPN)."""
    return _fpn(cfg, build_slim_resnet_backbone(cfg, input_shape), LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_slim_resnet_fpn_p67_backbone(cfg, input_shape: ShapeSpec):
    """Slim ResNet + FPN with P6/P7 computed from P5 (as FCOS / RetinaNet / RDSNet)."""
    bottom_up = build_slim_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return _fpn(cfg, bottom_up, LastLevelP6P7(out_channels, out_channels, in_feature="p5"))
