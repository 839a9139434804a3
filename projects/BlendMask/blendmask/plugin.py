"""This package's declaration to segzoo (entry point ``segzoo.plugins``: ``blendmask:PLUGIN``)."""
from segzoo.caps import raise_caps
from segzoo.plugins import Plugin
from segzoo.zoo import Method

from .config import add_blendmask_config


def fcos_detections(n: int):
    """Overrides making FCOS / BlendMask output exactly n detections (score threshold 0, NMS off)."""
    return ["MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.NMS_TH", "1.0",
            "MODEL.FCOS.PRE_NMS_TOPK_TEST", str(max(n, 1000)), "MODEL.FCOS.POST_NMS_TOPK_TEST", str(n),
            "TEST.DETECTIONS_PER_IMAGE", str(n)]


def fcos_caps(cfg, n: int):
    """Caps keeping up to n detections per image: n after NMS from 2n candidates per level
    (TEST.DETECTIONS_PER_IMAGE, which FCOS does not read, tells the COCO evaluator)."""
    return raise_caps(cfg, {"MODEL.FCOS.POST_NMS_TOPK_TEST": n, "MODEL.FCOS.PRE_NMS_TOPK_TEST": 2 * n,
                            "TEST.DETECTIONS_PER_IMAGE": n})


PLUGIN = Plugin(
    name="blendmask",
    add_config=add_blendmask_config,
    meta_architectures=("FCOS", "BlendMask"),
    detection_caps={"FCOS": fcos_caps, "BlendMask": fcos_caps},
    methods=(
        Method("blendmask", "BlendMask", "BlendMask/shapes_R_18.yaml", detections=fcos_detections,
               num_classes_keys=("MODEL.FCOS.NUM_CLASSES", "MODEL.BASIS_MODULE.NUM_CLASSES")),
    ),
)
