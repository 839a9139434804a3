"""DeepMask-ours trunk and head C.

Trunk: a Detectron2 ResNet run through res4 (stride 16), a 1x1 conv to 128 + ReLU, and the
"fully connected" layer over the 10x10 window realised as a 10x10 convolution, so that the
same weights give one 512-d vector per patch in training and one per 16-px window position
when run densely over a whole image. Head C: that one vector feeds both the coarse mask
(linear -> 56x56) and the score (dropout, 512 -> 1024, ReLU, dropout, 1024 -> 1).
"""
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicStem, ResNet

from segzoo.errors import ConfigError

__all__ = ["DeepMaskTrunk", "DeepMaskHead", "TRUNK_BUILDERS", "trunk_builder", "use_reflect_padding"]

# MODEL.BACKBONE.NAME -> the ResNet builder of the trunk: a ResNet builder itself, or the one an
# FPN builder puts its FPN on (the trunk is the bottom-up ResNet alone).
TRUNK_BUILDERS = {
    "build_resnet_backbone": "build_resnet_backbone",
    "build_resnet_fpn_backbone": "build_resnet_backbone",
    "build_retinanet_resnet_fpn_backbone": "build_resnet_backbone",
    "build_slim_resnet_backbone": "build_slim_resnet_backbone",
    "build_slim_resnet_fpn_backbone": "build_slim_resnet_backbone",
    "build_slim_resnet_fpn_p67_backbone": "build_slim_resnet_backbone",
}


def trunk_builder(backbone_name: str) -> str:
    """The registered ResNet builder a DeepMask / SharpMask trunk is built with for
    ``MODEL.BACKBONE.NAME`` (:data:`TRUNK_BUILDERS`); ConfigError for any other name."""
    if backbone_name not in TRUNK_BUILDERS:
        raise ConfigError(f"MODEL.BACKBONE.NAME: {backbone_name} is not supported for the DeepMask/SharpMask "
                          f"trunk (use one of {', '.join(TRUNK_BUILDERS)})")
    return TRUNK_BUILDERS[backbone_name]


def _reflect_pad_hook(module, inputs):
    (x,) = inputs
    ph, pw = module._reflect_padding
    return (F.pad(x, (pw, pw, ph, ph), mode="reflect"),)


def use_reflect_padding(module: nn.Module) -> int:
    """Make every zero-padded conv under ``module`` pad by reflection instead (the authors'
    fix for the mismatch between patch training and dense inference). Returns the count."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding) and not hasattr(m, "_reflect_padding"):
            m._reflect_padding = tuple(m.padding)
            m.padding = (0, 0)
            m.register_forward_pre_hook(_reflect_pad_hook)
            n += 1
    return n


class DeepMaskTrunk(nn.Module):
    """ResNet (the builder :func:`trunk_builder` names) through res4 + 1x1 reduce + 10x10 "fc".

    ``features(x)`` returns the bottom-up maps the refinement reads (``conv1`` at stride 2 is
    the stem's conv before its max-pool; then res2..res4) plus the reduced res4 map;
    ``embed(reduced)`` applies the 10x10 conv: on a patch's central 10x10 cells it yields one
    vector, on a whole image one per window position.
    """

    @configurable
    def __init__(self, resnet: ResNet, *, trunk_feature: str = "res4", reduce_dim: int = 128, embed_dim: int = 512,
                 window: int = 160, context: int = 16, reflect_padding: bool = True):
        """``resnet``: a Detectron2 ResNet whose outputs include ``trunk_feature`` (stride 16)
        and the stages the refinement reads."""
        super().__init__()
        self.resnet = resnet
        if not isinstance(getattr(resnet, "stem", None), BasicStem) or not hasattr(resnet, "stages"):
            raise ConfigError("DeepMask/SharpMask need a Detectron2 ResNet trunk (BasicStem + res stages)")
        shapes = resnet.output_shape()
        if trunk_feature not in shapes or shapes[trunk_feature].stride != 16:
            raise ConfigError(f"MODEL.SHARPMASK.TRUNK_FEATURE must be a stride-16 ResNet stage, got {trunk_feature}")
        if window % 16 or context % 16:
            raise ConfigError("MODEL.SHARPMASK.WINDOW and CONTEXT must be multiples of 16 (the trunk stride)")
        self.trunk_feature = trunk_feature
        self.window_cells = window // 16
        self.context_cells = context // 16
        self.channels = {k: v.channels for k, v in shapes.items()}
        self.channels["conv1"] = resnet.stem.conv1.out_channels
        self.strides = {k: v.stride for k, v in shapes.items()}
        self.strides["conv1"] = 2
        self.reduce = nn.Conv2d(self.channels[trunk_feature], reduce_dim, 1)
        self.fc = nn.Conv2d(reduce_dim, embed_dim, self.window_cells)
        for m in (self.reduce, self.fc):
            nn.init.kaiming_uniform_(m.weight, a=1)
            nn.init.zeros_(m.bias)
        if reflect_padding:
            use_reflect_padding(self.resnet)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        s = cfg.MODEL.SHARPMASK
        bcfg = cfg.clone()
        bcfg.defrost()
        wanted = [f for f in s.SKIP_FEATURES if f.startswith("res")] + [s.TRUNK_FEATURE]
        bcfg.MODEL.RESNETS.OUT_FEATURES = sorted(set(wanted))
        return {
            "resnet": BACKBONE_REGISTRY.get(trunk_builder(cfg.MODEL.BACKBONE.NAME))(bcfg, input_shape),
            "trunk_feature": s.TRUNK_FEATURE,
            "reduce_dim": s.TRUNK_REDUCE_DIM,
            "embed_dim": s.EMBED_DIM,
            "window": s.WINDOW,
            "context": s.CONTEXT,
            "reflect_padding": s.REFLECT_PADDING,
        }

    def features(self, x):
        """Bottom-up maps of ``x`` (B,3,H,W), H and W multiples of 16."""
        stem = self.resnet.stem
        out = {}
        y = F.relu_(stem.conv1(x))
        out["conv1"] = y
        y = F.max_pool2d(y, kernel_size=3, stride=2, padding=1)
        needed = set(self.channels)
        for name, stage in zip(self.resnet.stage_names, self.resnet.stages):
            if name not in needed:
                break
            y = stage(y)
            out[name] = y
        out["reduced"] = F.relu(self.reduce(out[self.trunk_feature]))
        return out

    def embed(self, reduced, patch: bool):
        """The 512-d vectors; the context cells at the map's borders are cropped first.
        ``patch=True``: ``reduced`` is a patch's map (window + context cells) and the result is
        (B, 512). Otherwise the dense (B, 512, H/16 - 9 - 2 * CONTEXT/16, ...) map of every window
        whose patch (window + context) lies inside the input."""
        c = self.context_cells
        reduced = reduced[:, :, c : reduced.shape[2] - c, c : reduced.shape[3] - c]
        if patch:
            if reduced.shape[-2:] != (self.window_cells, self.window_cells):
                raise ValueError(f"patch trunk map is {tuple(reduced.shape[-2:])} after the context crop, "
                                 f"expected {self.window_cells}x{self.window_cells}")
            return self.fc(reduced).flatten(1)
        return self.fc(reduced)


class DeepMaskHead(nn.Module):
    """Head C: the 512-d vector -> coarse mask logits (S x S) and an objectness logit."""

    @configurable
    def __init__(self, *, embed_dim: int = 512, mask_size: int = 56, score_hidden_dim: int = 1024,
                 score_dropout: float = 0.5):
        super().__init__()
        self.mask_size = mask_size
        self.mask = nn.Linear(embed_dim, mask_size * mask_size)
        self.score = nn.Sequential(
            nn.Dropout(score_dropout),
            nn.Linear(embed_dim, score_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(score_dropout),
            nn.Linear(score_hidden_dim, 1),
        )
        nn.init.normal_(self.mask.weight, std=0.001)
        nn.init.zeros_(self.mask.bias)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SHARPMASK
        return {"embed_dim": s.EMBED_DIM, "mask_size": s.MASK_SIZE, "score_hidden_dim": s.SCORE_HIDDEN_DIM,
                "score_dropout": s.SCORE_DROPOUT}

    def masks(self, emb):
        """(N, 512) -> (N, S, S) mask logits."""
        return self.mask(emb).view(-1, self.mask_size, self.mask_size)

    def scores(self, emb):
        """(N, 512) -> (N,) objectness logits."""
        return self.score(emb).squeeze(1)

    def dense_scores(self, emb_map):
        """(B, 512, h, w) -> (B, h, w) logits, the score MLP as 1x1 convs (eval mode)."""
        b, c, h, w = emb_map.shape
        return self.scores(emb_map.permute(0, 2, 3, 1).reshape(-1, c)).view(b, h, w)
