"""The Trainer used by train_net.py: Detectron2's DefaultTrainer with COCO evaluation
built from dataset metadata, datasets registered from the config, and clear errors."""
import logging
import os

import torch

from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators

from .._compat import detectron2_has_ops
from ..config import load_config
from ..data import CheckedDatasetMapper, build_train_mapper, ensure_dataset_files, register_coco_dataset, register_default_shapes
from ..errors import UserError
from .optim import build_optimizer

__all__ = ["EVALUATORS", "Trainer", "register_datasets_from_cfg", "setup_cfg"]

logger = logging.getLogger(__name__)


def _coco_evaluator(cfg, dataset_name, output_dir):
    return COCOEvaluator(
        dataset_name,
        tasks=("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",),
        distributed=True,
        output_dir=output_dir,
        use_fast_impl=detectron2_has_ops(),
    )


# name -> fn(cfg, dataset_name, output_dir) -> DatasetEvaluator. Plugins add theirs.
EVALUATORS = {"coco": _coco_evaluator}


def register_datasets_from_cfg(cfg, extra=()):
    """Register the COCO-format datasets named in DATASETS.COCO_FORMAT (+ ``extra``), re-register
    the shapes splits when DATASETS.SHAPES asks for other sizes, and check every dataset the
    config uses exists."""
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
    known = set(DatasetCatalog.list())
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        if name not in known:
            raise UserError(
                f"dataset '{name}' is not registered: register it with "
                f"--register-coco {name} INSTANCES_JSON IMAGE_DIR (or DATASETS.COCO_FORMAT)"
            )


class Trainer(DefaultTrainer):
    """DefaultTrainer + evaluator chosen by TEST.EVALUATOR + checked data loading."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        ensure_dataset_files(dataset_name)
        names = [n.strip() for n in cfg.TEST.EVALUATOR.split(",") if n.strip()]
        unknown = [n for n in names if n not in EVALUATORS]
        if unknown:
            raise UserError(f"TEST.EVALUATOR: unknown evaluator(s) {unknown}; known: {sorted(EVALUATORS)}")
        evaluators = [EVALUATORS[n](cfg, dataset_name, output_folder) for n in names]
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        try:
            return build_detection_train_loader(cfg, mapper=build_train_mapper(cfg))
        except AssertionError as e:  # Detectron2 asserts on empty datasets
            raise UserError(f"training data {list(cfg.DATASETS.TRAIN)}: {e}") from e

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        dicts = DatasetCatalog.get(dataset_name)
        if len(dicts) == 0:
            raise UserError(f"dataset '{dataset_name}' is empty: it has no images to evaluate")
        return build_detection_test_loader(cfg, dataset_name, mapper=CheckedDatasetMapper(cfg, False))


class _HideUserErrorTracebacks(logging.Filter):
    """Detectron2's training loop logs every exception with its traceback before re-raising;
    for a UserError the one-line message printed by train_net.py says everything."""

    def filter(self, record):
        return not (record.exc_info and isinstance(record.exc_info[1], UserError))


def setup_cfg(args):
    """Load the config (all plugin keys known), register datasets, freeze, default_setup."""
    cfg = load_config(args.config_file, args.opts)
    register_datasets_from_cfg(cfg, getattr(args, "register_coco", None) or ())
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE=%s but no CUDA device is visible: running on the CPU", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    default_setup(cfg, args)
    logging.getLogger("detectron2.engine.train_loop").addFilter(_HideUserErrorTracebacks())
    return cfg
