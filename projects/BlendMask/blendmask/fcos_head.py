"""FCOS head, AdelaiDet flavour: separate classification and box towers (GroupNorm),
centerness on the box tower, relu(x) regression, optional per-level scales, and an
optional ``top_module`` applied to the box tower (BlendMask's attention layer)."""
import math
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.layers import ShapeSpec

from segzoo.errors import ConfigError

from .layers import Scale, norm_layer

__all__ = ["FCOSHead"]


def _tower(num_convs, channels, norm):
    layers = []
    for _ in range(num_convs):
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.constant_(conv.bias, 0)
        layers.append(conv)
        n = norm_layer(norm, channels)
        if n is not None:
            layers.append(n)
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


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
        self.share_tower = _tower(num_share_convs, channels, norm)
        self.cls_tower = _tower(num_cls_convs, channels, norm)
        self.bbox_tower = _tower(num_box_convs, channels, norm)
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
            x = self.share_tower(x)
            cls_t = self.cls_tower(x)
            box_t = self.bbox_tower(x)
            out["logits"].append(self.cls_logits(cls_t))
            out["ctrness"].append(self.ctrness(box_t if self.ctr_on_reg else cls_t))
            reg = self.bbox_pred(box_t)
            if self.scales is not None:
                reg = self.scales[level](reg)
            out["bbox_reg"].append(F.relu(reg) if self.use_relu else torch.exp(reg))
            if top_module is not None:
                out["top_feats"].append(top_module(box_t))
        return out
