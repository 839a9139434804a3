"""LazyConfig twin of shapes_R_18.yaml: BlendMask on FCOS for the synthetic shapes data (slim R-18,
64-channel FPN P3-P7, FCOS head with GN towers, 4 bases of a BN ProtoNet at stride 8, 14x14
attentions blended at 56x56 by the fused op), with the shapes data, AdamW and schedule.

    python tools/lazyconfig_train_net.py --config-file configs/BlendMask/shapes_R_18.py
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from blendmask import BlendMask, Blender, FCOSHead, ProtoNet
from segzoo.modeling import fpn_with_top_levels, slim_resnet

from ..common.shapes import dataloader, lr_multiplier, optimizer, train  # noqa: F401  (1,000 iterations)

CHANNELS = 64
LEVELS = {"p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}  # FPN output -> stride
NUM_CLASSES = 5

model = L(BlendMask)(
    backbone=L(fpn_with_top_levels)(
        bottom_up=L(slim_resnet)(depth=18, stem_out_channels=32, res2_out_channels=32, norm="BN",
                                 out_features=["res3", "res4", "res5"]),
        in_features=["res3", "res4", "res5"],
        out_channels=CHANNELS,
        top_levels=2,  # P6, P7 from P5 (AdelaiDet's FCOS)
        top_in_feature="p5",
    ),
    head=L(FCOSHead)(
        input_shape=[ShapeSpec(channels=CHANNELS, stride=s) for s in LEVELS.values()],
        num_classes=NUM_CLASSES,
        norm="GN",
        use_scale=False,
    ),
    head_in_features=list(LEVELS),
    num_classes=NUM_CLASSES,
    sizes_of_interest=[64, 128, 256, 512],
    center_sampling_radius=1.5,
    post_nms_topk_test=50,
    nms_thresh=0.6,
    thresh_with_ctr=True,
    basis_module=L(ProtoNet)(
        input_shape={k: ShapeSpec(channels=CHANNELS, stride=s) for k, s in LEVELS.items()},
        in_features=["p3", "p4", "p5"],
        num_bases=4,
        planes=CHANNELS,
        num_convs=3,
        norm="BN",
        loss_on=True,
        num_classes=NUM_CLASSES,
        loss_weight=0.3,
        common_stride=8,
    ),
    blender=L(Blender)(
        num_bases=4,
        attn_size=14,
        bottom_resolution=56,
        interp="bilinear",
        pooler_type="ROIAlignV2",
        sampling_ratio=1,
        pooler_scale=1.0 / 4,  # the inverse stride of the bases (ProtoNet upsamples its stride-8 tower x2)
    ),
    pixel_mean=[128.0, 128.0, 128.0],
    pixel_std=[64.0, 64.0, 64.0],
    input_format="BGR",
)

train.update(output_dir="./output/BlendMask/shapes_R_18")
