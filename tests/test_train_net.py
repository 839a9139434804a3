"""train_net.py end to end in subprocesses: train, resume, eval-only, custom COCO data."""
import json
import os
import re

import pytest

from helpers import run_train_net

CONFIG = "configs/MaskRCNN/shapes_R_18_FPN.yaml"


def tiny_opts(out_dir, data_root, max_iter):
    return [
        "DATASETS.SHAPES.ROOT", str(data_root),
        "DATASETS.SHAPES.NUM_TRAIN", "12",
        "DATASETS.SHAPES.NUM_VAL", "6",
        "DATASETS.SHAPES.IMAGE_SIZE", "128",
        "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.STEPS", "()",
        "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.CHECKPOINT_PERIOD", "3",
        "DATALOADER.NUM_WORKERS", "0",
        "OUTPUT_DIR", str(out_dir),
    ]


def _copypaste(stdout):
    return re.findall(r"copypaste: ([0-9.]+(?:,[0-9.nan]+){5})", stdout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    data = tmp_path_factory.mktemp("data")
    r = run_train_net(["--config-file", CONFIG, *tiny_opts(out, data, 4)])
    assert r.returncode == 0, r.stdout[-4000:]
    return out, data, r.stdout


def test_train_writes_checkpoints_and_evaluates(trained):
    out, _, stdout = trained
    assert os.path.isfile(out / "model_final.pth")
    assert os.path.isfile(out / "model_0000002.pth")  # CHECKPOINT_PERIOD 3 -> iteration index 2
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert "Task: bbox" in stdout and "Task: segm" in stdout
    assert len(_copypaste(stdout)) == 2
    metrics = [json.loads(l) for l in (out / "metrics.json").read_text().splitlines()]
    losses = [m["total_loss"] for m in metrics if "total_loss" in m]
    assert losses and all(l == l and l < 100 for l in losses)  # finite


def test_resume_continues_from_last_checkpoint(trained):
    out, data, _ = trained
    r = run_train_net(["--config-file", CONFIG, "--resume", *tiny_opts(out, data, 7)])
    assert r.returncode == 0, r.stdout[-4000:]
    assert re.search(r"Loading (?:checkpoint )?from .*model_final\.pth", r.stdout)
    assert "Starting training from iteration 4" in r.stdout
    metrics = [json.loads(l) for l in (out / "metrics.json").read_text().splitlines()]
    assert max(m["iteration"] for m in metrics if "total_loss" in m) == 6


def test_eval_only(trained):
    out, data, _ = trained
    r = run_train_net(
        ["--config-file", CONFIG, "--eval-only", *tiny_opts(out, data, 4), "MODEL.WEIGHTS", str(out / "model_final.pth")]
    )
    assert r.returncode == 0, r.stdout[-4000:]
    assert "Task: segm" in r.stdout and len(_copypaste(r.stdout)) == 2
    assert "Starting training" not in r.stdout


def test_custom_coco_dataset_from_command_line(trained, tmp_path):
    out, data, _ = trained
    # any COCO-format folder: reuse the generated val split under new names
    split = next(p for p in os.listdir(data) if p.startswith("shapes_val"))
    js, imgs = str(data / split / "instances.json"), str(data / split / "images")
    r = run_train_net([
        "--config-file", CONFIG, "--eval-only",
        "--register-coco", "my_val", js, imgs,
        *tiny_opts(tmp_path, data, 4),
        "DATASETS.TEST", "('my_val',)", "MODEL.WEIGHTS", str(out / "model_final.pth"),
    ])
    assert r.returncode == 0, r.stdout[-4000:]
    assert "Evaluation results for segm" in r.stdout and "my_val" in r.stdout
