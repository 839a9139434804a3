#!/usr/bin/env python
"""Micro-benchmarks of segzoo's C++/CUDA ops against their PyTorch / torchvision compositions
(``segzoo.ops.bench``; see --help): ``--ops roi_align_family blender``."""
import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.ops.bench import main

if __name__ == "__main__":
    main()
