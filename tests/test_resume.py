"""Reproducible and resumable training: the seeded batch stream, crash-safe checkpoints, a
non-finite loss stopping with a clear message, and (slow) seeded runs that are bit-identical and
runs killed with SIGKILL that resume to the weights of an uninterrupted run."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import REPO, run_train_net, run_watched
from segzoo.data.stream import ResumableTrainLoader, SeededBatchStream, current_sample_seed, seeded_rng
from segzoo.engine.resume import AtomicWrites, make_writes_atomic


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


class _Sampler:
    """Detectron2-like infinite shuffled index stream of one rank."""

    def __init__(self, n, seed=0, rank=0, world=1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        k = 0
        while True:
            for i in torch.randperm(self.n, generator=g).tolist():
                if k % self.world == self.rank:
                    yield i
                k += 1


def _mapper(d):
    """Records every random source a mapper could draw from."""
    return (d["id"], random.random(), float(np.random.rand()), float(torch.rand(())), current_sample_seed())


def _dataset(n=23):
    return [{"id": i, "width": 40 if i % 3 == 0 else 20, "height": 30} for i in range(n)]


def _loader(start=0, workers=0, mapper=_mapper, grouping=True, rank=0, world=1, n=23):
    data = _dataset(n)

    def make(s):
        return SeededBatchStream(data, _Sampler(n, rank=rank, world=world), mapper, 4, seed=5, rank=rank,
                                 world_size=world, aspect_ratio_grouping=grouping, start=s)

    loader = ResumableTrainLoader(make, num_workers=workers)
    loader.start_iter = start
    return loader


def _take(loader, k):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == k:
            return out


@pytest.mark.parametrize("workers", [1, 3])
def test_batches_do_not_depend_on_the_number_of_workers(workers):
    assert _take(_loader(workers=0), 12) == _take(_loader(workers=workers), 12)


@pytest.mark.parametrize("start", [1, 5, 7])
def test_a_stream_started_at_b_continues_the_uninterrupted_one(start):
    full = _take(_loader(), 12)
    assert _take(_loader(start=start, workers=2), 12 - start) == full[start:]


def test_batches_group_by_orientation_and_draw_from_the_sample_seed():
    data = _dataset()
    batches = _take(_loader(), 10)
    for batch in batches:
        assert len(batch) == 4
        assert len({data[x[0]]["width"] > data[x[0]]["height"] for x in batch}) == 1
    draws = [x[1:4] for b in batches for x in b]
    assert len(set(draws)) == len(draws)  # every sample its own seed
    assert all(x[4][0] == 5 for b in batches for x in b)
    ungrouped = _take(_loader(grouping=False), 3)
    assert [x[0] for b in ungrouped for x in b] == [i for _, i in zip(range(12), _Sampler(23))]


def test_ranks_draw_for_an_image_what_one_process_would():
    one = [x for b in _take(_loader(grouping=False), 6) for x in b]
    r0 = [x for b in _take(_loader(grouping=False, rank=0, world=2), 3) for x in b]
    r1 = [x for b in _take(_loader(grouping=False, rank=1, world=2), 3) for x in b]
    assert sorted(r0 + r1) == sorted(one[:len(r0) + len(r1)])


def test_mapping_leaves_the_callers_random_streams_alone():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    want = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _take(_loader(), 3)
    with seeded_rng((1, 2)):
        random.random()
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == want


def test_rejected_images_are_replaced_deterministically():
    def picky(d):
        return None if d["id"] % 2 else _mapper(d)

    a, b = _take(_loader(mapper=picky), 6), _take(_loader(mapper=picky, workers=2), 6)
    assert a == b
    assert all(x[0] % 2 == 0 for batch in a for x in batch)


def test_a_stream_that_only_gets_rejections_says_so():
    with pytest.raises(RuntimeError, match="no usable image"):
        _take(_loader(mapper=lambda d: None), 1)


class _PM:
    def get_local_path(self, p):
        return p

    def open(self, p, mode="r", **kw):
        return open(p, mode)


def test_atomic_writes_replace_the_file_only_when_complete(tmp_path):
    pm = AtomicWrites(_PM())
    target = tmp_path / "model.pth"
    with pm.open(str(target), "wb") as f:
        torch.save({"w": torch.arange(5)}, f)
    assert torch.equal(_load(target)["w"], torch.arange(5))
    with pytest.raises(ZeroDivisionError):
        with pm.open(str(target), "wb") as f:
            f.write(b"half a checkpoint")
            1 / 0
    assert torch.equal(_load(target)["w"], torch.arange(5))  # the old file, untouched
    assert sorted(os.listdir(tmp_path)) == ["model.pth"]  # and no partial file left
    with pm.open(str(tmp_path / "last_checkpoint"), "w") as f:
        f.write("model.pth")
    assert (tmp_path / "last_checkpoint").read_text() == "model.pth"


def test_checkpointer_writes_atomically_and_clears_killed_saves(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    (tmp_path / "model_0000009.pth.partial").write_bytes(b"\0" * 10)
    model = torch.nn.Linear(3, 2)
    ckpt = make_writes_atomic(DetectionCheckpointer(model, save_dir=str(tmp_path)))
    assert not (tmp_path / "model_0000009.pth.partial").exists()
    ckpt.save("model_0000004", iteration=4)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert _load(tmp_path / "model_0000004.pth")["iteration"] == 4
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000004.pth"]


_SAVE_FOREVER = """
import sys, torch
from detectron2.checkpoint import DetectionCheckpointer
from segzoo.engine.resume import make_writes_atomic
ckpt = make_writes_atomic(DetectionCheckpointer(torch.nn.Linear(2000, 1000), save_dir=sys.argv[1]))
i = 0
while True:
    ckpt.save(f"model_{i % 3}", iteration=i)
    i += 1
"""


def test_a_process_killed_while_saving_leaves_a_loadable_last_checkpoint(tmp_path):
    rng = random.Random(0)
    for trial in range(4):
        out = tmp_path / str(trial)
        out.mkdir()
        p = subprocess.Popen([sys.executable, "-c", _SAVE_FOREVER, str(out)])
        try:
            while not (out / "last_checkpoint").exists():  # bounded by the test timeout, not by speed
                if p.poll() is not None:
                    pytest.fail(f"the saving process exited with {p.returncode}")
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        name = (out / "last_checkpoint").read_text()
        assert _load(out / name)["model"]["weight"].shape == (1000, 2000)
        for f in os.listdir(out):
            if f.endswith(".pth"):
                _load(out / f)  # every visible checkpoint is whole


CONFIG = "configs/MaskRCNN/shapes_R_18_FPN.yaml"


# 128-px images (shapes and the input sizes)
SMALL = ["DATASETS.SHAPES.IMAGE_SIZE", "128", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
         "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128"]


def _tiny(out, iters, *, data, extra=()):
    return ["--config-file", os.path.join(REPO, CONFIG),
            "DATASETS.SHAPES.ROOT", str(data), "DATASETS.SHAPES.NUM_TRAIN", "12", "DATASETS.SHAPES.NUM_VAL", "4",
            *SMALL, "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "2",
            "SOLVER.CHECKPOINT_PERIOD", "2", "DATALOADER.NUM_WORKERS", "0", "SEED", "3", "OUTPUT_DIR", str(out),
            *extra]


def test_a_non_finite_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    # plain SGD at a learning rate that makes the weights overflow after a few iterations (at iteration 2
    # with these settings: iteration 1 wrote a checkpoint)
    r = run_train_net(_tiny(tmp_path / "out", 40, data=tmp_path / "data", extra=[
        "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "30.0", "SOLVER.CLIP_GRADIENTS.ENABLED", "False",
        "SOLVER.WARMUP_ITERS", "0", "DATASETS.TEST", "()"]))
    assert r.returncode == 2, r.stdout[-3000:]
    err = [l for l in r.stdout.splitlines() if l.startswith("error: ")]
    assert len(err) == 1 and "the loss became infinite or NaN" in err[0], r.stdout[-3000:]
    assert "Traceback" not in r.stdout
    it = int(err[0].split("training stopped at iteration ")[1].split(":")[0])
    assert 0 < it < 40
    last = (tmp_path / "out" / "last_checkpoint").read_text()
    state = _load(tmp_path / "out" / last)
    assert state["iteration"] < it
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "out" / "model_final.pth").exists()


def _final_state(out):
    return _load(os.path.join(out, "model_final.pth"))["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def _interrupted(mode, at, args):
    return run_watched([sys.executable, os.path.join(REPO, "tests", "interrupted_train_net.py"), mode, str(at), *args])


@pytest.mark.slow
def test_killed_runs_resume_to_the_weights_of_an_uninterrupted_run(tmp_path):
    """Mask R-CNN (RPN and RoI sampling draw from the global RNG every iteration), 10 iterations,
    a checkpoint every 2: killed after a random iteration, and killed halfway through writing a
    checkpoint, then resumed with --resume; both end bit-identical to the uninterrupted run."""
    data = tmp_path / "data"
    ref = tmp_path / "ref"
    r = run_train_net(_tiny(ref, 10, data=data, extra=["DATASETS.TEST", "()"]))
    assert r.returncode == 0, r.stdout[-3000:]
    want = _final_state(ref)
    at = random.Random(17).randrange(2, 8)
    for mode, kill_at in [("after-iteration", at), ("saving", 5)]:
        out = tmp_path / mode
        args = _tiny(out, 10, data=data, extra=["DATASETS.TEST", "()"])
        r = _interrupted(mode, kill_at, args)
        assert r.returncode == -signal.SIGKILL, r.stdout[-3000:]
        assert not (out / "model_final.pth").exists()
        last = (out / "last_checkpoint").read_text()
        assert _load(out / last)["iteration"] <= kill_at  # whole, and from before the kill
        r = run_train_net(["--resume", *args])
        assert r.returncode == 0, r.stdout[-3000:]
        assert f"Starting training from iteration {_load(out / last)['iteration'] + 1}" in r.stdout
        _assert_same_weights(_final_state(out), want)
        assert not [f for f in os.listdir(out) if f.endswith(".partial")]


# every method, its shapes config on 128-px images (a quarter of the pixels: the order of the work, not its
# size, is what could differ): 30 iterations of 2 images (of 16), evaluated on 4; DeepMask and SharpMask at two
# of their six test scales (the pyramid's cost grows with the scale squared)
TWO_SCALES = ["MODEL.SHARPMASK.TEST.SCALES", "[1.0, 2.0]"]
METHODS = {
    "mask_rcnn": ("MaskRCNN/shapes_R_18_FPN.yaml", []),
    "blendmask": ("BlendMask/shapes_R_18.yaml", []),
    "retinanet_gn": ("RDSNet/shapes_RetinaNet_GN_R_18.yaml", []),
    "rdsnet": ("RDSNet/shapes_R_18.yaml", []),
    "deepmask": ("SharpMask/shapes_deepmask_R_18.yaml", TWO_SCALES),
    "sharpmask": ("SharpMask/shapes_sharpmask_R_18.yaml", ["MODEL.WEIGHTS", "", *TWO_SCALES]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(METHODS))
def test_seeded_runs_are_bit_identical(tmp_path, name):
    """Two runs, same config and SEED, different NUM_WORKERS (1 and 2): the same logged losses,
    the same final weights bit for bit, the same evaluation."""
    config, extra = METHODS[name]
    runs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        args = ["--config-file", os.path.join(REPO, "configs", config),
                "DATASETS.SHAPES.ROOT", str(tmp_path / "data"), "DATASETS.SHAPES.NUM_TRAIN", "16",
                "DATASETS.SHAPES.NUM_VAL", "4", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "30",
                "SOLVER.STEPS", "(20,)",
                "SOLVER.WARMUP_ITERS", "5", "SOLVER.CHECKPOINT_PERIOD", "1000", "SEED", "11",
                "DATALOADER.NUM_WORKERS", str(workers), "OUTPUT_DIR", str(out), *SMALL, *extra]
        r = run_train_net(args)
        assert r.returncode == 0, r.stdout[-3000:]
        metrics = [json.loads(l) for l in (out / "metrics.json").read_text().splitlines()]
        # everything but the timings (time, data_time, rank_data_time, eta_seconds); as JSON, so NaN == NaN
        logged = [{k: v for k, v in m.items() if "time" not in k and k != "eta_seconds"} for m in metrics]
        runs.append((json.dumps(logged, sort_keys=True), _final_state(out)))
    (m1, w1), (m2, w2) = runs
    assert '"total_loss"' in m1 and ("AP" in m1 or "AR@" in m1), m1  # losses logged, the evaluation ran
    assert m1 == m2
    _assert_same_weights(w1, w2)
