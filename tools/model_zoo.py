#!/usr/bin/env python
"""Model-zoo comparison of every installed method on one harness (``python -m segzoo.zoo``; see
--help)."""
import sys

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.zoo.cli import main_compare

if __name__ == "__main__":
    sys.exit(main_compare())
