#!/usr/bin/env python
"""Per-image inference time of SharpMask vs the coarse DeepMask path of the same checkpoint
(same pyramid scales, same top-N windows), and vs refining every window.

    python tools/bench_sharpmask.py                       # CPU, shapes preset (R-18, 256 px, 6 scales)
    python tools/bench_sharpmask.py --weights output/SharpMask/shapes_sharpmask_R_18/model_final.pth
    python tools/bench_sharpmask.py --preset coco --size 640 --top-n 500 --repeats 3
    python tools/bench_sharpmask.py --device cuda --preset coco --size 640

Timed: the whole ``model([input])`` call — pyramid, trunk, dense scores, top-N, coarse masks or
batched refinement, paste into the image at 0.2, tight boxes. Images are the first --images
of the config's test set (random ones for --preset coco without the dataset, or --random).
Medians over images x --repeats; ratios against the coarse path measured in the same run.
Writes a JSON file (--output) and prints a Markdown table.
"""
import argparse

import torch

import segzoo  # noqa: E402,F401
from segzoo.benchmark import add_run_args, build_model_from, start_run, write_json  # noqa: E402
from segzoo.zoo.measure import timed_inference  # noqa: E402

PRESETS = {"shapes": "configs/SharpMask/shapes_sharpmask_R_18.yaml", "coco": "configs/SharpMask/sharpmask_R_50.yaml"}


def build(args, device):
    torch.manual_seed(0)
    model, cfg = build_model_from(PRESETS[args.preset], ["MODEL.DEVICE", device, "MODEL.WEIGHTS", "", *args.opts],
                                  args.weights)
    return cfg, model


def load_inputs(args, cfg, device):
    if not args.random:
        try:
            from detectron2.data import DatasetCatalog

            from segzoo.data import CheckedDatasetMapper

            mapper = CheckedDatasetMapper(cfg, False)
            inputs = [mapper(d) for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])[: args.images]]
            for x in inputs:
                x["image"] = x["image"].to(device)
            return inputs
        except Exception as e:  # noqa: BLE001  (no dataset here: time random images)
            print(f"test set unavailable ({e}); timing random {args.size}px images", flush=True)
    g = torch.Generator().manual_seed(0)
    return [{"image": (torch.rand(3, args.size, args.size, generator=g) * 255).to(device),
             "height": args.size, "width": args.size} for _ in range(args.images)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="shapes", choices=sorted(PRESETS))
    p.add_argument("--weights", default="", help="a trained stage-2 checkpoint (default: random weights)")
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--size", type=int, default=256, help="side of the random images")
    p.add_argument("--random", action="store_true", help="random images even if the test set exists")
    p.add_argument("--top-n", type=int, default=0, help="windows kept (0: the config's TEST.TOP_N)")
    p.add_argument("--skip-refine-all", action="store_true")
    add_run_args(p, "output/bench/sharpmask.json", repeats=2, warmup=1)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args()
    start_run(p, args)
    device = args.device
    cfg, model = build(args, device)
    if model.stage != 2:
        p.error("the preset/config must be a stage-2 (SharpMask) model")
    inputs = load_inputs(args, cfg, device)
    top_n = args.top_n or model.top_n
    with torch.no_grad():
        n_windows = len(model.dense_windows(model.normalize(inputs[0]["image"]))[2])
    variants = {"deepmask_coarse": (False, top_n), "sharpmask": (True, top_n)}
    if not args.skip_refine_all:
        variants["sharpmask_refine_all"] = (True, 10 ** 9)
    result = {"preset": args.preset, "config": PRESETS[args.preset], "device": device, "weights": args.weights,
              "scales": list(model.scales), "top_n": top_n, "windows_per_image_first": n_windows,
              "images": len(inputs), "image_size": list(inputs[0]["image"].shape[-2:]), "threads": torch.get_num_threads()}
    for name, (refine, n) in variants.items():
        model.refine, model.top_n = refine, n
        subset = inputs if name != "sharpmask_refine_all" else inputs[:2]
        ms, count = timed_inference(model, subset, device, args.repeats if name != "sharpmask_refine_all" else 1,
                                 args.warmup if name != "sharpmask_refine_all" else 0)
        result[f"{name}_ms"], result[f"{name}_proposals"] = ms, count
        print(f"  {name}: {ms:.0f} ms/image, {count:.0f} proposals", flush=True)
    for name in variants:
        result[f"{name}_ratio"] = result[f"{name}_ms"] / result["deepmask_coarse_ms"]
    write_json(args.output, result)
    print(f"\n| {args.preset} ({device}, {len(inputs)} images, top-N {top_n}, {n_windows} windows) | ms / image | x coarse |")
    print("|---|---:|---:|")
    for name in variants:
        print(f"| {name} | {result[name + '_ms']:.0f} | {result[name + '_ratio']:.2f} |")


if __name__ == "__main__":
    main()
