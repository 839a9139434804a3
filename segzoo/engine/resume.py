"""What resuming needs: crash-safe checkpoints and per-iteration randomness.

Detectron2 writes ``model_XXXXXXX.pth`` and ``last_checkpoint`` in place: a process killed while
saving (OOM killer, preemption, power loss) leaves a truncated checkpoint that ``--resume`` then
fails to load. :func:`make_writes_atomic` makes every file a checkpointer writes appear complete
or not at all (written to a temporary file in the same folder, flushed, then renamed over the
target), so ``last_checkpoint`` always names a whole checkpoint.
"""
import os

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

__all__ = ["AtomicWrites", "IterationSeeds", "make_writes_atomic", "use_deterministic_kernels"]

_TMP_SUFFIX = ".partial"


class _AtomicFile:
    """A file opened for writing at ``path + .partial``; closing it without an error renames it
    over ``path`` (after fsync), closing it after an error deletes it."""

    def __init__(self, path: str, mode: str):
        self.path, self.tmp = path, path + _TMP_SUFFIX
        self.f = open(self.tmp, mode)

    def write(self, data):
        return self.f.write(data)

    def __getattr__(self, name):  # torch.save wants tell/seek/flush; keep the file's own API
        return getattr(self.f, name)

    def close(self, ok: bool = True):
        if self.f.closed:
            return
        try:
            if ok:
                self.f.flush()
                os.fsync(self.f.fileno())
        finally:
            self.f.close()
        if ok:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)
        return False


class AtomicWrites:
    """A path manager (Detectron2's ``PathManager`` API) whose ``open`` for writing local files is
    atomic; everything else, remote paths included, goes to the wrapped one."""

    def __init__(self, path_manager):
        self._pm = path_manager

    def open(self, path, mode="r", **kwargs):
        if mode in ("w", "wb") and not kwargs and "://" not in str(path):
            return _AtomicFile(self._pm.get_local_path(path), mode)
        return self._pm.open(path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(self._pm, name)


def make_writes_atomic(checkpointer):
    """Make ``checkpointer`` (a Detectron2 / fvcore ``Checkpointer``) write its files atomically and
    remove what an earlier killed save left behind in its folder. Returns the checkpointer."""
    if not isinstance(checkpointer.path_manager, AtomicWrites):
        checkpointer.path_manager = AtomicWrites(checkpointer.path_manager)
    if checkpointer.save_dir and checkpointer.save_to_disk and os.path.isdir(checkpointer.save_dir):
        for name in os.listdir(checkpointer.save_dir):
            if name.endswith(_TMP_SUFFIX):
                os.remove(os.path.join(checkpointer.save_dir, name))
    return checkpointer


class IterationSeeds(HookBase):
    """Before every iteration, seed the global RNGs (Python, NumPy, torch) of each process from
    ``(seed, rank, iteration)``: what an iteration draws (proposal sampling, OHEM ties, dropout)
    then does not depend on the iterations before it, so a resumed run draws what an uninterrupted
    one would, with nothing but the iteration number to restore."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def before_step(self):
        import numpy as np

        words = np.random.SeedSequence([self.seed, comm.get_rank(), self.trainer.iter]).generate_state(1)
        seed_all_rng(int(words[0]) % 2 ** 31)


def use_deterministic_kernels():
    """Make PyTorch pick deterministic kernels (``torch.use_deterministic_algorithms``). On the CPU the
    backward of advanced indexing (``x[idx]``, used by every loss that gathers positives) accumulates
    with a parallel ``index_put_`` whose summation order varies between runs; the deterministic
    variant sorts first. Ops without a deterministic kernel (some CUDA ones) warn instead of failing;
    cuBLAS gets the workspace setting it needs for reproducible results."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
