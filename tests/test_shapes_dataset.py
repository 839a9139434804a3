"""The synthetic shapes dataset: deterministic, valid COCO, and what instance segmentation needs."""
import hashlib
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO

from segzoo.data import shapes as shapes_mod
from segzoo.data.shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes

SPEC = ShapesSpec(num_images=60, image_size=256, seed=7)


def _digest(folder):
    h = hashlib.sha1()
    for root, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            with open(os.path.join(root, f), "rb") as fh:
                h.update(f.encode() + fh.read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return generate_shapes(str(root), "train", SPEC)


def test_generation_is_deterministic(split, tmp_path):
    again = generate_shapes(str(tmp_path), "train", SPEC)
    assert _digest(split) == _digest(again)
    other = generate_shapes(str(tmp_path), "train", ShapesSpec(num_images=60, image_size=256, seed=8))
    assert _digest(other) != _digest(split)


def test_json_is_valid_coco_and_consistent(split):
    coco = COCO(os.path.join(split, "instances.json"))
    assert len(coco.getImgIds()) == SPEC.num_images
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == SHAPE_CLASSES
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns, "no annotations"
    for a in anns:
        assert a["iscrowd"] == 0
        m = coco.annToMask(a)
        assert m.shape == (SPEC.image_size, SPEC.image_size)
        assert m.sum() == a["area"] > 0
        ys, xs = np.nonzero(m)
        x0, y0, w, h = a["bbox"]
        assert (x0, y0, x0 + w, y0 + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    for img in coco.loadImgs(coco.getImgIds()):
        assert os.path.isfile(os.path.join(split, "images", img["file_name"]))


def test_dataset_covers_instance_segmentation_cases(split):
    coco = COCO(os.path.join(split, "instances.json"))
    counts = [len(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()]
    assert max(counts) <= SPEC.max_instances
    assert min(counts) == 0, "some images must have no objects"
    assert max(counts) >= 10, "some images must be crowded"
    anns = coco.loadAnns(coco.getAnnIds())
    areas = np.array([a["area"] for a in anns])
    assert (areas < 32**2).any() and ((areas >= 32**2) & (areas < 96**2)).any() and (areas >= 96**2).any()
    assert {a["category_id"] for a in anns} == set(range(1, len(SHAPE_CLASSES) + 1))


def test_masks_are_visible_parts_and_do_not_overlap():
    # render directly: masks of one image are disjoint (occluded pixels belong to the front object)
    img_checked = 0
    for i in range(40):
        img, instances = shapes_mod.render_image(SPEC, i)
        if len(instances) < 2:
            continue
        stack = np.stack([m for _, m in instances]).astype(np.int32)
        assert stack.sum(0).max() <= 1
        img_checked += 1
    assert img_checked > 5
    # the ring class really has a hole
    found_hole = False
    for i in range(200):
        _, instances = shapes_mod.render_image(SPEC, i)
        for cls, m in instances:
            if SHAPE_CLASSES[cls] == "ring" and m.sum() > 400:
                import cv2

                n, _ = cv2.connectedComponents((~m).astype(np.uint8))
                found_hole |= n > 2
        if found_hole:
            break
    assert found_hole


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    spec = ShapesSpec(num_images=10, image_size=64, seed=3)
    calls = {"n": 0}
    real = shapes_mod.cv2.imwrite

    def failing_imwrite(path, img):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated interruption")
        return real(path, img)

    monkeypatch.setattr(shapes_mod.cv2, "imwrite", failing_imwrite)
    with pytest.raises(KeyboardInterrupt):
        generate_shapes(str(tmp_path), "train", spec)
    assert os.listdir(tmp_path) == []  # neither the final folder nor a temporary one
    monkeypatch.setattr(shapes_mod.cv2, "imwrite", real)
    out = generate_shapes(str(tmp_path), "train", spec)
    with open(os.path.join(out, "instances.json")) as f:
        assert len(json.load(f)["images"]) == 10


def test_registered_through_detectron2(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from segzoo.data import register_shapes

    register_shapes("shapes_test_tmp", "val", ShapesSpec(num_images=5, image_size=64), root=str(tmp_path))
    try:
        dicts = DatasetCatalog.get("shapes_test_tmp")
        assert len(dicts) == 5
        meta = MetadataCatalog.get("shapes_test_tmp")
        assert meta.thing_classes == SHAPE_CLASSES and meta.evaluator_type == "coco"
        assert os.path.isfile(meta.json_file)
        for d in dicts:
            for a in d["annotations"]:
                assert isinstance(a["segmentation"], dict)  # RLE
                assert 0 <= a["category_id"] < len(SHAPE_CLASSES)
                assert mask_util.area(a["segmentation"]) > 0
    finally:
        DatasetCatalog.remove("shapes_test_tmp")
        MetadataCatalog.remove("shapes_test_tmp")
