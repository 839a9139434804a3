#!/usr/bin/env python
"""Latency of eager PyTorch vs exported TorchScript vs ONNX Runtime per method (``segzoo.export.bench``;
see --help)."""
import sys

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.export.bench import main

if __name__ == "__main__":
    sys.exit(main())
