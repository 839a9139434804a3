"""Mask-based boundary refinement (MBRM), trainable.

Per instance the foreground probability map is max-projected onto the x axis (max over rows)
and the y axis (max over columns). A learned 1-D kernel of 2s+1 taps followed by a sigmoid
scores every position as the left (top) edge; the flipped kernel scores right (bottom) edges.
A discrete Gaussian prior centred on the regressed edge, sigma = gamma * box width (height),
at least ``min_sigma`` px, cut to zero where it falls to ``prior_cutoff`` or below (the authors:
0.0044, about 3.3 sigma), multiplies the likelihood; the posterior's argmax is the new edge.

The kernel starts as the authors' released one (``kernel="authors"``: the 9 taps and bias
their code sets, learned by them on COCO; their release has no MBRM training) or as a plain
step detector (``"step"``); the second training stage can refine either.

Index conventions (pixel i spans [i, i+1)): a left edge x0 is the index of the first
foreground column (x0 = i), a right edge x1 is one past the last (x1 = j + 1).
"""
import math
from typing import Dict, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MBRM", "profiles"]

_EDGES = ("left", "top", "right", "bottom")  # box coordinate order x0, y0, x1, y1

# the kernel (left / top edges; flipped for right / bottom) and bias of the authors' code
AUTHORS_KERNEL = (-0.2968, -0.2892, -0.2635, -3.2545, -0.1874, 2.5041, 0.0196, 0.0651, 0.0917)
AUTHORS_BIAS = -1.9536
KERNELS = ("authors", "step")


def profiles(masks: Tensor) -> Tuple[Tensor, Tensor]:
    """(N, H, W) maps -> (max over rows (N, W), max over columns (N, H))."""
    return masks.amax(dim=1), masks.amax(dim=2)


class MBRM(nn.Module):
    """``forward(masks, boxes)`` / ``loss(masks, boxes, gt_boxes)`` take (N, H, W) probability
    maps; ``refine`` / ``edge_losses`` take their two profiles (what the model computes)."""

    def __init__(
        self,
        half_size: int = 4,
        gamma: float = 0.05,
        min_sigma: float = 1.0,
        kernel: str = "authors",
        prior_cutoff: float = 0.0044,
        gain: float = 2.0,
    ):
        super().__init__()
        if half_size < 1:
            raise ValueError(f"MBRM kernel half size must be >= 1, got {half_size}")
        if kernel not in KERNELS:
            raise ValueError(f"MBRM kernel must be one of {KERNELS}, got {kernel!r}")
        if kernel == "authors" and half_size != len(AUTHORS_KERNEL) // 2:
            raise ValueError(f"the authors' MBRM kernel has {len(AUTHORS_KERNEL)} taps (half size 4), got half size {half_size}")
        self.half_size = half_size
        self.gamma = gamma
        self.min_sigma = min_sigma
        self.prior_cutoff = prior_cutoff
        if kernel == "authors":
            self.weight = nn.Parameter(torch.tensor(AUTHORS_KERNEL))
            self.bias = nn.Parameter(torch.tensor(AUTHORS_BIAS))
        else:
            # a step detector: background before the edge, foreground from it on; the bias puts
            # the sigmoid's midpoint between the step and its neighbours.
            step = torch.cat([-torch.ones(half_size), torch.ones(half_size + 1)])
            self.weight = nn.Parameter(gain * step)
            self.bias = nn.Parameter(torch.tensor(-gain * (half_size + 0.5)))

    def log_posteriors(self, px: Tensor, py: Tensor, boxes: Tensor) -> Dict[str, Tensor]:
        """Per edge (left, top, right, bottom) the (N, L) log posterior over positions, from
        the x profile (N, W), the y profile (N, H) and the regressed (N, 4) XYXY boxes."""
        x0, y0, x1, y1 = boxes.unbind(dim=1)
        sig_x = (self.gamma * (x1 - x0)).clamp(min=self.min_sigma)
        sig_y = (self.gamma * (y1 - y0)).clamp(min=self.min_sigma)
        specs = {
            "left": (px, x0, sig_x, False),
            "top": (py, y0, sig_y, False),
            "right": (px, x1 - 1, sig_x, True),
            "bottom": (py, y1 - 1, sig_y, True),
        }
        out = {}
        for edge, (p, centre, sigma, flip) in specs.items():
            w = (self.weight.flip(0) if flip else self.weight).view(1, 1, -1).to(p.dtype)
            resp = F.conv1d(p[:, None], w, padding=self.half_size)[:, 0]
            log_lik = F.logsigmoid(resp + self.bias.to(p.dtype))
            pos = torch.arange(p.shape[1], device=p.device, dtype=p.dtype)
            log_prior = -0.5 * ((pos[None] - centre[:, None]) / sigma[:, None]) ** 2
            if self.prior_cutoff > 0:  # zero prior (a finite floor keeps log_softmax defined)
                log_prior = log_prior.masked_fill(log_prior <= math.log(self.prior_cutoff), -1e4)
            out[edge] = torch.log_softmax(log_lik + log_prior, dim=1)
        return out

    def refine(self, px: Tensor, py: Tensor, boxes: Tensor) -> Tensor:
        """Refined (N, 4) boxes. An edge whose posterior mode is the prior's mode (the mask did
        not move it, e.g. a blank mask) keeps its regressed, sub-pixel value."""
        if boxes.shape[0] == 0 and not torch.jit.is_tracing():
            return boxes.clone()
        post = self.log_posteriors(px, py, boxes)
        refined = boxes.clone()
        for c, edge in enumerate(_EDGES):
            lp = post[edge]
            idx = lp.argmax(dim=1)
            shift = 1 if c >= 2 else 0  # right / bottom: index of the last foreground pixel
            mode = torch.round(boxes[:, c] - shift).clamp(0, lp.shape[1] - 1).long()
            refined[:, c] = torch.where(idx == mode, boxes[:, c], (idx + shift).to(boxes.dtype))
        return refined

    def edge_losses(self, px: Tensor, py: Tensor, boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        """(N, 4) cross-entropy of each edge's posterior against the one-hot GT edge index."""
        post = self.log_posteriors(px, py, boxes)
        out = []
        for c, edge in enumerate(_EDGES):
            lp = post[edge]
            target = torch.round(gt_boxes[:, c]) - (1 if c >= 2 else 0)
            out.append(F.nll_loss(lp, target.clamp(0, lp.shape[1] - 1).long(), reduction="none"))
        return torch.stack(out, dim=1)

    def forward(self, masks: Tensor, boxes: Tensor) -> Tensor:
        return self.refine(*profiles(masks), boxes)

    def loss(self, masks: Tensor, boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        return self.edge_losses(*profiles(masks), boxes, gt_boxes)


