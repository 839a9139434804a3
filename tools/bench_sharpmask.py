#!/usr/bin/env python
"""Per-image inference time of SharpMask vs the coarse DeepMask path of the same checkpoint
(``python -m sharpmask.bench``; see --help)."""
from sharpmask.bench import main

if __name__ == "__main__":
    main()
