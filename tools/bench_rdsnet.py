#!/usr/bin/env python
"""Inference latency of RDSNet vs its RetinaNet (``python -m rdsnet.bench``; see --help)."""
from rdsnet.bench import main

if __name__ == "__main__":
    main()
