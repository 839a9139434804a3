"""Detection caps that follow the data.

Every detector caps what it keeps per image: proposals, candidates per level, detections, and
COCO's AP counts at most 100 detections per image. Configs written for COCO (at most ~90
instances per image) or for the shapes data (20) keep those caps on crowded data (cell nuclei,
crowds, aerial images: hundreds of instances per image), where they silently cap recall.

With ``TEST.DETECTIONS_FROM_DATA`` (on by default) :func:`fit_detection_caps` counts the instances
of the most crowded image of ``DATASETS.TRAIN`` and ``DATASETS.TEST`` and raises (never lowers)
every cap of the config's meta-architecture so that many can be kept: detections per image to at
least that count, proposals and candidates to twice it; the COCO evaluator then counts as many
detections per image (``TEST.DETECTIONS_PER_IMAGE``, at least COCO's 100). On COCO and on the
shapes data nothing changes.

The caps of a meta-architecture are declared by whoever registers it: Detectron2's three here,
a plugin's in its :class:`segzoo.plugins.Plugin` (``detection_caps``).
"""
import logging
from typing import Callable, Dict, Iterable, List

from detectron2.data import DatasetCatalog

from .errors import UserError

__all__ = [
    "BUILTIN_DETECTION_CAPS",
    "detection_caps",
    "detection_caps_opts",
    "fit_detection_caps",
    "max_instances_per_image",
    "raise_caps",
    "rcnn_caps",
    "retinanet_caps",
]

logger = logging.getLogger(__name__)


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def raise_caps(cfg, minimums: Dict[str, int]) -> List[str]:
    """``KEY VALUE`` overrides raising each ``key`` of ``cfg`` to at least its minimum (keys whose
    value is already there are left out)."""
    opts = []
    for key, value in minimums.items():
        try:
            current = _get(cfg, key)
        except KeyError as e:
            raise UserError(f"detection cap {key} is not a config key") from e
        if current < value:
            opts += [key, str(int(value))]
    return opts


def rcnn_caps(cfg, n: int) -> List[str]:
    """Detectron2's R-CNN family: n detections from 2n proposals (RPN, or precomputed ones)."""
    return raise_caps(cfg, {"TEST.DETECTIONS_PER_IMAGE": n, "MODEL.RPN.PRE_NMS_TOPK_TEST": 2 * n,
                            "MODEL.RPN.POST_NMS_TOPK_TEST": 2 * n,
                            "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST": 2 * n})


def retinanet_caps(cfg, n: int) -> List[str]:
    """Detectron2's RetinaNet and detectors reading its keys: n detections, 2n candidates per level."""
    return raise_caps(cfg, {"TEST.DETECTIONS_PER_IMAGE": n, "MODEL.RETINANET.TOPK_CANDIDATES_TEST": 2 * n})


def _proposal_network_caps(cfg, n: int) -> List[str]:
    return raise_caps(cfg, {"TEST.DETECTIONS_PER_IMAGE": n, "MODEL.RPN.PRE_NMS_TOPK_TEST": 2 * n,
                            "MODEL.RPN.POST_NMS_TOPK_TEST": 2 * n})


# Detectron2's meta-architectures -> fn(cfg, n) -> overrides keeping up to n instances per image
BUILTIN_DETECTION_CAPS: Dict[str, Callable] = {
    "GeneralizedRCNN": rcnn_caps,
    "RetinaNet": retinanet_caps,
    "ProposalNetwork": _proposal_network_caps,
}


def detection_caps() -> Dict[str, Callable]:
    """Meta-architecture -> caps function: Detectron2's and every installed plugin's."""
    from .plugins import import_plugins

    out = dict(BUILTIN_DETECTION_CAPS)
    for plugin in import_plugins().values():
        out.update(plugin.detection_caps)
    return out


def detection_caps_opts(cfg, n: int) -> List[str]:
    """Overrides raising the caps of ``cfg``'s meta-architecture to keep ``n`` instances per image
    (``TEST.DETECTIONS_PER_IMAGE`` alone for an architecture that declares none)."""
    arch = cfg.MODEL.META_ARCHITECTURE
    fn = detection_caps().get(arch)
    if fn is None:
        logger.warning(f"{arch} declares no detection caps: only TEST.DETECTIONS_PER_IMAGE follows the data")
        return raise_caps(cfg, {"TEST.DETECTIONS_PER_IMAGE": n})
    return list(fn(cfg, n))


_COUNTS: Dict[str, int] = {}


def max_instances_per_image(names: Iterable[str]) -> int:
    """The most (non-crowd) instances in one image of the registered datasets ``names`` (each
    dataset is loaded once per process)."""
    best = 0
    for name in names:
        if name not in _COUNTS:
            dicts = DatasetCatalog.get(name)
            _COUNTS[name] = max((sum(1 for a in d.get("annotations", ()) if not a.get("iscrowd", 0))
                                 for d in dicts), default=0)
        best = max(best, _COUNTS[name])
    return best


def fit_detection_caps(cfg) -> str:
    """With ``TEST.DETECTIONS_FROM_DATA``, raise the caps of (unfrozen) ``cfg`` to the most crowded
    image of its datasets. Returns a line saying what changed ("" when nothing did)."""
    if not cfg.TEST.DETECTIONS_FROM_DATA:
        return ""
    names = [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]
    n = max_instances_per_image(names)
    if n <= 0:
        return ""
    opts = detection_caps_opts(cfg, n)
    if not opts:
        return ""
    cfg.merge_from_list(opts)
    changes = ", ".join(f"{k} {v}" for k, v in zip(opts[::2], opts[1::2]))
    return (f"detection caps raised for up to {n} instances per image (the most crowded image of "
            f"{', '.join(names)}): {changes}")
