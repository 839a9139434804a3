#!/usr/bin/env python
"""Export a config + checkpoint to TorchScript or ONNX (``segzoo.export.cli``; see --help)."""
import sys

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.export.cli import main

if __name__ == "__main__":
    sys.exit(main())
