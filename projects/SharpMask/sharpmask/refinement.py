"""SharpMask's top-down refinement (schedule b: k_m^i = k_s^i = k / 2^(i-1)).

Skip path of stage i (shared by overlapping windows, so run densely once per image scale):
    S^i = ReLU(conv3x3(ReLU(conv3x3(F^i -> 64)) -> k_s^i))
Top-down path (per window):
    M^1 = linear(512 -> k_m^1 x 10 x 10)
    M^{i+1} = upsample_x2(ReLU(conv3x3(concat(S^i, M^i) -> k_m^{i+1})))
and a final 3x3 conv to one channel at the input resolution (10 -> 20 -> 40 -> 80 -> 160).
"""
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from fvcore.nn import weight_init

from segzoo.errors import ConfigError

__all__ = ["SharpMaskRefinement"]


def _conv3x3(cin, cout):
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    weight_init.c2_msra_fill(conv)  # He init: with 2-16 channels behind ReLUs, smaller inits stall
    return conv


class SharpMaskRefinement(nn.Module):
    def __init__(self, cfg, channels: Dict[str, int], strides: Dict[str, int]):
        super().__init__()
        s = cfg.MODEL.SHARPMASK
        self.skip_features = list(s.SKIP_FEATURES)
        missing = [f for f in self.skip_features if f not in channels]
        if missing:
            raise ConfigError(f"MODEL.SHARPMASK.SKIP_FEATURES: {missing} are not trunk features {sorted(channels)}")
        self.strides = [strides[f] for f in self.skip_features]
        if any(a != 2 * b for a, b in zip(self.strides, self.strides[1:])) or self.strides[0] != 16:
            raise ConfigError(f"MODEL.SHARPMASK.SKIP_FEATURES must go from stride 16 down by 2x each, got {self.strides}")
        n = len(self.skip_features)
        k = s.REFINE_K
        widths = [max(k // 2 ** i, 1) for i in range(n + 1)]  # k_m^1 .. k_m^{n+1}
        self.window_cells = s.WINDOW // 16
        self.k1 = widths[0]
        self.m1 = nn.Linear(s.EMBED_DIM, widths[0] * self.window_cells ** 2)  # PyTorch's default init
        nn.init.zeros_(self.m1.bias)
        self.skips = nn.ModuleList(
            nn.Sequential(_conv3x3(channels[f], s.REFINE_SKIP_DIM), nn.ReLU(inplace=True),
                          _conv3x3(s.REFINE_SKIP_DIM, widths[i]), nn.ReLU(inplace=True))
            for i, f in enumerate(self.skip_features)
        )
        self.merges = nn.ModuleList(_conv3x3(2 * widths[i], widths[i + 1]) for i in range(n))
        self.predictor = _conv3x3(widths[n], 1)
        nn.init.normal_(self.predictor.weight, std=0.001)  # start at p = 0.5 everywhere

    def skip_maps(self, features: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """S^i for every stage, over whole maps (computed once per image scale)."""
        return [skip(features[f]) for skip, f in zip(self.skips, self.skip_features)]

    def encode(self, emb):
        """M^1: (N, 512) -> (N, k_m^1, 10, 10)."""
        return self.m1(emb).view(-1, self.k1, self.window_cells, self.window_cells)

    def top_down(self, m, skips: List[torch.Tensor]):
        """The refinement modules on mask encodings ``m`` = M^1 (N, k_m^1, 10, 10) and the windows'
        skip features ``skips[i]`` (N, k_s^i, 10 * 2^i, 10 * 2^i). The convs run channels-last:
        with 2-16 channels at 40-160 px that layout is 1.5-4x faster on the CPU."""
        for merge, skip in zip(self.merges, skips):
            if skip.shape[-2:] != m.shape[-2:]:
                raise ValueError(f"skip features {tuple(skip.shape[-2:])} do not match the mask encoding {tuple(m.shape[-2:])}")
            x = torch.cat([skip, m], dim=1).contiguous(memory_format=torch.channels_last)
            # (bilinear upsampling is faster in the default layout)
            m = F.interpolate(F.relu(merge(x)).contiguous(), scale_factor=2, mode="bilinear", align_corners=False)
        return self.predictor(m.contiguous(memory_format=torch.channels_last)).squeeze(1)

    def forward(self, emb, skips: List[torch.Tensor]):
        """``emb`` (N, 512) and the windows' skip features -> (N, 16 * 10, 16 * 10) mask logits at
        the window's input resolution."""
        return self.top_down(self.encode(emb), skips)
