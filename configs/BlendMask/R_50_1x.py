"""LazyConfig twin of R_50_1x.yaml: BlendMask on FCOS, COCO, AdelaiDet's R_50_1x (R-50 from the
MSRA ImageNet weights, 256-channel FPN P3-P7, FCOS head with GN towers, 4 bases of a SyncBN
ProtoNet, 14x14 attentions blended at 56x56), with Detectron2's COCO data, SGD and 1x schedule
(90k iterations of 16 images, base LR 0.01).

    python tools/lazyconfig_train_net.py --config-file configs/BlendMask/R_50_1x.py --num-gpus 8
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import BasicStem, ResNet

from blendmask import BlendMask, Blender, FCOSHead, ProtoNet
from segzoo.modeling import fpn_with_top_levels

CHANNELS = 256
LEVELS = {"p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}  # FPN output -> stride
NUM_CLASSES = 80

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper.instance_mask_format = "polygon"
optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.01
lr_multiplier = get_config("common/coco_schedule.py").lr_multiplier_1x
train = get_config("common/train.py").train
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "./output/BlendMask/R_50_1x"

model = L(BlendMask)(
    backbone=L(fpn_with_top_levels)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True, norm="FrozenBN"),
            out_features=["res3", "res4", "res5"],
            freeze_at=2,
        ),
        in_features=["res3", "res4", "res5"],
        out_channels=CHANNELS,
        top_levels=2,  # P6, P7 from P5 (AdelaiDet's FCOS)
        p6="conv",
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
    nms_thresh=0.6,
    thresh_with_ctr=True,
    basis_module=L(ProtoNet)(
        input_shape={k: ShapeSpec(channels=CHANNELS, stride=s) for k, s in LEVELS.items()},
        in_features=["p3", "p4", "p5"],
        num_bases=4,
        planes=128,
        num_convs=3,
        norm="SyncBN",
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
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)
