#!/usr/bin/env python
"""segzoo: instance-segmentation methods (Mask R-CNN RoI ops, BlendMask, RDSNet,
DeepMask/SharpMask) as Detectron2 plugins, with their C++/CUDA operators.

The extension ``segzoo._C`` is built from ``csrc/`` (torchvision's ``csrc/ops``
layout). CPU kernels are always compiled; CUDA kernels when torch has CUDA and a
toolkit is found (``CUDA_HOME``), or when ``FORCE_CUDA=1``.
"""
import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))

# The library is the top-level `segzoo` package; every paper is a plugin package of its own,
# projects/<Paper>/<package>/ (found here, declared to segzoo by its entry point in pyproject.toml).
LIBRARY = "segzoo"
PLUGIN_PARENT = "projects"


def _package_dirs():
    """Top-level package name -> its folder (relative to the repository)."""
    dirs = {LIBRARY: LIBRARY}
    for paper in sorted(os.listdir(os.path.join(ROOT, PLUGIN_PARENT))):
        for pkg in sorted(os.listdir(os.path.join(ROOT, PLUGIN_PARENT, paper))):
            if os.path.isfile(os.path.join(ROOT, PLUGIN_PARENT, paper, pkg, "__init__.py")):
                dirs[pkg] = os.path.join(PLUGIN_PARENT, paper, pkg)
    return dirs


def _packages(dirs):
    """Every (sub)package with its folder."""
    mapping = {}
    for name, path in dirs.items():
        for dirpath, _dirnames, filenames in os.walk(os.path.join(ROOT, path)):
            if "__init__.py" in filenames and "__pycache__" not in dirpath:
                rel = os.path.relpath(dirpath, os.path.join(ROOT, path))
                sub = name if rel == "." else name + "." + rel.replace(os.sep, ".")
                mapping[sub] = os.path.relpath(dirpath, ROOT)
    return mapping


class BuildPy(build_py):
    """Also ships the yaml configs inside the library, as segzoo/model_zoo/configs/** (as Detectron2
    ships its model zoo), so that a non-editable install finds them with segzoo.model_zoo. An
    editable install reads the repository's configs/ directly."""

    def run(self):
        super().run()
        dst = os.path.join(self.build_lib, LIBRARY, "model_zoo", "configs")
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, "configs"), dst, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))


def _with_cuda():
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def get_extensions():
    csrc = os.path.join("csrc")
    sources = [os.path.join(csrc, "segzoo.cpp")]
    sources += sorted(glob.glob(os.path.join(csrc, "ops", "*.cpp")))
    for sub in ("cpu", "autograd", "autocast"):
        sources += sorted(glob.glob(os.path.join(csrc, "ops", sub, "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join(csrc, "ops", "cuda", "*.cu")))

    # Python's own CFLAGS carry -g: debug info for code that includes the torch headers made the CPU
    # build take 242 s instead of 149 s (one job) and the library 20.7 MB instead of 0.6 MB, so
    # release builds drop it (-g0, after -g); DEBUG=1 builds -O0 -g instead (torchvision's switch).
    debug = os.environ.get("DEBUG", "0") == "1"
    extra_compile_args = {"cxx": ["-O0", "-g", "-fopenmp"] if debug else ["-O3", "-g0", "-fopenmp"]}
    define_macros = []
    extension = CppExtension
    if _with_cuda():
        extension = CUDAExtension
        sources += cuda_sources
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = [
            "-O3",
            "--expt-relaxed-constexpr",
            "-DCUDA_HAS_FP16=1",
            "-D__CUDA_NO_HALF_OPERATORS__",
            "-D__CUDA_NO_HALF_CONVERSIONS__",
            "-D__CUDA_NO_HALF2_OPERATORS__",
        ]
    return [
        extension(
            "segzoo._C",
            sources,
            include_dirs=[os.path.join(ROOT, csrc)],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=["-fopenmp"],
        )
    ]


PACKAGES = _packages(_package_dirs())

# name, version, dependencies and the plugins' entry points are in pyproject.toml
setup(
    packages=sorted(PACKAGES),
    package_dir=PACKAGES,
    package_data={"segzoo": ["py.typed"]},
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True), "build_py": BuildPy},
    zip_safe=False,
)
