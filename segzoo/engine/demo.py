"""Run any config + checkpoint on images and write visualisations (masks, boxes, class and
score) drawn with Detectron2's Visualizer, like Detectron2's demo/demo.py.

    python tools/demo.py --config-file configs/MaskRCNN/shapes_R_18_FPN.yaml \\
        --input image.png more_images/ --output vis/ MODEL.WEIGHTS output/demo/mask_rcnn/model_final.pth
    python tools/demo.py --config-file configs/SharpMask/shapes_sharpmask_R_18.yaml --input img.png \\
        --output vis/ --max-instances 20 MODEL.WEIGHTS output/SharpMask/shapes_sharpmask_R_18/model_final.pth

(``python -m segzoo.engine.demo`` is the same command.) --input takes image files, folders (their
.jpg/.jpeg/.png/.bmp/.tif files) and glob patterns. Each image gives <output>/<name>.png; with one
input image, an --output ending in an image extension is the file written. Segment-proposal
models (the meta-architectures a plugin declares class-agnostic) are drawn class agnostic.
Unreadable images are reported and skipped (exit status 1 at the end); the others are still
written. <output>/predictions.json lists what was found per image.
"""
import argparse
import glob
import json
import os
import sys
import time
from typing import List, Sequence, Tuple

from ..errors import UserError

__all__ = ["IMAGE_EXTS", "build_predictor", "list_images", "main", "visualize_images"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def list_images(inputs: Sequence[str]) -> List[str]:
    """Image files from files, folders (their images, sorted) and glob patterns."""
    files = []
    for entry in inputs:
        if os.path.isdir(entry):
            found = sorted(os.path.join(entry, f) for f in os.listdir(entry) if f.lower().endswith(IMAGE_EXTS))
            if not found:
                raise UserError(f"--input {entry}: no images ({', '.join(IMAGE_EXTS)}) in this folder")
            files += found
        elif os.path.isfile(entry):
            files.append(entry)
        else:
            matches = sorted(glob.glob(os.path.expanduser(entry)))
            if not matches:
                raise UserError(f"--input {entry}: no such file, folder or matching pattern")
            files += [m for m in matches if os.path.isfile(m)]
    return files


def build_predictor(config_file: str, opts=()) -> Tuple[object, object]:
    """Detectron2's ``DefaultPredictor`` for a config (:func:`segzoo.config.runtime_config`; its
    datasets need not be registered) and the metadata to draw its classes with."""
    from detectron2.data import MetadataCatalog
    from detectron2.engine import DefaultPredictor

    from ..config import runtime_config
    from ..plugins import class_agnostic_architectures

    cfg = runtime_config(config_file, opts, check_datasets=False)
    if not cfg.MODEL.WEIGHTS:
        print("[demo] warning: MODEL.WEIGHTS is empty: predictions of an untrained model", file=sys.stderr)
    elif not os.path.isfile(cfg.MODEL.WEIGHTS) and "://" not in cfg.MODEL.WEIGHTS:
        raise UserError(f"MODEL.WEIGHTS: checkpoint not found: {cfg.MODEL.WEIGHTS}")
    cfg.freeze()
    if cfg.MODEL.META_ARCHITECTURE in class_agnostic_architectures():
        metadata = MetadataCatalog.get("__segzoo_proposals")
        metadata.set(thing_classes=["object"])
    else:
        metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused")
    return DefaultPredictor(cfg), metadata


def visualize_images(predictor, metadata, images: Sequence[str], output: str, confidence_threshold: float = 0.5,
                     max_instances: int = 100) -> Tuple[List[dict], int]:
    """Predict and draw every image (at most ``max_instances``, highest scores first; those at or
    above ``confidence_threshold`` drawn); write ``predictions.json``. Returns the per-image
    summary and the number of unreadable images (reported and skipped)."""
    import cv2
    import torch

    from ..data.image import read_image
    from .visualize import draw_predictions

    single_file = len(images) == 1 and output.lower().endswith(IMAGE_EXTS)
    out_dir = os.path.dirname(os.path.abspath(output)) if single_file else output
    os.makedirs(out_dir, exist_ok=True)
    summary, failed = [], 0
    for i, path in enumerate(images, 1):
        try:
            bgr = read_image(path, format="BGR")
        except Exception as e:  # noqa: BLE001  (PIL raises several types for unreadable files)
            print(f"[demo] error: {path}: cannot read the image ({e}); skipped", file=sys.stderr)
            failed += 1
            continue
        t = time.perf_counter()
        with torch.no_grad():
            inst = predictor(bgr)["instances"].to("cpu")
        ms = (time.perf_counter() - t) * 1000
        if inst.has("scores"):
            inst = inst[inst.scores.argsort(descending=True)[:max_instances]]
        vis = draw_predictions(bgr[:, :, ::-1], inst, metadata, confidence_threshold)
        target = output if single_file else os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
        cv2.imwrite(target, vis[:, :, ::-1])
        kept = inst[inst.scores >= confidence_threshold] if inst.has("scores") else inst
        summary.append({"image": path, "output": target, "instances": len(kept), "ms": round(ms, 1),
                        "scores": [round(float(s), 3) for s in kept.scores] if kept.has("scores") else []})
        print(f"[demo] ({i}/{len(images)}) {path}: {len(kept)} instances >= {confidence_threshold} "
              f"in {ms:.0f} ms -> {target}", flush=True)
    with open(os.path.join(out_dir, "predictions.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary, failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--input", nargs="+", required=True, help="image files, folders or glob patterns")
    p.add_argument("--output", required=True, help="folder (or, for one image, a .png/.jpg file)")
    p.add_argument("--confidence-threshold", type=float, default=0.5)
    p.add_argument("--max-instances", type=int, default=100, help="draw at most this many (highest scores)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. MODEL.WEIGHTS ...")
    args = p.parse_args(argv)
    try:
        images = list_images(args.input)
        predictor, metadata = build_predictor(args.config_file, args.opts)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _, failed = visualize_images(predictor, metadata, images, args.output, args.confidence_threshold,
                                 args.max_instances)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
