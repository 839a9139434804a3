"""SharpMask's top-down refinement, in two topologies (``MODEL.SHARPMASK.REFINEMENT_TOPOLOGY``).

Both use schedule b: stage i (i = 1..n) takes a mask encoding M^i of c_i = k / 2^(i-1) channels and
returns M^{i+1} of c_i / 2 channels at twice the resolution (10 -> 20 -> 40 -> 80 -> 160); a final
3x3 conv gives one channel at the input resolution. M^1 = linear(512 -> k x 10 x 10).

``"reference"`` (default; the authors' Torch7 code), every conv padded symmetrically (for a 3x3 conv
that is edge replication):
    skip (horizontal)  S^i = conv3x3(ReLU(conv3x3(ReLU(conv3x3(F^i -> h_i)) -> c_i)) -> c_i / 2)
    mask (vertical)    V^i = conv3x3(ReLU(conv3x3(M^i -> c_i)) -> c_i / 2)
    M^{i+1} = upsample_nearest_x2(ReLU(S^i + V^i))
with h_i = REFINE_SKIP_DIM (64), halved (32) for the stride-2 conv1 features.

``"paper"`` (the paper's text, section 3.2), zero padding:
    S^i = ReLU(conv3x3(ReLU(conv3x3(F^i -> h)) -> c_i))
    M^{i+1} = upsample_bilinear_x2(ReLU(conv3x3(concat(S^i, M^i) -> c_i / 2)))

The skip path is shared by overlapping windows, so inference runs it once per image scale.
"""
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from fvcore.nn import weight_init

from segzoo.errors import ConfigError

__all__ = ["REFINEMENT_TOPOLOGIES", "SharpMaskRefinement"]

REFINEMENT_TOPOLOGIES = ("reference", "paper")


def _conv3x3(cin, cout, topology, init):
    """Reference topology: symmetric padding; paper: zero padding. ``init`` "authors": PyTorch's
    default, U(+-1/sqrt(fan_in)), which is the authors' (Torch7's default); "he": He init."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="replicate" if topology == "reference" else "zeros")
    if init == "he":
        weight_init.c2_msra_fill(conv)
    return conv


class SharpMaskRefinement(nn.Module):
    @configurable
    def __init__(self, channels: Dict[str, int], strides: Dict[str, int], *,
                 skip_features=("res4", "res3", "res2", "conv1"), topology: str = "reference", init: str = "auto",
                 k: int = 32, skip_dim: int = 64, window: int = 160, embed_dim: int = 512):
        """``channels`` / ``strides``: of the trunk's features (:class:`DeepMaskTrunk` has both)."""
        super().__init__()
        self.topology = topology
        if self.topology not in REFINEMENT_TOPOLOGIES:
            raise ConfigError(f"MODEL.SHARPMASK.REFINEMENT_TOPOLOGY must be one of {REFINEMENT_TOPOLOGIES}, "
                              f"got {self.topology!r}")
        self.skip_features = list(skip_features)
        missing = [f for f in self.skip_features if f not in channels]
        if missing:
            raise ConfigError(f"MODEL.SHARPMASK.SKIP_FEATURES: {missing} are not trunk features {sorted(channels)}")
        self.strides = [strides[f] for f in self.skip_features]
        if any(a != 2 * b for a, b in zip(self.strides, self.strides[1:])) or self.strides[0] != 16:
            raise ConfigError(f"MODEL.SHARPMASK.SKIP_FEATURES must go from stride 16 down by 2x each, got {self.strides}")
        n = len(self.skip_features)
        widths = [max(k // 2 ** i, 1) for i in range(n + 1)]  # c_1 .. c_{n+1}
        self.window_cells = window // 16
        self.k1 = widths[0]
        self.m1 = nn.Linear(embed_dim, widths[0] * self.window_cells ** 2)  # PyTorch's default init
        nn.init.zeros_(self.m1.bias)
        if init not in ("auto", "authors", "he"):
            raise ConfigError(f"MODEL.SHARPMASK.REFINE_INIT must be auto, authors or he, got {init!r}")
        init = init if init != "auto" else ("authors" if self.topology == "reference" else "he")
        reference, t = self.topology == "reference", (self.topology, init)
        self.upsample_mode = "nearest" if reference else "bilinear"
        skips = []
        for i, f in enumerate(self.skip_features):
            hidden = skip_dim // 2 if reference and self.strides[i] == 2 else skip_dim
            layers = [_conv3x3(channels[f], hidden, *t), nn.ReLU(inplace=True), _conv3x3(hidden, widths[i], *t)]
            layers += [nn.ReLU(inplace=True), _conv3x3(widths[i], widths[i + 1], *t)] if reference else [nn.ReLU(inplace=True)]
            skips.append(nn.Sequential(*layers))
        self.skips = nn.ModuleList(skips)
        # 3x3 convs on the skip path: skip features computed on a region plus this many cells of
        # halo equal the whole-map ones inside the region
        self.skip_halo = sum(isinstance(m, nn.Conv2d) for m in self.skips[0])
        if reference:
            self.verticals = nn.ModuleList(
                nn.Sequential(_conv3x3(widths[i], widths[i], *t), nn.ReLU(inplace=True),
                              _conv3x3(widths[i], widths[i + 1], *t))
                for i in range(n)
            )
        else:
            self.merges = nn.ModuleList(_conv3x3(2 * widths[i], widths[i + 1], *t) for i in range(n))
        self.predictor = _conv3x3(widths[n], 1, *t)
        nn.init.normal_(self.predictor.weight, std=0.001)  # start near p = 0.5 everywhere

    @classmethod
    def from_config(cls, cfg, channels: Dict[str, int], strides: Dict[str, int]):
        s = cfg.MODEL.SHARPMASK
        return {"channels": channels, "strides": strides, "skip_features": list(s.SKIP_FEATURES),
                "topology": s.REFINEMENT_TOPOLOGY, "init": s.REFINE_INIT, "k": s.REFINE_K,
                "skip_dim": s.REFINE_SKIP_DIM, "window": s.WINDOW, "embed_dim": s.EMBED_DIM}

    def skip_maps(self, features: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """S^i for every stage, over whole maps (computed once per image scale)."""
        return [skip(features[f]) for skip, f in zip(self.skips, self.skip_features)]

    def encode(self, emb):
        """M^1: (N, 512) -> (N, k, 10, 10)."""
        return self.m1(emb).view(-1, self.k1, self.window_cells, self.window_cells)

    def merge(self, i: int, skip, m):
        """Stage i's merge of its skip features and mask encoding, before upsampling. The convs
        run channels-last: with 2-16 channels at 10-80 px that layout is 1.5-4x faster on the CPU."""
        if self.topology == "reference":
            return F.relu(skip + self.verticals[i](m.contiguous(memory_format=torch.channels_last)))
        x = torch.cat([skip, m], dim=1).contiguous(memory_format=torch.channels_last)
        return F.relu(self.merges[i](x))

    def top_down(self, m, skips: List[torch.Tensor]):
        """The refinement modules on mask encodings ``m`` = M^1 (N, k, 10, 10) and the windows'
        skip features ``skips[i]`` (N, c_i or c_i / 2, 10 * 2^i, 10 * 2^i)."""
        for i, skip in enumerate(skips):
            if skip.shape[-2:] != m.shape[-2:]:
                raise ValueError(f"skip features {tuple(skip.shape[-2:])} do not match the mask encoding {tuple(m.shape[-2:])}")
            # (upsampling is faster in the default layout)
            m = F.interpolate(self.merge(i, skip, m).contiguous(), scale_factor=2, mode=self.upsample_mode,
                              **({} if self.upsample_mode == "nearest" else {"align_corners": False}))
        return self.predictor(m.contiguous(memory_format=torch.channels_last)).squeeze(1)

    def forward(self, emb, skips: List[torch.Tensor]):
        """``emb`` (N, 512) and the windows' skip features -> (N, 16 * 10, 16 * 10) mask logits at
        the window's input resolution."""
        return self.top_down(self.encode(emb), skips)
