"""Crowded images: the shapes_crowded preset (hundreds of small instances per image) and detection
caps that follow the data (segzoo.caps), so that recall is not silently capped by configs written
for 20 (shapes) or 100 (COCO) instances per image."""
import json
import os
from dataclasses import replace

import pytest
import torch
from detectron2.data import DatasetCatalog

from segzoo.caps import detection_caps, fit_detection_caps, max_instances_per_image
from segzoo.config import runtime_config
from segzoo.engine import EVALUATORS, last_eval_metrics
from segzoo.data import CROWDED_SHAPES_SPECS, SHAPES_PRESETS, ShapesSpec, register_shapes
from detectron2.modeling import build_model
from segzoo.zoo import methods

from helpers import REPO
from test_zoo_tools import FAST, run_tool


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """Small crowded train / val splits (3 + 2 images) registered as crowd_train / crowd_val."""
    root = str(tmp_path_factory.mktemp("datasets"))
    register_shapes("crowd_train", "train", replace(CROWDED_SHAPES_SPECS["train"], num_images=3), root)
    register_shapes("crowd_val", "val", replace(CROWDED_SHAPES_SPECS["val"], num_images=2), root)
    return max_instances_per_image(["crowd_train", "crowd_val"])


def test_crowded_preset_has_hundreds_of_small_instances_per_image(crowded):
    assert "shapes_crowded_train" in DatasetCatalog.list() and "shapes_crowded_val" in DatasetCatalog.list()
    assert set(SHAPES_PRESETS) == {"shapes", "shapes_crowded"}
    for name in ("crowd_train", "crowd_val"):
        for d in DatasetCatalog.get(name):
            anns = d["annotations"]
            assert len(anns) >= 100, (d["file_name"], len(anns))
            areas = sorted(a["bbox"][2] * a["bbox"][3] for a in anns)
            assert areas[len(areas) // 2] < 32 ** 2  # mostly COCO "small" objects
    assert 200 <= crowded <= 400
    # the default preset's cache key (and so its images) did not change with the crowded option
    assert ShapesSpec().key() == "v1_n1000_s256_k20_e0.05_o10-150_seed0"


CONFIGS = {  # config -> the model attributes its caps end up in (the keys are the ones the model reads)
    "MaskRCNN/shapes_R_18_FPN_pooler_ROIAlignV2.yaml": lambda m: {
        "detections": m.roi_heads.box_predictor.test_topk_per_image,
        "proposals": m.proposal_generator.post_nms_topk[False]},
    "BlendMask/shapes_R_18.yaml": lambda m: {"detections": m.post_nms_topk[False],
                                             "candidates": m.pre_nms_topk[False]},
    "RDSNet/shapes_R_18.yaml": lambda m: {"detections": m.max_detections_per_image,
                                          "candidates": m.test_topk_candidates},
    "RDSNet/shapes_RetinaNet_R_18.yaml": lambda m: {"detections": m.max_detections_per_image,
                                                    "candidates": m.test_topk_candidates},
    "SharpMask/shapes_sharpmask_R_18.yaml": lambda m: {"detections": m.top_n},
    "SharpMask/shapes_fast_rcnn_R_18_FPN_sharpmask.yaml": lambda m: {
        "detections": m.roi_heads.box_predictor.test_topk_per_image},
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_caps_follow_the_most_crowded_image(config, crowded):
    path = os.path.join(REPO, "configs", config)
    data = ["DATASETS.TRAIN", "('crowd_train',)", "DATASETS.TEST", "('crowd_val',)", "MODEL.DEVICE", "cpu"]
    before = runtime_config(path, data)
    assert before.MODEL.META_ARCHITECTURE in detection_caps()
    before_model = CONFIGS[config](build_model(before))
    cfg = before.clone()
    line = fit_detection_caps(cfg)
    assert f"up to {crowded} instances per image" in line
    assert cfg.TEST.DETECTIONS_PER_IMAGE == crowded  # what the COCO evaluator counts
    caps = CONFIGS[config](build_model(cfg))
    # detections raised to the most crowded image, proposals / candidates to twice it, none lowered
    assert caps["detections"] == max(before_model["detections"], crowded)
    for k in ("proposals", "candidates"):
        if k in caps:
            assert caps[k] == max(before_model[k], 2 * crowded)
    if cfg.TEST.EVALUATOR == "coco":  # the COCO evaluator counts as many detections per image
        assert EVALUATORS["coco"](cfg, "crowd_val", None)._max_dets_per_image == [1, 10, crowded]
        assert EVALUATORS["coco"](before, "crowd_val", None)._max_dets_per_image == [1, 10, 100]
    # raised, never lowered: fitting again, or to a sparse dataset, changes nothing
    assert fit_detection_caps(cfg) == ""
    shapes = runtime_config(path, ["MODEL.DEVICE", "cpu"])
    assert max_instances_per_image(["shapes_val"]) <= 20 and fit_detection_caps(shapes) == ""
    off = runtime_config(path, [*data, "TEST.DETECTIONS_FROM_DATA", "False"])
    assert fit_detection_caps(off) == "" and off.TEST.DETECTIONS_PER_IMAGE == before.TEST.DETECTIONS_PER_IMAGE


def test_an_architecture_without_declared_caps_gets_the_detections_cap(crowded, caplog):
    cfg = runtime_config(os.path.join(REPO, "configs", "MaskRCNN", "shapes_R_18_FPN.yaml"),
                         ["DATASETS.TRAIN", "('crowd_train',)", "DATASETS.TEST", "('crowd_val',)",
                          "MODEL.META_ARCHITECTURE", "SemanticSegmentor", "MODEL.DEVICE", "cpu"])
    with caplog.at_level("WARNING"):
        fit_detection_caps(cfg)
    assert cfg.TEST.DETECTIONS_PER_IMAGE == crowded and "declares no detection caps" in caplog.text


# score threshold 0 for every detector: untrained models then fill their caps, so what comes out
# per image shows the caps in effect
NO_THRESHOLD = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
                "MODEL.FCOS.INFERENCE_TH_TEST", "0.0"]


# one method per meta-architecture (the other Mask R-CNN poolers and Detectron2's RetinaNet head share
# their family's caps), with the parents they train on: RDSNet, DeepMask, SharpMask
CROWDED_METHODS = ["mask_rcnn_ROIAlignV2", "blendmask", "retinanet_gn", "rdsnet_mbrm", "fast_rcnn_sharpmask"]


@pytest.mark.slow
def test_every_method_trains_and_evaluates_on_crowded_images(tmp_path):
    """The comparison on shapes_crowded (8 + 2 images, 2 iterations): every method trains, is
    evaluated with COCO's max detections raised, and keeps more instances per image than the
    shapes configs' cap of 50."""
    out = str(tmp_path / "zoo")
    r = run_tool("model_zoo.py", ["--methods", *CROWDED_METHODS, "--iters", "2", "--train", "shapes_crowded_train",
                                  "--test", "shapes_crowded_val", "--num-train", "8", "--num-val", "2",
                                  "--timed-images", "1", "--output", out, *FAST, *NO_THRESHOLD])
    assert r.returncode == 0, r.stdout[-3000:]
    with open(os.path.join(out, "zoo.json")) as f:
        report = json.load(f)
    rows = {row["method"]: row for row in report["rows"]}
    assert set(rows) == set(CROWDED_METHODS)
    for name in ("rdsnet", "deepmask", "sharpmask"):  # parents: trained and evaluated too
        assert os.path.isfile(os.path.join(out, name, "model_final.pth"))
        rows[name] = {"kind": methods()[name].kind, "metrics": last_eval_metrics(os.path.join(out, name))}
    crowd = report["settings"]["proposals"] // 2  # raised to twice the most crowded image
    assert crowd >= 200
    for name, row in rows.items():
        log = open(os.path.join(out, name, "log.txt")).read()
        assert f"detection caps raised for up to {crowd} instances per image" in log, name
        keys = {"instance": ("bbox/AP", "segm/AP"), "boxes": ("bbox/AP",),
                "proposals": ("segm_proposals/AR@100", "box_proposals/AR@1000")}[row["kind"]]
        assert set(keys) <= set(row["metrics"]), (name, row["metrics"])
        if "instances" in row:  # timed on a test image
            assert row["instances"] > 50, (name, row["instances"])
    # COCO's AP and AR counted every detection the models kept (Detectron2's COCOevalMaxDets summary)
    assert f"maxDets={crowd:>3d} ] =" in r.stdout
    # SharpMask's TOP_N 50 (FAST) raised to the data (its one scale has 256 windows on a 256-px image)
    with open(os.path.join(out, "sharpmask", "config.yaml")) as f:
        assert f"TOP_N: {crowd}" in f.read()
    assert torch.isfinite(torch.tensor(rows["blendmask"]["metrics"]["segm/AP"]))
