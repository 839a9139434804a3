"""RDSNet on Detectron2's RetinaNet, with a trainable MBRM.

Importing registers the ``RDSNet`` meta-architecture (``META_ARCH_REGISTRY``);
:func:`add_rdsnet_config` adds the ``MODEL.RDSNET`` and ``MODEL.MBRM`` keys.
"""
import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)

from segzoo.modeling.layers import mask_tight_boxes  # noqa: E402  (part of the API: BOX_REFINEMENT "direct")

from .config import add_rdsnet_config  # noqa: E402
from .geometry import correlate, crop_masks, expand_boxes, pixel_ranges, sample_maps  # noqa: E402
from .head import RDSNetHead  # noqa: E402
from .mask_loss import ImageMaskTargets, correlation_mask_loss, ohem_instance_losses, ohem_select  # noqa: E402
from .mbrm import MBRM  # noqa: E402
from .pixel_stream import PixelStream  # noqa: E402
from .rdsnet import RDSNet  # noqa: E402
from .plugin import PLUGIN  # noqa: E402  (the entry point's target)

__all__ = [
    "PLUGIN",
    "MBRM",
    "PixelStream",
    "RDSNet",
    "RDSNetHead",
    "ImageMaskTargets",
    "add_rdsnet_config",
    "correlation_mask_loss",
    "correlate",
    "crop_masks",
    "expand_boxes",
    "mask_tight_boxes",
    "ohem_instance_losses",
    "ohem_select",
    "pixel_ranges",
    "sample_maps",
]
