"""DeepMask / SharpMask step size as the authors' code: losses summed over samples, the COCO schedules
(1.2M iterations of 32 patches) and plain SGD in stage 2."""
import math

import pytest
import torch

from model_inputs import config, model_from

from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler

from segzoo.engine.optim import build_optimizer

DEEPMASK = "configs/SharpMask/shapes_deepmask_R_18.yaml"
SHARPMASK = "configs/SharpMask/shapes_sharpmask_R_18.yaml"
COCO_DEEPMASK = "configs/SharpMask/deepmask_R_50.yaml"
COCO_SHARPMASK = "configs/SharpMask/sharpmask_R_50.yaml"
LN2 = math.log(2.0)


def _patch_batch(n, n_mask, seed=0):
    g = torch.Generator().manual_seed(seed)
    patches = torch.randn(n, 3, 192, 192, generator=g)
    masks = (torch.rand(n, 160, 160, generator=g) > 0.5).to(torch.uint8)
    labels = (torch.rand(n, generator=g) > 0.5).float()
    mask_sample = torch.arange(n) < n_mask
    return patches, masks, labels, mask_sample


def test_stage1_losses_are_sums_over_samples():
    model = model_from(DEEPMASK).eval()  # eval: no dropout, BN running statistics
    patches, masks, labels, mask_sample = _patch_batch(8, 5)
    # zero mask and score outputs: every pixel and every score costs log 2
    with torch.no_grad():
        model.head.mask.weight.zero_(), model.head.mask.bias.zero_()
        model.head.score[-1].weight.zero_(), model.head.score[-1].bias.zero_()
        losses = model.losses(patches, masks, labels, mask_sample)
    assert float(losses["loss_mask"]) == pytest.approx(5 * LN2, rel=1e-6)  # 5 mask samples
    assert float(losses["loss_score"]) == pytest.approx(0.25 * 3 * LN2, rel=1e-6)  # SCORE_LOSS_WEIGHT x 3
    # with trained-looking (random) weights: a batch's loss is the sum of its samples' losses
    model = model_from(DEEPMASK, seed=1).eval()
    with torch.no_grad():
        whole = model.losses(patches, masks, labels, mask_sample)
        parts = [model.losses(patches[i : i + 1], masks[i : i + 1], labels[i : i + 1], mask_sample[i : i + 1])
                 for i in range(8)]
    for k in ("loss_mask", "loss_score"):
        assert float(whole[k]) == pytest.approx(sum(float(p[k]) for p in parts), rel=1e-4)


def test_stage2_loss_is_a_sum_over_samples():
    model = model_from(SHARPMASK).eval()
    patches, masks, labels, _ = _patch_batch(4, 4)
    mask_sample = torch.ones(4, dtype=torch.bool)
    with torch.no_grad():
        model.refinement.predictor.weight.zero_(), model.refinement.predictor.bias.zero_()
        assert float(model.losses(patches, masks, labels, mask_sample)["loss_mask_refined"]) == pytest.approx(4 * LN2)
    model = model_from(SHARPMASK, seed=2).eval()
    with torch.no_grad():
        whole = float(model.losses(patches, masks, labels, mask_sample)["loss_mask_refined"])
        parts = [float(model.losses(patches[i : i + 1], masks[i : i + 1], labels[i : i + 1],
                                    mask_sample[i : i + 1])["loss_mask_refined"]) for i in range(4)]
    assert whole == pytest.approx(sum(parts), rel=1e-4)


def _lr_at(cfg, iterations):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, opt)
    return [cfg.SOLVER.BASE_LR * sched._multiplier(it / cfg.SOLVER.MAX_ITER) for it in iterations]


def test_coco_schedules_are_the_authors():
    # stage 1: 300 epochs x 4000 batches of 32 patches; LR 1e-3, 5e-4 from epoch 51, 1e-4 from epoch 121
    # (one GAMMA: the middle step is 3.16e-4); momentum 0.9, weight decay 5e-4
    cfg = config(COCO_DEEPMASK)
    assert cfg.SOLVER.MAX_ITER == 1_200_000 and cfg.SOLVER.IMS_PER_BATCH * cfg.MODEL.SHARPMASK.SAMPLES_PER_IMAGE == 32
    assert (cfg.SOLVER.MOMENTUM, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.OPTIMIZER) == (0.9, 0.0005, "SGD")
    lrs = _lr_at(cfg, [1000, 199_000, 201_000, 479_000, 481_000, 1_199_999])  # (fvcore rounds milestones +-1)
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3 * 0.1 ** 0.5, 1e-3 * 0.1 ** 0.5, 1e-4, 1e-4], rel=1e-6)
    assert cfg.MODEL.SHARPMASK.SCORE_LOSS_WEIGHT == pytest.approx(1 / 32)
    # LR x iterations: 360.5 against the authors' 200 + 140 + 72 = 412 (the middle step)
    ours = 200_000 * 1e-3 + 280_000 * 1e-3 * 0.1 ** 0.5 + 720_000 * 1e-4
    assert ours / 412 == pytest.approx(0.875, abs=0.001)
    # stage 2: 1e-3, 5e-4 from epoch 51, 1e-4 from epoch 81 (3.16e-4 for the middle step), no warmup
    cfg2 = config(COCO_SHARPMASK)
    assert cfg2.SOLVER.MAX_ITER == 1_200_000 and cfg2.SOLVER.WARMUP_ITERS == 0
    lrs = _lr_at(cfg2, [0, 199_000, 201_000, 319_000, 321_000, 1_199_999])
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3 * 0.1 ** 0.5, 1e-3 * 0.1 ** 0.5, 1e-4, 1e-4], rel=1e-6)
    # the shapes recipes keep AdamW (scale-invariant to the summed losses), LR and weight decay
    shapes = config(DEEPMASK)
    assert (shapes.SOLVER.OPTIMIZER, shapes.SOLVER.BASE_LR, shapes.SOLVER.WEIGHT_DECAY, shapes.SOLVER.GAMMA) == (
        "AdamW", 1e-3, 0.05, 0.1)


def test_coco_stage2_optimizer_is_plain_sgd():
    cfg = config(COCO_SHARPMASK)
    model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    assert type(opt) is torch.optim.SGD
    params = [p for g in opt.param_groups for p in g["params"]]
    refinement = {id(p) for p in model.refinement.parameters()}
    assert params and {id(p) for p in params} == refinement  # only the refinement trains
    for g in opt.param_groups:
        assert (g["lr"], g["momentum"], g["weight_decay"], g["nesterov"], g["dampening"]) == (1e-3, 0.0, 0.0, False, 0)
    # two steps on a unit gradient move every weight by exactly 2 x lr (momentum 0.9 would give 2.9 x lr)
    before = [p.detach().clone() for p in params]
    for _ in range(2):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    for p, b in zip(params, before):
        torch.testing.assert_close(b - p.detach(), torch.full_like(b, 2e-3), rtol=0, atol=1e-6)
