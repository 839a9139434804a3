"""Every exportable method through TorchScript and ONNX (onnxruntime, CPU): the exported file,
run by ExportedPredictor on images of several sizes, gives the boxes, scores, classes and masks
of the PyTorch model (a few training iterations on synthetic data, so that scores are not all
alike), and nothing on an image where the model finds nothing; the command line tool."""
import os

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model

from helpers import run_tool
from model_inputs import config, synthetic_batch, train_step
from segzoo.export import ExportedPredictor, export_metadata, export_model, resize_for_test
from segzoo.export.cli import compare_predictions, eager_predict

MASK_RCNN = "configs/MaskRCNN/shapes_R_18_FPN_pooler_{}.yaml"
CONFIGS = {
    **{f"mask_rcnn_{p}": (MASK_RCNN.format(p), "MODEL.ROI_HEADS.SCORE_THRESH_TEST")
       for p in ("ROIPool", "ROIWarp", "ROIAlign", "ROIAlignMax", "ROIAlignV2")},
    "blendmask": ("configs/BlendMask/shapes_R_18.yaml", "MODEL.FCOS.INFERENCE_TH_TEST"),
    "blendmask_K1": ("configs/BlendMask/shapes_R_18_K1.yaml", "MODEL.FCOS.INFERENCE_TH_TEST"),
    "rdsnet": ("configs/RDSNet/shapes_R_18.yaml", "MODEL.RETINANET.SCORE_THRESH_TEST"),
    "rdsnet_mbrm": ("configs/RDSNet/shapes_R_18_mbrm.yaml", "MODEL.RETINANET.SCORE_THRESH_TEST"),
    "deepmask": ("configs/SharpMask/shapes_deepmask_R_18.yaml", None),
    "sharpmask": ("configs/SharpMask/shapes_sharpmask_R_18.yaml", None),
}
# the proposal models keep their top 100 windows (1,000 by default): each kept window is refined
# and pasted, in the eager reference as in the exported model
PROPOSAL_OPTS = ("MODEL.SHARPMASK.TEST.TOP_N", "100")
# tolerances: boxes in pixels of the original image, scores absolute, mask pixels as a fraction
TOL = {"boxes": 1e-3, "scores": 1e-5, "classes": 0, "mask_pixels": 1e-3}


def _images():
    """(H, W, 3) uint8 BGR images of several sizes and aspect ratios (resized to the test size
    by the predictor: the traced graph sees other sizes than the one it was traced on)."""
    rng = np.random.default_rng(0)
    out = []
    for h, w in [(256, 256), (300, 420), (380, 260)]:  # three test sizes: square, landscape, portrait
        img = rng.integers(30, 90, (h, w, 3), dtype=np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, h - 60), rng.integers(0, w - 60)
            img[y:y + rng.integers(20, 60), x:x + rng.integers(20, 60)] = rng.integers(120, 250, 3)
        out.append(img)
    return out


def _patch_batch(cfg):
    """DeepMask / SharpMask training samples (patches) of two shapes_train images."""
    from detectron2.data import DatasetCatalog
    from sharpmask import SharpMaskDatasetMapper

    mapper = SharpMaskDatasetMapper(cfg, True)
    mapper.sampler.samples_per_image = 6
    np.random.seed(0)
    return [mapper(d) for d in DatasetCatalog.get("shapes_train")[:2]]


@pytest.fixture(scope="module")
def trained():
    """name -> (cfg, model after 4 training steps), built once per name."""
    cache = {}

    def get(name, *opts):
        key = (name, opts)
        if key not in cache:
            path, _ = CONFIGS[name]
            cfg = config(path, *(PROPOSAL_OPTS if name in ("deepmask", "sharpmask") else ()), *opts)
            torch.manual_seed(0)
            model = build_model(cfg)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            batch = _patch_batch(cfg) if cfg.MODEL.META_ARCHITECTURE == "SharpMask" else synthetic_batch()
            for i in range(4):
                train_step(model, batch, iteration=i)
                opt.step()
            cache[key] = cfg, model.eval()
        return cache[key]

    return get


def _export(cfg, model, tmp_path, fmt):
    sample = resize_for_test(_images()[0], cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    export_model(model, sample, str(tmp_path), fmt, metadata=export_metadata(cfg))
    return ExportedPredictor(str(tmp_path))


# in the fast suite (also run against Detectron2 v0.6): one model per export path; the rest are `slow`
FAST = {"mask_rcnn_ROIAlignMax", "blendmask", "rdsnet_mbrm"}
MATRIX = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in CONFIGS]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", MATRIX)
def test_exported_model_matches_pytorch(name, fmt, trained, tmp_path):
    thresh_key = CONFIGS[name][1]
    cfg, model = trained(name, *((thresh_key, "0.0") if thresh_key else ()))  # every image has detections
    predictor = _export(cfg, model, tmp_path, fmt)
    assert os.path.isfile(tmp_path / ("model.ts" if fmt == "torchscript" else "model.onnx"))
    sizes = set()
    for img in _images():
        got, ref = predictor(img), eager_predict(model, predictor, img)
        sizes.add(predictor.resize(img).shape[1:])
        assert len(ref) > 0 and ref.image_size == img.shape[:2] == got.image_size
        diff = compare_predictions(got, ref)
        assert diff["detections"] == 0, diff
        for k, tol in TOL.items():
            assert diff.get(k, 0) <= tol, (k, diff)
        assert got.pred_masks.shape == ref.pred_masks.shape == (len(ref), *img.shape[:2])
    assert len(sizes) == 3  # dynamic input sizes


# what leaves an image without detections: no score passes the detectors' threshold; the
# proposal models keep every window, but drop those whose pasted mask is empty, which is all of
# them when no mask probability reaches MASK_THRESH
NO_DETECTIONS = {
    "mask_rcnn_ROIAlignV2": (CONFIGS["mask_rcnn_ROIAlignV2"][1], "1.0"),
    "blendmask": (CONFIGS["blendmask"][1], "1.0"),
    "rdsnet_mbrm": (CONFIGS["rdsnet_mbrm"][1], "1.0"),
    "deepmask": ("MODEL.SHARPMASK.TEST.MASK_THRESH", "1.1"),
    "sharpmask": ("MODEL.SHARPMASK.TEST.MASK_THRESH", "1.1"),
}


# the proposal models paste their windows outside the graph, the same code for both formats: ONNX only
NO_DETECTIONS_CASES = [pytest.param(n, f, marks=() if n in FAST | {"mask_rcnn_ROIAlignV2"} else pytest.mark.slow)
                       for n in NO_DETECTIONS for f in ("torchscript", "onnx")
                       if f == "onnx" or CONFIGS[n][1] is not None]


@pytest.mark.parametrize("name,fmt", NO_DETECTIONS_CASES)
def test_exported_model_with_no_detections(name, fmt, trained, tmp_path):
    cfg, model = trained(name, *NO_DETECTIONS[name])
    predictor = _export(cfg, model, tmp_path, fmt)
    for img in _images()[:2]:
        got = predictor(img)
        assert len(got) == 0 == len(eager_predict(model, predictor, img))
        assert got.pred_masks.shape == (0, *img.shape[:2])


def test_export_tool_writes_and_checks(trained, tmp_path):
    import cv2

    cfg, model = trained("blendmask")
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    paths = []
    for i, img in enumerate(_images()[:2]):
        paths.append(str(tmp_path / f"img{i}.png"))
        cv2.imwrite(paths[-1], img)
    out = tmp_path / "exported"
    r = run_tool("export_model.py", ["--config-file", CONFIGS["blendmask"][0], "--format", "onnx",
                  "--sample-image", paths[0], "--output", str(out), "--check", paths[0], "--check", paths[1],
                  "MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", "cpu", "MODEL.FCOS.INFERENCE_TH_TEST", "0.0"])
    assert r.returncode == 0, r.stdout
    checks = [line for line in r.stdout.splitlines() if line.startswith("[check]")]
    assert len(checks) == 2 and all("detections 0" in line for line in checks), checks
    assert (out / "model.onnx").is_file() and (out / "export.json").is_file()


def test_export_tool_bad_input_is_one_line(tmp_path):
    r = run_tool("export_model.py", ["--config-file", CONFIGS["blendmask"][0], "--output", str(tmp_path),
                  "--sample-image", str(tmp_path / "missing.png"), "MODEL.DEVICE", "cpu"])
    assert r.returncode == 2
    assert r.stdout.strip().splitlines()[-1] == f"error: image not found: {tmp_path / 'missing.png'}"
    assert not (tmp_path / "model.ts").exists()


def test_a_model_without_raw_inference_is_one_clear_error(tmp_path):
    from segzoo.errors import UserError

    cfg = config("configs/RDSNet/shapes_RetinaNet_GN_R_18.yaml")  # a RetinaNet: no raw inference of its own
    model = build_model(cfg).eval()
    with pytest.raises(UserError, match=rf"^{type(model).__name__} cannot be exported: it has no inference\(batched_inputs, "):
        export_model(model, torch.rand(3, 64, 64) * 255, str(tmp_path), "onnx")
    assert not os.listdir(tmp_path)


def _detectron2_export_imports():
    try:
        import detectron2.export  # noqa: F401  (v0.6's needs caffe2)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("name", ["mask_rcnn_ROIAlignMax", "mask_rcnn_ROIWarp"])
def test_scripted_mask_rcnn_matches_pytorch(name, trained, tmp_path):
    """Detectron2's scripting with our pooler (upstream Detectron2; with v0.6, whose
    detectron2.export needs caffe2, one clear error and nothing written)."""
    from segzoo.errors import UserError

    cfg, model = trained(name, CONFIGS[name][1], "0.0")
    sample = resize_for_test(_images()[0], cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    if not _detectron2_export_imports():
        with pytest.raises(UserError, match="^scripting needs detectron2.export"):
            export_model(model, sample, str(tmp_path / "out"), "torchscript", "scripting")
        assert not (tmp_path / "out").exists()
        return
    export_model(model, sample, str(tmp_path), "torchscript", "scripting", export_metadata(cfg))
    predictor = ExportedPredictor(str(tmp_path))
    for img in _images():
        diff = compare_predictions(predictor(img), eager_predict(model, predictor, img))
        assert diff["detections"] == 0, diff
        for k, tol in TOL.items():
            assert diff.get(k, 0) <= tol, (k, diff)


def test_scripting_other_models_is_one_clear_error(trained, tmp_path):
    from segzoo.errors import UserError

    cfg, model = trained("blendmask")
    with pytest.raises(UserError, match=r"^scripting supports Detectron2's GeneralizedRCNN \(Mask R-CNN\) only, not BlendMask"):
        export_model(model, torch.rand(3, 64, 64) * 255, str(tmp_path / "out"), "torchscript", "scripting")
    with pytest.raises(UserError, match="^scripting exports TorchScript only"):
        export_model(model, torch.rand(3, 64, 64) * 255, str(tmp_path / "out"), "onnx", "scripting")
    assert not (tmp_path / "out").exists()


def test_export_benchmark_times_every_runtime(tmp_path, capsys):
    from segzoo.export.bench import bench_method, main
    from segzoo.zoo import methods

    row = bench_method(methods()["blendmask"], n=3, size=128, images=1, repeats=1, warmup=0)
    assert row["method"] == "blendmask" and row["detections"] == 3 and row["size"] == 128
    for fmt in ("eager", "torchscript", "onnx"):
        assert row[f"{fmt}_ms"] > 0, row
    for fmt in ("torchscript", "onnx"):
        assert row[f"{fmt}_vs_eager"] == pytest.approx(row[f"{fmt}_ms"] / row["eager_ms"])
    # a method that cannot be exported on its own (fed proposals by another model) is refused in one line
    assert main(["--methods", "fast_rcnn_sharpmask", "--output", str(tmp_path / "export.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: not exportable or unknown: ['fast_rcnn_sharpmask']"), err
    assert not (tmp_path / "export.json").exists()
