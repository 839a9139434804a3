"""BlendMask's bottom module (ProtoNet) and its auxiliary semantic-segmentation loss.

The semantic targets are built on the fly from the batch's instance masks (0 =
background, class + 1 for things), so the loss works on any instance dataset with no
preparation step.
"""
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.layers import ShapeSpec
from detectron2.structures import Instances

from segzoo.errors import ConfigError, check_features
from segzoo.modeling.layers import conv_block, instance_bitmasks, norm_layer

__all__ = ["ProtoNet", "semantic_targets"]


class ProtoNet(nn.Module):
    """Inputs ``in_features`` (e.g. P3-P5): each through conv3x3+norm+ReLU to ``planes``,
    resized to the first one and summed; ``num_convs`` conv blocks; x2 bilinear upsampling;
    one more conv block; 1x1 conv to K bases. Bases stride = stride(in_features[0]) / 2.
    Module names match AdelaiDet's (``refine``, ``tower``, ``seg_head``)."""

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_features: List[str],
        num_bases: int,
        planes: int = 128,
        num_convs: int = 3,
        norm: str = "SyncBN",
        loss_on: bool = True,
        num_classes: int = 80,
        loss_weight: float = 0.3,
        common_stride: int = 8,
    ):
        super().__init__()
        check_features(in_features, input_shape, "MODEL.BASIS_MODULE.IN_FEATURES")
        self.in_features = list(in_features)
        self.num_bases = num_bases
        self.refine = nn.ModuleList(
            [conv_block(input_shape[f].channels, planes, 3, norm) for f in self.in_features]
        )
        tower = [conv_block(planes, planes, 3, norm) for _ in range(num_convs)]
        tower.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        tower.append(conv_block(planes, planes, 3, norm))
        tower.append(nn.Conv2d(planes, num_bases, 1))
        self.tower = nn.Sequential(*tower)
        self.out_stride = input_shape[self.in_features[0]].stride / 2
        self.loss_on = loss_on
        if loss_on:
            sem_stride = input_shape[self.in_features[0]].stride
            if sem_stride != common_stride:
                raise ConfigError(
                    f"MODEL.BASIS_MODULE.COMMON_STRIDE ({common_stride}) must equal the stride of "
                    f"{self.in_features[0]} ({sem_stride}), where the semantic head runs"
                )
            in_ch = input_shape[self.in_features[0]].channels
            self.seg_head = nn.Sequential(
                nn.Conv2d(in_ch, planes, 3, padding=1, bias=not norm),
                norm_layer(norm, planes) or nn.Identity(),
                nn.ReLU(),
                nn.Conv2d(planes, planes, 3, padding=1, bias=not norm),
                norm_layer(norm, planes) or nn.Identity(),
                nn.ReLU(),
                nn.Conv2d(planes, num_classes + 1, 1),
            )
            self.sem_stride = sem_stride
            self.loss_weight = loss_weight

    def forward(
        self, features: Dict[str, Tensor], gt_instances: Optional[List[Instances]] = None
    ):
        """Returns (bases (N, K, H/s, W/s), losses)."""
        x = self.refine[0](features[self.in_features[0]])
        for f, refine in zip(self.in_features[1:], self.refine[1:]):
            y = refine(features[f])
            x = x + F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        bases = self.tower(x)
        losses = {}
        if self.training and self.loss_on:
            if gt_instances is None:
                raise ValueError("the semantic loss needs the ground-truth instances")
            logits = self.seg_head(features[self.in_features[0]])
            targets = semantic_targets(gt_instances, logits.shape[-2:], self.sem_stride)
            losses["loss_semantic"] = F.cross_entropy(logits, targets) * self.loss_weight
        return bases, losses


@torch.no_grad()
def semantic_targets(gt_instances: List[Instances], size, stride: int) -> Tensor:
    """(N, H, W) int64 class maps at ``stride`` (nearest sampling of the pixel grid):
    0 = background / padding, class + 1 where an instance's mask covers the pixel; where
    masks overlap the smaller instance wins."""
    H, W = int(size[0]), int(size[1])
    device = gt_instances[0].gt_classes.device if gt_instances else "cpu"
    out = torch.zeros((len(gt_instances), H, W), dtype=torch.int64, device=device)
    for i, inst in enumerate(gt_instances):
        if len(inst) == 0:
            continue
        if not inst.has("gt_masks"):
            raise ConfigError("the semantic loss needs gt_masks (set MODEL.MASK_ON: True)")
        masks = instance_bitmasks(inst)[:, ::stride, ::stride].to(device)
        h, w = min(masks.shape[1], H), min(masks.shape[2], W)
        masks = masks[:, :h, :w]
        area = masks.flatten(1).sum(dim=1)
        for j in torch.argsort(area, descending=True).tolist():
            out[i, :h, :w][masks[j]] = inst.gt_classes[j] + 1
    return out
