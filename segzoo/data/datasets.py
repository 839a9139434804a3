"""Dataset registration: the synthetic shapes splits and any COCO-format dataset."""
import logging
import os
from dataclasses import replace

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..errors import UserError
from .shapes import CROWDED_SPEC, SHAPE_CLASSES, ShapesSpec, generate_shapes, shapes_split_dir
from .validate import load_checked_coco_json

__all__ = [
    "DEFAULT_DATASETS_ROOT",
    "CROWDED_SHAPES_SPECS",
    "DEFAULT_SHAPES_SPECS",
    "SHAPES_PRESETS",
    "ensure_dataset_files",
    "register_coco_dataset",
    "register_datasets_from_cfg",
    "register_shapes",
    "register_default_shapes",
]

logger = logging.getLogger(__name__)

DEFAULT_DATASETS_ROOT = os.environ.get(
    "SEGZOO_DATASETS", os.path.join(os.path.expanduser("~"), ".cache", "segzoo", "datasets")
)
# shapes_train / shapes_val as registered on import; DATASETS.SHAPES.* in a config
# re-registers them with other sizes.
DEFAULT_SHAPES_SPECS = {
    "train": ShapesSpec(num_images=1000, seed=0),
    "val": ShapesSpec(num_images=100, seed=1),
}
# shapes_crowded_train / shapes_crowded_val: hundreds of small instances per image
CROWDED_SHAPES_SPECS = {
    "train": replace(CROWDED_SPEC, num_images=200, seed=0),
    "val": replace(CROWDED_SPEC, num_images=50, seed=1),
}
# dataset-name prefix -> split specs; each is registered as <prefix>_train and <prefix>_val
SHAPES_PRESETS = {"shapes": DEFAULT_SHAPES_SPECS, "shapes_crowded": CROWDED_SHAPES_SPECS}


def register_shapes(name: str, split: str, spec: ShapesSpec, root: str = None) -> None:
    """Register a shapes split under ``name``; its files are generated on first use."""
    root = os.path.expanduser(root or DEFAULT_DATASETS_ROOT)
    folder = shapes_split_dir(root, split, spec)
    json_file = os.path.join(folder, "instances.json")
    image_root = os.path.join(folder, "images")

    def load():
        generate_shapes(root, split, spec)
        return load_coco_json(json_file, image_root, name)

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
        thing_classes=list(SHAPE_CLASSES),
        shapes=dict(root=root, split=split, spec=spec),
    )


def register_default_shapes(root: str = None, num_train: int = None, num_val: int = None,
                            image_size: int = None, seed: int = None) -> None:
    """Register every preset of :data:`SHAPES_PRESETS` (``shapes_train``, ``shapes_val``,
    ``shapes_crowded_train``, ...), with the given sizes / seed offset instead of the presets'."""
    for prefix, specs in SHAPES_PRESETS.items():
        for split in ("train", "val"):
            base = specs[split]
            n = {"train": num_train, "val": num_val}[split]
            spec = replace(base, num_images=n or base.num_images, image_size=image_size or base.image_size,
                           seed=base.seed if seed is None else base.seed + seed)
            register_shapes(f"{prefix}_{split}", split, spec, root)


def ensure_dataset_files(name: str) -> None:
    """Make sure a registered dataset's files exist (generates shapes splits)."""
    meta = MetadataCatalog.get(name)
    shapes = meta.get("shapes")
    if shapes is not None:
        generate_shapes(shapes["root"], shapes["split"], shapes["spec"])


def register_coco_dataset(name: str, json_file: str, image_root: str) -> None:
    """Register a COCO-format instances dataset, with clear errors for wrong paths and bad annotations
    (:mod:`segzoo.data.validate`)."""
    json_file = os.path.abspath(os.path.expanduser(json_file))
    image_root = os.path.abspath(os.path.expanduser(image_root))
    if not os.path.isfile(json_file):
        raise UserError(f"dataset '{name}': annotation file not found: {json_file}")
    if not os.path.isdir(image_root):
        raise UserError(f"dataset '{name}': image folder not found: {image_root}")
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            return
        raise UserError(
            f"dataset '{name}' is already registered with other files; pick another name"
        )
    # as Detectron2's register_coco_instances, with the annotations checked and repaired on load
    DatasetCatalog.register(name, lambda: load_checked_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")


def register_datasets_from_cfg(cfg, extra=(), check: bool = True) -> None:
    """Register the COCO-format datasets named in DATASETS.COCO_FORMAT (+ ``extra``), re-register
    the shapes splits when DATASETS.SHAPES asks for other sizes, and (``check``) make sure every
    dataset in DATASETS.TRAIN / TEST is registered."""
    s = cfg.DATASETS.SHAPES
    if s.ROOT or s.NUM_TRAIN or s.NUM_VAL or s.IMAGE_SIZE or s.SEED:
        register_default_shapes(root=s.ROOT or None, num_train=s.NUM_TRAIN or None,
                                num_val=s.NUM_VAL or None, image_size=s.IMAGE_SIZE or None,
                                seed=s.SEED)
    for entry in list(cfg.DATASETS.COCO_FORMAT) + list(extra):
        if len(entry) != 3:
            raise UserError(
                f"DATASETS.COCO_FORMAT entries are [name, instances_json, image_root], got {entry}"
            )
        register_coco_dataset(*entry)
    if not check:
        return
    known = set(DatasetCatalog.list())
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        if name not in known:
            raise UserError(
                f"dataset '{name}' is not registered: register it with "
                f"--register-coco {name} INSTANCES_JSON IMAGE_DIR (or DATASETS.COCO_FORMAT)"
            )
