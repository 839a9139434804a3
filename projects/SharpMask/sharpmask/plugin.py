"""This package's declaration to segzoo (entry point ``segzoo.plugins``: ``sharpmask:PLUGIN``)."""
from segzoo.caps import raise_caps, rcnn_caps
from segzoo.plugins import Plugin
from segzoo.zoo import Method, ProposalSource, rcnn_detections

from .config import add_sharpmask_config


def sharpmask_detections(n: int):
    """Overrides making DeepMask / SharpMask output exactly n proposals (no NMS)."""
    return ["MODEL.SHARPMASK.TEST.TOP_N", str(n), "MODEL.SHARPMASK.TEST.NMS_THRESH", "1.0"]


def fast_rcnn_detections(n: int):
    return rcnn_detections(n) + ["MODEL.SHARPMASK.PROPOSAL_TOPK_TEST", str(max(n, 300))]


def sharpmask_caps(cfg, n: int):
    """Segment proposals: at least n windows kept per image (TEST.DETECTIONS_PER_IMAGE for the evaluator)."""
    return raise_caps(cfg, {"MODEL.SHARPMASK.TEST.TOP_N": n, "TEST.DETECTIONS_PER_IMAGE": n})


def detector_caps(cfg, n: int):
    """A detector on SharpMask proposals: Detectron2's R-CNN caps, 2n proposals computed in the model."""
    return rcnn_caps(cfg, n) + raise_caps(cfg, {"MODEL.SHARPMASK.PROPOSAL_TOPK_TEST": 2 * n})


def online_proposals(proposer_config: str, proposer_weights: str, top_k: int):
    """Overrides for a detector trained on exported proposals to compute them itself (SharpMaskProposals)."""
    return ["MODEL.LOAD_PROPOSALS", "False", "MODEL.PROPOSAL_GENERATOR.NAME", "SharpMaskProposals",
            "MODEL.SHARPMASK.PROPOSAL_CONFIG", proposer_config, "MODEL.SHARPMASK.PROPOSAL_WEIGHTS", proposer_weights,
            "MODEL.SHARPMASK.PROPOSAL_TOPK_TEST", str(top_k)]


PLUGIN = Plugin(
    name="sharpmask",
    add_config=add_sharpmask_config,
    meta_architectures=("SharpMask", "SharpMaskRCNN"),
    class_agnostic=("SharpMask",),  # DeepMask / SharpMask segment proposals
    detection_caps={"SharpMask": sharpmask_caps, "SharpMaskRCNN": detector_caps},
    methods=(
        Method("deepmask", "DeepMask (ours)", "SharpMask/shapes_deepmask_R_18.yaml", kind="proposals",
               detections=sharpmask_detections),
        Method("sharpmask", "SharpMask", "SharpMask/shapes_sharpmask_R_18.yaml", kind="proposals",
               parent="deepmask", schedule_fraction=0.75, detections=sharpmask_detections,
               note="refinement trains on the frozen DeepMask (0.75 of the schedule)"),
        Method("fast_rcnn_sharpmask", "Fast R-CNN on SharpMask", "SharpMask/shapes_fast_rcnn_R_18_FPN_sharpmask.yaml",
               kind="boxes", parent="sharpmask", detections=fast_rcnn_detections,
               proposals=ProposalSource("sharpmask.export", online_proposals),
               note="trained on exported SharpMask proposals; latency includes computing them"),
    ),
)
