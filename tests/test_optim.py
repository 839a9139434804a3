"""SOLVER.OPTIMIZER and gradient clipping: Detectron2's per-parameter types and the whole-model
norm clip (CLIP_TYPE "full_model")."""
import pytest
import torch

from segzoo.config import get_cfg
from segzoo.engine.optim import build_optimizer
from segzoo.errors import UserError


def _model_with_grads():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)  # global L2 norm 3 * sqrt(58) = 22.8
    return model


def _cfg(optimizer, clip_type, value, enabled=True):
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = optimizer
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = enabled
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = value
    return cfg


def _global_norm(model):
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()


@pytest.mark.parametrize("optimizer", ["SGD", "AdamW"])
def test_full_model_clip_scales_all_gradients_together(optimizer):
    model = _model_with_grads()
    before = [p.grad.clone() for p in model.parameters()]
    opt = build_optimizer(_cfg(optimizer, "full_model", 5.0), model)
    opt.step()
    assert _global_norm(model) == pytest.approx(5.0, rel=1e-5)
    # one factor for every parameter (the per-parameter "norm" type would clip each to 5 alone)
    ratios = {round(float((p.grad / b).flatten()[0]), 6) for p, b in zip(model.parameters(), before)}
    assert ratios == {round(5.0 / (3 * 58 ** 0.5), 6)}


def test_full_model_clip_leaves_small_gradients_alone():
    model = _model_with_grads()
    build_optimizer(_cfg("SGD", "full_model", 35.0), model).step()
    assert _global_norm(model) == pytest.approx(3 * 58 ** 0.5, rel=1e-6)


def test_detectron2_clip_types_still_work_and_bad_ones_are_named():
    model = _model_with_grads()
    build_optimizer(_cfg("SGD", "norm", 5.0), model).step()
    # per parameter: each tensor clipped to norm 5 on its own (the last bias, 3 * sqrt(2), is below)
    norms = [p.grad.norm().item() for p in model.parameters()]
    assert norms == pytest.approx([5.0, 5.0, 5.0, 3 * 2 ** 0.5], rel=1e-5)
    with pytest.raises(UserError, match="CLIP_TYPE must be value, norm or full_model"):
        build_optimizer(_cfg("AdamW", "global", 5.0), model)
    with pytest.raises(UserError, match="CLIP_VALUE must be > 0"):
        build_optimizer(_cfg("SGD", "full_model", 0.0), model)
