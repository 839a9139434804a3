#!/usr/bin/env python
"""Run any config + checkpoint on images and write visualisations (``segzoo.engine.demo``; see
--help)."""
import sys

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.engine.demo import main

if __name__ == "__main__":
    sys.exit(main())
