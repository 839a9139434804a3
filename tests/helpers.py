"""Helpers shared by the tests (paths, train_net.py in a subprocess)."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared"))
TINY_COCO = os.path.join(SHARED, "datasets", "tiny_coco")


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
