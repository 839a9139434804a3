"""LazyConfig pieces of the synthetic-shapes regime, the twins of the yaml ``shapes_*`` configs:
data (256 px, horizontal flips, bitmask instance masks), AdamW 1e-3 with weight decay 0.05, a
warm-up of 100 iterations then decays x0.1 at 75% / 90%, and Detectron2's ``train`` dict.

    from ..common.shapes import dataloader, optimizer, lr_multiplier, train, schedule
"""
import torch
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator
from detectron2.solver.build import get_default_optimizer_params

from segzoo import detectron2_has_ops  # (importing segzoo registers shapes_train / shapes_val)
from segzoo.data import CheckedDatasetMapper

from .schedules import multistep

SIZE = 256

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="shapes_train"),
    mapper=L(CheckedDatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(SIZE,), max_size=SIZE, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=True,
        instance_mask_format="bitmask",
    ),
    total_batch_size=4,
    num_workers=2,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="shapes_val", filter_empty=False),
    mapper=L(CheckedDatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=SIZE, max_size=SIZE)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=2,
)
dataloader.evaluator = L(COCOEvaluator)(
    dataset_name="${..test.dataset.names}",
    output_dir="${...train.output_dir}",
    use_fast_impl=detectron2_has_ops(),  # Detectron2's C++ COCOeval when it was compiled
)

optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),  # model is set by the trainer
    lr=1e-3,
    weight_decay=0.05,
    betas=(0.9, 0.999),
)


def schedule(max_iter: int, warmup: int = 100):
    """Detectron2's WarmupMultiStepLR of the yaml configs: linear warm-up from 0.001 over
    ``warmup`` iterations, x0.1 at 75% and 90% of ``max_iter``."""
    return multistep(max_iter, [max_iter * 0.75, max_iter * 0.9], warmup=warmup)


lr_multiplier = schedule(1000)

train = dict(
    output_dir="./output/shapes",
    init_checkpoint="",
    seed=-1,  # SEED of the yaml configs (read by Detectron2's default_setup; >= 0: seeded run)
    max_iter=1000,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=200, max_to_keep=100),
    eval_period=1000,
    log_period=20,
    device="cuda" if torch.cuda.is_available() else "cpu",
)
