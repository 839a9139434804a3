#!/usr/bin/env python
"""Train and evaluate any segzoo (or plain Detectron2) config: ``segzoo.train_net`` (see its help;
the same flags as Detectron2's tools/train_net.py, plus ``--register-coco``)."""
import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.train_net import cli

if __name__ == "__main__":
    cli()
