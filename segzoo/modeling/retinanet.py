"""RetinaNet with normalised cls / box towers, on every Detectron2 version.

Detectron2's ``MODEL.RETINANET.NORM`` builds a norm of 1 channel in v0.6 (``get_norm(norm, 1)``
fails for GroupNorm(32, 1)); main builds it with a conv bias in front of the norm. The towers
here are the mmdetection RetinaNet-GN layout (also RDSNet's): per layer a 3x3 conv without bias,
the norm, ReLU; convs initialised N(0, 0.01).

``MODEL.META_ARCHITECTURE: "NormRetinaNet"`` is Detectron2's ``RetinaNet`` with this head (norm
from ``MODEL.RETINANET.NORM``); with an empty norm it is exactly Detectron2's head.
"""
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.retinanet import RetinaNet, RetinaNetHead

from .layers import conv_tower

__all__ = ["NormRetinaNet", "NormRetinaNetHead"]


class NormRetinaNetHead(RetinaNetHead):
    """Detectron2's ``RetinaNetHead`` (predictors, their init and prior) with the cls and box
    towers of :func:`~segzoo.modeling.layers.conv_tower`. ``norm=""``: Detectron2's head unchanged."""

    @configurable
    def __init__(self, *, input_shape, conv_dims, norm: str = "", **kwargs):
        super().__init__(input_shape=input_shape, conv_dims=conv_dims, norm="", **kwargs)
        self.norm = norm
        if norm:
            in_channels = input_shape[0].channels
            self.cls_subnet = conv_tower(in_channels, conv_dims, norm)
            self.bbox_subnet = conv_tower(in_channels, conv_dims, norm)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["norm"] = cfg.MODEL.RETINANET.NORM
        return ret


@META_ARCH_REGISTRY.register()
class NormRetinaNet(RetinaNet):
    """Detectron2's RetinaNet whose head is :class:`NormRetinaNetHead`."""

    @classmethod
    def from_config(cls, cfg):
        # Detectron2's from_config builds its own head first, which v0.6 cannot with a norm
        plain = cfg.clone()
        plain.defrost()
        plain.MODEL.RETINANET.NORM = ""
        ret = super().from_config(plain)
        shapes = ret["backbone"].output_shape()
        ret["head"] = NormRetinaNetHead(cfg, [shapes[f] for f in cfg.MODEL.RETINANET.IN_FEATURES])
        return ret
