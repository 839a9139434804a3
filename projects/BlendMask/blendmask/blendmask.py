"""BlendMask (``MODEL.META_ARCHITECTURE: "BlendMask"``): FCOS + a top layer predicting
K*M*M attentions per location from the box tower + ProtoNet bases + the blender."""
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from segzoo.errors import ConfigError

from .basis_module import ProtoNet
from .blender_head import Blender
from .fcos import FCOS, flatten_levels

__all__ = ["BlendMask"]


@META_ARCH_REGISTRY.register()
class BlendMask(FCOS):
    @configurable
    def __init__(self, *, basis_module: ProtoNet, blender: Blender, **kwargs):
        super().__init__(**kwargs)
        self.basis_module = basis_module
        self.blender = blender
        self.top_layer = nn.Conv2d(self.head.out_channels, blender.attn_channels, 3, padding=1)
        nn.init.normal_(self.top_layer.weight, std=0.01)
        nn.init.constant_(self.top_layer.bias, 0)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        shapes = ret["backbone"].output_shape()
        b = cfg.MODEL.BASIS_MODULE
        basis = ProtoNet(
            shapes,
            in_features=b.IN_FEATURES,
            num_bases=b.NUM_BASES,
            planes=b.CONVS_DIM,
            num_convs=b.NUM_CONVS,
            norm=b.NORM,
            loss_on=b.LOSS_ON,
            num_classes=b.NUM_CLASSES,
            loss_weight=b.LOSS_WEIGHT,
            common_stride=b.COMMON_STRIDE,
        )
        m = cfg.MODEL.BLENDMASK
        scale = 1.0 / basis.out_stride
        if m.POOLER_SCALES and (len(m.POOLER_SCALES) != 1 or abs(m.POOLER_SCALES[0] - scale) > 1e-9):
            raise ConfigError(
                f"MODEL.BLENDMASK.POOLER_SCALES {tuple(m.POOLER_SCALES)} must be ({scale},), the "
                f"inverse stride of the bases (or empty to derive it)"
            )
        ret["basis_module"] = basis
        ret["blender"] = Blender(
            num_bases=b.NUM_BASES,
            attn_size=m.ATTN_SIZE,
            bottom_resolution=m.BOTTOM_RESOLUTION,
            interp=m.TOP_INTERP,
            pooler_type=m.POOLER_TYPE,
            sampling_ratio=m.POOLER_SAMPLING_RATIO,
            pooler_scale=scale,
            implementation=m.BLENDER,
            instance_loss_weight=m.INSTANCE_LOSS_WEIGHT,
            max_proposals=m.MAX_PROPOSALS,
        )
        return ret

    def top_module(self):
        return self.top_layer

    def forward_training(self, images, features, head_out, locations, gt_instances):
        losses, positives = self.fcos_losses(head_out, locations, gt_instances)
        bases, basis_losses = self.basis_module(features, gt_instances)
        losses.update(basis_losses)
        attentions = flatten_levels(head_out["top_feats"])[positives.location_inds]
        losses.update(
            self.blender.loss(bases, gt_instances, attentions, positives.gt_inds, positives.ctr_targets)
        )
        return losses

    def forward_inference(self, images, features, head_out, locations):
        detections = self.detect(head_out, locations, images.image_sizes)
        bases, _ = self.basis_module(features)
        return self.blender.inference(bases, detections)


