"""RDSNet's mask loss: 2-class cross-entropy inside the crop with online hard negative mining."""
from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from .geometry import correlate, pixel_ranges

__all__ = ["ImageMaskTargets", "correlation_mask_loss", "ohem_select", "ohem_instance_losses"]


@torch.no_grad()
def ohem_select(pixel_loss: Tensor, foreground: Tensor, valid: Tensor, neg_ratio: float = 1.0) -> Tensor:
    """Pixels that count, per instance (row): every valid foreground pixel and the
    k = round(neg_ratio * #foreground) valid background pixels of highest loss (all of them
    when ``neg_ratio`` < 0 or fewer exist).

    Args:
        pixel_loss, foreground, valid: (P, L) per-pixel loss, target and crop mask.
    Returns:
        (P, L) bool.
    """
    fg = foreground & valid
    neg = valid & ~foreground
    if neg_ratio < 0:
        return fg | neg
    k = torch.round(fg.sum(dim=1).to(pixel_loss.dtype) * neg_ratio).long()  # (P,)
    ranked = torch.where(neg, pixel_loss.detach(), torch.full_like(pixel_loss, -float("inf")))
    order = ranked.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return fg | (neg & (rank < k[:, None]))


def ohem_instance_losses(
    pixel_loss: Tensor, foreground: Tensor, valid: Tensor, neg_ratio: float = 1.0
) -> Tuple[Tensor, Tensor]:
    """Per-instance loss = sum of the kept pixels' losses / (kept count + 1).
    Returns ((P,) losses, (P, L) kept mask)."""
    keep = ohem_select(pixel_loss, foreground, valid, neg_ratio)
    losses = (pixel_loss * keep).sum(dim=1) / (keep.sum(dim=1) + 1)
    return losses, keep


@dataclass(frozen=True)
class ImageMaskTargets:
    """One image's inputs to :func:`correlation_mask_loss`: the positive anchors that train
    masks and the GT instances they are assigned to."""

    #: the image's index in the batch (the first dim of the embeddings)
    image: int
    #: (P, 2d) the positives' object representations: background kernel, then foreground kernel
    reprs: Tensor
    #: (P,) int64: each positive's GT instance (a row of ``masks`` and ``crops``)
    gt_inds: Tensor
    #: (G, h, w) bool: the image's GT masks at input resolution (h, w at most the embeddings'
    #: size times the stride)
    masks: Tensor
    #: (G, 4) the loss window of each GT instance (x0, y0, x1, y1, input pixels): its box
    #: expanded, clipped to the image
    crops: Tensor


def correlation_mask_loss(
    embeddings: Tensor, targets: Sequence[ImageMaskTargets], stride: int, ohem_neg_ratio: float = 1.0
) -> Tuple[Tensor, int]:
    """RDSNet's mask loss on the pixel embeddings (N, d, H, W) at ``stride``.

    Each positive's mask logits are the correlation of its representation with the embeddings
    inside its GT's crop (the pixels whose centres lie in it; pixels outside are ignored).
    Targets: the GT masks resampled to the embeddings' grid (bilinear, >= 0.5). Per positive:
    2-class cross-entropy per pixel, every foreground pixel and the ``ohem_neg_ratio`` x as
    many hardest background pixels kept (:func:`ohem_instance_losses`), summed and divided by
    the kept count + 1. Summed over all positives and divided by their count + 1.

    Returns (the loss, the number of positives).
    """
    H, W = embeddings.shape[-2:]
    total = embeddings.sum() * 0.0
    num_pos = 0
    for t in targets:
        h, w = t.masks.shape[-2:]
        padded = F.pad(t.masks.to(embeddings.dtype), (0, W * stride - w, 0, H * stride - h))
        grid_masks = F.interpolate(padded[None], size=(H, W), mode="bilinear", align_corners=False)[0] >= 0.5
        ranges = pixel_ranges(t.crops, stride, H, W).tolist()
        for g in t.gt_inds.unique().tolist():
            sel = t.gt_inds == g
            x0, y0, x1, y1 = ranges[g]
            logits = correlate(t.reprs[sel], embeddings[t.image, :, y0:y1, x0:x1])
            target = grid_masks[g, y0:y1, x0:x1]
            pixel = F.cross_entropy(
                logits, target.long()[None].expand(logits.shape[0], -1, -1), reduction="none"
            ).flatten(1)
            fg = target.flatten()[None].expand_as(pixel)
            losses, _ = ohem_instance_losses(pixel, fg, torch.ones_like(fg), ohem_neg_ratio)
            total = total + losses.sum()
            num_pos += logits.shape[0]
    return total / (num_pos + 1), num_pos
