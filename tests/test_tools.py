"""tools/ are thin entry points over library functions: the one runtime-config loader, the one
source of forced detections (each method's declared ``detections(n)``) for every latency
measurement, the op micro-benchmarks and the per-paper benchmarks, the quickstart and the demo."""
import ast
import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from segzoo.benchmark import random_inputs
from segzoo.config import runtime_config
from segzoo.data import register_default_shapes
from segzoo.errors import UserError
from segzoo.zoo import Harness, detections_opts, methods

from helpers import REPO

MASK_RCNN = os.path.join(REPO, "configs", "MaskRCNN", "shapes_R_18_FPN.yaml")


# --- the runtime config loader -----------------------------------------------------------------

def _cuda_records(caplog):
    return [r for r in caplog.records if "no CUDA device is visible" in r.getMessage()]


def test_runtime_config_falls_back_to_the_cpu_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        cfg = runtime_config(MASK_RCNN, ["MODEL.DEVICE", "cuda"])
    assert cfg.MODEL.DEVICE == "cpu" and len(_cuda_records(caplog)) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cfg = runtime_config(MASK_RCNN, device="cuda:0", freeze=True)
    assert cfg.MODEL.DEVICE == "cpu" and cfg.is_frozen() and len(_cuda_records(caplog)) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert runtime_config(MASK_RCNN, device="cpu").MODEL.DEVICE == "cpu"
    assert not _cuda_records(caplog)


def test_runtime_config_knows_every_plugin_key():
    cfg = runtime_config(os.path.join(REPO, "configs", "BlendMask", "shapes_R_18.yaml"),
                         ["MODEL.RDSNET.HEAD_NORM", "GN"], device="cpu")
    assert cfg.MODEL.META_ARCHITECTURE == "BlendMask" and cfg.MODEL.RDSNET.HEAD_NORM == "GN"


def _coco_json(tmp_path, name):
    folder = tmp_path / name
    (folder / "images").mkdir(parents=True)
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}))
    return str(path), str(folder / "images")


def test_runtime_config_registers_the_datasets_it_names(tmp_path):
    train, val = f"rt_train_{tmp_path.name}", f"rt_val_{tmp_path.name}"
    train_json, train_dir = _coco_json(tmp_path, "train")
    val_json, val_dir = _coco_json(tmp_path, "val")
    opts = ["DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)",
            "DATASETS.COCO_FORMAT", repr([[val, val_json, val_dir]])]
    runtime_config(MASK_RCNN, opts, register_coco=[(train, train_json, train_dir)], device="cpu")
    assert {train, val} <= set(DatasetCatalog.list())
    assert MetadataCatalog.get(train).json_file == os.path.abspath(train_json)

    missing = ["DATASETS.TEST", "('rt_not_registered',)"]
    with pytest.raises(UserError, match="dataset 'rt_not_registered' is not registered"):
        runtime_config(MASK_RCNN, missing, device="cpu")
    assert runtime_config(MASK_RCNN, missing, device="cpu", check_datasets=False).DATASETS.TEST == ("rt_not_registered",)
    with pytest.raises(UserError, match="annotation file not found"):
        runtime_config(MASK_RCNN, device="cpu", register_coco=[("rt_x", str(tmp_path / "no.json"), str(tmp_path))])

    try:
        runtime_config(MASK_RCNN, ["DATASETS.SHAPES.NUM_TRAIN", "8"], device="cpu")
        assert MetadataCatalog.get("shapes_train").shapes["spec"].num_images == 8
    finally:
        register_default_shapes()
    assert MetadataCatalog.get("shapes_train").shapes["spec"].num_images == 1000


# --- one source of forced detections -----------------------------------------------------------

def test_detections_opts_is_the_declared_detections():
    for name, m in methods().items():
        assert detections_opts(name, 7) == detections_opts(m, 7) == list(m.detections(7))
    with pytest.raises(UserError, match="unknown method"):
        detections_opts("no_such_method", 3)


def test_bench_zoo_takes_the_declared_detections(monkeypatch, tmp_path):
    import segzoo.zoo.bench as zoo_bench

    calls = []
    monkeypatch.setattr(zoo_bench, "run_isolated", lambda fn, *args: calls.append(args) or [])
    for name in ("mask_rcnn_ROIAlignV2", "blendmask"):
        m = methods()[name]
        zoo_bench.bench_method(m, Harness(), [10, 300], str(tmp_path), train_iters=0)
        by_n = calls[-1][2]
        assert by_n == {10: m.detections(10), 300: m.detections(300)}


def test_rdsnet_bench_takes_the_declared_detections():
    from rdsnet.bench import DETECTIONS_FROM, VARIANTS, forced_detections

    assert set(DETECTIONS_FROM) == set(VARIANTS)
    for variant, method in DETECTIONS_FROM.items():
        assert forced_detections(variant, 40) == methods()[method].detections(40)


def test_rdsnet_bench_forces_n_on_every_variant():
    from rdsnet.bench import VARIANTS, bench, markdown

    rows = bench("shapes", size=64, detections=[3], repeats=1, warmup=0, say=lambda s: None)
    assert [r["detections"] for r in rows] == [3]
    assert all(rows[0][f"{v}_detections"] == 3 for v in VARIANTS)
    assert rows[0]["retinanet_ratio"] == 1.0
    assert "| 3 | " in markdown(rows, "shapes", 64, "cpu")


def test_sharpmask_bench_takes_the_declared_detections():
    from segzoo.model_zoo import get_config_file
    from sharpmask.bench import PRESETS, build, model_opts

    config = get_config_file(PRESETS["shapes"])
    assert model_opts(config, 7)[-len(methods()["sharpmask"].detections(7)):] == methods()["sharpmask"].detections(7)
    top_n = runtime_config(config, device="cpu").MODEL.SHARPMASK.TEST.TOP_N
    assert model_opts(config)[-len(methods()["sharpmask"].detections(top_n)):] == methods()["sharpmask"].detections(top_n)
    model, _ = build("shapes", 3, ["MODEL.SHARPMASK.TEST.SCALES", "[1.0]"])
    assert model.top_n == 3 and model.nms_thresh == 1.0


def test_sharpmask_bench_times_coarse_and_refined_paths():
    from sharpmask.bench import bench, build, markdown

    model, _ = build("shapes", 3, ["MODEL.SHARPMASK.TEST.SCALES", "[1.0]"])
    result = bench(model, random_inputs(64, count=2), "cpu", repeats=1, warmup=0, refine_all=False, say=lambda s: None)
    assert result["deepmask_coarse_proposals"] == result["sharpmask_proposals"] == 3
    assert result["deepmask_coarse_ratio"] == 1.0 and "sharpmask_refine_all_ms" not in result
    assert model.top_n == 3
    assert "| sharpmask |" in markdown(result, "shapes")


def test_random_inputs_are_seeded():
    a, b = random_inputs(32, count=2), random_inputs(32, count=2)
    assert a[0]["image"].shape == (3, 32, 32) and a[0]["height"] == a[0]["width"] == 32
    assert torch.equal(a[1]["image"], b[1]["image"]) and not torch.equal(a[0]["image"], a[1]["image"])
    assert torch.equal(random_inputs(32)[0]["image"], a[0]["image"])


# --- op micro-benchmarks -----------------------------------------------------------------------

def test_op_benchmarks_measure_every_candidate():
    from segzoo.ops.bench import ROI_BASELINE, bench_blender, bench_roi_align_family, blender_markdown

    lines = []
    results = bench_roi_align_family(rois=8, channels=4, map_size=(8, 10), outputs=[7], repeats=1, warmup=0,
                                     say=lines.append)
    assert len(results) == 6 and len(lines) == 3 + 6
    assert lines[1] == "| output | op | forward ms | ratio | fwd+bwd ms | ratio |"
    for r in results:
        assert r["forward_ms"] > 0 and r["fwd_bwd_ms"] > 0 and r["baseline"] == ROI_BASELINE.get(r["op"])
    rows = bench_blender([2, 3], repeats=1, warmup=0, say=lambda s: None)
    assert [r["N"] for r in rows] == [2, 3]
    assert all(r["fused_saved_mb"] < r["composition_saved_mb"] for r in rows)
    md = blender_markdown(rows, "cpu")
    assert md.startswith("Blender, K=4, M=14, R=56 (cpu)") and md.count("\n| 2 |") == 1


def test_bench_ops_tool(tmp_path):
    out = tmp_path / "ops.json"
    r = subprocess.run([sys.executable, os.path.join(REPO, "tools", "bench_ops.py"), "--repeats", "1", "--warmup", "0",
                        "--rois", "4", "--channels", "2", "--map-size", "6", "6", "--outputs", "7", "--instances", "2",
                        "--output", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    result = json.loads(out.read_text())
    assert len(result["roi_align_family"]) == 6 and [x["N"] for x in result["blender"]] == [2]
    assert "| 7x7 | ours RoIPool |" in r.stdout and "| 2 | " in r.stdout


# --- quickstart and demo -----------------------------------------------------------------------

def test_quickstart_trains_with_train_net_and_reads_its_metrics(monkeypatch, tmp_path):
    import segzoo.engine as engine
    from detectron2.checkpoint import DetectionCheckpointer
    from segzoo.benchmark import build_model_from
    from segzoo.engine import train_net_command
    from segzoo.quickstart import DemoRun, run_quickstart

    assert train_net_command("a.yaml", ["K", "V"])[1:] == ["-m", "segzoo.train_net", "--resume", "--config-file",
                                                           "a.yaml", "K", "V"]
    trained = []

    def fake_train(config_file, opts, resume=True, what="training", env=None):
        out = opts[opts.index("OUTPUT_DIR") + 1]
        os.makedirs(out, exist_ok=True)
        torch.manual_seed(0)
        model, _ = build_model_from(config_file, ["MODEL.DEVICE", "cpu"])
        DetectionCheckpointer(model, save_dir=out).save("model_final")
        with open(os.path.join(out, "metrics.json"), "w") as f:
            f.write(json.dumps({"iteration": 1, "segm/AP": 1.5, "bbox/AP": 2.5}) + "\n")
        trained.append((config_file, resume))

    monkeypatch.setattr(engine, "run_train_net", fake_train)
    rows = run_quickstart([DemoRun("mrcnn", "configs/MaskRCNN/shapes_R_18_FPN.yaml", 0.0),
                           DemoRun("other", "configs/BlendMask/shapes_R_18.yaml")], str(tmp_path), num_vis=1,
                          only=["mrcnn"], say=lambda s: None)
    assert trained == [(MASK_RCNN, True)]
    assert rows == [{"name": "mrcnn", "dataset": "shapes_val", "segm/AP": 1.5, "bbox/AP": 2.5,
                     "train_s": rows[0]["train_s"]}]
    assert len(os.listdir(tmp_path / "mrcnn" / "vis")) == 1


def test_demo_draws_class_agnostic_architectures_as_one_class():
    from segzoo.engine.demo import build_predictor
    from segzoo.plugins import class_agnostic_architectures

    assert "SharpMask" in class_agnostic_architectures()
    config = os.path.join(REPO, "configs", "SharpMask", "shapes_sharpmask_R_18.yaml")
    _, metadata = build_predictor(config, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.SHARPMASK.TEST.SCALES", "[1.0]"])
    assert metadata.thing_classes == ["object"]
    _, metadata = build_predictor(MASK_RCNN, ["MODEL.DEVICE", "cpu"])
    assert len(metadata.thing_classes) == 5


# --- tools/ ------------------------------------------------------------------------------------

def test_tools_are_thin_entry_points():
    """No tool defines a function or class: each calls a library module's command line."""
    tools = os.path.join(REPO, "tools")
    scripts = sorted(f for f in os.listdir(tools) if f.endswith(".py"))
    assert "bench_ops.py" in scripts and "pooler_ablation.py" not in scripts
    for f in scripts:
        tree = ast.parse(open(os.path.join(tools, f)).read())
        defs = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not defs, f"tools/{f} defines {defs}: move them into the library"


def test_subprocess_runs_are_bounded_by_silence_not_by_time():
    """The tests' hang guard (helpers.run_watched): a run that keeps printing may take as long as it needs, one
    silent for hang_after seconds is killed, with what it printed."""
    from helpers import run_watched

    talking = "import time\nfor i in range(6):\n    print(i, flush=True); time.sleep(0.5)\n"
    r = run_watched([sys.executable, "-c", talking], hang_after=2)  # runs 3 s > hang_after
    assert r.returncode == 0 and r.stdout.split() == [str(i) for i in range(6)]
    with pytest.raises(subprocess.TimeoutExpired) as e:
        run_watched([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], hang_after=2)
    assert "started" in e.value.output


def test_the_suite_runs_its_longest_tests_first(monkeypatch):
    """tests/conftest.py's order for `make test`'s workers: the quality trainings, the install check and the
    crowded harness, then the other slow tests and the groups sharing an expensive fixture, then the rest; and
    xdist keeps that order instead of moving the groups (more tests each) to the front."""
    from types import SimpleNamespace

    import conftest

    def item(nodeid, *marks):
        return SimpleNamespace(nodeid=nodeid, path=nodeid.split("::")[0], keywords=set(marks))

    items = [item("tests/test_blender_op.py::test_fused"),
             item("tests/test_zoo_tools.py::test_model_zoo_trains_evaluates_and_reports_every_method"),
             item("tests/test_zoo_tools.py::test_seed_summary_mean_and_sample_sd"),
             item("tests/test_resume.py::test_seeded_runs_are_bit_identical[rdsnet]", "slow"),
             item("tests/test_crowded.py::test_every_method_trains_and_evaluates_on_crowded_images", "slow"),
             item("tests/test_crowded.py::test_caps_follow_the_most_crowded_image"),
             item("tests/test_training_quality.py::test_short_training_reaches_real_ap", "slow")]
    order = [x.nodeid.split("::")[1] for x in sorted(items, key=conftest._order)]
    assert order == ["test_short_training_reaches_real_ap", "test_every_method_trains_and_evaluates_on_crowded_images",
                     "test_model_zoo_trains_evaluates_and_reports_every_method",
                     "test_seeded_runs_are_bit_identical[rdsnet]", "test_caps_follow_the_most_crowded_image",
                     "test_fused", "test_seed_summary_mean_and_sample_sd"]
    # pytest-xdist is a test dependency (pyproject's `test` extra, installed by `make setup`)
    assert conftest.LoadScopeScheduling is not None, "pytest-xdist is not installed: run make setup"
    config = SimpleNamespace(option=SimpleNamespace(loadscopereorder=True), getvalue=lambda name: "loadgroup")
    monkeypatch.setattr(conftest, "_GroupScheduling", lambda config, log: "group scheduler")
    assert conftest.pytest_xdist_make_scheduler(config, None) == "group scheduler"
    assert config.option.loadscopereorder is False
    assert conftest.same_worker_group("tests/test_zoo_tools.py::test_model_zoo_reuses_finished_runs") == "zoo_run"
