"""Conv blocks with AdelaiDet's module layout (so its checkpoints load by name)."""
import torch
from torch import nn

from detectron2.layers import get_norm

__all__ = ["Scale", "conv_block", "norm_layer"]


def norm_layer(norm: str, channels: int):
    """"GN" = GroupNorm(32, C) as in AdelaiDet; "" / None = no norm; else Detectron2's get_norm."""
    if not norm:
        return None
    if norm == "GN":
        return nn.GroupNorm(32, channels)
    return get_norm(norm, channels)


def conv_block(in_channels, out_channels, kernel_size=3, norm="", activation=True):
    """conv (kaiming-uniform, a=1) [+ norm] [+ ReLU]; a bare conv when neither is used."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=not norm
    )
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if not norm:
        nn.init.constant_(conv.bias, 0)
    modules = [conv]
    n = norm_layer(norm, out_channels)
    if n is not None:
        modules.append(n)
    if activation:
        modules.append(nn.ReLU(inplace=True))
    return nn.Sequential(*modules) if len(modules) > 1 else conv


class Scale(nn.Module):
    def __init__(self, init_value=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x):
        return x * self.scale
