"""Export a config + checkpoint to TorchScript or ONNX, like Detectron2's
``tools/deploy/export_model.py`` (same flags), and check the exported model against PyTorch.

    python tools/export_model.py --config-file configs/BlendMask/shapes_R_18.yaml \\
        --format onnx --output output/export/blendmask MODEL.WEIGHTS output/demo/blendmask/model_final.pth
    python tools/export_model.py --config-file configs/MaskRCNN/shapes_R_18_FPN.yaml \\
        --format torchscript --sample-image a.png --output out/ --check b.png --check c.png MODEL.WEIGHTS ...

(``python -m segzoo.export`` is the same command.) The model is traced on --sample-image
(default: the first image of DATASETS.TEST, else a random one), resized to the test size.
Writes <output>/model.ts or model.onnx and export.json. --check runs the exported model and the
PyTorch model on those images (original size, resized as DefaultPredictor does) and prints the
largest differences; --run-eval evaluates the exported model on DATASETS.TEST (COCO metrics).
Load and run it with ``segzoo.export.ExportedPredictor(<output>)``.
"""
import argparse
import logging
import os
import sys
from typing import Dict, List

import numpy as np
import torch

from ..errors import UserError
from .model import EXPORT_FORMATS, EXPORT_METHODS, ExportedPredictor, export_metadata, export_model, resize_for_test

__all__ = ["compare_predictions", "main"]

logger = logging.getLogger("segzoo.export")


def _build(args):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from ..config import runtime_config

    cfg = runtime_config(args.config_file, args.opts, check_datasets=args.run_eval, device="cpu")
    cfg.DATALOADER.NUM_WORKERS = 0
    if cfg.MODEL.WEIGHTS and not os.path.isfile(cfg.MODEL.WEIGHTS) and "://" not in cfg.MODEL.WEIGHTS:
        raise UserError(f"MODEL.WEIGHTS: checkpoint not found: {cfg.MODEL.WEIGHTS}")
    if not cfg.MODEL.WEIGHTS:
        logger.warning("MODEL.WEIGHTS is empty: exporting an untrained model")
    cfg.freeze()
    model = build_model(cfg)
    DetectionCheckpointer(model).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    return cfg, model.eval()


def _read(path: str, fmt: str) -> np.ndarray:
    from detectron2.data.detection_utils import read_image

    if not os.path.isfile(path):
        raise UserError(f"image not found: {path}")
    return read_image(path, format=fmt)


def _sample_image(cfg, args) -> np.ndarray:
    if args.sample_image:
        return _read(args.sample_image, cfg.INPUT.FORMAT)
    from detectron2.data import DatasetCatalog

    if cfg.DATASETS.TEST and cfg.DATASETS.TEST[0] in DatasetCatalog.list():
        return _read(DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]["file_name"], cfg.INPUT.FORMAT)
    logger.warning("no --sample-image and no registered test dataset: tracing on a random image")
    size = cfg.INPUT.MIN_SIZE_TEST
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def eager_predict(model, predictor: ExportedPredictor, original_image: np.ndarray):
    """The PyTorch model on an image, resized and postprocessed exactly as the predictor does."""
    h, w = original_image.shape[:2]
    with torch.no_grad():
        return model([{"image": predictor.resize(original_image), "height": h, "width": w}])[0]["instances"]


def _pair_up(a, b) -> torch.Tensor:
    """For each detection of ``a``, in order, the index of its counterpart in ``b``: the unused
    one of the same class nearest in box (L1, pixels) and score (x 1e4). Detections whose scores
    tie exactly (e.g. windows over uniform padding), which two runtimes may order differently,
    still pair up."""
    cost = torch.cdist(a.pred_boxes.tensor.double(), b.pred_boxes.tensor.double(), p=1)
    cost += 1e4 * (a.scores[:, None].double() - b.scores[None].double()).abs()
    cost += 1e9 * (a.pred_classes[:, None] != b.pred_classes[None])
    j = torch.empty(len(a), dtype=torch.long)
    for i in range(len(a)):
        j[i] = cost[i].argmin()
        cost[:, j[i]] = float("inf")
    return j


def compare_predictions(a, b) -> Dict[str, float]:
    """Largest differences between two ``Instances`` of one image: number of detections, then,
    detections paired up (same order, up to exact score ties), box coordinates (pixels), scores,
    class disagreements and the fraction of mask pixels that differ."""
    out = {"detections": float(abs(len(a) - len(b)))}
    if len(a) != len(b) or len(a) == 0:
        return out
    b = b[_pair_up(a, b)]
    out["boxes"] = float((a.pred_boxes.tensor - b.pred_boxes.tensor).abs().max())
    out["scores"] = float((a.scores - b.scores).abs().max())
    out["classes"] = float((a.pred_classes != b.pred_classes).sum())
    if a.has("pred_masks") and b.has("pred_masks"):
        out["mask_pixels"] = float((a.pred_masks.bool() != b.pred_masks.bool()).float().mean())
    return out


def _run_eval(cfg, predictor: ExportedPredictor):
    from detectron2.data import build_detection_test_loader
    from detectron2.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format

    from ..data.image import read_image

    if not cfg.DATASETS.TEST:
        raise UserError("--run-eval needs DATASETS.TEST")
    dataset = cfg.DATASETS.TEST[0]

    def run(inputs: List[Dict]):
        return [{"instances": predictor(read_image(x["file_name"], format=cfg.INPUT.FORMAT))} for x in inputs]

    loader = build_detection_test_loader(cfg, dataset)
    metrics = inference_on_dataset(run, loader, COCOEvaluator(dataset, output_dir=None, use_fast_impl=False))
    print_csv_format(metrics)
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="torchscript")
    p.add_argument("--export-method", choices=EXPORT_METHODS, default="tracing")
    p.add_argument("--sample-image", default=None, help="image to trace on (default: first test image)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--check", action="append", default=[], metavar="IMAGE",
                   help="compare the exported model with PyTorch on this image (repeatable)")
    p.add_argument("--run-eval", action="store_true", help="COCO evaluation of the exported model on DATASETS.TEST")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. MODEL.WEIGHTS ...")
    args = p.parse_args(argv)
    from detectron2.utils.logger import setup_logger

    setup_logger(name="segzoo")
    try:
        cfg, model = _build(args)
        sample = _sample_image(cfg, args)
        images = [_read(x, cfg.INPUT.FORMAT) for x in args.check]
        image = resize_for_test(sample, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
        export_model(model, image, args.output, args.format, args.export_method, export_metadata(cfg))
        predictor = ExportedPredictor(args.output)
        for path, img in zip(args.check, images):
            diff = compare_predictions(predictor(img), eager_predict(model, predictor, img))
            print(f"[check] {path}: " + ", ".join(f"{k} {v:.3g}" for k, v in diff.items()))
        if args.run_eval:
            _run_eval(cfg, predictor)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
