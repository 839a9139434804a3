"""LazyConfig twin of shapes_R_18.yaml: RDSNet on the synthetic shapes data: the RetinaNet of
shapes_RetinaNet_R_18.yaml (slim R-18, 64-channel FPN P3-P7 with P6/P7 from P5, 3 scales x 3
ratios of anchors from 16 px) with the authors' GN cls / box towers, the object-representation
tower (d = 32) and a 64-channel pixel stream at stride 4; the shapes data and schedule, AdamW with
the gradient norm clipped to 35 over the whole model.

    python tools/lazyconfig_train_net.py --config-file configs/RDSNet/shapes_R_18.py
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher

from rdsnet import MBRM, PixelStream, RDSNet, RDSNetHead
from segzoo.engine.optim import full_model_clipped
from segzoo.modeling import fpn_with_top_levels, slim_resnet

from ..common.shapes import dataloader, lr_multiplier, optimizer, train  # noqa: F401  (1,000 iterations)

CHANNELS = 64
LEVELS = {"p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}  # FPN output -> stride
NUM_CLASSES = 5
REPR_DIM = 32

model = L(RDSNet)(
    backbone=L(fpn_with_top_levels)(
        bottom_up=L(slim_resnet)(depth=18, stem_out_channels=32, res2_out_channels=32, norm="BN",
                                 out_features=["res3", "res4", "res5"]),
        in_features=["res3", "res4", "res5"],
        out_channels=CHANNELS,
        top_levels=2,  # P6, P7 from P5
        top_in_feature="p5",
    ),
    head=L(RDSNetHead)(
        input_shape=[ShapeSpec(channels=CHANNELS, stride=s) for s in LEVELS.values()],
        num_classes=NUM_CLASSES,
        conv_dims=[CHANNELS] * 4,
        norm="GN",
        prior_prob=0.01,
        num_anchors=9,
        repr_dim=REPR_DIM,
        repr_num_convs=4,
        repr_norm="GN",
    ),
    head_in_features=list(LEVELS),
    anchor_generator=L(DefaultAnchorGenerator)(
        # 3 scales per octave (rounded as in the yaml), octaves 16..256 (objects here are 10-150 px)
        sizes=[[16, 20.16, 25.40], [32, 40.32, 50.80], [64, 80.63, 101.59], [128, 161.27, 203.19],
               [256, 322.54, 406.37]],
        aspect_ratios=[0.5, 1.0, 2.0],
        strides=list(LEVELS.values()),
        offset=0.0,
    ),
    box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
    anchor_matcher=L(Matcher)(thresholds=[0.4, 0.5], labels=[0, -1, 1], allow_low_quality_matches=True),
    num_classes=NUM_CLASSES,
    focal_loss_alpha=0.25,
    focal_loss_gamma=2.0,
    smooth_l1_beta=0.0,  # Base-RetinaNet.yaml
    max_detections_per_image=50,
    pixel_mean=[128.0, 128.0, 128.0],
    pixel_std=[64.0, 64.0, 64.0],
    input_format="BGR",
    pixel_stream=L(PixelStream)(
        input_shape={k: ShapeSpec(channels=CHANNELS, stride=s) for k, s in LEVELS.items()},
        in_features=["p3", "p4", "p5"],
        conv_dim=CHANNELS,
        norm="GN",
        repr_dim=REPR_DIM,
    ),
    mbrm=L(MBRM)(half_size=4, gamma=0.05, min_sigma=1.0, kernel="authors", prior_cutoff=0.0044),
    min_mask_area=16,  # objects here are 10-150 px at 256 px input (COCO's 100 px floor is for ~800 px)
)

optimizer._target_ = full_model_clipped
optimizer.optimizer = "torch.optim.AdamW"
optimizer.max_norm = 35.0

train.update(output_dir="./output/RDSNet/shapes_R_18")
