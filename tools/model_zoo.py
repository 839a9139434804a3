#!/usr/bin/env python
"""Model-zoo comparison: train and evaluate every method on the same data, schedule, backbone
and input size, then write a Markdown table, a JSON table and a plot of mask AP against latency.

    python tools/model_zoo.py                                  # synthetic shapes, slim R-18, 256 px
    python tools/model_zoo.py --iters 1000 --methods mask_rcnn_ROIAlignV2 blendmask rdsnet
    python tools/model_zoo.py --train mydata_train --test mydata_val \\
        --register-coco mydata_train train.json train_images --register-coco mydata_val val.json val_images
    python tools/model_zoo.py --device cuda --backbone R-50 --size 512 --iters 5000

Methods: Mask R-CNN with each RoI pooler (RoIPool, RoIWarp, RoIAlign max/avg, RoIAlignV2),
BlendMask, RDSNet with and without MBRM, DeepMask and SharpMask segment proposals, Fast R-CNN
on SharpMask proposals. Each trains with the same iterations, batch and LR-decay points (second
stages of a recipe, MBRM and SharpMask's refinement, take their recipe's fraction of it) from
its shapes config, with dataset, classes, backbone and input size overridden alike.

Each method lives in OUTPUT/<method>; rerunning reuses finished methods and resumes interrupted
ones from their last checkpoint. Training logs progress with ETA (Detectron2's).
Writes OUTPUT/zoo.md, OUTPUT/zoo.json and OUTPUT/zoo.png.
"""
import argparse
import datetime
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import segzoo  # noqa: E402,F401
from segzoo.errors import UserError  # noqa: E402
from segzoo.zoo import BACKBONES, METHODS, Harness, Schedule, Zoo, write_report, write_seed_summary  # noqa: E402


def dataset_setup(args):
    """Overrides registering the datasets, and the number of classes of the training set."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from segzoo.config import load_config
    from segzoo.engine import register_datasets_from_cfg

    opts = []
    if args.num_train or args.num_val:
        opts += ["DATASETS.SHAPES.NUM_TRAIN", str(args.num_train), "DATASETS.SHAPES.NUM_VAL", str(args.num_val)]
    if args.register_coco:
        opts += ["DATASETS.COCO_FORMAT", repr([list(e) for e in args.register_coco])]
    cfg = load_config("", [*opts, "DATASETS.TRAIN", f"('{args.train}',)", "DATASETS.TEST", f"('{args.test}',)"])
    register_datasets_from_cfg(cfg)
    if not DatasetCatalog.get(args.train):
        raise UserError(f"dataset '{args.train}' is empty")
    classes = MetadataCatalog.get(args.train).get("thing_classes")
    if not args.num_classes and not classes:
        raise UserError(f"dataset '{args.train}' has no thing_classes: give --num-classes")
    return opts, args.num_classes or len(classes)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                   help=f"default: all of {', '.join(METHODS)}")
    p.add_argument("--train", default="shapes_train", help="registered training dataset")
    p.add_argument("--test", default="shapes_val", help="registered evaluation dataset")
    p.add_argument("--register-coco", nargs=3, action="append", metavar=("NAME", "JSON", "IMAGE_DIR"),
                   help="register a COCO-format dataset (repeatable)")
    p.add_argument("--num-train", type=int, default=0, help="shapes training images (0: default 1000)")
    p.add_argument("--num-val", type=int, default=0, help="shapes evaluation images (0: default 100)")
    p.add_argument("--num-classes", type=int, default=0, help="0: from the training set's metadata")
    p.add_argument("--backbone", default="R-18-slim", choices=list(BACKBONES))
    p.add_argument("--size", type=int, default=256, help="input side (train and test, shorter and longer)")
    p.add_argument("--iters", type=int, default=300, help="training iterations of every method")
    p.add_argument("--batch", type=int, default=4, help="images per iteration")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="run the whole comparison once per seed (OUTPUT/seed_<s>) and write OUTPUT/seeds.md "
                        "with mean ± sd over them")
    p.add_argument("--proposals", type=int, default=300, help="SharpMask proposals per image for Fast R-CNN")
    p.add_argument("--timed-images", type=int, default=10, help="test images timed per method")
    p.add_argument("--output", default="", help="default: output/zoo/<train>_<backbone>_<size>px_<iters>it")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every method")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda needs a CUDA device")
    seeds = args.seeds or [args.seed]
    output = args.output or os.path.join("output", "zoo", f"{args.train}_{args.backbone}_{args.size}px_{args.iters}it")
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'CPU'}, " \
        f"{torch.get_num_threads()} threads"
    rows_by_seed = {}
    for seed in seeds:
        out = output if args.seeds is None else os.path.join(output, f"seed_{seed}")
        try:
            data_opts, num_classes = dataset_setup(args)
            harness = Harness(train=args.train, test=args.test, num_classes=num_classes, backbone=args.backbone,
                              size=args.size, schedule=Schedule(iters=args.iters, batch=args.batch),
                              device=args.device, seed=seed, proposals=args.proposals, data_opts=data_opts,
                              extra_opts=list(args.opts))
            rows = Zoo(harness, out, args.methods, timed_images=args.timed_images,
                       say=lambda s: print(s, flush=True)).run()
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        settings = {"date": datetime.date.today().isoformat(), "device": device, "train": args.train,
                    "test": args.test, "num_classes": num_classes, "backbone": args.backbone, "size": args.size,
                    "iters": args.iters, "batch": args.batch, "seed": seed, "proposals": args.proposals,
                    "timed_images": args.timed_images, "opts": list(args.opts), "torch": torch.__version__}
        title = (f"{args.train} -> {args.test}, {args.backbone}, {args.size} px, {args.iters} iterations x "
                 f"{args.batch} images, seed {seed}; latency: median over {args.timed_images} test images, "
                 f"batch 1, {device}; {settings['date']}")
        paths = write_report(rows, settings, out, title)
        with open(paths["markdown"]) as f:
            print("\n" + f.read())
        print("[zoo] wrote " + ", ".join(paths.values()))
        rows_by_seed[seed] = rows
    if args.seeds is not None:
        title = (f"{args.train} -> {args.test}, {args.backbone}, {args.size} px, {args.iters} iterations x "
                 f"{args.batch} images; {datetime.date.today().isoformat()}, {device}")
        paths = write_seed_summary(rows_by_seed, output, title)
        with open(paths["markdown"]) as f:
            print("\n" + f.read())
        print("[zoo] wrote " + ", ".join(paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
