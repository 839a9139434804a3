"""LazyConfig twin of shapes_deepmask_R_18.yaml: DeepMask-ours (stage 1) on the synthetic shapes
data: slim R-18 trunk (32-wide stem and res2) from scratch, the paper's 160-px window, 16 px
context and canonical size 92 px; 8 patches per image sampled by SharpMaskDatasetMapper (mask
samples category-balanced over the training set), dense inference over scales 2^-0.5 .. 2^2,
top 1000 windows, segment-proposal AR; AdamW, 800 iterations.

    python tools/lazyconfig_train_net.py --config-file configs/SharpMask/shapes_deepmask_R_18.py
"""
from detectron2.config import LazyCall as L

from segzoo.modeling import slim_resnet
from sharpmask import PatchSampler, SegmentProposalEvaluator, SharpMaskDatasetMapper

from ..common.shapes import dataloader, optimizer, schedule, train  # noqa: F401
from .deepmask_R_50 import CONTEXT, EMBED_DIM, WINDOW, geometry, model  # noqa: F401  (the architecture)

# res2 / res3 feed stage 2's refinement
model.trunk.resnet = L(slim_resnet)(depth=18, stem_out_channels=32, res2_out_channels=32, norm="BN",
                                    out_features=["res2", "res3", "res4"])
model.pixel_mean = [128.0, 128.0, 128.0]
model.pixel_std = [64.0, 64.0, 64.0]
model.score_loss_weight = 0.25
model.scales = [0.7071, 1.0, 1.4142, 2.0, 2.8284, 4.0]  # objects here are 10-150 px: the pyramid goes up

dataloader.train.dataset.filter_empty = False  # empty images still give negative score samples
dataloader.train.aspect_ratio_grouping = False  # patches are square
dataloader.train.mapper = L(SharpMaskDatasetMapper)(
    sampler=L(PatchSampler)(
        geometry=geometry,
        samples_per_image=8,
        mask_sample_fraction=0.5,
        scale_jitter=0.25,
        shift_jitter=16.0,
        neg_scale_range=[-1.0, 2.5],
        neg_shift_margin=32.0,
        neg_scale_margin=1.0,
        min_area=30.0,
        min_side=5.0,
        flip_prob=0.5,
    ),
    image_format="BGR",
    fill=[128.0, 128.0, 128.0],  # = pixel_mean
    mask_datasets=["shapes_train"],  # category-balanced mask samples over these
    seed="${....train.seed}",
)
dataloader.evaluator = L(SegmentProposalEvaluator)(
    dataset_name="${..test.dataset.names}", output_dir="${...train.output_dir}"
)

lr_multiplier = schedule(800)
train.update(max_iter=800, eval_period=800, output_dir="./output/SharpMask/shapes_deepmask_R_18")
