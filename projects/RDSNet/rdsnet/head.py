"""RetinaNet's head plus RDSNet's object-representation tower."""
from typing import List

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.config import configurable

from segzoo.modeling.layers import conv_tower
from segzoo.modeling.retinanet import NormRetinaNetHead

__all__ = ["RDSNetHead"]


class RDSNetHead(NormRetinaNetHead):
    """RetinaNet's head with the authors' towers (cls / box: 3x3 conv + ``MODEL.RDSNET.HEAD_NORM``
    + ReLU, GN by default) and a third subnet: ``repr_num_convs`` x (3x3 conv + norm + ReLU),
    then a 3x3 conv to A * 2 * d channels: per anchor a background and a foreground kernel of
    d dims each (in that order)."""

    @configurable
    def __init__(self, *, repr_dim: int = 32, repr_num_convs: int = 4, repr_norm: str = "GN", **kwargs):
        super().__init__(**kwargs)
        self.repr_dim = repr_dim
        self.num_anchors = kwargs["num_anchors"]
        channels = kwargs["input_shape"][0].channels
        self.obj_subnet = conv_tower(channels, [channels] * repr_num_convs, repr_norm)
        self.obj_pred = nn.Conv2d(channels, kwargs["num_anchors"] * 2 * repr_dim, 3, padding=1)
        nn.init.normal_(self.obj_pred.weight, std=0.01)
        nn.init.constant_(self.obj_pred.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        r = cfg.MODEL.RDSNET
        ret.update(norm=r.HEAD_NORM, repr_dim=r.REPR_DIM, repr_num_convs=r.REPR_NUM_CONVS, repr_norm=r.REPR_NORM)
        return ret

    def forward(self, features: List[Tensor], dense_repr: bool = True):
        """Returns (logits, box deltas, object representations), each a per-level list of
        (N, A*K, Hi, Wi), (N, A*4, Hi, Wi), (N, A*2*d, Hi, Wi). With ``dense_repr=False`` the
        last is the representation tower's output (N, C, Hi, Wi), for :meth:`reprs_at`."""
        logits, bbox_reg = super().forward(features)
        towers = [self.obj_subnet(f) for f in features]
        if not dense_repr:
            return logits, bbox_reg, towers
        return logits, bbox_reg, [self.obj_pred(t) for t in towers]

    def reprs_at(self, towers: List[Tensor], image: int, anchors: Tensor) -> Tensor:
        """(n, 2d) object representations of some anchors of one image, the final conv run only
        at their 3x3 neighbourhoods. ``anchors`` index RetinaNet's flattened anchor list (levels
        concatenated, each in (y, x, anchor) order); equal to the rows of the dense output."""
        A = self.num_anchors
        out = towers[0].new_zeros((anchors.numel(), 2 * self.repr_dim))
        start = 0
        for t in towers:
            size = t.shape[-2] * t.shape[-1] * A
            sel = (anchors >= start) & (anchors < start + size)
            if sel.any():
                out[sel] = self._reprs_in_level(t[image], anchors[sel] - start).to(out.dtype)  # autocast
            start += size
        return out

    def _reprs_in_level(self, tower: Tensor, idx: Tensor) -> Tensor:
        A, k = self.num_anchors, 2 * self.repr_dim
        C, H, W = tower.shape
        a, pos = idx % A, idx // A
        y, x = pos // W, pos % W
        r = torch.arange(3, device=idx.device)
        padded = F.pad(tower, (1, 1, 1, 1))
        patches = padded[:, y[:, None, None] + r[None, :, None], x[:, None, None] + r[None, None, :]]
        patches = patches.permute(1, 0, 2, 3).reshape(idx.numel(), C * 9)  # (n, C*3*3)
        weight = self.obj_pred.weight.reshape(A, k, C * 9)
        bias = self.obj_pred.bias.reshape(A, k)
        out = patches.new_empty((idx.numel(), k))
        for anchor in a.unique().tolist():
            rows = a == anchor
            out[rows] = (patches[rows] @ weight[anchor].t() + bias[anchor]).to(out.dtype)
        return out
