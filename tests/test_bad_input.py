"""Bad input gets one clear line on stderr and exit status 2, never a traceback."""
import json

import cv2
import numpy as np
import pytest

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


# --- hostile annotation files: checked on load (segzoo.data.validate) -------------------------------------

def _valid_coco():
    return {"images": [{"id": 1, "file_name": "0.png", "height": 64, "width": 64}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400.0,
                             "iscrowd": 0, "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]}],
            "categories": [{"id": 3, "name": "thing"}]}


def _broken(change):
    data = _valid_coco()
    change(data)
    return data


BROKEN = {
    "no annotations list": (lambda d: d.pop("annotations"), "'annotations' is missing"),
    "image without height": (lambda d: d["images"][0].pop("height"), "image 1 lacks height"),
    "image with zero width": (lambda d: d["images"][0].update(width=0), "positive integers"),
    "duplicate image id": (lambda d: d["images"].append(dict(d["images"][0])), "image id 1 appears twice"),
    "annotation without bbox": (lambda d: d["annotations"][0].pop("bbox"), "annotation 7 lacks bbox"),
    "annotation of a missing image": (lambda d: d["annotations"][0].update(image_id=9), "refers to image 9"),
    "unknown category": (lambda d: d["annotations"][0].update(category_id=4), "category_id 4"),
    "bbox with 3 numbers": (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "'bbox' must be"),
    "bbox with NaN": (lambda d: d["annotations"][0].update(bbox=[1, 2, float("nan"), 3]), "'bbox' must be"),
    "negative bbox width": (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 3]), "'bbox' must be"),
    "RLE of the wrong size": (lambda d: d["annotations"][0].update(segmentation={"size": [32, 64], "counts": "a"}),
                              "RLE 'size' [32, 64] is not its image's [height, width] [64, 64]"),
    "polygon of strings": (lambda d: d["annotations"][0].update(segmentation=[["1", "2"]]), "list of polygons"),
    "category without name": (lambda d: d["categories"][0].pop("name"), "categories[0]"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_annotation_files_are_one_clear_error(tmp_path, case):
    from segzoo.data.validate import check_coco_instances
    from segzoo.errors import UserError

    change, needle = BROKEN[case]
    js = tmp_path / "instances.json"
    js.write_text(json.dumps(_broken(change)))
    with pytest.raises(UserError) as e:
        check_coco_instances(str(js), "mine")
    msg = str(e.value)
    assert needle in msg and "dataset 'mine'" in msg and "\n" not in msg, msg
    check_coco_instances_ok = _valid_coco()
    js.write_text(json.dumps(check_coco_instances_ok))
    assert check_coco_instances(str(js), "mine") == check_coco_instances_ok


def test_not_json_is_one_clear_error(tmp_path):
    from segzoo.data.validate import check_coco_instances
    from segzoo.errors import UserError

    js = tmp_path / "instances.json"
    js.write_text('{"images": [}')
    with pytest.raises(UserError, match="not valid JSON"):
        check_coco_instances(str(js))


def test_boxes_outside_the_image_and_degenerate_polygons_are_repaired_and_counted(caplog):
    from segzoo.data.validate import repair_records

    square = [10, 10, 30, 10, 30, 30, 10, 30]
    records = [{"height": 64, "width": 64, "annotations": [
        {"bbox": [-5, 50, 20, 30], "segmentation": [square]},                   # clipped to [0, 50, 15, 14]
        {"bbox": [70, 10, 5, 5], "segmentation": [square]},                     # wholly outside: dropped
        {"bbox": [10, 10, 0, 5], "segmentation": [square]},                     # zero area: dropped
        {"bbox": [10, 10, 20, 20], "segmentation": [[1, 1, 2, 2, 3, 3], square]},  # collinear polygon dropped
        {"bbox": [10, 10, 20, 20], "segmentation": [[1, 1, 2, 2, 3, 3]]},         # no polygon left: dropped
        {"bbox": [10, 10, 20, 20], "segmentation": [[10, 10, 30, 30, 30, 10, 10, 30]]},  # self-intersecting: kept
        {"bbox": [10, 10, 20, 20], "segmentation": {"size": [64, 64], "counts": "x"}},    # RLE: kept
    ]}]
    with caplog.at_level("WARNING"):
        out = repair_records(records, "mine")[0]["annotations"]
    assert [a["bbox"] for a in out] == [[0.0, 50, 15, 14], [10, 10, 20, 20], [10, 10, 20, 20], [10, 10, 20, 20]]
    assert out[1]["segmentation"] == [square]
    assert "1 boxes clipped" in caplog.text and "2 annotations dropped" in caplog.text
    assert "2 degenerate polygons dropped (1 annotations left without a polygon dropped)" in caplog.text


def test_train_net_names_the_broken_annotation(tmp_path):
    js = tmp_path / "instances.json"
    data = _broken(lambda d: d["annotations"][0].pop("category_id"))
    js.write_text(json.dumps(data))
    (tmp_path / "images").mkdir()
    r = run_train_net(["--config-file", CONFIG, "--register-coco", "broken_set", str(js), str(tmp_path / "images"),
                       "DATASETS.TRAIN", "('broken_set',)", "OUTPUT_DIR", str(tmp_path / "out")])
    _fails_cleanly(r, "broken_set", "annotation 7 lacks category_id")


def test_messy_but_valid_data_trains_and_evaluates(tmp_path):
    """Non-contiguous category ids, extra fields, a box reaching outside its image, a degenerate and a
    self-intersecting polygon, grayscale, 16-bit grayscale, RGBA and extreme-aspect (8 x 400) images:
    trains and evaluates."""
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    pictures = {"gray.png": rng.integers(0, 255, (64, 64), np.uint8),
                "rgba.png": rng.integers(0, 255, (64, 64, 4), np.uint8),
                "rgb.png": rng.integers(0, 255, (64, 64, 3), np.uint8),
                "gray16.png": rng.integers(0, 65535, (64, 64), np.uint16),
                "thin.png": rng.integers(0, 255, (8, 400, 3), np.uint8)}
    images, anns = [], []
    for i, (fn, pic) in enumerate(pictures.items(), start=1):
        cv2.imwrite(str(img_dir / fn), pic)
        h, w = pic.shape[:2]
        images.append({"id": i, "file_name": fn, "height": h, "width": w, "license": 3, "flickr_url": "x"})
        box = [2, 1, min(w, 40), min(h, 40) - 2]
        x0, y0, bw, bh = box
        anns.append({"id": 10 * i, "image_id": i, "category_id": 17 if i % 2 else 5, "bbox": box,
                     "area": float(bw * bh), "iscrowd": 0, "note": "extra",
                     "segmentation": [[x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh], [1, 1, 2, 2, 3, 3]]})
    anns[0]["bbox"] = [50, 50, 30, 30]  # reaches outside the 64 x 64 image
    anns[0]["segmentation"] = [[50, 50, 64, 64, 64, 50, 50, 64]]  # self-intersecting (a bow tie)
    js = tmp_path / "instances.json"
    js.write_text(json.dumps({"images": images, "annotations": anns, "info": {"year": 2026},
                              "categories": [{"id": 5, "name": "a"}, {"id": 17, "name": "b"}]}))
    r = run_train_net(["--config-file", CONFIG, "--register-coco", "messy", str(js), str(img_dir),
                       "DATASETS.TRAIN", "('messy',)", "DATASETS.TEST", "('messy',)", "MODEL.ROI_HEADS.NUM_CLASSES", "2",
                       "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
                       "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0", "INPUT.MASK_FORMAT", "polygon",
                       "OUTPUT_DIR", str(tmp_path / "out")])
    assert r.returncode == 0, r.stdout[-3000:]
    assert "copypaste: Task: segm" in r.stdout
    assert "1 boxes clipped" in r.stdout and "degenerate polygons dropped" in r.stdout


def test_every_image_empty_is_one_clear_error(tmp_path):
    js, imgs = _coco_folder(tmp_path, 2)
    data = json.loads(open(js).read())
    data["annotations"] = []
    open(js, "w").write(json.dumps(data))
    r = run_train_net(["--config-file", CONFIG, "--register-coco", "all_empty", js, imgs,
                       "DATASETS.TRAIN", "('all_empty',)", "OUTPUT_DIR", str(tmp_path / "out")])
    _fails_cleanly(r, "all_empty", "none of its 2 images has a usable (non-crowd) annotation")
    assert not (tmp_path / "out" / "last_checkpoint").exists()


# --- images: bit depth, EXIF orientation, files that change (segzoo.data.image) -------------------

def _mapper():
    from segzoo.config import get_cfg
    from segzoo.data import CheckedDatasetMapper

    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 0  # no resize: pixels compared as stored
    return CheckedDatasetMapper(cfg, False)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    from detectron2.data import detection_utils

    from segzoo.data import image

    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    path = str(tmp_path / "gray16.png")
    assert cv2.imwrite(path, ramp)
    # Detectron2's own reader clips every value above 255: almost white
    assert image._DETECTRON2_READ_IMAGE(path, format="BGR").mean() > 250
    for read in (detection_utils.read_image, image.read_image):  # the mappers' reader is segzoo's
        bgr = read(path, format="BGR")
        assert bgr.shape == (48, 64, 3) and bgr.dtype == np.uint8
        assert np.abs(bgr[..., 1].astype(float) - ramp / 257.0).max() <= 0.5 + 1e-9
    out = _mapper()({"file_name": path, "height": 48, "width": 64, "image_id": 1})
    assert 120 < out["image"].float().mean() < 135  # mid-grey on average, as the ramp
    # float images in [0, 1] are stretched to 0-255, 8-bit ones unchanged
    from PIL import Image

    f = Image.fromarray((ramp / 65535.0).astype(np.float32), mode="F")
    assert np.array_equal(np.asarray(image.to_8bit(f)), np.asarray(image.to_8bit(Image.fromarray(ramp))))
    gray = Image.fromarray((ramp // 257).astype(np.uint8))
    assert image.to_8bit(gray) is gray


def _exif_jpeg(path, orientation):
    """A 40 x 80 (h x w) stored JPEG, white block at stored rows 5-15, columns 50-70, with an EXIF
    orientation tag."""
    from PIL import Image

    stored = np.zeros((40, 80, 3), np.uint8)
    stored[5:15, 50:70] = 255
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, quality=95)


def test_exif_rotated_jpeg_is_read_as_viewers_show_it(tmp_path):
    path = str(tmp_path / "rotated.jpg")
    _exif_jpeg(path, 6)  # viewers rotate it 90 degrees clockwise: 80 x 40 (h x w) on screen
    # annotations in the shown orientation: read rotated, the block where the annotation says
    from detectron2.structures import BoxMode

    # stored (row r, col c) -> shown (row c, col 39 - r): the block is at shown rows 50-70, columns 24-34
    ann = {"bbox": [24, 50, 10, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
    out = _mapper()({"file_name": path, "height": 80, "width": 40, "image_id": 1, "annotations": [ann]})
    img = out["image"].float().mean(0)
    assert img.shape == (80, 40)
    assert img[52:68, 26:32].mean() > 200 and img[:40].mean() < 30


def test_exif_rotation_against_stored_size_annotations_is_one_clear_error(tmp_path):
    from segzoo.errors import UserError

    path = str(tmp_path / "rotated.jpg")
    _exif_jpeg(path, 6)
    with pytest.raises(UserError, match=r"is 40x80 .* says 80x40: its EXIF orientation tag \(6\) rotates it"):
        _mapper()({"file_name": path, "height": 40, "width": 80, "image_id": 1})


def test_image_that_changed_since_its_annotations_is_one_clear_error(tmp_path):
    from segzoo.errors import UserError

    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.zeros((64, 64, 3), np.uint8))
    d = {"file_name": path, "height": 64, "width": 64, "image_id": 1}
    mapper = _mapper()
    assert tuple(mapper(dict(d))["image"].shape) == (3, 64, 64)
    cv2.imwrite(path, np.zeros((64, 32, 3), np.uint8))  # replaced between two epochs
    with pytest.raises(UserError, match="is 32x64 .* says 64x64: the file changed since the annotations"):
        mapper(dict(d))


def test_metrics_cut_short_by_a_kill_are_skipped(tmp_path):
    from segzoo.engine import last_eval_metrics, median_iteration_time

    (tmp_path / "metrics.json").write_text(
        '{"iteration": 0, "time": 1.0}\n{"iteration": 1, "ti'  # killed while writing, then resumed:
        '{"iteration": 1, "time": 3.0}\n{"bbox/AP": 5.0, "iteration": 1}\n')
    assert median_iteration_time(str(tmp_path)) == 1.0
    assert last_eval_metrics(str(tmp_path)) == {"bbox/AP": 5.0, "iteration": 1}
