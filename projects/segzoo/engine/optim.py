"""Optimizer choice by config: SOLVER.OPTIMIZER = "SGD" (Detectron2's default) or "AdamW".

Parameter groups (weight decay for norms / biases, LR factors) are Detectron2's own
``get_default_optimizer_params``; gradient clipping is Detectron2's ``maybe_add_gradient_clipping``.
"""
import torch
from detectron2.solver import build_optimizer as _d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..errors import UserError

__all__ = ["build_optimizer"]


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    name = cfg.SOLVER.OPTIMIZER.lower()
    if name == "sgd":
        return _d2_build_optimizer(cfg, model)
    if name == "adamw":
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY, betas=(0.9, 0.999)
        )
    raise UserError(f"SOLVER.OPTIMIZER must be SGD or AdamW, got {cfg.SOLVER.OPTIMIZER!r}")
