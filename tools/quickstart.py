#!/usr/bin/env python
"""`make demo`: generate the synthetic data, train and evaluate the small models on this machine,
and write visualisations of their predictions (``segzoo.quickstart``; see --help).

Each run lives in <output>/<name>; rerunning resumes unfinished runs and re-evaluates finished ones.
"""
import sys

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.quickstart import DemoRun, main

# The models `make demo` trains in turn, with the score threshold of their visualisations. FCOS
# scores are sqrt(cls * centerness) from a focal-loss classifier: lower than Mask R-CNN's softmax
# scores for the same quality, hence the lower threshold.
DEMO_RUNS = [
    DemoRun("mask_rcnn", "configs/MaskRCNN/shapes_R_18_FPN.yaml", 0.5),
    DemoRun("blendmask", "configs/BlendMask/shapes_R_18.yaml", 0.3),
]

if __name__ == "__main__":
    sys.exit(main(DEMO_RUNS))
