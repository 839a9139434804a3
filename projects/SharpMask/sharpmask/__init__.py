"""DeepMask-ours and SharpMask (Pinheiro et al., ECCV 2016) on Detectron2.

Importing registers the ``SharpMask`` meta-architecture and ``SharpMaskRCNN`` (a
``GeneralizedRCNN`` for SharpMask proposals) (``META_ARCH_REGISTRY``), the
``SharpMaskProposals`` proposal generator (``PROPOSAL_GENERATOR_REGISTRY``), the
``sharpmask_patches`` training mapper (``INPUT.TRAIN_MAPPER``) and the
``segment_proposals`` evaluator (``TEST.EVALUATOR``); :func:`add_sharpmask_config` adds
the ``MODEL.SHARPMASK`` keys.
"""
import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.data import TRAIN_MAPPERS  # noqa: E402
from segzoo.engine import EVALUATORS  # noqa: E402

from .config import add_sharpmask_config  # noqa: E402
from .evaluator import SegmentProposalEvaluator  # noqa: E402
from .proposal_generator import SharpMaskProposals, SharpMaskRCNN  # noqa: E402
from .refinement import SharpMaskRefinement  # noqa: E402
from .sampler import (  # noqa: E402
    CategoryBalancedIndex,
    PatchGeometry,
    PatchSampler,
    SharpMaskDatasetMapper,
    area_resample,
    is_positive,
)
from .sharpmask import SharpMask, WindowSet  # noqa: E402
from .trunk import DeepMaskHead, DeepMaskTrunk, use_reflect_padding  # noqa: E402
from .plugin import PLUGIN  # noqa: E402  (the entry point's target)

TRAIN_MAPPERS["sharpmask_patches"] = lambda cfg: SharpMaskDatasetMapper(cfg, True)
EVALUATORS["segment_proposals"] = SegmentProposalEvaluator.from_cfg

__all__ = [
    "PLUGIN",
    "CategoryBalancedIndex",
    "DeepMaskHead",
    "DeepMaskTrunk",
    "PatchGeometry",
    "PatchSampler",
    "SegmentProposalEvaluator",
    "SharpMask",
    "SharpMaskDatasetMapper",
    "SharpMaskProposals",
    "SharpMaskRCNN",
    "SharpMaskRefinement",
    "WindowSet",
    "add_sharpmask_config",
    "area_resample",
    "is_positive",
    "use_reflect_padding",
]
