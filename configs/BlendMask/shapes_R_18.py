"""LazyConfig twin of shapes_R_18.yaml: BlendMask on FCOS for the synthetic shapes data (slim R-18,
64-channel FPN P3-P7, FCOS head with GN towers, 4 bases of a BN ProtoNet at stride 8, 14x14
attentions blended at 56x56 by the fused op), with the shapes data, AdamW and schedule.

    python tools/lazyconfig_train_net.py --config-file configs/BlendMask/shapes_R_18.py
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from segzoo.modeling import slim_resnet

from ..common.shapes import dataloader, lr_multiplier, optimizer, train  # noqa: F401  (1,000 iterations)
from .R_50_1x import LEVELS, model  # noqa: F401  (the architecture, AdelaiDet's)

CHANNELS = 64
NUM_CLASSES = 5

model.backbone.bottom_up = L(slim_resnet)(depth=18, stem_out_channels=32, res2_out_channels=32, norm="BN",
                                          out_features=["res3", "res4", "res5"])
model.backbone.out_channels = CHANNELS
model.head.input_shape = [ShapeSpec(channels=CHANNELS, stride=s) for s in LEVELS.values()]
model.head.num_classes = NUM_CLASSES
model.num_classes = NUM_CLASSES
model.post_nms_topk_test = 50
model.basis_module.update(
    input_shape={k: ShapeSpec(channels=CHANNELS, stride=s) for k, s in LEVELS.items()},
    planes=CHANNELS,
    norm="BN",
    num_classes=NUM_CLASSES,
)
model.pixel_mean = [128.0, 128.0, 128.0]
model.pixel_std = [64.0, 64.0, 64.0]

train.update(output_dir="./output/BlendMask/shapes_R_18")
