"""Short real training runs on the synthetic data reach a real AP.

Mask R-CNN (slim R-18-FPN) with its box and mask heads pooling through segzoo's op
(AlignFamilyROIHeads, ROIAlignV2), and BlendMask (slim R-18, FCOS + ProtoNet + the fused
blender), 300 iterations each on shapes_train, evaluated on shapes_val, SEED 0. RDSNet
(slim R-18 RetinaNet with GN towers + representation tower + pixel stream) 400 iterations, then
its MBRM stage for 60 iterations, which must leave every other weight bit-identical. DeepMask 120
iterations then SharpMask's refinement 60, with their proposal evaluations.
Measured on a 2-core CPU machine (AMD EPYC, AVX2), with the seeded training stream and deterministic
kernels (the same numbers on every run of one Detectron2, thread count and CPU), against Detectron2
v0.6: Mask R-CNN segm AP 7.7 / box AP 9.4; BlendMask segm AP 1.3 / box AP 1.9 (2.1 / 3.0 against
upstream main: at 300 iterations dense one-stage training has barely started, at 1,000 it reaches
about 25 / 29, see the README); against upstream main, RDSNet segm 2.8 / box 5.6, 6.0 after MBRM
(13 / 19 at 1,000 iterations: the README's table); DeepMask / SharpMask segm AR@100 8.0 / 9.5 (1
thread). On a 2-core Intel Xeon (AVX-512, AMX) against upstream main, 1 thread: Mask R-CNN 7.3 / 9.0,
BlendMask 2.2 / 3.0, RDSNet 3.2 / 5.4 (5.8 after MBRM), DeepMask / SharpMask 9.5 / 12.4.
Untrained, all are ~0. The thresholds sit at about half of the lowest of these: a floor on quality
that a change of seed or of Detectron2 version keeps, not a
reproduction of the exact number (tests/test_resume.py checks that).
"""
import json
import re

import pytest
import torch

from helpers import bf16_agreement, run_train_net

SCHEDULE = ["SOLVER.MAX_ITER", "300", "SOLVER.STEPS", "(225, 275)", "SOLVER.CHECKPOINT_PERIOD", "1000",
            "SEED", "0", "DATALOADER.NUM_WORKERS", "1"]


def _train(tmp_path, config, *opts, schedule=SCHEDULE):
    r = run_train_net(["--config-file", config, *schedule, "OUTPUT_DIR", str(tmp_path), *opts])
    assert r.returncode == 0, r.stdout[-4000:]
    assert re.search(r"copypaste: Task: segm", r.stdout)
    metrics = [json.loads(l) for l in (tmp_path / "metrics.json").read_text().splitlines()]
    final = [m for m in metrics if "segm/AP" in m][-1]
    return metrics, final


def _bf16_close(config, weights, *opts):
    """The trained model's top detections on 4 validation images, fp32 vs CPU bf16 autocast
    (custom ops included): at least 80% agree (measured on the 400-iteration RDSNet of
    this file: 38 of 40, 39 with MBRM)."""
    matched, total = bf16_agreement(config, weights, *opts)
    assert total >= 20 and matched >= 0.8 * total, (matched, total)


def _falls(values, factor, n=3):
    """The mean of the last n logged values (Detectron2 logs the median of every 20 iterations) is
    below factor x the mean of the first n."""
    assert len(values) >= 2 * n, values
    return sum(values[-n:]) / n < factor * sum(values[:n]) / n


@pytest.mark.slow
def test_short_training_reaches_real_ap(tmp_path):
    metrics, final = _train(tmp_path, "configs/MaskRCNN/shapes_R_18_FPN_pooler_ROIAlignV2.yaml")
    losses = [m["total_loss"] for m in metrics if "total_loss" in m]
    assert _falls(losses, 0.75), losses
    assert final["segm/AP"] > 5.0, final
    assert final["bbox/AP"] > 6.0, final
    _bf16_close("configs/MaskRCNN/shapes_R_18_FPN_pooler_ROIAlignV2.yaml", tmp_path / "model_final.pth")


@pytest.mark.slow
def test_short_blendmask_training_reaches_real_mask_ap(tmp_path):
    metrics, final = _train(tmp_path, "configs/BlendMask/shapes_R_18.yaml")
    mask_losses = [m["loss_mask"] for m in metrics if "loss_mask" in m]
    assert _falls(mask_losses, 0.85), mask_losses  # measured 0.74
    assert final["segm/AP"] > 0.6, final
    assert final["bbox/AP"] > 0.9, final
    _bf16_close("configs/BlendMask/shapes_R_18.yaml", tmp_path / "model_final.pth")


# 400 iterations, decay at 75 % / 90 % and warm-up 100 as `tools/model_zoo.py` (whose 1,000 iterations the
# README reports)
RDSNET_SCHEDULE = ["SOLVER.MAX_ITER", "400", "SOLVER.STEPS", "(300, 360)", "SOLVER.CHECKPOINT_PERIOD", "2000",
                   "SEED", "0", "DATALOADER.NUM_WORKERS", "1"]
# this test (seed 0, the seeded training stream, upstream Detectron2, 2 threads): segm AP 2.8 / box AP 5.6, 6.0
# after the 60-iteration MBRM stage; the bounds sit at ~half of it
RDSNET_MIN_AP = {"segm": 1.4, "bbox": 2.8}


@pytest.mark.slow
def test_short_rdsnet_training_then_mbrm_stage(tmp_path):
    stage1 = tmp_path / "rdsnet"
    metrics, final = _train(stage1, "configs/RDSNet/shapes_R_18.yaml", schedule=RDSNET_SCHEDULE)
    mask_losses = [m["loss_mask"] for m in metrics if "loss_mask" in m]
    assert _falls(mask_losses, 0.85), mask_losses  # measured 0.71 -> 0.55 (x 0.77)
    assert final["segm/AP"] > RDSNET_MIN_AP["segm"], final
    assert final["bbox/AP"] > RDSNET_MIN_AP["bbox"], final
    # second stage: MBRM alone learns; everything else must come out bit-identical
    stage2 = tmp_path / "mbrm"
    mbrm_schedule = ["SOLVER.MAX_ITER", "60", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "10",
                     "SOLVER.CHECKPOINT_PERIOD", "1000", "SEED", "0", "DATALOADER.NUM_WORKERS", "1"]
    metrics2, final2 = _train(stage2, "configs/RDSNet/shapes_R_18_mbrm.yaml",
                              "MODEL.WEIGHTS", str(stage1 / "model_final.pth"), schedule=mbrm_schedule)
    assert all("loss_mask" not in m for m in metrics2)
    assert final2["segm/AP"] == pytest.approx(final["segm/AP"], abs=1e-6)  # masks unchanged
    before = torch.load(stage1 / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    after = torch.load(stage2 / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert before.keys() == after.keys()
    for k in before:
        if k.startswith("mbrm."):
            assert not torch.equal(before[k], after[k]), k
        else:
            assert torch.equal(before[k], after[k]), k
    assert final2["bbox/AP"] > RDSNET_MIN_AP["bbox"], final2
    _bf16_close("configs/RDSNet/shapes_R_18.yaml", stage1 / "model_final.pth")
    _bf16_close("configs/RDSNet/shapes_R_18_mbrm.yaml", stage2 / "model_final.pth")


# DeepMask 120 iterations, then SharpMask's refinement 60 iterations on the frozen result; both
# evaluated as segment proposals (top 100 windows: AR@100 is what is asserted; 20 validation images).
SHARPMASK_OPTS = ["DATASETS.SHAPES.NUM_VAL", "20", "MODEL.SHARPMASK.TEST.TOP_N", "100", "SEED", "0",
                  "DATALOADER.NUM_WORKERS", "1", "SOLVER.CHECKPOINT_PERIOD", "1000"]
# segm AR@100 (20 images); measured (seed 0, the seeded training stream, 1 thread): DeepMask 8.0, SharpMask 9.5
# on an AVX2 CPU (at 200 + 100 iterations: 9.5 / 16.5), 9.5 / 12.4 on an AVX-512 one; the same with the top 100
# or the top 300 windows kept (the windows whose mask comes out empty are dropped before the evaluation's 100)
SHARPMASK_MIN_AR = {"deepmask": 4.0, "sharpmask": 4.7}


def _proposal_train(out, config, *opts):
    r = run_train_net(["--config-file", config, *SHARPMASK_OPTS, "OUTPUT_DIR", str(out), *opts])
    assert r.returncode == 0, r.stdout[-4000:]
    metrics = [json.loads(l) for l in (out / "metrics.json").read_text().splitlines()]
    final = [m for m in metrics if "segm_proposals/AR@100" in m][-1]
    return metrics, final


@pytest.mark.slow
def test_short_deepmask_then_sharpmask_training(tmp_path):
    s1 = tmp_path / "deepmask"
    metrics, final = _proposal_train(s1, "configs/SharpMask/shapes_deepmask_R_18.yaml", "SOLVER.MAX_ITER", "120",
                                     "SOLVER.STEPS", "(90, 108)", "SOLVER.WARMUP_ITERS", "30")
    assert _falls([m["loss_mask"] for m in metrics if "loss_mask" in m], 0.9)  # measured x 0.78
    assert _falls([m["loss_score"] for m in metrics if "loss_score" in m], 0.8)  # measured x 0.63
    assert final["segm_proposals/AR@100"] > SHARPMASK_MIN_AR["deepmask"], final
    s2 = tmp_path / "sharpmask"
    metrics2, final2 = _proposal_train(s2, "configs/SharpMask/shapes_sharpmask_R_18.yaml",
                                       "MODEL.WEIGHTS", str(s1 / "model_final.pth"), "SOLVER.MAX_ITER", "60",
                                       "SOLVER.STEPS", "(48,)", "SOLVER.WARMUP_ITERS", "12")
    # one loss in stage 2: Detectron2 logs it as total_loss only, 3 times in 60 iterations
    assert _falls([m["total_loss"] for m in metrics2 if "total_loss" in m], 0.8, n=1)  # measured x 0.64
    before = torch.load(s1 / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    after = torch.load(s2 / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert set(after) - set(before) and all(k.startswith("refinement.") for k in set(after) - set(before))
    for k in before:  # trunk, score and coarse mask are frozen in stage 2
        assert torch.equal(before[k], after[k]), k
    # same windows and scores (box AR is on the masks' boxes, so it moves a little); sharper masks
    assert final2["segm_proposals/AR@100"] > SHARPMASK_MIN_AR["sharpmask"], final2
    assert final2["segm_proposals/AR@100"] > final["segm_proposals/AR@100"], (final, final2)
    # at one scale of the pyramid (1.0), its top 50 of 256 windows: on a CPU without native bf16 (AVX2 only) the
    # six scales up to 4x take ~13 min under autocast, one scale with its top 300 ~35 s; measured 40 of 40 for
    # both, with the top 300 and the top 50 (AVX-512)
    one_scale = ["MODEL.SHARPMASK.TEST.TOP_N", "50", "MODEL.SHARPMASK.TEST.SCALES", "[1.0]"]
    _bf16_close("configs/SharpMask/shapes_deepmask_R_18.yaml", s1 / "model_final.pth", *one_scale)
    _bf16_close("configs/SharpMask/shapes_sharpmask_R_18.yaml", s2 / "model_final.pth", *one_scale)
