"""LazyConfig twin of sharpmask_R_50.yaml: SharpMask (stage 2), COCO: the reference refinement
modules (k = 32, schedule b, the authors' init) on the frozen stage-1 model of deepmask_R_50.py
(``train.init_checkpoint``), trained on mask samples only with the authors' plain SGD (no momentum,
no weight decay, no warm-up) at 1e-3, 1.2M iterations, x sqrt(0.1) at 200k / 320k.

    python tools/lazyconfig_train_net.py --config-file configs/SharpMask/sharpmask_R_50.py --num-gpus 8
"""
from detectron2.config import LazyCall as L

from sharpmask import SharpMaskRefinement

from ..common.schedules import multistep
from .deepmask_R_50 import EMBED_DIM, WINDOW, dataloader, model, optimizer, train  # noqa: F401

model.refinement = L(SharpMaskRefinement)(
    # the trunk's features
    channels={"conv1": 64, "res2": 256, "res3": 512, "res4": 1024},
    strides={"conv1": 2, "res2": 4, "res3": 8, "res4": 16},
    skip_features=["res4", "res3", "res2", "conv1"],
    topology="reference",
    init="auto",  # the authors' (Torch7's default)
    k=32,
    skip_dim=64,
    window=WINDOW,
    embed_dim=EMBED_DIM,
)
dataloader.train.mapper.sampler.mask_sample_fraction = 1.0  # stage 2 trains the refined mask only

optimizer.update(momentum=0.0, weight_decay=0.0)
optimizer.params.update(weight_decay_norm=0.0, weight_decay_bias=0.0, bias_lr_factor=1.0)
lr_multiplier = multistep(1200000, [200000, 320000], gamma=0.1 ** 0.5, warmup=0)
train.update(init_checkpoint="output/SharpMask/deepmask_R_50/model_final.pth",
             output_dir="./output/SharpMask/sharpmask_R_50")
