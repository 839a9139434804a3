#!/usr/bin/env python
"""Rename the keys of an AdelaiDet BlendMask / FCOS checkpoint to this project's
(``python -m blendmask.checkpoint``; see --help)."""
import sys

from blendmask.checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
