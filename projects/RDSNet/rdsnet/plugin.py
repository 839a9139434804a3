"""This package's declaration to segzoo (entry point ``segzoo.plugins``: ``rdsnet:PLUGIN``)."""
from segzoo.caps import retinanet_caps
from segzoo.plugins import Plugin
from segzoo.zoo import Method, retinanet_detections

from .config import add_rdsnet_config

PLUGIN = Plugin(
    name="rdsnet",
    add_config=add_rdsnet_config,
    meta_architectures=("RDSNet",),
    detection_caps={"RDSNet": retinanet_caps},  # RetinaNet's keys
    methods=(
        Method("retinanet", "RetinaNet (Detectron2)", "RDSNet/shapes_RetinaNet_R_18.yaml", kind="boxes",
               detections=retinanet_detections, note="Detectron2's RetinaNet head (no norm in the cls / box towers)"),
        Method("retinanet_gn", "RetinaNet-GN", "RDSNet/shapes_RetinaNet_GN_R_18.yaml", kind="boxes",
               detections=retinanet_detections,
               note="RDSNet's detector alone: GN cls / box towers, whole-model gradient clipping"),
        Method("rdsnet", "RDSNet", "RDSNet/shapes_R_18.yaml", detections=retinanet_detections),
        Method("rdsnet_mbrm", "RDSNet + MBRM", "RDSNet/shapes_R_18_mbrm.yaml", parent="rdsnet",
               schedule_fraction=0.3, detections=retinanet_detections,
               note="MBRM alone trains on the frozen RDSNet (0.3 of the schedule)"),
    ),
)
