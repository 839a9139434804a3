"""Bad input gets one clear line on stderr and exit status 2, never a traceback."""
import json

import cv2
import numpy as np

from helpers import run_train_net

CONFIG = "configs/MaskRCNN/shapes_R_18_FPN.yaml"


def _fails_cleanly(r, *needles):
    assert r.returncode == 2, r.stdout[-3000:]
    assert "Traceback" not in r.stdout, r.stdout[-3000:]
    err = [l for l in r.stdout.splitlines() if l.startswith("error: ")]
    assert len(err) == 1, r.stdout[-3000:]
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def _coco_folder(tmp_path, n_images, corrupt=False):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    images, anns = [], []
    for i in range(n_images):
        fn = f"{i}.png"
        if corrupt:
            (img_dir / fn).write_bytes(b"this is not a png")
        else:
            cv2.imwrite(str(img_dir / fn), np.full((64, 64, 3), 127, np.uint8))
        images.append({"id": i + 1, "file_name": fn, "height": 64, "width": 64})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 10, 20, 20],
                     "area": 400.0, "iscrowd": 0,
                     "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]})
    js = tmp_path / "instances.json"
    js.write_text(json.dumps({"images": images, "annotations": anns,
                              "categories": [{"id": 1, "name": "thing"}]}))
    return str(js), str(img_dir)


def test_unknown_config_key():
    r = run_train_net(["--config-file", CONFIG, "MODEL.NOT_A_KEY", "1"])
    _fails_cleanly(r, "unknown config key", "MODEL.NOT_A_KEY")


def test_missing_config_file():
    r = run_train_net(["--config-file", "configs/does/not/exist.yaml"])
    _fails_cleanly(r, "config file not found", "configs/does/not/exist.yaml")


def test_missing_dataset_folder(tmp_path):
    r = run_train_net(["--config-file", CONFIG, "--register-coco", "mine", str(tmp_path / "x.json"),
                       str(tmp_path / "imgs"), "DATASETS.TRAIN", "('mine',)"])
    _fails_cleanly(r, "annotation file not found", "x.json")


def test_unregistered_dataset_name():
    r = run_train_net(["--config-file", CONFIG, "DATASETS.TRAIN", "('nobody_registered_this',)"])
    _fails_cleanly(r, "nobody_registered_this", "--register-coco")


def test_empty_dataset(tmp_path):
    js, imgs = _coco_folder(tmp_path, 0)
    r = run_train_net(["--config-file", CONFIG, "--register-coco", "empty_set", js, imgs,
                       "DATASETS.TRAIN", "('empty_set',)", "OUTPUT_DIR", str(tmp_path / "out")])
    _fails_cleanly(r, "empty_set")


def test_unreadable_image(tmp_path):
    js, imgs = _coco_folder(tmp_path, 2, corrupt=True)
    r = run_train_net(["--config-file", CONFIG, "--register-coco", "corrupt_set", js, imgs,
                       "DATASETS.TRAIN", "('corrupt_set',)", "MODEL.ROI_HEADS.NUM_CLASSES", "1",
                       "INPUT.MASK_FORMAT", "polygon", "DATALOADER.NUM_WORKERS", "0",
                       "OUTPUT_DIR", str(tmp_path / "out")])
    line = _fails_cleanly(r, "cannot read image", "Fix or remove it")
    assert "/images/0.png" in line or "/images/1.png" in line
