#!/usr/bin/env python
"""Export DeepMask / SharpMask box proposals of a dataset for Detectron2's precomputed proposals
(the same as ``python -m sharpmask.export``; see its help)."""
import sys

from sharpmask.export import main

if __name__ == "__main__":
    sys.exit(main())
