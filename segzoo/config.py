"""Config helpers: ``get_cfg`` with every plugin's keys, Detectron2 base configs by name, and
:func:`runtime_config`, the config every command runs with (training, demo, benchmarks, exports).

Our yaml files ``_BASE_`` on Detectron2's own configs as ``detectron2://<path>``, e.g.
``_BASE_: "detectron2://Base-RCNN-FPN.yaml"``, resolved through
``detectron2.model_zoo.get_config_file`` so they work wherever Detectron2 is installed.
"""
import logging
import os
import tempfile

import yaml
from detectron2.config import CfgNode as _D2CfgNode
from detectron2.config import get_cfg as _d2_get_cfg

from .errors import UserError

__all__ = ["CfgNode", "add_segzoo_config", "get_cfg", "load_config", "runtime_config"]

logger = logging.getLogger(__name__)

D2_BASE_PREFIX = "detectron2://"


def _adopt(node) -> None:
    """Make every sub-node the class of ``node`` (in place). Plugins written for Detectron2 add
    their keys with Detectron2's ``CfgNode``; yacs refuses to merge a yaml node into a node of
    another class."""
    for k, v in list(node.items()):
        if isinstance(v, _D2CfgNode):
            if type(v) is not type(node):
                v = type(node)(v)
                dict.__setitem__(node, k, v)
            _adopt(v)


class CfgNode(_D2CfgNode):
    """Detectron2's CfgNode that also resolves ``_BASE_: "detectron2://..."`` and accepts keys
    added with Detectron2's own ``CfgNode`` (as every Detectron2 project's ``add_*_config`` does)."""

    def merge_from_other_cfg(self, cfg_other):
        _adopt(self)
        return super().merge_from_other_cfg(cfg_other)

    def merge_from_list(self, cfg_list):
        _adopt(self)
        return super().merge_from_list(cfg_list)

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False):
        try:
            with open(filename) as f:
                raw = yaml.safe_load(f) or {}
        except yaml.constructor.ConstructorError:
            # e.g. Detectron2's own base files use python tags: they have no detectron2:// base
            return super().load_yaml_with_base(filename, allow_unsafe=allow_unsafe)
        base = raw.get("_BASE_") if isinstance(raw, dict) else None
        if isinstance(base, str) and base.startswith(D2_BASE_PREFIX):
            from detectron2 import model_zoo

            try:
                raw["_BASE_"] = model_zoo.get_config_file(base[len(D2_BASE_PREFIX):])
            except RuntimeError as e:
                raise UserError(f"{filename}: base config {base} not found in Detectron2's model zoo") from e
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
                yaml.safe_dump(raw, tmp)
            try:
                return super().load_yaml_with_base(tmp.name, allow_unsafe=allow_unsafe)
            finally:
                os.unlink(tmp.name)
        return super().load_yaml_with_base(filename, allow_unsafe=allow_unsafe)


def add_segzoo_config(cfg) -> None:
    """Keys shared by all plugins: datasets from the command line / config, shapes sizes."""
    CN = type(cfg)  # nodes of the same class as the root, so yaml files can set them

    # [[name, instances_json, image_root], ...]: COCO-format datasets registered before use.
    cfg.DATASETS.COCO_FORMAT = []
    cfg.DATASETS.SHAPES = CN()
    cfg.DATASETS.SHAPES.ROOT = ""  # "" = $SEGZOO_DATASETS or ~/.cache/segzoo/datasets
    cfg.DATASETS.SHAPES.NUM_TRAIN = 0  # 0 = default (1000)
    cfg.DATASETS.SHAPES.NUM_VAL = 0  # 0 = default (100)
    cfg.DATASETS.SHAPES.IMAGE_SIZE = 0  # 0 = default (256)
    cfg.DATASETS.SHAPES.SEED = 0
    # "coco" (bbox + segm via COCOEvaluator) or any name registered in segzoo.engine.EVALUATORS
    cfg.TEST.EVALUATOR = "coco"
    # raise the detection caps (and COCO's max detections) to the most crowded image of the datasets
    # (segzoo.caps); never lowers them, so COCO and the shapes data keep their configs' values
    cfg.TEST.DETECTIONS_FROM_DATA = True
    # "default" (Detectron2's DatasetMapper) or any name in segzoo.data.TRAIN_MAPPERS
    cfg.INPUT.TRAIN_MAPPER = "default"
    # "SGD" (Detectron2's) or "AdamW"; AdamW converges much faster when training from scratch
    cfg.SOLVER.OPTIMIZER = "SGD"
    cfg.TEST.VIS_PERIOD = 0


def get_cfg() -> CfgNode:
    """Detectron2's default config plus the keys of every installed plugin."""
    from .plugins import add_plugin_configs

    cfg = CfgNode(_d2_get_cfg())
    add_segzoo_config(cfg)
    add_plugin_configs(cfg)
    _adopt(cfg)
    return cfg


def load_config(config_file: str = "", opts=None) -> CfgNode:
    """get_cfg() + merge a file and ``KEY VALUE`` overrides, with one-line errors."""
    cfg = get_cfg()
    if config_file:
        if not os.path.isfile(config_file):
            raise UserError(f"config file not found: {config_file}")
        try:
            cfg.merge_from_file(config_file)
        except KeyError as e:
            raise UserError(f"{config_file}: {_key_error(e)}") from e
    if opts:
        if len(opts) % 2:
            raise UserError(f"overrides must be KEY VALUE pairs, got an odd number: {opts}")
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, AssertionError) as e:  # yacs asserts on unknown keys in merge_from_list
            raise UserError(f"command line: {_key_error(e)}") from e
        except ValueError as e:
            raise UserError(f"command line: {e}") from e
    return cfg


def runtime_config(config_file: str = "", opts=(), register_coco=(), device: str = None,
                   check_datasets: bool = True, freeze: bool = False) -> CfgNode:
    """The config a command runs with.

    Every installed plugin is imported (its config keys known, its models registered), then
    ``config_file`` and the ``KEY VALUE`` ``opts`` are merged (:func:`load_config`) and
    ``MODEL.DEVICE`` is set to ``device`` when given. The datasets the config names are
    registered: ``DATASETS.COCO_FORMAT`` plus the ``register_coco`` entries
    (``[name, instances_json, image_root]``, as ``--register-coco`` gives them) and the shapes
    splits when ``DATASETS.SHAPES`` asks for other sizes; with ``check_datasets`` every dataset in
    ``DATASETS.TRAIN`` / ``TEST`` must then be registered. A CUDA ``MODEL.DEVICE`` with no CUDA
    device visible falls back to the CPU with one logged warning.
    """
    from .data import register_datasets_from_cfg
    from .plugins import import_plugins

    import_plugins()
    cfg = load_config(config_file, list(opts or ()))
    if device:
        cfg.MODEL.DEVICE = device
    if cfg.MODEL.DEVICE.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            logger.warning("MODEL.DEVICE=%s but no CUDA device is visible: running on the CPU", cfg.MODEL.DEVICE)
            cfg.MODEL.DEVICE = "cpu"
    register_datasets_from_cfg(cfg, [list(e) for e in register_coco or ()], check=check_datasets)
    if freeze:
        cfg.freeze()
    return cfg


def _key_error(e: Exception) -> str:
    msg = e.args[0] if e.args else str(e)
    if "Non-existent config key" in str(msg) or "Non-existent key" in str(msg):
        key = str(msg).split(":", 1)[-1].strip().strip("'\"")
        return (f"unknown config key {key} (misspelt, or its plugin is not installed: "
                "run `make setup`)")
    return str(msg)
