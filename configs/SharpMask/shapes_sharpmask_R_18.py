"""LazyConfig twin of shapes_sharpmask_R_18.yaml: SharpMask (stage 2) on the synthetic shapes
data: the reference refinement modules (k = 32, schedule b, He init under AdamW) on the frozen
stage-1 model of shapes_deepmask_R_18.py (its checkpoint is ``train.init_checkpoint``), trained on
mask samples only; 600 iterations. ``model.refine=False`` gives the coarse masks of the same model.

    python tools/lazyconfig_train_net.py --config-file configs/SharpMask/shapes_sharpmask_R_18.py
"""
from detectron2.config import LazyCall as L

from sharpmask import SharpMaskRefinement

from ..common.schedules import multistep
from .shapes_deepmask_R_18 import EMBED_DIM, WINDOW, dataloader, model, optimizer, train  # noqa: F401

model.refinement = L(SharpMaskRefinement)(
    # the trunk's features (slim R-18: 32-wide stem and res2)
    channels={"conv1": 32, "res2": 32, "res3": 64, "res4": 128},
    strides={"conv1": 2, "res2": 4, "res3": 8, "res4": 16},
    skip_features=["res4", "res3", "res2", "conv1"],
    topology="reference",
    init="he",  # the shapes configs' choice under AdamW (see shapes_sharpmask_R_18.yaml)
    k=32,
    skip_dim=64,
    window=WINDOW,
    embed_dim=EMBED_DIM,
)
dataloader.train.mapper.sampler.mask_sample_fraction = 1.0  # stage 2 trains the refined mask only

lr_multiplier = multistep(600, [450, 550], warmup=50)
train.update(max_iter=600, eval_period=600, init_checkpoint="output/SharpMask/shapes_deepmask_R_18/model_final.pth",
             output_dir="./output/SharpMask/shapes_sharpmask_R_18")
