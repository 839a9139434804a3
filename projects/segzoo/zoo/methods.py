"""The methods of the model-zoo comparison and the config overrides that put them on one harness.

Every method starts from one of our shapes configs; :func:`harness_opts` then overrides the
dataset, number of classes, backbone, input size and schedule identically for all of them, so
the only differences left are the methods' own heads and losses. Methods built on another
(SharpMask refines a frozen DeepMask, MBRM on a frozen RDSNet, Fast R-CNN on SharpMask
proposals) name their ``parent`` and start from its final checkpoint.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

__all__ = [
    "BACKBONES",
    "Harness",
    "METHODS",
    "Method",
    "Schedule",
    "detections_opts",
    "harness_opts",
    "method_order",
]

POOLERS = ["ROIPool", "ROIWarp", "ROIAlign", "ROIAlignMax", "ROIAlignV2"]

# name -> ResNet overrides; the "slim" R-18 (32-wide stem and res2) is what the shapes configs use
BACKBONES: Dict[str, List[str]] = {
    "R-18-slim": ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.STEM_OUT_CHANNELS", "32",
                  "MODEL.RESNETS.RES2_OUT_CHANNELS", "32"],
    "R-18": ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.STEM_OUT_CHANNELS", "64",
             "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"],
    "R-50": ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STEM_OUT_CHANNELS", "64",
             "MODEL.RESNETS.RES2_OUT_CHANNELS", "256"],
}

# every head's class-count key: all are set, whichever the method reads
NUM_CLASSES_KEYS = ["MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.RETINANET.NUM_CLASSES", "MODEL.FCOS.NUM_CLASSES",
                    "MODEL.BASIS_MODULE.NUM_CLASSES"]


@dataclass
class Method:
    name: str
    label: str
    config: str
    # "instance": class-aware detections evaluated with COCO AP; "proposals": class-agnostic
    # segment proposals evaluated with AR; "boxes": detections without masks (box AP only)
    kind: str = "instance"
    parent: Optional[str] = None
    # config key that receives the parent's final checkpoint
    parent_key: str = "MODEL.WEIGHTS"
    # length of this stage relative to the schedule (second stages of a recipe train shorter)
    schedule_fraction: float = 1.0
    # trains Fast R-CNN on the parent's exported proposals
    uses_proposals: bool = False
    note: str = ""


def _mask_rcnn(pooler):
    return Method(f"mask_rcnn_{pooler}", f"Mask R-CNN ({pooler})",
                  f"configs/MaskRCNN/shapes_R_18_FPN_pooler_{pooler}.yaml")


METHODS: Dict[str, Method] = {m.name: m for m in [
    *[_mask_rcnn(p) for p in POOLERS],
    Method("blendmask", "BlendMask", "configs/BlendMask/shapes_R_18.yaml"),
    Method("retinanet", "RetinaNet (Detectron2)", "configs/RDSNet/shapes_RetinaNet_R_18.yaml", kind="boxes",
           note="Detectron2's RetinaNet head (no norm in the cls / box towers)"),
    Method("retinanet_gn", "RetinaNet-GN", "configs/RDSNet/shapes_RetinaNet_GN_R_18.yaml", kind="boxes",
           note="RDSNet's detector alone: GN cls / box towers, whole-model gradient clipping"),
    Method("rdsnet", "RDSNet", "configs/RDSNet/shapes_R_18.yaml"),
    Method("rdsnet_mbrm", "RDSNet + MBRM", "configs/RDSNet/shapes_R_18_mbrm.yaml", parent="rdsnet",
           schedule_fraction=0.3, note="MBRM alone trains on the frozen RDSNet (0.3 of the schedule)"),
    Method("deepmask", "DeepMask (ours)", "configs/SharpMask/shapes_deepmask_R_18.yaml", kind="proposals"),
    Method("sharpmask", "SharpMask", "configs/SharpMask/shapes_sharpmask_R_18.yaml", kind="proposals",
           parent="deepmask", schedule_fraction=0.75,
           note="refinement trains on the frozen DeepMask (0.75 of the schedule)"),
    Method("fast_rcnn_sharpmask", "Fast R-CNN on SharpMask", "configs/SharpMask/shapes_fast_rcnn_R_18_FPN_sharpmask.yaml",
           kind="boxes", parent="sharpmask", uses_proposals=True,
           note="trained on exported SharpMask proposals; latency includes computing them"),
]}


def method_order(names) -> List[str]:
    """``names`` plus every parent they need, parents first, in METHODS order."""
    from ..errors import UserError

    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    need = set()
    for n in names:
        while n is not None and n not in need:
            need.add(n)
            n = METHODS[n].parent
    return [n for n in METHODS if n in need]


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


def harness_opts(method: Method, h: Harness) -> List[str]:
    """The overrides that put ``method`` on the harness (parent weights and proposal files are
    added by the caller, which knows where they are)."""
    from ..errors import UserError

    if h.backbone not in BACKBONES:
        raise UserError(f"unknown backbone {h.backbone!r}; known: {list(BACKBONES)}")
    s = str(h.size)
    opts = [*h.data_opts,
            "DATASETS.TRAIN", f"('{h.train}',)", "DATASETS.TEST", f"('{h.test}',)",
            *[x for k in NUM_CLASSES_KEYS for x in (k, str(h.num_classes))],
            *BACKBONES[h.backbone],
            "INPUT.MIN_SIZE_TRAIN", f"({s},)", "INPUT.MAX_SIZE_TRAIN", s,
            "INPUT.MIN_SIZE_TEST", s, "INPUT.MAX_SIZE_TEST", s,
            *h.schedule.opts(method.schedule_fraction),
            "MODEL.DEVICE", h.device, "SEED", str(h.seed)]
    return opts + list(h.extra_opts)


# --- forcing a number of detections (latency against instances per image) -----------------

def _rcnn_detections(n):
    return ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.ROI_HEADS.NMS_THRESH_TEST", "1.0",
            "TEST.DETECTIONS_PER_IMAGE", str(n), "MODEL.RPN.POST_NMS_TOPK_TEST", str(max(n, 300)),
            "MODEL.RPN.PRE_NMS_TOPK_TEST", str(max(n, 500))]


def _fcos_detections(n):
    return ["MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.NMS_TH", "1.0",
            "MODEL.FCOS.PRE_NMS_TOPK_TEST", str(max(n, 1000)), "MODEL.FCOS.POST_NMS_TOPK_TEST", str(n),
            "TEST.DETECTIONS_PER_IMAGE", str(n)]


def _retina_detections(n):
    return ["MODEL.RETINANET.SCORE_THRESH_TEST", "0.0", "MODEL.RETINANET.NMS_THRESH_TEST", "1.0",
            "MODEL.RETINANET.TOPK_CANDIDATES_TEST", str(max(n, 1000)), "TEST.DETECTIONS_PER_IMAGE", str(n)]


def _sharpmask_detections(n):
    return ["MODEL.SHARPMASK.TEST.TOP_N", str(n), "MODEL.SHARPMASK.TEST.NMS_THRESH", "1.0"]


def _fast_rcnn_detections(n):
    return _rcnn_detections(n) + ["MODEL.SHARPMASK.PROPOSAL_TOPK_TEST", str(max(n, 300))]


_DETECTIONS: Dict[str, Callable[[int], List[str]]] = {
    "blendmask": _fcos_detections, "retinanet": _retina_detections, "retinanet_gn": _retina_detections,
    "rdsnet": _retina_detections, "rdsnet_mbrm": _retina_detections,
    "deepmask": _sharpmask_detections, "sharpmask": _sharpmask_detections,
    "fast_rcnn_sharpmask": _fast_rcnn_detections,
}


def detections_opts(method: Method, n: int) -> List[str]:
    """Overrides that make ``method`` output exactly ``n`` instances per image whatever its
    weights (score threshold 0, NMS off, cap n), so latency can be measured against n."""
    return _DETECTIONS.get(method.name, _rcnn_detections)(n)
