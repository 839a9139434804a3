"""Detectron2 version compatibility, kept in one place.

Detectron2 v0.6 imports its compiled extension ``detectron2._C`` at module level
(``layers/deform_conv.py``, ``layers/roi_align_rotated.py``,
``layers/rotated_boxes.py``); upstream main imports it lazily. When Detectron2 is
installed from a source distribution without its C++ sources (see README,
"Installation"), ``import detectron2.layers`` would fail although none of the
models here use those ops (deformable conv, rotated boxes, the C++ COCOeval).

:func:`ensure_detectron2_ops` registers a stand-in module for ``detectron2._C``
*only* when that exact module does not exist. Any other import error (a broken
build, an ABI mismatch, Detectron2 itself missing) propagates unchanged. Calling
anything on the stand-in raises an error that names the missing op.
"""
import importlib
import sys
import types

__all__ = ["ensure_detectron2_ops", "detectron2_has_ops"]

_HAS_OPS = None


class _MissingDetectron2Ops(types.ModuleType):
    """Stand-in for ``detectron2._C`` that fails loudly on use.

    Only the introspection calls of ``detectron2.utils.collect_env`` answer (saying that
    nothing was compiled); every op raises.
    """

    def get_compiler_version(self):
        return "not compiled (Detectron2 installed without C++ ops)"

    def get_cuda_version(self):
        return "not compiled"

    def has_cuda(self):
        return False

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"detectron2._C.{name} is not available: this Detectron2 was installed without "
            "its compiled C++/CUDA ops. Install Detectron2 from source to use this feature."
        )


def ensure_detectron2_ops() -> bool:
    """Make ``import detectron2.layers`` work; return whether Detectron2's real ops exist."""
    global _HAS_OPS
    if _HAS_OPS is not None:
        return _HAS_OPS
    try:
        importlib.import_module("detectron2._C")
        _HAS_OPS = True
    except ModuleNotFoundError as e:
        if e.name != "detectron2._C":
            raise
        import detectron2

        stub = _MissingDetectron2Ops("detectron2._C")
        sys.modules["detectron2._C"] = stub
        detectron2._C = stub
        _HAS_OPS = False
    return _HAS_OPS


def detectron2_has_ops() -> bool:
    return ensure_detectron2_ops()
