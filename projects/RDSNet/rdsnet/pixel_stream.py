"""RDSNet's pixel stream: FPN levels merged to stride 4, then d-dim pixel embeddings."""
from typing import Dict, List

from torch import Tensor, nn

from detectron2.layers import ShapeSpec

from segzoo.errors import ConfigError, check_features
from segzoo.modeling.layers import conv_block

__all__ = ["PixelStream"]


def _up():
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)


class PixelStream(nn.Module):
    """Level i of ``in_features`` (stride 2^i times the first's) goes through max(1, i) blocks of
    3x3 conv + norm + ReLU, each of the first i followed by x2 upsampling (P3: conv; P4: conv +
    up; P5: (conv + up) twice); the sum at the first level's stride gets one more conv block
    and x2 upsampling, then a 1x1 conv to ``repr_dim``. Output stride = first stride / 2."""

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_features: List[str],
        conv_dim: int = 128,
        norm: str = "GN",
        repr_dim: int = 32,
    ):
        super().__init__()
        check_features(in_features, input_shape, "MODEL.RDSNET.PIXEL_IN_FEATURES")
        strides = [input_shape[f].stride for f in in_features]
        if any(s != strides[0] * 2**i for i, s in enumerate(strides)):
            raise ConfigError(
                f"MODEL.RDSNET.PIXEL_IN_FEATURES must have strides doubling from level to level, "
                f"got {dict(zip(in_features, strides))}"
            )
        self.in_features = list(in_features)
        self.out_stride = strides[0] // 2
        self.levels = nn.ModuleList()
        for i, f in enumerate(in_features):
            blocks = []
            in_ch = input_shape[f].channels
            for j in range(max(1, i)):
                blocks.append(conv_block(in_ch if j == 0 else conv_dim, conv_dim, 3, norm))
                if i > 0:
                    blocks.append(_up())
            self.levels.append(nn.Sequential(*blocks))
        self.fuse = nn.Sequential(conv_block(conv_dim, conv_dim, 3, norm), _up())
        self.embed = nn.Conv2d(conv_dim, repr_dim, 1)

    def forward(self, features: Dict[str, Tensor]) -> Tensor:
        x = self.levels[0](features[self.in_features[0]])
        for f, level in zip(self.in_features[1:], self.levels[1:]):
            y = level(features[f])
            # odd-sized inputs: the upsampled map may exceed the finer one by a pixel
            x = x + y[..., : x.shape[-2], : x.shape[-1]]
        return self.embed(self.fuse(x))
