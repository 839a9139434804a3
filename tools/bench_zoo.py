#!/usr/bin/env python
"""Per-method benchmark on the model-zoo harness (``python -m segzoo.zoo.cli bench``; see --help)."""
import sys

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.zoo.cli import main_bench

if __name__ == "__main__":
    sys.exit(main_bench())
