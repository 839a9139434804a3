#!/usr/bin/env python
"""Rename the keys of an AdelaiDet BlendMask / FCOS checkpoint to this project's.

    python tools/convert_adelaidet_blendmask.py blendmask_R_50_3x.pth blendmask_R_50_3x_segzoo.pth

Not needed to evaluate or fine-tune (MODEL.WEIGHTS accepts AdelaiDet files directly); use it to
store checkpoints under our key names.
"""
import argparse
import os
import sys

import torch

from blendmask import convert_adelaidet_state_dict  # noqa: E402
from blendmask.checkpoint import is_adelaidet_state_dict  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input")
    p.add_argument("output")
    args = p.parse_args(argv)
    if not os.path.isfile(args.input):
        sys.exit(f"error: checkpoint not found: {args.input}")
    ckpt = torch.load(args.input, map_location="cpu", weights_only=False)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not is_adelaidet_state_dict(state):
        sys.exit(f"error: {args.input} has no AdelaiDet FCOS head keys (proposal_generator.fcos_head.*)")
    converted = convert_adelaidet_state_dict(state)
    torch.save({"model": converted, "matching_heuristics": False}, args.output)
    print(f"{len(state)} keys -> {len(converted)} keys, written to {args.output}")


if __name__ == "__main__":
    main()
