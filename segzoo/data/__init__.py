"""Datasets: the synthetic shapes set and COCO-format registration.

Importing this module registers ``shapes_train`` and ``shapes_val``.
"""
from .datasets import (
    DEFAULT_DATASETS_ROOT,
    DEFAULT_SHAPES_SPECS,
    ensure_dataset_files,
    register_coco_dataset,
    register_datasets_from_cfg,
    register_default_shapes,
    register_shapes,
)
from .mapper import TRAIN_MAPPERS, CheckedDatasetMapper, build_train_mapper
from .shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes, render_image

register_default_shapes()

__all__ = [
    "CheckedDatasetMapper",
    "TRAIN_MAPPERS",
    "build_train_mapper",
    "DEFAULT_DATASETS_ROOT",
    "DEFAULT_SHAPES_SPECS",
    "SHAPE_CLASSES",
    "ShapesSpec",
    "ensure_dataset_files",
    "generate_shapes",
    "register_coco_dataset",
    "register_datasets_from_cfg",
    "register_default_shapes",
    "register_shapes",
    "render_image",
]
