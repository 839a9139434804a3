"""The model-zoo comparison, its benchmark and the demo command, on tiny schedules."""
import json
import os

import cv2
import pytest
import torch

from segzoo.errors import UserError
from segzoo.zoo import methods, Harness, Schedule, detections_opts, harness_opts, method_order
from segzoo.zoo.bench import method_opts
from segzoo.zoo.measure import peak_memory, run_isolated
from segzoo.benchmark import build_model_from, random_inputs

from helpers import REPO, run_tool

# every method small and fast: one SharpMask scale, few windows
FAST = ["MODEL.SHARPMASK.TEST.SCALES", "[1.0]", "MODEL.SHARPMASK.TEST.TOP_N", "50"]
TINY_DATA = ["--num-train", "8", "--num-val", "2"]


# --- the harness -------------------------------------------------------------------------------

def _opt(opts, key):
    return opts[len(opts) - 1 - opts[::-1].index(key) + 1]


def test_schedule_scales_iterations_and_decay_points():
    s = Schedule(iters=1000, batch=8)
    opts = s.opts()
    assert _opt(opts, "SOLVER.MAX_ITER") == "1000" and _opt(opts, "SOLVER.STEPS") == "(750, 900)"
    assert _opt(opts, "SOLVER.IMS_PER_BATCH") == "8" and _opt(opts, "SOLVER.WARMUP_ITERS") == "100"
    short = s.opts(0.3)
    assert _opt(short, "SOLVER.MAX_ITER") == "300" and _opt(short, "SOLVER.STEPS") == "(225, 270)"
    assert _opt(Schedule(iters=2).opts(), "SOLVER.STEPS") == "(1,)"
    assert _opt(Schedule(iters=1).opts(), "SOLVER.STEPS") == "()"  # no decay point at or past the end


def test_every_method_gets_the_same_harness():
    h = Harness(train="a", test="b", num_classes=3, backbone="R-50", size=320, schedule=Schedule(iters=40))
    keys = ["DATASETS.TRAIN", "DATASETS.TEST", "MODEL.RESNETS.DEPTH", "MODEL.RESNETS.RES2_OUT_CHANNELS",
            "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TEST", "SOLVER.IMS_PER_BATCH", "MODEL.ROI_HEADS.NUM_CLASSES",
            "MODEL.FCOS.NUM_CLASSES", "MODEL.RETINANET.NUM_CLASSES"]
    values = {m.name: [_opt(harness_opts(m, h), k) for k in keys] for m in methods().values()}
    assert len({tuple(v) for v in values.values()}) == 1
    assert values["blendmask"] == ["('a',)", "('b',)", "50", "256", "(320,)", "320", "4", "3", "3", "3"]
    iters = {m.name: int(_opt(harness_opts(m, h), "SOLVER.MAX_ITER")) for m in methods().values()}
    assert iters["mask_rcnn_ROIPool"] == iters["blendmask"] == iters["rdsnet"] == iters["deepmask"] == 40
    assert iters["rdsnet_mbrm"] == 12 and iters["sharpmask"] == 30
    with pytest.raises(UserError, match="unknown backbone"):
        harness_opts(methods()["rdsnet"], Harness(backbone="R-1000"))


def test_method_order_adds_parents_first():
    assert method_order(["fast_rcnn_sharpmask"]) == ["deepmask", "sharpmask", "fast_rcnn_sharpmask"]
    assert method_order(["rdsnet_mbrm", "blendmask"]) == ["blendmask", "rdsnet", "rdsnet_mbrm"]
    with pytest.raises(UserError, match="unknown method"):
        method_order(["maskformer"])


@pytest.mark.parametrize("name", list(methods()))
def test_forced_detections_give_exactly_n_instances(name, tmp_path):
    """The benchmark's latency-vs-instances axis: every method, untrained, returns exactly n, in
    fp32 and under bf16 autocast."""
    m = methods()[name]
    h = Harness(extra_opts=FAST)
    torch.manual_seed(0)
    n = 37
    model, _ = build_model_from(m.config_file, [*method_opts(m, h, str(tmp_path)), *detections_opts(m, n)])
    for autocast in (False, True):  # also under CPU bf16 autocast (our ops run in fp32 there)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(random_inputs(256))[0]["instances"]
        assert len(out) == n, autocast
        if m.kind != "boxes":
            assert out.pred_masks.shape[-2:] == (256, 256)


# --- measuring -------------------------------------------------------------------------------

def _allocate_and_touch(mb):
    x = torch.ones(mb * 2**18)  # float32: mb MB, written so it is resident
    return float(x.sum())


def _fail():
    raise ValueError("bad things")


def _peaks():
    return peak_memory(lambda: _allocate_and_touch(200), "cpu"), peak_memory(lambda: None, "cpu")


def test_peak_memory_sees_an_allocation():
    """In a fresh process, as every measurement of the harness (a process that has freed memory
    before can serve an allocation from pages that are already resident)."""
    peak, idle = run_isolated(_peaks)
    assert peak is not None and 190 <= peak < 400
    assert idle < 20


def test_run_isolated_returns_and_reports_errors():
    assert run_isolated(_allocate_and_touch, 1) == 2**18
    with pytest.raises(UserError, match="ValueError: bad things"):
        run_isolated(_fail)


# --- tools/model_zoo.py ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("zoo"))
    r = run_tool("model_zoo.py", ["--iters", "2", *TINY_DATA, "--timed-images", "1", "--proposals", "50",
                                  "--output", out, *FAST])
    assert r.returncode == 0, r.stdout[-3000:]
    return out, r.stdout


def test_model_zoo_trains_evaluates_and_reports_every_method(zoo_run):
    out, log = zoo_run
    with open(os.path.join(out, "zoo.json")) as f:
        report = json.load(f)
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == list(methods())
    assert report["settings"]["iters"] == 2 and report["settings"]["num_classes"] == 5
    for name, r in rows.items():
        assert os.path.isfile(os.path.join(out, name, "model_final.pth"))
        assert r["iterations"] == (1 if name == "rdsnet_mbrm" else 2)  # evaluated after the last iteration
        assert r["parameters"] > 1e6 and r["latency_ms"] > 0 and r["timed_images"] == 1
        assert r["inference_peak_mb"] is not None
        assert not r["reused"]
    for name in ["mask_rcnn_ROIPool", "mask_rcnn_ROIAlignV2"]:
        assert "segm/AP" in rows[name]["metrics"] and "bbox/AP" in rows[name]["metrics"]
    for name in ["deepmask", "sharpmask"]:
        assert {"segm_proposals/AR@100", "box_proposals/AR@1000"} <= set(rows[name]["metrics"])
    assert "bbox/AP" in rows["fast_rcnn_sharpmask"]["metrics"]
    assert "segm/AP" not in rows["fast_rcnn_sharpmask"]["metrics"]
    # Fast R-CNN is timed with its SharpMask proposer inside: its parameters included
    assert rows["fast_rcnn_sharpmask"]["parameters"] > rows["sharpmask"]["parameters"]
    # the proposals Fast R-CNN trained on were exported from the SharpMask run
    assert os.path.isfile(os.path.join(out, "fast_rcnn_sharpmask", "proposals_shapes_train.pkl"))
    with open(os.path.join(out, "zoo.md")) as f:
        md = f.read()
    assert md.count("\n| ") == 1 + len(methods()) and "| Mask R-CNN (ROIAlign) |" in md
    png = cv2.imread(os.path.join(out, "zoo.png"))
    assert png is not None and png.shape[0] > 200
    n = len(methods())
    assert f"[zoo] ({n}/{n}) fast_rcnn_sharpmask: trained + evaluated" in log


def test_model_zoo_reuses_finished_runs_and_refuses_mixed_settings(zoo_run):
    out, _ = zoo_run
    # a run recorded before configs were addressed relative to segzoo's model zoo is still reused
    stage = os.path.join(out, "blendmask", "zoo_stage.json")
    with open(stage) as f:
        settings = json.load(f)
    settings["config"] = "configs/" + settings["config"]
    with open(stage, "w") as f:
        json.dump(settings, f)
    r = run_tool("model_zoo.py", ["--methods", "sharpmask", "blendmask", "--iters", "2", *TINY_DATA, "--timed-images",
                                  "1", "--proposals", "50", "--output", out, *FAST])
    assert r.returncode == 0, r.stdout[-3000:]
    assert r.stdout.count("finished run reused") == 3  # blendmask, deepmask, sharpmask
    assert "train_net.py" not in r.stdout and "Start inference" not in r.stdout
    with open(os.path.join(out, "zoo.json")) as f:
        rows = json.load(f)["rows"]
    assert [x["method"] for x in rows] == ["blendmask", "sharpmask"] and all(x["reused"] for x in rows)

    r = run_tool("model_zoo.py", ["--iters", "3", *TINY_DATA, "--output", out, "--methods", "blendmask"])
    assert r.returncode == 2
    assert "holds a blendmask run with other settings" in r.stdout


def test_model_zoo_bad_input_is_a_clear_error(tmp_path):
    r = run_tool("model_zoo.py", ["--train", "no_such_set", "--output", str(tmp_path)])
    assert r.returncode == 2 and "dataset 'no_such_set' is not registered" in r.stdout
    r = run_tool("model_zoo.py", ["--register-coco", "x", str(tmp_path / "missing.json"), str(tmp_path),
                                  "--train", "x", "--output", str(tmp_path)])
    assert r.returncode == 2 and "annotation file not found" in r.stdout


# --- tools/bench_zoo.py ----------------------------------------------------------------------

def test_bench_zoo_latency_against_instances_and_training(tmp_path):
    out = tmp_path / "bench.json"
    r = run_tool("bench_zoo.py", ["--methods", "mask_rcnn_ROIAlignV2", "sharpmask", "--instances", "5", "20",
                                  "--repeats", "1", "--train-iters", "2", "--batch", "2", "--num-train", "8",
                                  "--output", str(out), *FAST])
    assert r.returncode == 0, r.stdout[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [x["method"] for x in rows] == ["mask_rcnn_ROIAlignV2", "sharpmask"]
    for row in rows:
        assert [i["instances_requested"] for i in row["inference"]] == [5, 20]
        assert [i["instances"] for i in row["inference"]] == [5, 20]
        assert all(i["latency_ms"] > 0 for i in row["inference"])
        assert row["inference"][1]["inference_peak_mb"] is not None  # the largest n, measured cold
        assert row["train_images_per_s"] > 0 and row["train_peak_mb"] > 0
    assert "| SharpMask |" in r.stdout and "20 inst. (ms)" in r.stdout


# --- tools/demo.py -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import DatasetCatalog

    from segzoo.config import load_config
    from detectron2.modeling import build_model

    d = tmp_path_factory.mktemp("demo")
    images = d / "images"
    images.mkdir()
    for rec in DatasetCatalog.get("shapes_val")[:2]:
        img = cv2.imread(rec["file_name"])
        cv2.imwrite(str(images / os.path.basename(rec["file_name"])), img)
    cfg_file = os.path.join(REPO, "configs/MaskRCNN/shapes_R_18_FPN.yaml")
    torch.manual_seed(0)
    model = build_model(load_config(cfg_file, ["MODEL.DEVICE", "cpu"]))
    DetectionCheckpointer(model, save_dir=str(d)).save("model")
    return cfg_file, images, str(d / "model.pth")


def test_demo_writes_visualisations_for_a_folder_and_skips_bad_files(demo_inputs, tmp_path):
    cfg_file, images, weights = demo_inputs
    (images / "broken.png").write_text("not an image")
    try:
        r = run_tool("demo.py", ["--config-file", cfg_file, "--input", str(images), "--output", str(tmp_path / "vis"),
                                 "--confidence-threshold", "0.0", "--max-instances", "5", "MODEL.WEIGHTS", weights])
    finally:
        (images / "broken.png").unlink()
    assert r.returncode == 1, r.stdout[-2000:]  # one unreadable image: reported, the others written
    assert "broken.png: cannot read the image" in r.stdout
    preds = json.loads((tmp_path / "vis" / "predictions.json").read_text())
    assert len(preds) == 2 and all(p["instances"] == 5 for p in preds)
    for p in preds:
        vis = cv2.imread(p["output"])
        assert vis.shape == (512, 512, 3)  # Visualizer at scale 2 of the 256-px image


def test_demo_single_image_to_a_file_and_clear_errors(demo_inputs, tmp_path):
    cfg_file, images, weights = demo_inputs
    image = sorted(images.iterdir())[0]
    target = tmp_path / "one.png"
    r = run_tool("demo.py", ["--config-file", cfg_file, "--input", str(image), "--output", str(target),
                             "MODEL.WEIGHTS", weights])
    assert r.returncode == 0, r.stdout[-2000:]
    assert cv2.imread(str(target)) is not None
    r = run_tool("demo.py", ["--config-file", cfg_file, "--input", str(tmp_path / "nope.png"), "--output",
                             str(tmp_path)])
    assert r.returncode == 2 and "no such file, folder or matching pattern" in r.stdout
    r = run_tool("demo.py", ["--config-file", cfg_file, "--input", str(image), "--output", str(tmp_path),
                             "MODEL.WEIGHTS", str(tmp_path / "missing.pth")])
    assert r.returncode == 2 and "checkpoint not found" in r.stdout


def test_seed_summary_mean_and_sample_sd(tmp_path):
    from segzoo.zoo import seed_summary, write_seed_summary

    def rows(box, mask):
        return [{"method": "rdsnet", "label": "RDSNet", "metrics": {"bbox/AP": box, "segm/AP": mask}},
                {"method": "retinanet", "label": "RetinaNet", "metrics": {"bbox/AP": box - 1.0}}]

    by_seed = {0: rows(20.0, 10.0), 1: rows(22.0, 12.0), 2: rows(24.0, float("nan"))}
    summary = {r["method"]: r for r in seed_summary(by_seed)}
    box = summary["rdsnet"]["metrics"]["bbox/AP"]
    assert box["values"] == [20.0, 22.0, 24.0] and box["mean"] == 22.0 and box["sd"] == pytest.approx(2.0)
    assert "segm/AP" not in summary["rdsnet"]["metrics"]  # a metric missing in one seed is not averaged
    assert summary["retinanet"]["metrics"]["bbox/AP"]["mean"] == 21.0
    paths = write_seed_summary(by_seed, str(tmp_path), "title")
    md = open(paths["markdown"]).read()
    assert "| RDSNet | 22.0 ± 2.0 |" in md and "seeds [0, 1, 2]" in md
