"""The Trainer used by train_net.py: Detectron2's DefaultTrainer with COCO evaluation
built from dataset metadata, datasets registered from the config, and clear errors."""
import logging
import os

from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators

from .._compat import detectron2_has_ops
from ..config import runtime_config
from ..data import CheckedDatasetMapper, build_train_mapper, ensure_dataset_files, register_datasets_from_cfg
from ..errors import UserError
from .distributed import cpu_ddp
from .optim import build_optimizer

__all__ = ["EVALUATORS", "Trainer", "register_datasets_from_cfg", "setup_cfg"]


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


class Trainer(DefaultTrainer):
    """DefaultTrainer + evaluator chosen by TEST.EVALUATOR + checked data loading + multi-process
    training of CPU models (:func:`~segzoo.engine.distributed.cpu_ddp`)."""

    def __init__(self, cfg):
        with cpu_ddp():
            super().__init__(cfg)

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
    """:func:`segzoo.config.runtime_config` of the command line, frozen, then default_setup."""
    cfg = runtime_config(args.config_file, args.opts, register_coco=getattr(args, "register_coco", None) or (),
                         freeze=True)
    default_setup(cfg, args)
    logging.getLogger("detectron2.engine.train_loop").addFilter(_HideUserErrorTracebacks())
    return cfg
