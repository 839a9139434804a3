#!/usr/bin/env python
"""Rename the keys of an AdelaiDet BlendMask / FCOS checkpoint to this project's
(``python -m blendmask.convert``; see --help)."""
import sys

from blendmask.convert import main

if __name__ == "__main__":
    sys.exit(main())
