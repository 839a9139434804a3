"""LazyConfig twin of deepmask_R_50.yaml: DeepMask-ours (stage 1), COCO, the authors' Torch7 defaults:
ResNet-50 trunk (MSRA ImageNet weights, frozen BN, nothing else frozen) through res4, 1x1 -> 128,
10x10 "fc" -> 512, head C; 160-px windows + 16 px context, canonical size 92 px, reflect padding;
32 patches per batch (8 images x 4); dense inference over scales 2^-2.5 .. 2^0.5 of the original
image, top 1000 windows, masks at 0.2; segment-proposal AR. The authors' step size: summed
losses, SGD at 1e-3 (momentum 0.9, weight decay 5e-4), 1.2M iterations, x sqrt(0.1) at 200k / 480k.

    python tools/lazyconfig_train_net.py --config-file configs/SharpMask/deepmask_R_50.py --num-gpus 8
"""
import torch

from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.solver.build import get_default_optimizer_params

from segzoo.data import CheckedDatasetMapper
from sharpmask import (DeepMaskHead, DeepMaskTrunk, PatchGeometry, PatchSampler, SegmentProposalEvaluator, SharpMask,
                       SharpMaskDatasetMapper)

from ..common.schedules import multistep

WINDOW, CONTEXT, EMBED_DIM = 160, 16, 512
MEAN = [103.530, 116.280, 123.675]
geometry = L(PatchGeometry)(window=WINDOW, context=CONTEXT, canonical=92.0)

model = L(SharpMask)(
    trunk=L(DeepMaskTrunk)(
        resnet=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True, norm="FrozenBN"),
            out_features=["res2", "res3", "res4"],  # res2 / res3 feed stage 2's refinement
            freeze_at=0,
        ),
        trunk_feature="res4",
        reduce_dim=128,
        embed_dim=EMBED_DIM,
        window=WINDOW,
        context=CONTEXT,
        reflect_padding=True,
    ),
    head=L(DeepMaskHead)(embed_dim=EMBED_DIM, mask_size=56, score_hidden_dim=1024, score_dropout=0.5),
    refinement=None,  # stage 1
    geometry=geometry,
    pixel_mean=MEAN,
    pixel_std=[1.0, 1.0, 1.0],
    score_loss_weight=1 / 32,
    coarse_loss_size=112,
    scales=[2 ** -2.5, 2 ** -2.0, 2 ** -1.5, 2 ** -1.0, 2 ** -0.5, 2 ** 0.0, 2 ** 0.5],
    top_n=1000,
    mask_thresh=0.2,
    nms_thresh=1.0,
)

dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="coco_2017_train", filter_empty=False),
        mapper=L(SharpMaskDatasetMapper)(
            sampler=L(PatchSampler)(geometry=geometry, samples_per_image=4, mask_sample_fraction=0.5),
            image_format="BGR",
            fill=MEAN,
            mask_datasets=["coco_2017_train"],  # category-balanced mask samples, as the authors
            seed="${....train.seed}",
        ),
        total_batch_size=8,  # x 4 patches = the authors' 32
        aspect_ratio_grouping=False,
        num_workers=4,
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False),
        # no resize: the pyramid's scales apply to the original image
        mapper=L(CheckedDatasetMapper)(is_train=False, augmentations=[], image_format="BGR"),
        num_workers=4,
    ),
    evaluator=L(SegmentProposalEvaluator)(dataset_name="${..test.dataset.names}", output_dir="${...train.output_dir}"),
)

optimizer = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),  # model is set by the trainer
    lr=0.001,
    momentum=0.9,
    weight_decay=0.0005,
)
lr_multiplier = multistep(1200000, [200000, 480000], gamma=0.1 ** 0.5, warmup=1000)

train = dict(
    output_dir="./output/SharpMask/deepmask_R_50",
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    seed=-1,
    max_iter=1200000,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=10000, max_to_keep=100),
    eval_period=0,  # evaluate at the end
    log_period=20,
    device="cuda",
)
