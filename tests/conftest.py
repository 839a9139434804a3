import os

# Threads waiting for work sleep instead of spinning (set before torch loads its OpenMP runtime; subprocesses
# inherit it). With spinning threads (libgomp's default) a test sharing the 2 cores with another CPU-heavy
# process ran ~10x slower instead of ~2x: the spinning threads take the cores the others need.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist (`make test` runs PYTEST_WORKERS processes) the cores are shared out: each worker, and
# the trainings it starts, get cpu_count // workers threads (two 1-thread trainings side by side on the 2-core
# machine get through 1.37x the work of one 2-thread training after the other).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import pytest  # noqa: E402
import torch  # noqa: E402

import segzoo  # noqa: F401,E402  (Detectron2 compat + dataset registration before any detectron2 import)
from helpers import REPO, TINY_COCO  # noqa: E402

torch.set_num_threads(THREADS)


def pytest_report_header(config):
    from segzoo._compat import detectron2_description

    return [f"torch {torch.__version__}; {detectron2_description()}"]


def pytest_collection_modifyitems(config, items):
    # the trainings (`slow`) first, in collection order: with workers taking the next test as they free up,
    # the run then ends on short tests instead of one worker finishing a long training alone
    items.sort(key=lambda item: "slow" not in item.keywords)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def tiny_coco():
    if not os.path.isdir(TINY_COCO):
        pytest.skip(f"real COCO subset not found at {TINY_COCO} (../shared is absent)")
    return TINY_COCO
