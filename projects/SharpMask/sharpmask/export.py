"""Export DeepMask / SharpMask box proposals of a dataset in Detectron2's precomputed-proposal
format (a pickle with ``ids``, ``boxes`` XYXY_ABS in original-image pixels,
``objectness_logits`` and ``bbox_mode``), for ``DATASETS.PROPOSAL_FILES_TRAIN/TEST`` and
``MODEL.LOAD_PROPOSALS`` (e.g. configs/SharpMask/fast_rcnn_R_50_FPN_sharpmask.yaml).

    python -m sharpmask.export \
        --config-file configs/SharpMask/sharpmask_R_50.yaml --dataset coco_2017_train \
        --output output/SharpMask/sharpmask_R_50/proposals_coco_2017_train.pkl \
        MODEL.WEIGHTS output/SharpMask/sharpmask_R_50/model_final.pth

Progress (with ETA) is logged; partial results are saved every --save-every images to
OUTPUT.partial and ``--resume`` continues from them. MODEL.SHARPMASK.TEST.REFINE False exports
the coarse DeepMask proposals of the same checkpoint.
"""
import argparse
import datetime
import logging
import os
import pickle
import sys
import time

import numpy as np
import torch

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.data import DatasetCatalog, build_detection_test_loader  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BoxMode  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from segzoo.config import runtime_config  # noqa: E402
from segzoo.data import CheckedDatasetMapper  # noqa: E402
from segzoo.errors import UserError  # noqa: E402

logger = logging.getLogger("sharpmask.export")


def _save(path, result):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(result, f)
    os.replace(tmp, path)


def export(cfg, dataset: str, output: str, top_k: int, resume: bool, save_every: int):
    if cfg.MODEL.META_ARCHITECTURE != "SharpMask":
        raise UserError(f"--config-file must be a DeepMask/SharpMask config, not {cfg.MODEL.META_ARCHITECTURE}")
    model = build_model(cfg).eval()
    if not cfg.MODEL.WEIGHTS:
        raise UserError("give the trained model: MODEL.WEIGHTS path/to/model_final.pth")
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    partial = output + ".partial"
    result = {"ids": [], "boxes": [], "objectness_logits": [], "bbox_mode": BoxMode.XYXY_ABS}
    if resume and os.path.isfile(partial):
        with open(partial, "rb") as f:
            result = pickle.load(f)
        logger.info("resuming: %d images already in %s", len(result["ids"]), partial)
    done = set(result["ids"])
    dicts = [d for d in DatasetCatalog.get(dataset) if d["image_id"] not in done]
    total = len(dicts) + len(done)
    if dicts:
        loader = build_detection_test_loader(dataset=dicts, mapper=CheckedDatasetMapper(cfg, False), num_workers=
                                             cfg.DATALOADER.NUM_WORKERS)
        start, last_log = time.perf_counter(), 0.0
        for i, (inp,) in enumerate(loader):
            with torch.no_grad():
                image = model.normalize(inp["image"])
                size = (inp.get("height", image.shape[1]), inp.get("width", image.shape[2]))
                boxes, logits = model.propose_boxes(image, size, top_n=top_k)
            order = torch.argsort(logits, descending=True)
            result["ids"].append(inp["image_id"])
            result["boxes"].append(boxes.tensor[order].cpu().numpy().astype(np.float32))
            result["objectness_logits"].append(logits[order].cpu().numpy().astype(np.float32))
            now = time.perf_counter()
            if save_every and (i + 1) % save_every == 0:
                _save(partial, result)
            if now - last_log > 10 or i + 1 == len(dicts):
                last_log = now
                rate = (now - start) / (i + 1)
                eta = datetime.timedelta(seconds=int(rate * (len(dicts) - i - 1)))
                logger.info("%d/%d images, %.2f s/image, ETA %s", len(result["ids"]), total, rate, eta)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    _save(output, result)
    if os.path.isfile(partial):
        os.remove(partial)
    n = [len(b) for b in result["boxes"]]
    logger.info("wrote %s: %d images, %.1f proposals per image", output, len(n), float(np.mean(n)) if n else 0.0)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--dataset", required=True, help="registered dataset name, e.g. coco_2017_train")
    p.add_argument("--output", required=True, help="the .pkl to write")
    p.add_argument("--top-k", type=int, default=0, help="proposals per image (0: MODEL.SHARPMASK.TEST.TOP_N)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT.partial")
    p.add_argument("--save-every", type=int, default=500, help="images between partial saves (0: never)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    setup_logger(name="sharpmask.export")
    setup_logger(name="fvcore")
    try:
        cfg = runtime_config(args.config_file, args.opts)  # every plugin's models, the config's datasets
        if args.dataset not in DatasetCatalog.list():
            raise UserError(f"dataset '{args.dataset}' is not registered")
        export(cfg, args.dataset, args.output, args.top_k or cfg.MODEL.SHARPMASK.TEST.TOP_N, args.resume,
               args.save_every)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
