"""Rename the keys of an AdelaiDet BlendMask / FCOS checkpoint to this project's.

    python -m blendmask.convert blendmask_R_50_3x.pth blendmask_R_50_3x_segzoo.pth
    python tools/convert_adelaidet_blendmask.py blendmask_R_50_3x.pth blendmask_R_50_3x_segzoo.pth

Not needed to evaluate or fine-tune (MODEL.WEIGHTS accepts AdelaiDet files directly); use it to
store checkpoints under our key names (:func:`blendmask.checkpoint.convert_checkpoint_file`).
"""
import argparse
import sys

from segzoo.errors import UserError

from .checkpoint import convert_checkpoint_file

__all__ = ["main"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input")
    p.add_argument("output")
    args = p.parse_args(argv)
    try:
        n_in, n_out = convert_checkpoint_file(args.input, args.output)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{n_in} keys -> {n_out} keys, written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
