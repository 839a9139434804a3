"""Detectron2 version compatibility, kept in one place.

Detectron2 v0.6 imports its compiled extension ``detectron2._C`` at module level
(``layers/deform_conv.py``, ``layers/roi_align_rotated.py``, ``layers/rotated_boxes.py``,
``evaluation/fast_eval_api.py``); upstream main imports it lazily. ``make setup`` installs
:mod:`segzoo._detectron2_c_stub` as ``detectron2/_C.py`` when it has to build Detectron2 without
its C++ sources, so that install imports on its own. For a Detectron2 installed some other way
without ``_C``, :func:`ensure_detectron2_ops` registers the same stand-in *only* when that exact
module does not exist. Any other import error (a broken build, an ABI mismatch, Detectron2 itself
missing) propagates unchanged. Calling an op on the stand-in raises an error that names it.
"""
import importlib
import sys

__all__ = ["ensure_detectron2_ops", "detectron2_has_ops", "detectron2_description"]

_HAS_OPS = None


def ensure_detectron2_ops() -> bool:
    """Make ``import detectron2.layers`` work; return whether Detectron2's real ops exist."""
    global _HAS_OPS
    if _HAS_OPS is not None:
        return _HAS_OPS
    try:
        ops = importlib.import_module("detectron2._C")
    except ModuleNotFoundError as e:
        if e.name != "detectron2._C":
            raise
        import detectron2

        ops = importlib.import_module("segzoo._detectron2_c_stub")
        sys.modules["detectron2._C"] = ops
        detectron2._C = ops
    _HAS_OPS = not getattr(ops, "SEGZOO_STUB", False)
    return _HAS_OPS


def detectron2_has_ops() -> bool:
    return ensure_detectron2_ops()


def detectron2_description() -> str:
    """One line naming the Detectron2 in use: distribution, version, compiled ops, location."""
    import os
    from importlib import metadata

    import detectron2

    where = os.path.dirname(os.path.dirname(os.path.abspath(detectron2.__file__)))
    dist = next((d for d in metadata.distributions(path=[where])
                 if (d.metadata["Name"] or "").lower() in ("detectron2", "pb1-detectron2")), None)
    name = dist.metadata["Name"] if dist is not None else "detectron2"
    ops = "compiled ops" if ensure_detectron2_ops() else "no compiled ops (segzoo stand-in)"
    return f"{name} {detectron2.__version__}, {ops}, at {where}"
