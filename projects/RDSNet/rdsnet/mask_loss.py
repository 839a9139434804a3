"""RDSNet's mask loss: 2-class cross-entropy inside the crop with online hard negative mining."""
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["ohem_select", "ohem_instance_losses"]


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
