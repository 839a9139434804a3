"""LazyConfig twin of shapes_R_18_FPN_pooler_ROIAlignV2.yaml: the small Mask R-CNN of the shapes
data (slim R-18, 64-channel FPN, light heads) whose box and mask heads pool through segzoo's
RoIAlign-family op (``pooler_type`` any of ROIPool, ROIWarp, ROIAlign, ROIAlignMax, ROIAlignV2).

    python tools/lazyconfig_train_net.py --config-file configs/MaskRCNN/shapes_R_18_FPN_pooler_ROIAlignV2.py
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch import GeneralizedRCNN
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import (
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    MaskRCNNConvUpsampleHead,
    StandardROIHeads,
)

from segzoo.modeling import ROIPooler, fpn_with_top_levels, slim_resnet

from ..common.shapes import dataloader, optimizer, schedule, train  # noqa: F401

POOLER = "ROIAlignV2"
FEATURES = ["p2", "p3", "p4", "p5"]
SCALES = (1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32)

model = L(GeneralizedRCNN)(
    backbone=L(fpn_with_top_levels)(
        bottom_up=L(slim_resnet)(depth=18, stem_out_channels=32, res2_out_channels=32, norm="BN"),
        in_features=["res2", "res3", "res4", "res5"],
        out_channels=64,
        top_levels=1,
        p6="max_pool",
    ),
    proposal_generator=L(RPN)(
        in_features=FEATURES + ["p6"],
        head=L(StandardRPNHead)(in_channels=64, num_anchors=3),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[16], [32], [64], [128], [256]], aspect_ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64], offset=0.0
        ),
        anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(1000, 500),
        post_nms_topk=(500, 300),
        nms_thresh=0.7,
    ),
    roi_heads=L(StandardROIHeads)(
        num_classes=5,
        batch_size_per_image=128,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),
        box_in_features=FEATURES,
        box_pooler=L(ROIPooler)(output_size=7, scales=SCALES, sampling_ratio=0, pooler_type=POOLER),
        box_head=L(FastRCNNConvFCHead)(input_shape=ShapeSpec(channels=64, height=7, width=7), conv_dims=[],
                                       fc_dims=[256, 256]),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=ShapeSpec(channels=256),
            test_score_thresh=0.05,
            test_topk_per_image=50,
            box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
            num_classes="${..num_classes}",
        ),
        mask_in_features=FEATURES,
        mask_pooler=L(ROIPooler)(output_size=14, scales=SCALES, sampling_ratio=0, pooler_type=POOLER),
        mask_head=L(MaskRCNNConvUpsampleHead)(
            input_shape=ShapeSpec(channels=64, width=14, height=14),
            num_classes="${..num_classes}",
            conv_dims=[64, 64, 64],  # 2 convs + the deconv
        ),
    ),
    pixel_mean=[128.0, 128.0, 128.0],
    pixel_std=[64.0, 64.0, 64.0],
    input_format="BGR",
)

train.update(max_iter=500, output_dir="./output/MaskRCNN/shapes_R_18_FPN_pooler_ROIAlignV2", eval_period=500)
train.checkpointer.update(period=250)
lr_multiplier = schedule(500)
