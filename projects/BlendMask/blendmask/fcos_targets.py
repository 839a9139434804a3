"""FCOS training targets: which GT box each feature location regresses.

A location is a candidate for a GT box when it lies inside the box's centre region
(``radius`` strides around the box centre, clipped to the box; or the whole box without
centre sampling) and the largest of its (l, t, r, b) distances falls in the size range of
the location's level. A location that qualifies for several boxes takes the one with the
smallest area.
"""
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from detectron2.structures import Instances

from segzoo.errors import ConfigError

__all__ = ["compute_locations", "level_size_ranges", "fcos_targets", "centerness_targets"]

INF = 100000000.0


def compute_locations(h: int, w: int, stride: int, device) -> Tensor:
    """(h*w, 2) x, y image coordinates of a level's locations: ``i * stride + stride // 2``."""
    xs = torch.arange(0, w * stride, step=stride, dtype=torch.float32, device=device)
    ys = torch.arange(0, h * stride, step=stride, dtype=torch.float32, device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((x.reshape(-1), y.reshape(-1)), dim=1) + stride // 2


def level_size_ranges(sizes_of_interest: Sequence[float], num_levels: int) -> List[Tuple[float, float]]:
    if len(sizes_of_interest) != num_levels - 1:
        raise ConfigError(
            f"MODEL.FCOS.SIZES_OF_INTEREST needs {num_levels - 1} values for {num_levels} levels, "
            f"got {list(sizes_of_interest)}"
        )
    bounds = [-1.0] + [float(s) for s in sizes_of_interest] + [INF]
    return list(zip(bounds[:-1], bounds[1:]))


@torch.no_grad()
def fcos_targets(
    locations: List[Tensor],
    strides: Sequence[int],
    size_ranges: Sequence[Tuple[float, float]],
    gt_instances: List[Instances],
    num_classes: int,
    center_sampling_radius: float = 1.5,
):
    """Targets of every location of every image.

    Args:
        locations: per level, (Li, 2) location coordinates.
        strides, size_ranges: per level.
        gt_instances: per image, with ``gt_boxes`` and ``gt_classes``.
        center_sampling_radius: <= 0 disables centre sampling.

    Returns:
        labels (I, L) int64, ``num_classes`` = background;
        reg_targets (I, L, 4) float (l, t, r, b) / stride;
        gt_inds (I, L) int64, index of the matched GT in its image, -1 = background.
    """
    locs = torch.cat(locations, dim=0)
    device = locs.device
    num_per_level = [len(x) for x in locations]
    stride = torch.cat(
        [torch.full((n,), float(s), device=device) for n, s in zip(num_per_level, strides)]
    )
    lo = torch.cat([torch.full((n,), r[0], device=device) for n, r in zip(num_per_level, size_ranges)])
    hi = torch.cat([torch.full((n,), r[1], device=device) for n, r in zip(num_per_level, size_ranges)])
    num_locs = len(locs)
    xs, ys = locs[:, 0:1], locs[:, 1:2]

    labels, reg_targets, gt_inds = [], [], []
    for inst in gt_instances:
        boxes = inst.gt_boxes.tensor.to(device=device, dtype=torch.float32)
        if len(boxes) == 0:
            labels.append(torch.full((num_locs,), num_classes, dtype=torch.int64, device=device))
            reg_targets.append(locs.new_zeros((num_locs, 4)))
            gt_inds.append(torch.full((num_locs,), -1, dtype=torch.int64, device=device))
            continue
        ltrb = torch.stack(
            [xs - boxes[:, 0], ys - boxes[:, 1], boxes[:, 2] - xs, boxes[:, 3] - ys], dim=2
        )  # (L, G, 4)
        if center_sampling_radius > 0:
            cx = (boxes[:, 0] + boxes[:, 2]) / 2
            cy = (boxes[:, 1] + boxes[:, 3]) / 2
            r = stride[:, None] * center_sampling_radius
            x0 = torch.maximum(cx - r, boxes[:, 0])
            y0 = torch.maximum(cy - r, boxes[:, 1])
            x1 = torch.minimum(cx + r, boxes[:, 2])
            y1 = torch.minimum(cy + r, boxes[:, 3])
            center = torch.stack([xs - x0, ys - y0, x1 - xs, y1 - ys], dim=2)
            inside = center.min(dim=2).values > 0
        else:
            inside = ltrb.min(dim=2).values > 0
        max_reg = ltrb.max(dim=2).values
        cared = (max_reg >= lo[:, None]) & (max_reg <= hi[:, None])
        area = inst.gt_boxes.area().to(device)[None].expand(num_locs, -1).clone()
        area[~inside] = INF
        area[~cared] = INF
        min_area, ind = area.min(dim=1)
        bg = min_area == INF
        label = inst.gt_classes.to(device)[ind].clone()
        label[bg] = num_classes
        ind = ind.clone()
        ind[bg] = -1
        reg = ltrb[torch.arange(num_locs, device=device), ind.clamp(min=0)] / stride[:, None]
        labels.append(label)
        reg_targets.append(reg)
        gt_inds.append(ind)
    return torch.stack(labels), torch.stack(reg_targets), torch.stack(gt_inds)


def centerness_targets(reg_targets: Tensor) -> Tensor:
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of (P, 4) ltrb targets."""
    if len(reg_targets) == 0:
        return reg_targets.new_zeros(0)
    lr = reg_targets[:, [0, 2]]
    tb = reg_targets[:, [1, 3]]
    ctr = (lr.min(dim=-1).values / lr.max(dim=-1).values) * (
        tb.min(dim=-1).values / tb.max(dim=-1).values
    )
    return torch.sqrt(ctr.clamp(min=0))
