"""Stand-in for ``detectron2._C`` where Detectron2 was installed without its compiled ops.

Detectron2 v0.6 imports ``detectron2._C`` at module level (deformable conv, rotated boxes, the
C++ COCOeval), so without it ``import detectron2.modeling`` fails although none of the models
here use those ops. ``tools/setup_env.sh`` installs this file as ``detectron2/_C.py`` when it
builds Detectron2 from the registry's sdist (which ships no C++ sources), so Detectron2 imports
on its own; :mod:`segzoo._compat` registers it when a Detectron2 without ``_C`` is found.

Only the introspection calls of ``detectron2.utils.collect_env`` answer (saying that nothing was
compiled); every op raises an error that names it. This module imports nothing from segzoo.
"""

SEGZOO_STUB = True


def get_compiler_version():
    return "not compiled (Detectron2 installed without C++ ops)"


def get_cuda_version():
    return "not compiled"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"detectron2._C.{name} is not available: this Detectron2 was installed without its compiled "
        "C++/CUDA ops. Install Detectron2 from source to use this feature."
    )
