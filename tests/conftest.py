import os
import subprocess
import sys

import pytest
import torch

import segzoo  # noqa: F401  (Detectron2 compat + dataset registration before any detectron2 import)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared"))
TINY_COCO = os.path.join(SHARED, "datasets", "tiny_coco")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
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


def run_train_net(args, cwd=REPO, timeout=600, env=None):
    """Run train_net.py in a subprocess; return CompletedProcess (stdout+stderr in .stdout)."""
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "2")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "train_net.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env=full_env,
    )
