"""The compiled extension loads and its RoIAlign-family op matches torchvision."""
import torch
import torchvision

from segzoo import ops


def test_extension_loads_and_registers_ops():
    lib = ops.load_extension()
    assert hasattr(lib, "roi_align_family")
    assert isinstance(ops.cuda_compiled(), bool)


def test_roi_align_matches_torchvision_numerically():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 40, 48, generator=g)
    boxes = torch.tensor([[0, 3.2, 4.1, 60.5, 70.0], [1, 10.0, 0.0, 90.0, 33.3], [1, -5.0, -5.0, 20.0, 20.0]])
    ours = ops.roi_align(x, boxes, (7, 7), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    ref = torchvision.ops.roi_align(x, boxes, (7, 7), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    assert ours.shape == (3, 16, 7, 7)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    assert ours.abs().sum() > 0
