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


# The longest trainings first, then the other `slow` tests and the groups sharing an expensive fixture
# (SAME_WORKER below), then the rest: with each worker taking the next test as it frees up, the run ends on
# short tests instead of one worker finishing a long training alone.
LONGEST_FIRST = ("test_training_quality.py", "test_install.py", "test_crowded.py")


def _order(item):
    module = os.path.basename(str(item.path))
    heavy = "slow" in item.keywords or same_worker_group(item.nodeid) != item.nodeid
    return (not heavy, LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_order)
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


# pytest-xdist (`make test`: -n PYTEST_WORKERS --dist loadgroup). Each test is a unit of work handed to the next
# free worker, except these groups, each run by one worker: the tests sharing an expensive module fixture, and
# those launching several processes (two launches at once could race for a free port). Named here by module and
# test-name prefix, as xdist's own `xdist_group` marks no longer reach its scheduler with pytest >= 9.2.
SAME_WORKER = {
    "distributed": ("test_distributed.py", ("",)),
    "train_net": ("test_train_net.py", ("",)),
    "zoo_run": ("test_zoo_tools.py", ("test_model_zoo_trains", "test_model_zoo_reuses")),
    "demo_inputs": ("test_zoo_tools.py", ("test_demo_",)),
}


def same_worker_group(nodeid):
    path, _, name = nodeid.partition("::")
    for group, (module, prefixes) in SAME_WORKER.items():
        if os.path.basename(path) == module and name.startswith(prefixes):
            return group
    return nodeid


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist not installed: plain pytest
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:
    class _GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return same_worker_group(nodeid)

    def pytest_xdist_make_scheduler(config, log):
        if config.getvalue("dist") == "loadgroup":
            # in the collection's order (longest first): xdist would otherwise move the groups, which hold
            # more tests, ahead of the quality trainings
            config.option.loadscopereorder = False
            return _GroupScheduling(config, log)
        return None
