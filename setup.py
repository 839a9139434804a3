#!/usr/bin/env python
"""segzoo: instance-segmentation methods (Mask R-CNN RoI ops, BlendMask, RDSNet,
DeepMask/SharpMask) as Detectron2 plugins, with their C++/CUDA operators.

The extension ``segzoo._C`` is built from ``csrc/`` (torchvision's ``csrc/ops``
layout). CPU kernels are always compiled; CUDA kernels when torch has CUDA and a
toolkit is found (``CUDA_HOME``), or when ``FORCE_CUDA=1``.
"""
import glob
import os

from setuptools import setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))

# Every importable package and where it lives. Each paper is a package of its own
# under projects/<Paper>/<package>; shared code is the `segzoo` package.
PACKAGE_DIRS = {
    "segzoo": "projects/segzoo",
    "maskrcnn_roialign": "projects/MaskRCNN/maskrcnn_roialign",
    "blendmask": "projects/BlendMask/blendmask",
    "rdsnet": "projects/RDSNet/rdsnet",
    "sharpmask": "projects/SharpMask/sharpmask",
}


def _packages():
    packages = []
    for name, path in PACKAGE_DIRS.items():
        for dirpath, _dirnames, filenames in os.walk(os.path.join(ROOT, path)):
            if "__init__.py" in filenames and "__pycache__" not in dirpath:
                rel = os.path.relpath(dirpath, os.path.join(ROOT, path))
                packages.append(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    return packages


def _package_dir():
    mapping = {}
    for name in _packages():
        root = name.split(".")[0]
        sub = name.split(".")[1:]
        mapping[name] = os.path.join(PACKAGE_DIRS[root], *sub)
    return mapping


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

    extra_compile_args = {"cxx": ["-O3", "-fopenmp"]}
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


setup(
    name="segzoo",
    version="0.1.0",
    description="Instance segmentation methods as Detectron2 plugins, with C++/CUDA ops",
    python_requires=">=3.9",
    packages=_packages(),
    package_dir=_package_dir(),
    package_data={"segzoo": ["py.typed"]},
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
