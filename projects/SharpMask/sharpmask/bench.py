"""Per-image inference time of SharpMask vs the coarse DeepMask path of the same checkpoint (same
pyramid scales, same top-N windows), and vs refining every window (``python -m sharpmask.bench``,
also tools/bench_sharpmask.py).

    python -m sharpmask.bench                       # CPU, shapes preset (R-18, 256 px, 6 scales)
    python -m sharpmask.bench --weights output/SharpMask/shapes_sharpmask_R_18/model_final.pth
    python -m sharpmask.bench --preset coco --size 640 --top-n 500 --repeats 3
    python -m sharpmask.bench --device cuda --preset coco --size 640

Timed: the whole ``model([input])`` call — pyramid, trunk, dense scores, top-N, coarse masks or
batched refinement, paste into the image at 0.2, tight boxes. The model outputs the top-N windows
with the overrides the comparison's ``sharpmask`` method declares (``detections(top_n)``, as
``python -m segzoo.zoo.cli bench`` forces them). Images are the first --images of the config's
test set (random ones for --preset coco without the dataset, or --random). Medians over images x
--repeats; ratios against the coarse path measured in the same run. Writes a JSON file (--output)
and prints a Markdown table.
"""
import argparse
from typing import Callable, Dict, List, Sequence

import torch

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.benchmark import add_run_args, build_model_from, random_inputs, start_run, write_json
from segzoo.config import runtime_config
from segzoo.errors import UserError
from segzoo.model_zoo import get_config_file
from segzoo.zoo import detections_opts
from segzoo.zoo.measure import timed_inference

__all__ = ["DETECTIONS_FROM", "PRESETS", "bench", "build", "load_inputs", "main", "markdown", "model_opts"]

PRESETS = {"shapes": "configs/SharpMask/shapes_sharpmask_R_18.yaml", "coco": "configs/SharpMask/sharpmask_R_50.yaml"}
DETECTIONS_FROM = "sharpmask"  # the comparison method whose declared detections(n) keep the top-N windows
REFINE_ALL = 10 ** 9  # top-N of the "refine every window" variant


def model_opts(config_file: str, top_n: int = 0, opts: Sequence[str] = (), device: str = "cpu") -> List[str]:
    """Overrides of the benchmarked model: random weights unless loaded, ``device``, the user's
    ``opts``, and the top-N windows (0: the config's TEST.TOP_N) forced as the comparison does."""
    opts = ["MODEL.DEVICE", device, "MODEL.WEIGHTS", "", *opts]
    top_n = top_n or runtime_config(config_file, opts).MODEL.SHARPMASK.TEST.TOP_N
    return [*opts, *detections_opts(DETECTIONS_FROM, top_n)]


def build(preset: str, top_n: int = 0, opts: Sequence[str] = (), weights: str = "", device: str = "cpu"):
    """The stage-2 model of a preset and its config."""
    config = get_config_file(PRESETS[preset])
    torch.manual_seed(0)
    model, cfg = build_model_from(config, model_opts(config, top_n, opts, device), weights)
    if model.stage != 2:
        raise UserError("the preset/config must be a stage-2 (SharpMask) model")
    return model, cfg


def load_inputs(cfg, images: int, size: int, random: bool, device: str, say: Callable[[str], None] = print):
    """The first ``images`` of the config's test set, or random ``size`` px ones (``random``, or no
    test set here)."""
    if not random:
        try:
            from segzoo.zoo.runner import test_inputs

            return test_inputs(cfg, cfg.DATASETS.TEST[0], images)
        except Exception as e:  # noqa: BLE001  (no dataset here: time random images)
            say(f"test set unavailable ({e}); timing random {size}px images")
    return random_inputs(size, device, count=images)


def bench(model, inputs: List[dict], device: str, repeats: int = 2, warmup: int = 1, refine_all: bool = True,
          say: Callable[[str], None] = print) -> Dict:
    """Median ms per image and proposals per image of the coarse path and SharpMask at the model's
    top-N (and refining every window, on the first two images, one call each), with ratios to the
    coarse path."""
    top_n = model.top_n
    with torch.no_grad():
        n_windows = len(model.dense_windows(model.normalize(inputs[0]["image"]))[2])
    variants = {"deepmask_coarse": (False, top_n), "sharpmask": (True, top_n)}
    if refine_all:
        variants["sharpmask_refine_all"] = (True, REFINE_ALL)
    result = {"device": device, "scales": list(model.scales), "top_n": top_n, "windows_per_image_first": n_windows,
              "images": len(inputs), "image_size": list(inputs[0]["image"].shape[-2:]),
              "threads": torch.get_num_threads()}
    for name, (refine, n) in variants.items():
        model.refine, model.top_n = refine, n
        every = name == "sharpmask_refine_all"
        ms, count = timed_inference(model, inputs[:2] if every else inputs, device, 1 if every else repeats,
                                    0 if every else warmup)
        result[f"{name}_ms"], result[f"{name}_proposals"] = ms, count
        say(f"  {name}: {ms:.0f} ms/image, {count:.0f} proposals")
    model.top_n = top_n
    for name in variants:
        result[f"{name}_ratio"] = result[f"{name}_ms"] / result["deepmask_coarse_ms"]
    return result


def markdown(result: Dict, preset: str) -> str:
    names = [n for n in ("deepmask_coarse", "sharpmask", "sharpmask_refine_all") if f"{n}_ms" in result]
    lines = [f"| {preset} ({result['device']}, {result['images']} images, top-N {result['top_n']}, "
             f"{result['windows_per_image_first']} windows) | ms / image | x coarse |", "|---|---:|---:|"]
    lines += [f"| {n} | {result[n + '_ms']:.0f} | {result[n + '_ratio']:.2f} |" for n in names]
    return "\n".join(lines)


def main(argv=None) -> Dict:
    p = argparse.ArgumentParser(prog="python -m sharpmask.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="shapes", choices=sorted(PRESETS))
    p.add_argument("--weights", default="", help="a trained stage-2 checkpoint (default: random weights)")
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--size", type=int, default=256, help="side of the random images")
    p.add_argument("--random", action="store_true", help="random images even if the test set exists")
    p.add_argument("--top-n", type=int, default=0, help="windows kept (0: the config's TEST.TOP_N)")
    p.add_argument("--skip-refine-all", action="store_true")
    add_run_args(p, "output/bench/sharpmask.json", repeats=2, warmup=1)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    start_run(p, args)
    try:
        model, cfg = build(args.preset, args.top_n, args.opts, args.weights, args.device)
    except UserError as e:
        p.error(str(e))
    say = lambda s: print(s, flush=True)  # noqa: E731
    inputs = load_inputs(cfg, args.images, args.size, args.random, args.device, say)
    result = {"preset": args.preset, "config": PRESETS[args.preset], "weights": args.weights,
              **bench(model, inputs, args.device, args.repeats, args.warmup, not args.skip_refine_all, say)}
    write_json(args.output, result)
    print("\n" + markdown(result, args.preset))
    return result


if __name__ == "__main__":
    main()
