#!/usr/bin/env python
"""Per-method benchmark on the model-zoo harness: inference latency against instances per image,
training throughput and peak memory.

    python tools/bench_zoo.py                                   # CPU, every method, shapes harness
    python tools/bench_zoo.py --methods mask_rcnn_ROIAlignV2 blendmask rdsnet --instances 10 100
    python tools/bench_zoo.py --device cuda --backbone R-50 --size 800 --batch 2

Untrained weights: the number of instances is forced (score threshold 0, NMS off, at most n per
image; SharpMask/DeepMask keep the top n windows), so latency depends on n and not on what the
weights would detect. Fast R-CNN runs its SharpMask proposer inside the detector (inference and
training). Latency: median of --repeats runs on one random --size image, batch 1. Training:
median time of an iteration (forward, backward, optimizer step) over --train-iters batches of
the training set (--batch images) after one warm-up, as images/s. Peak memory: CUDA memory
allocated on a GPU, resident memory above the process's own on the CPU, of the first (cold)
inference at the largest n and of the first training iteration, each in a fresh process.
Writes a JSON file (--output) and prints Markdown tables.
"""
import argparse
import datetime
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import segzoo  # noqa: E402,F401
from segzoo.benchmark import write_json  # noqa: E402
from segzoo.errors import UserError  # noqa: E402
from segzoo.zoo import BACKBONES, METHODS, Harness, Schedule  # noqa: E402
from segzoo.zoo.bench import bench_method, markdown_tables  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                   help=f"default: all of {', '.join(METHODS)}")
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
            row = bench_method(METHODS[name], h, args.instances, workdir, args.repeats, args.train_iters, threads)
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
    sys.exit(main())
