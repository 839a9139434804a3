"""BlendMask on FCOS as Detectron2 meta-architectures.

Importing registers ``FCOS`` and ``BlendMask`` (``META_ARCH_REGISTRY``) and the
``build_fcos_resnet_fpn_backbone`` backbone; :func:`add_blendmask_config` adds the
``MODEL.FCOS`` / ``MODEL.BASIS_MODULE`` / ``MODEL.TOP_MODULE`` / ``MODEL.BLENDMASK`` keys.

:func:`blender` is BlendMask's blender as one fused C++/CUDA op and
:func:`blender_composition` the same function in PyTorch ops.
"""
import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)

from segzoo.ops import blender, blender_composition  # noqa: E402

from .backbone import build_fcos_resnet_fpn_backbone  # noqa: E402
from .basis_module import ProtoNet, semantic_targets  # noqa: E402
from .blender_head import Blender  # noqa: E402
from .blendmask import BlendMask  # noqa: E402
from .checkpoint import convert_adelaidet_state_dict  # noqa: E402
from .config import add_blendmask_config, add_fcos_config  # noqa: E402
from .fcos import FCOS, FCOSPositives  # noqa: E402
from .fcos_head import FCOSHead  # noqa: E402
from .fcos_targets import fcos_targets  # noqa: E402
from .plugin import PLUGIN  # noqa: E402  (the entry point's target)

__all__ = [
    "PLUGIN",
    "BlendMask",
    "Blender",
    "FCOS",
    "FCOSPositives",
    "FCOSHead",
    "ProtoNet",
    "add_blendmask_config",
    "add_fcos_config",
    "blender",
    "blender_composition",
    "build_fcos_resnet_fpn_backbone",
    "convert_adelaidet_state_dict",
    "fcos_targets",
    "semantic_targets",
]
