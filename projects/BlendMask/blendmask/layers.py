"""Conv blocks with AdelaiDet's module layout (so its checkpoints load by name)."""
import torch
from torch import nn

from segzoo.modeling.layers import conv_block, norm_layer  # noqa: F401  (re-exported)

__all__ = ["Scale", "conv_block", "norm_layer"]


class Scale(nn.Module):
    def __init__(self, init_value=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x):
        return x * self.scale
