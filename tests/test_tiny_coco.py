"""The real COCO subset goes through the same registration path, crowd annotations intact,
and evaluates with COCOEvaluator."""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from segzoo.data import register_coco_dataset
from segzoo.engine.defaults import EVALUATORS
from segzoo.config import get_cfg


@pytest.fixture(scope="module")
def tiny_val(tiny_coco):
    import os

    name = "tiny_coco_val_test"
    register_coco_dataset(name, os.path.join(tiny_coco, "annotations", "instances_val2017.json"),
                          os.path.join(tiny_coco, "val2017"))
    return name


def test_loads_with_crowd_annotations(tiny_val):
    dicts = DatasetCatalog.get(tiny_val)
    assert len(dicts) == 50
    anns = [a for d in dicts for a in d["annotations"]]
    crowd = [a for a in anns if a.get("iscrowd", 0)]
    assert len(crowd) >= 1
    assert all(isinstance(a["segmentation"], dict) for a in crowd)  # crowd = RLE
    assert any(isinstance(a["segmentation"], list) for a in anns)  # polygons
    meta = MetadataCatalog.get(tiny_val)
    assert len(meta.thing_classes) == 80


def test_evaluates_perfect_predictions(tiny_val, tmp_path):
    cfg = get_cfg()
    cfg.MODEL.MASK_ON = True
    evaluator = EVALUATORS["coco"](cfg, tiny_val, str(tmp_path))
    evaluator.reset()
    for d in DatasetCatalog.get(tiny_val):
        anns = [a for a in d["annotations"] if not a.get("iscrowd", 0)]
        h, w = d["height"], d["width"]
        inst = Instances((h, w))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        if anns:
            masks = [mask_util.decode(mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w)))
                     for a in anns]
            inst.pred_masks = torch.from_numpy(np.stack(masks).astype(bool))
        else:
            inst.pred_masks = torch.zeros((0, h, w), dtype=torch.bool)
        evaluator.process([{"image_id": d["image_id"], "height": h, "width": w}], [{"instances": inst}])
    res = evaluator.evaluate()
    assert res["bbox"]["AP"] > 95 and res["segm"]["AP"] > 95


def test_sharpmask_patches_and_proposal_recall_on_real_coco(tiny_val, tmp_path):
    """Polygons and crowd RLEs through the SharpMask patch sampler, then perfect segment proposals
    (the non-crowd ground truth) through the AR evaluator: recall 100 at every count."""
    from sharpmask import SharpMaskDatasetMapper
    from sharpmask.sampler import instance_mask

    from segzoo.config import load_config

    # mask samples are category-balanced over the training set: train on the subset itself
    cfg = load_config("configs/SharpMask/deepmask_R_50.yaml",
                      ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", f"('{tiny_val}',)"])
    assert cfg.MODEL.SHARPMASK.MASK_SAMPLING == "category"
    mapper = SharpMaskDatasetMapper(cfg, True)
    assert mapper.mask_index is not None and len(mapper.mask_index.categories) > 1
    np.random.seed(0)
    dicts = DatasetCatalog.get(tiny_val)[:6]
    for d in dicts:
        out = mapper(d)
        assert out["patches"].shape == (4, 3, 192, 192)
        m = out["mask_sample"]
        assert (out["masks"][m].flatten(1).sum(1) > 0).all()  # every mask sample has its object
        assert (out["labels"][m] == 1).all()
    evaluator = EVALUATORS["segment_proposals"](cfg, tiny_val, str(tmp_path))
    evaluator.reset()
    for d in dicts:
        anns = [a for a in d["annotations"] if not a.get("iscrowd", 0)]
        inst = Instances((d["height"], d["width"]))
        masks = np.stack([instance_mask(a["segmentation"], d["height"], d["width"]) for a in anns]) if anns else \
            np.zeros((0, d["height"], d["width"]), np.uint8)
        inst.pred_masks = torch.as_tensor(masks, dtype=torch.bool)
        inst.pred_boxes = Boxes(torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                                              for a in anns], dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(anns))
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    res = evaluator.evaluate()
    for task in ("segm_proposals", "box_proposals"):
        assert res[task]["AR@100"] == pytest.approx(100.0, abs=0.5), res[task]
