"""Datasets: the synthetic shapes set and COCO-format registration.

Importing this module registers ``shapes_train`` and ``shapes_val``, and the crowded preset
``shapes_crowded_train`` / ``shapes_crowded_val`` (hundreds of small instances per image), and
makes Detectron2's mappers read 16-bit images scaled instead of clipped (:mod:`.image`).
"""
from .datasets import (
    CROWDED_SHAPES_SPECS,
    DEFAULT_DATASETS_ROOT,
    DEFAULT_SHAPES_SPECS,
    SHAPES_PRESETS,
    ensure_dataset_files,
    register_coco_dataset,
    register_datasets_from_cfg,
    register_default_shapes,
    register_shapes,
)
from .image import read_image, use_segzoo_image_reader
from .mapper import TRAIN_MAPPERS, CheckedDatasetMapper, build_train_mapper
from .shapes import CROWDED_SPEC, SHAPE_CLASSES, ShapesSpec, generate_shapes, render_image

register_default_shapes()
use_segzoo_image_reader()  # 16-bit images scaled, not clipped, by every Detectron2 mapper

__all__ = [
    "CROWDED_SHAPES_SPECS",
    "CROWDED_SPEC",
    "CheckedDatasetMapper",
    "TRAIN_MAPPERS",
    "build_train_mapper",
    "DEFAULT_DATASETS_ROOT",
    "DEFAULT_SHAPES_SPECS",
    "SHAPES_PRESETS",
    "SHAPE_CLASSES",
    "ShapesSpec",
    "ensure_dataset_files",
    "generate_shapes",
    "register_coco_dataset",
    "register_datasets_from_cfg",
    "register_default_shapes",
    "register_shapes",
    "read_image",
    "render_image",
    "use_segzoo_image_reader",
]
