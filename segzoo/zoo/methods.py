"""The methods of the model-zoo comparison and the config overrides that put them on one harness.

Every method starts from one of our shapes configs; :func:`harness_opts` then overrides the
dataset, number of classes, backbone, input size and schedule identically for all of them, so
the only differences left are the methods' own heads and losses. The methods are declared by the
plugins (:func:`methods`); a method built on another (a second stage on a frozen first, a detector
on another method's proposals) names its ``parent`` and starts from its final checkpoint.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import UserError

__all__ = [
    "BACKBONES",
    "Harness",
    "Method",
    "ProposalSource",
    "Schedule",
    "detections_opts",
    "harness_opts",
    "method_order",
    "methods",
    "rcnn_detections",
    "retinanet_detections",
]

# name -> ResNet overrides; the "slim" R-18 (32-wide stem and res2) is what the shapes configs use
BACKBONES: Dict[str, List[str]] = {
    "R-18-slim": ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.STEM_OUT_CHANNELS", "32",
                  "MODEL.RESNETS.RES2_OUT_CHANNELS", "32"],
    "R-18": ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.STEM_OUT_CHANNELS", "64",
             "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"],
    "R-50": ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STEM_OUT_CHANNELS", "64",
             "MODEL.RESNETS.RES2_OUT_CHANNELS", "256"],
}

# Detectron2's class-count keys (a method declares its own: Method.num_classes_keys)
NUM_CLASSES_KEYS = ["MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.RETINANET.NUM_CLASSES"]


# --- forcing a number of detections (latency against instances per image) -----------------

def rcnn_detections(n: int) -> List[str]:
    """Detectron2's R-CNN family: score threshold 0, NMS off, n detections from enough proposals."""
    return ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.ROI_HEADS.NMS_THRESH_TEST", "1.0",
            "TEST.DETECTIONS_PER_IMAGE", str(n), "MODEL.RPN.POST_NMS_TOPK_TEST", str(max(n, 300)),
            "MODEL.RPN.PRE_NMS_TOPK_TEST", str(max(n, 500))]


def retinanet_detections(n: int) -> List[str]:
    """Detectron2's RetinaNet and detectors reading its keys."""
    return ["MODEL.RETINANET.SCORE_THRESH_TEST", "0.0", "MODEL.RETINANET.NMS_THRESH_TEST", "1.0",
            "MODEL.RETINANET.TOPK_CANDIDATES_TEST", str(max(n, 1000)), "TEST.DETECTIONS_PER_IMAGE", str(n)]


@dataclass(frozen=True)
class ProposalSource:
    """How a detector trained on its parent's proposals gets them: exported to files for training
    and evaluation by ``python -m <export_module> --config-file --dataset --output --top-k --resume
    --save-every [opts]``; computed inside the detector when it is timed, with the overrides
    ``online_opts(parent_config_file, parent_weights, top_k)`` (weights "" = untrained)."""

    export_module: str
    online_opts: Callable[[str, str, int], List[str]]


@dataclass(frozen=True)
class Method:
    """One entry of the comparison, declared by its plugin (:class:`segzoo.plugins.Plugin`)."""

    name: str
    label: str
    # the shapes config it starts from, relative to the configs folder (segzoo.model_zoo)
    config: str
    # "instance": class-aware detections evaluated with COCO AP; "proposals": class-agnostic
    # segment proposals evaluated with AR; "boxes": detections without masks (box AP only)
    kind: str = "instance"
    parent: Optional[str] = None
    # config key that receives the parent's final checkpoint
    parent_key: str = "MODEL.WEIGHTS"
    # length of this stage relative to the schedule (second stages of a recipe train shorter)
    schedule_fraction: float = 1.0
    # trains on the parent's proposals (the parent is then not loaded as weights)
    proposals: Optional[ProposalSource] = None
    # n -> overrides making the model output exactly n instances per image
    detections: Callable[[int], List[str]] = rcnn_detections
    # the method's own class-count keys, besides Detectron2's
    num_classes_keys: Sequence[str] = ()
    note: str = ""

    @property
    def config_file(self) -> str:
        from ..model_zoo import get_config_file

        return get_config_file(self.config)


def methods() -> Dict[str, Method]:
    """Every installed plugin's methods, in the plugins' order; name -> :class:`Method`."""
    from ..plugins import import_plugins

    out: Dict[str, Method] = {}
    for plugin in import_plugins().values():
        for m in plugin.methods:
            if m.name in out:
                raise UserError(f"method {m.name!r} is declared twice (plugin {plugin.name!r})")
            out[m.name] = m
    return out


def method_order(names) -> List[str]:
    """``names`` plus every parent they need, parents first, otherwise in :func:`methods` order."""
    known = methods()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; known: {list(known)}")
    order: List[str] = []

    def visit(n, child=None):
        if n not in known:
            raise UserError(f"method {child!r} needs {n!r}, which no installed plugin declares")
        if n not in order:
            if known[n].parent is not None:
                visit(known[n].parent, n)
            order.append(n)

    for n in known:
        if n in names:
            visit(n)
    return order


@dataclass
class Schedule:
    """Iterations, batch and LR-decay points shared by every method (AdamW/SGD and base LR stay
    each config's own)."""

    iters: int = 300
    batch: int = 4
    steps: Tuple[float, float] = (0.75, 0.9)
    warmup: int = 100

    def opts(self, fraction: float = 1.0) -> List[str]:
        n = max(1, round(self.iters * fraction))
        steps = tuple(sorted({int(n * s) for s in self.steps if 0 < int(n * s) < n}))
        return ["SOLVER.MAX_ITER", str(n), "SOLVER.STEPS", str(steps),
                "SOLVER.WARMUP_ITERS", str(min(self.warmup, max(1, n // 10))),
                "SOLVER.IMS_PER_BATCH", str(self.batch),
                "SOLVER.CHECKPOINT_PERIOD", str(max(1, n // 4)), "TEST.EVAL_PERIOD", "0"]


@dataclass
class Harness:
    train: str = "shapes_train"
    test: str = "shapes_val"
    num_classes: int = 5
    backbone: str = "R-18-slim"
    size: int = 256
    schedule: Schedule = field(default_factory=Schedule)
    device: str = "cpu"
    seed: int = 0
    # SharpMask proposals per image given to Fast R-CNN (the shapes RPN keeps 300 at test time)
    proposals: int = 300
    # dataset-registration overrides (DATASETS.SHAPES.*, DATASETS.COCO_FORMAT) + user overrides
    data_opts: List[str] = field(default_factory=list)
    extra_opts: List[str] = field(default_factory=list)


def _num_classes_keys(method: Method) -> List[str]:
    """Every declared class-count key (all are set, whichever the method reads)."""
    keys = [*NUM_CLASSES_KEYS, *method.num_classes_keys]
    for m in methods().values():
        keys += [k for k in m.num_classes_keys if k not in keys]
    return keys


def harness_opts(method: Method, h: Harness) -> List[str]:
    """The overrides that put ``method`` on the harness (parent weights and proposal files are
    added by the caller, which knows where they are)."""
    if h.backbone not in BACKBONES:
        raise UserError(f"unknown backbone {h.backbone!r}; known: {list(BACKBONES)}")
    s = str(h.size)
    opts = [*h.data_opts,
            "DATASETS.TRAIN", f"('{h.train}',)", "DATASETS.TEST", f"('{h.test}',)",
            *[x for k in _num_classes_keys(method) for x in (k, str(h.num_classes))],
            *BACKBONES[h.backbone],
            "INPUT.MIN_SIZE_TRAIN", f"({s},)", "INPUT.MAX_SIZE_TRAIN", s,
            "INPUT.MIN_SIZE_TEST", s, "INPUT.MAX_SIZE_TEST", s,
            *h.schedule.opts(method.schedule_fraction),
            "MODEL.DEVICE", h.device, "SEED", str(h.seed)]
    return opts + list(h.extra_opts)


def detections_opts(method, n: int) -> List[str]:
    """Overrides that make ``method`` (a :class:`Method` or a declared method's name) output
    exactly ``n`` instances per image whatever its weights (score threshold 0, NMS off, cap n), so
    latency can be measured against n: its declared ``detections(n)``, the one source of these
    overrides for every latency measurement."""
    if isinstance(method, str):
        known = methods()
        if method not in known:
            raise UserError(f"unknown method {method!r}; known: {list(known)}")
        method = known[method]
    return list(method.detections(n))
