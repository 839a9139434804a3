"""FCOS target assignment on hand-made boxes, its losses and its inference."""
import math

import pytest
import torch

from detectron2.structures import Boxes, Instances

from blendmask.fcos import iou_loss
from blendmask.fcos_targets import (
    INF,
    centerness_targets,
    compute_locations,
    fcos_targets,
    level_size_ranges,
)


def _gt(boxes, classes, size=(256, 256)):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


def _one_level(stride=8, size=256):
    n = size // stride
    return [compute_locations(n, n, stride, "cpu")], [stride], [(-1.0, INF)]


def test_locations_are_cell_centres():
    locs = compute_locations(2, 3, 8, "cpu")
    assert locs.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]


def test_center_sampling_radius():
    locs, strides, ranges = _one_level()
    gt = _gt([[68, 68, 132, 132]], [2])  # 64 px box centred at (100, 100)
    labels, _, inds = fcos_targets(locs, strides, ranges, [gt], num_classes=5, center_sampling_radius=1.5)
    pos = (labels[0] != 5).nonzero().squeeze(1)
    xy = locs[0][pos]
    # centre region: |x - 100| < 12 -> x in {92, 100, 108}: 3 x 3 locations
    assert sorted(set(xy[:, 0].tolist())) == [92, 100, 108]
    assert sorted(set(xy[:, 1].tolist())) == [92, 100, 108]
    assert len(pos) == 9 and (labels[0][pos] == 2).all() and (inds[0][pos] == 0).all()
    # without centre sampling every location strictly inside the box: x in 76..124
    labels, _, _ = fcos_targets(locs, strides, ranges, [gt], num_classes=5, center_sampling_radius=0)
    assert int((labels[0] != 5).sum()) == 7 * 7


def test_center_region_is_clipped_to_the_box():
    locs, strides, ranges = _one_level(stride=32)  # locations at 16, 48, 80, 112, 144, ...
    gt = _gt([[70, 70, 126, 126]], [0])  # centre 98; radius 48 px would reach 50..146
    labels, _, _ = fcos_targets(locs, strides, ranges, [gt], num_classes=5, center_sampling_radius=1.5)
    pos = (labels[0] != 5).nonzero().squeeze(1)
    # 144 lies in the unclipped centre square but outside the box
    assert sorted(map(tuple, locs[0][pos].tolist())) == [(80, 80), (80, 112), (112, 80), (112, 112)]


def test_size_ranges_pick_the_level():
    sizes = [32]
    ranges = level_size_ranges(sizes, 2)
    assert ranges == [(-1.0, 32.0), (32.0, INF)]
    locs = [compute_locations(32, 32, 8, "cpu"), compute_locations(16, 16, 16, "cpu")]
    small = _gt([[90, 90, 130, 130]], [1])  # max(l,t,r,b) <= 20 at the centre -> level 0
    big = _gt([[40, 40, 200, 200]], [3])  # max distance >= 80 -> level 1
    labels, reg, _ = fcos_targets(locs, [8, 16], ranges, [small, big], num_classes=5)
    n0 = len(locs[0])
    assert (labels[0, :n0] == 1).any() and not (labels[0, n0:] == 1).any()
    assert (labels[1, n0:] == 3).any() and not (labels[1, :n0] == 3).any()
    # regression targets are in units of the level's stride
    i = int((labels[1, n0:] == 3).nonzero()[0]) + n0
    x, y = locs[1][i - n0].tolist()
    assert reg[1, i].tolist() == pytest.approx([(x - 40) / 16, (y - 40) / 16, (200 - x) / 16, (200 - y) / 16])
    with pytest.raises(ValueError, match="SIZES_OF_INTEREST needs 1 values"):
        level_size_ranges([32, 64], 2)


def test_ambiguous_location_takes_the_smallest_box():
    locs, strides, ranges = _one_level()
    gt = _gt([[20, 20, 220, 220], [84, 84, 116, 116]], [0, 4])  # both centred at (100, 100)
    labels, _, inds = fcos_targets(locs, strides, ranges, [gt], num_classes=5, center_sampling_radius=0)
    centre = int(((locs[0][:, 0] == 100) & (locs[0][:, 1] == 100)).nonzero())
    assert labels[0, centre] == 4 and inds[0, centre] == 1
    far = int(((locs[0][:, 0] == 36) & (locs[0][:, 1] == 36)).nonzero())
    assert labels[0, far] == 0 and inds[0, far] == 0


def test_no_gt_means_all_background():
    locs, strides, ranges = _one_level()
    labels, reg, inds = fcos_targets(locs, strides, ranges, [_gt([], [])], num_classes=5)
    assert (labels == 5).all() and (inds == -1).all() and (reg == 0).all()


def test_centerness_and_giou():
    t = torch.tensor([[2.0, 2.0, 2.0, 2.0], [1.0, 3.0, 3.0, 1.0]])
    assert centerness_targets(t).tolist() == pytest.approx([1.0, 1.0 / 3])
    assert iou_loss(t, t).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    # disjoint-ish prediction: GIoU loss in (1, 2)
    p = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    loss = iou_loss(p, torch.tensor([[4.0, 4.0, 0.1, 0.1]]))
    assert 1.0 < float(loss) < 2.0
    assert math.isfinite(float(iou_loss(p, p, "iou")))
