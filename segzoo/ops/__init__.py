"""C++/CUDA operators of segzoo and their Python wrappers."""
from ._ext import cuda_compiled, load_extension
from .blender import BLENDER_INTERP, blender, blender_composition
from .roi_align_family import (
    ROI_MODES,
    ROIAlignFamily,
    roi_align,
    roi_align_family,
    roi_align_max,
    roi_align_max_composition,
    roi_pool,
    roi_warp,
)

__all__ = [
    "BLENDER_INTERP",
    "blender",
    "blender_composition",
    "ROI_MODES",
    "ROIAlignFamily",
    "cuda_compiled",
    "load_extension",
    "roi_align",
    "roi_align_family",
    "roi_align_max",
    "roi_align_max_composition",
    "roi_pool",
    "roi_warp",
]
