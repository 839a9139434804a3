"""FCOS head, AdelaiDet flavour: separate classification and box towers (GroupNorm),
centerness on the box tower, relu(x) regression, optional per-level scales, and an
optional ``top_module`` applied to the box tower (BlendMask's attention layer).

With a batch norm (``BN``, ``SyncBN``, ...) every tower norm is one module per FPN level,
as in AdelaiDet: levels have different statistics, so they are not shared like the convs."""
import math
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec

from segzoo.errors import ConfigError
from segzoo.modeling.layers import conv_tower, norm_layer

__all__ = ["FCOSHead", "LevelNorms", "Scale"]

_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)


class Scale(nn.Module):
    """A learned scalar multiplier (FCOS's per-level regression scale; AdelaiDet's
    parameter name ``scale``)."""

    def __init__(self, init_value=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x):
        return x * self.scale


class LevelNorms(nn.ModuleList):
    """One norm per FPN level; ``forward(x, level)`` applies the level's norm. Keys are
    ``<i>.weight`` etc., AdelaiDet's layout. A state dict with one shared norm (``weight``,
    ``running_mean``, ... directly under the prefix) loads into every level."""

    def forward(self, x, level: int):
        return self[level](x)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        shared = [k for k in list(state_dict) if k.startswith(prefix) and "." not in k[len(prefix):]]
        for k in shared:
            v = state_dict.pop(k)
            for i in range(len(self)):
                state_dict.setdefault(f"{prefix}{i}.{k[len(prefix):]}", v)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _head_norm(norm, channels: int, num_levels: int) -> Optional[nn.Module]:
    """"" / "none" (AdelaiDet's spelling): no norm; "GN": GroupNorm(32); else Detectron2's
    ``get_norm`` names, batch norms one per level."""
    if norm is None or norm.lower() in ("", "none"):
        return None
    try:
        n = norm_layer(norm, channels)
    except KeyError:
        raise ConfigError(
            f"MODEL.FCOS.NORM: unknown norm {norm!r} (use GN, BN, SyncBN, FrozenBN or none)"
        ) from None
    if isinstance(n, _BATCH_NORMS):
        return LevelNorms([n] + [norm_layer(norm, channels) for _ in range(num_levels - 1)])
    return n


def _tower(num_convs, channels, norm, num_levels):
    """``num_convs`` x (3x3 conv with bias, N(0, 0.01) + head norm + ReLU), AdelaiDet's layout."""
    return conv_tower(
        channels, [channels] * num_convs, lambda c: _head_norm(norm, c, num_levels), bias=True
    )


def _run_tower(tower: nn.Sequential, x, level: int):
    for m in tower:
        x = m(x, level) if isinstance(m, LevelNorms) else m(x)
    return x


class FCOSHead(nn.Module):
    """Module names match AdelaiDet's ``FCOSHead`` (``cls_tower``, ``bbox_tower``,
    ``share_tower``, ``cls_logits``, ``bbox_pred``, ``ctrness``, ``scales``)."""

    def __init__(
        self,
        input_shape: List[ShapeSpec],
        *,
        num_classes: int,
        num_cls_convs: int = 4,
        num_box_convs: int = 4,
        num_share_convs: int = 0,
        norm: str = "GN",
        prior_prob: float = 0.01,
        use_scale: bool = True,
        use_relu: bool = True,
        ctr_on_reg: bool = True,
    ):
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ConfigError(f"FCOS head needs equal channels on every level, got {sorted(channels)}")
        channels = channels.pop()
        self.num_classes = num_classes
        self.ctr_on_reg = ctr_on_reg
        self.use_relu = use_relu
        _head_norm(norm, 32, 1)  # checks the name, also for a head without tower convs
        levels = len(input_shape)
        self.share_tower = _tower(num_share_convs, channels, norm, levels)
        self.cls_tower = _tower(num_cls_convs, channels, norm, levels)
        self.bbox_tower = _tower(num_box_convs, channels, norm, levels)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(channels, 1, 3, padding=1)
        for m in (self.cls_logits, self.bbox_pred, self.ctrness):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.constant_(m.bias, 0)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))
        self.scales = nn.ModuleList([Scale(1.0) for _ in input_shape]) if use_scale else None
        self.out_channels = channels

    def forward(self, features: List[torch.Tensor], top_module: Optional[nn.Module] = None) -> Dict:
        """Returns per-level lists: ``logits`` (N, C, H, W), ``bbox_reg`` (N, 4, H, W)
        (l, t, r, b in units of the level's stride), ``ctrness`` (N, 1, H, W) and, with a
        ``top_module``, ``top_feats`` = top_module(box tower)."""
        out = {"logits": [], "bbox_reg": [], "ctrness": [], "top_feats": []}
        for level, x in enumerate(features):
            x = _run_tower(self.share_tower, x, level)
            cls_t = _run_tower(self.cls_tower, x, level)
            box_t = _run_tower(self.bbox_tower, x, level)
            out["logits"].append(self.cls_logits(cls_t))
            out["ctrness"].append(self.ctrness(box_t if self.ctr_on_reg else cls_t))
            reg = self.bbox_pred(box_t)
            if self.scales is not None:
                reg = self.scales[level](reg)
            out["bbox_reg"].append(F.relu(reg) if self.use_relu else torch.exp(reg))
            if top_module is not None:
                out["top_feats"].append(top_module(box_t))
        return out
