"""The Trainer used by train_net.py: Detectron2's DefaultTrainer with COCO evaluation
built from dataset metadata, datasets registered from the config, clear errors, and training that
is reproducible with ``SEED`` >= 0 and resumes where it stopped (crash-safe checkpoints, the data
stream continued instead of restarted, per-iteration seeds)."""
import logging
import os
import re

from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .._compat import detectron2_has_ops
from ..caps import fit_detection_caps
from ..config import runtime_config
from ..data import CheckedDatasetMapper, build_train_mapper, ensure_dataset_files, register_datasets_from_cfg
from ..data.stream import build_resumable_train_loader
from ..errors import UserError
from .distributed import cpu_ddp
from .optim import build_optimizer
from .resume import IterationSeeds, make_writes_atomic, use_deterministic_kernels

__all__ = ["EVALUATORS", "Trainer", "TrainingDiverged", "register_datasets_from_cfg", "setup_cfg"]


def _coco_evaluator(cfg, dataset_name, output_dir):
    return COCOEvaluator(
        dataset_name,
        tasks=("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",),
        distributed=True,
        output_dir=output_dir,
        use_fast_impl=detectron2_has_ops(),
        # as many detections per image as the model keeps (segzoo.caps), at least COCO's 100
        max_dets_per_image=max(100, cfg.TEST.DETECTIONS_PER_IMAGE),
    )


# name -> fn(cfg, dataset_name, output_dir) -> DatasetEvaluator. Plugins add theirs.
EVALUATORS = {"coco": _coco_evaluator}


class Trainer(DefaultTrainer):
    """DefaultTrainer + evaluator chosen by TEST.EVALUATOR + checked data loading + multi-process
    training of CPU models (:func:`~segzoo.engine.distributed.cpu_ddp`) + reproducible, resumable
    training: the data come from :func:`~segzoo.data.stream.build_resumable_train_loader`, with
    ``SEED`` >= 0 PyTorch's deterministic kernels are used and every iteration reseeds the global RNGs
    from (SEED, rank, iteration), checkpoints
    are written atomically, and a non-finite loss stops training with a :class:`TrainingDiverged`."""

    def __init__(self, cfg):
        if cfg.SEED >= 0:
            use_deterministic_kernels()
        with cpu_ddp():
            super().__init__(cfg)
        make_writes_atomic(self.checkpointer)

    def build_hooks(self):
        hooks = super().build_hooks()
        if self.cfg.SEED >= 0:
            hooks.insert(0, IterationSeeds(self.cfg.SEED))
        return hooks

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        # continue the data where the checkpoint's run left it (read when iteration begins)
        self._trainer.data_loader.start_iter = self.start_iter

    # Detectron2 v0.6's DefaultTrainer saves only the iteration and the hooks' state, not the optimizer's
    # (its SimpleTrainer has it; later versions delegate as below): without it a resumed Adam / momentum run
    # restarts its moments.
    def state_dict(self):
        ret = super().state_dict()
        ret.setdefault("_trainer", self._trainer.state_dict())
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "load_state_dict" not in DefaultTrainer.__dict__:
            if "_trainer" in state_dict:
                self._trainer.load_state_dict(state_dict["_trainer"])
            else:
                logging.getLogger(__name__).warning("the checkpoint has no optimizer state: it starts afresh")

    def train(self):
        try:
            return super().train()
        except FloatingPointError as e:
            last = os.path.join(self.cfg.OUTPUT_DIR, "last_checkpoint")
            kept = open(last).read().strip() if os.path.isfile(last) else "none was written"
            losses = ", ".join(f"{k} {float(v):.4g}" for k, v in re.findall(r"'(\w+)': (?:np\.float\d+\()?([-+\w.]+)", str(e)))
            raise TrainingDiverged(
                f"training stopped at iteration {self.iter}: the loss became infinite or NaN "
                f"({losses or str(e).strip().splitlines()[0]}); "
                f"the last good checkpoint is kept ({kept}); "
                "lower SOLVER.BASE_LR or set SOLVER.CLIP_GRADIENTS, then rerun with --resume") from e

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
            return build_resumable_train_loader(cfg, build_train_mapper(cfg))
        except AssertionError as e:  # Detectron2 asserts on empty datasets
            names = list(cfg.DATASETS.TRAIN)
            images = sum(len(DatasetCatalog.get(n)) for n in names)
            if images and cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
                raise UserError(f"training data {names}: none of its {images} images has a usable (non-crowd) "
                                "annotation, nothing to learn from (with DATALOADER.FILTER_EMPTY_ANNOTATIONS False "
                                "they train as background only)") from e
            raise UserError(f"training data {names}: {e}") from e

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        dicts = DatasetCatalog.get(dataset_name)
        if len(dicts) == 0:
            raise UserError(f"dataset '{dataset_name}' is empty: it has no images to evaluate")
        return build_detection_test_loader(cfg, dataset_name, mapper=CheckedDatasetMapper(cfg, False))


class TrainingDiverged(UserError):
    """The training loss became non-finite; training stopped before applying that step."""


class _HideUserErrorTracebacks(logging.Filter):
    """Detectron2's training loop logs every exception with its traceback before re-raising;
    for a UserError the one-line message printed by train_net.py says everything."""

    def filter(self, record):
        return not (record.exc_info and isinstance(record.exc_info[1], (UserError, FloatingPointError)))


def setup_cfg(args):
    """:func:`segzoo.config.runtime_config` of the command line, detection caps fitted to the data
    (:func:`segzoo.caps.fit_detection_caps`), frozen, then default_setup."""
    cfg = runtime_config(args.config_file, args.opts, register_coco=getattr(args, "register_coco", None) or ())
    caps = fit_detection_caps(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    # the library's own messages in the console and OUTPUT_DIR/log.txt, beside Detectron2's
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="segzoo", abbrev_name="segzoo")
    if caps:
        logging.getLogger("segzoo").info(caps)
    logging.getLogger("detectron2.engine.train_loop").addFilter(_HideUserErrorTracebacks())
    return cfg
