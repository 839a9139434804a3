"""Loading of the compiled extension ``segzoo._C``."""
import functools

import torch

__all__ = ["load_extension", "cuda_compiled"]


@functools.lru_cache(maxsize=None)
def load_extension():
    try:
        from segzoo import _C  # noqa: F401  (registers torch.ops.segzoo.*)
    except ImportError as e:
        raise ImportError(
            f"segzoo's C++/CUDA extension (segzoo._C) could not be loaded: {e}. "
            "Build it with `make setup` (or `pip install --no-build-isolation -e .`)."
        ) from e
    return torch.ops.segzoo


def cuda_compiled() -> bool:
    """Whether the extension was compiled with its CUDA kernels."""
    return int(load_extension()._cuda_version()) > 0
