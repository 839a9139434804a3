"""Command lines of the comparison harness: ``python -m segzoo.zoo`` (the comparison, also
tools/model_zoo.py) and ``python -m segzoo.zoo.cli bench`` (the per-method benchmark, also
tools/bench_zoo.py)."""
import argparse
import datetime
import os
import platform
import sys

import torch

from ..benchmark import write_json
from ..caps import max_instances_per_image
from ..errors import UserError
from .bench import bench_method, markdown_tables
from .methods import BACKBONES, Harness, Schedule, methods
from .report import write_report, write_seed_summary
from .runner import Zoo

__all__ = ["COMPARE_HELP", "BENCH_HELP", "main_bench", "main_compare"]

COMPARE_HELP = """Model-zoo comparison: train and evaluate every method on the same data, schedule, backbone
and input size, then write a Markdown table, a JSON table and a plot of mask AP against latency.

    python -m segzoo.zoo                                  # synthetic shapes, slim R-18, 256 px
    python -m segzoo.zoo --iters 1000 --methods METHOD [METHOD ...]   # some of them (listed by --help)
    python -m segzoo.zoo --train mydata_train --test mydata_val \\
        --register-coco mydata_train train.json train_images --register-coco mydata_val val.json val_images
    python -m segzoo.zoo --device cuda --backbone R-50 --size 512 --iters 5000

Methods: every installed plugin's (``--help`` lists them). Each trains with the same iterations,
batch and LR-decay points (a second stage of a recipe takes its recipe's fraction of them) from
its shapes config, with dataset, classes, backbone and input size overridden alike.

Each method lives in OUTPUT/<method>; rerunning reuses finished methods and resumes interrupted
ones from their last checkpoint. Training logs progress with ETA (Detectron2's).
Writes OUTPUT/zoo.md, OUTPUT/zoo.json and OUTPUT/zoo.png.
"""

BENCH_HELP = """Per-method benchmark on the model-zoo harness: inference latency against instances per image,
training throughput and peak memory.

    python -m segzoo.zoo.cli bench                                   # CPU, every method, shapes harness
    python -m segzoo.zoo.cli bench --methods METHOD [METHOD ...] --instances 10 100
    python -m segzoo.zoo.cli bench --device cuda --backbone R-50 --size 800 --batch 2

Untrained weights: the number of instances is forced (score threshold 0, NMS off, at most n per
image, each method's own way), so latency depends on n and not on what the weights would detect.
A detector on another method's proposals runs that proposer inside itself (inference and
training). Latency: median of --repeats runs on one random --size image, batch 1. Training:
median time of an iteration (forward, backward, optimizer step) over --train-iters batches of
the training set (--batch images) after one warm-up, as images/s. Peak memory: CUDA memory
allocated on a GPU, resident memory above the process's own on the CPU, of the first (cold)
inference at the largest n and of the first training iteration, each in a fresh process.
Writes a JSON file (--output) and prints Markdown tables.
"""


def dataset_setup(args):
    """Overrides registering the datasets, the number of classes of the training set and the most
    instances in one image of the training and evaluation sets."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from ..config import runtime_config

    opts = []
    if args.num_train or args.num_val:
        opts += ["DATASETS.SHAPES.NUM_TRAIN", str(args.num_train), "DATASETS.SHAPES.NUM_VAL", str(args.num_val)]
    if args.register_coco:
        opts += ["DATASETS.COCO_FORMAT", repr([list(e) for e in args.register_coco])]
    runtime_config("", [*opts, "DATASETS.TRAIN", f"('{args.train}',)", "DATASETS.TEST", f"('{args.test}',)"],
                   device="cpu")  # any device: only the datasets are wanted here
    if not DatasetCatalog.get(args.train):
        raise UserError(f"dataset '{args.train}' is empty")
    classes = MetadataCatalog.get(args.train).get("thing_classes")
    if not args.num_classes and not classes:
        raise UserError(f"dataset '{args.train}' has no thing_classes: give --num-classes")
    return opts, args.num_classes or len(classes), max_instances_per_image([args.train, args.test])


def main_compare(argv=None):
    p = argparse.ArgumentParser(prog="python -m segzoo.zoo", description=COMPARE_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(methods()), choices=list(methods()), metavar="METHOD",
                   help=f"default: all of {', '.join(methods())}")
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
    p.add_argument("--proposals", type=int, default=300,
                   help="proposals per image for a detector on another method's proposals (raised to twice the "
                        "instances of the most crowded image)")
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
            data_opts, num_classes, crowd = dataset_setup(args)
            # a detector on another method's proposals gets at least 2 per instance of the most
            # crowded image (each method's own caps follow the data in train_net: segzoo.caps)
            proposals = max(args.proposals, 2 * crowd)
            harness = Harness(train=args.train, test=args.test, num_classes=num_classes, backbone=args.backbone,
                              size=args.size, schedule=Schedule(iters=args.iters, batch=args.batch),
                              device=args.device, seed=seed, proposals=proposals, data_opts=data_opts,
                              extra_opts=list(args.opts))
            rows = Zoo(harness, out, args.methods, timed_images=args.timed_images,
                       say=lambda s: print(s, flush=True)).run()
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        settings = {"date": datetime.date.today().isoformat(), "device": device, "train": args.train,
                    "test": args.test, "num_classes": num_classes, "backbone": args.backbone, "size": args.size,
                    "iters": args.iters, "batch": args.batch, "seed": seed, "proposals": proposals,
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



def main_bench(argv=None):
    p = argparse.ArgumentParser(prog="python -m segzoo.zoo.cli bench", description=BENCH_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(methods()), choices=list(methods()), metavar="METHOD",
                   help=f"default: all of {', '.join(methods())}")
    p.add_argument("--instances", type=int, nargs="+", default=[10, 50, 100, 300])
    p.add_argument("--backbone", default="R-18-slim", choices=list(BACKBONES))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4, help="training images per iteration")
    p.add_argument("--train-iters", type=int, default=5, help="timed training iterations (0: skip training)")
    p.add_argument("--repeats", type=int, default=5, help="timed inferences per instance count")
    p.add_argument("--train", default="shapes_train", help="registered dataset the training batches come from")
    p.add_argument("--num-train", type=int, default=0, help="shapes training images (0: default)")
    p.add_argument("--num-classes", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--output", default="output/bench/zoo.json")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every method")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda needs a CUDA device")
    data_opts = ["DATASETS.SHAPES.NUM_TRAIN", str(args.num_train)] if args.num_train else []
    h = Harness(train=args.train, num_classes=args.num_classes, backbone=args.backbone, size=args.size,
                schedule=Schedule(batch=args.batch), device=args.device, data_opts=data_opts,
                extra_opts=list(args.opts))
    workdir = os.path.join(os.path.dirname(os.path.abspath(args.output)), "bench_zoo_configs")
    threads = args.threads or torch.get_num_threads()
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'CPU'}, " \
        f"{threads} threads"
    rows = []
    try:
        for i, name in enumerate(args.methods, 1):
            print(f"[bench] ({i}/{len(args.methods)}) {name}", flush=True)
            row = bench_method(methods()[name], h, args.instances, workdir, args.repeats, args.train_iters, threads)
            rows.append(row)
            print("[bench]   " + ", ".join(f"{r['instances_requested']} inst. {r['latency_ms']:.0f} ms"
                                           for r in row["inference"])
                  + (f"; train {row['train_images_per_s']:.2f} img/s" if "train_images_per_s" in row else ""),
                  flush=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    title = (f"{args.backbone}, {args.size} px, untrained weights, {device}, {datetime.date.today().isoformat()}: "
             f"median latency per image against instances per image; training batch {args.batch}")
    write_json(args.output, {"settings": {**vars(args), "device_name": device, "torch": torch.__version__},
                             "rows": rows})
    print("\n" + markdown_tables(rows, title))
    print(f"[bench] wrote {args.output}")
    return 0



if __name__ == "__main__":
    if sys.argv[1:2] == ["bench"]:
        sys.exit(main_bench(sys.argv[2:]))
    sys.exit(main_compare())
