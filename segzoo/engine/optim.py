"""Optimizer choice by config: SOLVER.OPTIMIZER = "SGD" (Detectron2's default) or "AdamW".

Parameter groups (weight decay for norms / biases, LR factors) are Detectron2's own
``get_default_optimizer_params``. Gradient clipping: Detectron2's ``maybe_add_gradient_clipping``
for its CLIP_TYPEs "value" and "norm" (both per parameter), and ``CLIP_TYPE: "full_model"``: one
norm over all parameters' gradients, clipped to CLIP_VALUE (mmdetection's ``grad_clip``; the
name Detectron2 projects such as DETR and Mask2Former use).
"""
import itertools

import torch
from detectron2.solver import build_optimizer as _d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..errors import UserError

__all__ = ["build_optimizer", "clip_full_model", "full_model_clipped"]


def clip_full_model(optimizer_type, max_norm: float, norm_type: float = 2.0):
    """A subclass of ``optimizer_type`` whose ``step`` first clips the norm of all its
    parameters' gradients together to ``max_norm``."""

    def step(self, closure=None):
        params = itertools.chain(*[g["params"] for g in self.param_groups])
        torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        return super(cls, self).step(closure)

    cls = type(optimizer_type.__name__ + "WithFullModelGradientClip", (optimizer_type,), {"step": step})
    return cls


def full_model_clipped(optimizer, params, *, max_norm: float, norm_type: float = 2.0, **kwargs):
    """``optimizer(params, **kwargs)`` (a class, or its import path such as "torch.optim.AdamW")
    whose gradients are clipped to ``max_norm`` over the whole model: LazyConfig's
    ``SOLVER.CLIP_GRADIENTS.CLIP_TYPE: "full_model"``."""
    if isinstance(optimizer, str):
        from detectron2.utils.registry import locate

        optimizer = locate(optimizer)
    if max_norm <= 0:
        raise UserError(f"full-model gradient clipping needs max_norm > 0, got {max_norm}")
    return clip_full_model(optimizer, max_norm, norm_type)(params, **kwargs)


def _with_clipping(cfg, optimizer_type):
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        if clip.CLIP_VALUE <= 0:
            raise UserError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be > 0, got {clip.CLIP_VALUE}")
        return clip_full_model(optimizer_type, clip.CLIP_VALUE, clip.NORM_TYPE)
    if clip.ENABLED and clip.CLIP_TYPE not in ("value", "norm"):
        raise UserError(
            f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be value, norm or full_model, got {clip.CLIP_TYPE!r}"
        )
    return maybe_add_gradient_clipping(cfg, optimizer_type)


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    name = cfg.SOLVER.OPTIMIZER.lower()
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if name == "sgd" and not (clip.ENABLED and clip.CLIP_TYPE == "full_model"):
        return _d2_build_optimizer(cfg, model)
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    if name == "sgd":  # Detectron2's SGD, clipped over the full model
        return _with_clipping(cfg, torch.optim.SGD)(
            params,
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        )
    if name == "adamw":
        return _with_clipping(cfg, torch.optim.AdamW)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY, betas=(0.9, 0.999)
        )
    raise UserError(f"SOLVER.OPTIMIZER must be SGD or AdamW, got {cfg.SOLVER.OPTIMIZER!r}")
