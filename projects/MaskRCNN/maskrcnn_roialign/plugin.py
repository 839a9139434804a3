"""This package's declaration to segzoo (entry point ``segzoo.plugins``: ``maskrcnn_roialign:PLUGIN``)."""
from segzoo.plugins import Plugin
from segzoo.zoo import Method

POOLERS = ("ROIPool", "ROIWarp", "ROIAlign", "ROIAlignMax", "ROIAlignV2")

PLUGIN = Plugin(
    name="maskrcnn_roialign",
    add_config=None,  # Detectron2's keys; POOLER_TYPE takes the family's names
    meta_architectures=("GeneralizedRCNN",),
    methods=tuple(Method(f"mask_rcnn_{p}", f"Mask R-CNN ({p})", f"MaskRCNN/shapes_R_18_FPN_pooler_{p}.yaml")
                  for p in POOLERS),
)
