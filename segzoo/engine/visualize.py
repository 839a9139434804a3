"""Prediction visualisation with Detectron2's Visualizer."""
import os

import cv2
import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.utils.visualizer import ColorMode, Visualizer

from ..data.image import read_image

__all__ = ["draw_predictions", "draw_ground_truth", "write_visualizations"]


def draw_predictions(image_rgb: np.ndarray, instances, metadata, score_thresh: float = 0.5) -> np.ndarray:
    instances = instances.to("cpu")
    if instances.has("scores"):
        instances = instances[instances.scores >= score_thresh]
    v = Visualizer(image_rgb, metadata, scale=2.0, instance_mode=ColorMode.IMAGE)
    return v.draw_instance_predictions(instances).get_image()


def draw_ground_truth(image_rgb: np.ndarray, dataset_dict, metadata) -> np.ndarray:
    v = Visualizer(image_rgb, metadata, scale=2.0)
    return v.draw_dataset_dict(dataset_dict).get_image()


def write_visualizations(predictor, dataset_dicts, dataset_name, out_dir, score_thresh=0.5):
    """For each dataset dict write ``<out_dir>/<stem>.png``: ground truth | predictions."""
    os.makedirs(out_dir, exist_ok=True)
    meta = MetadataCatalog.get(dataset_name)
    written = []
    for d in dataset_dicts:
        bgr = read_image(d["file_name"], format="BGR")
        with torch.no_grad():
            pred = predictor(bgr)["instances"]
        rgb = bgr[:, :, ::-1]
        panel = np.concatenate(
            [draw_ground_truth(rgb, d, meta), draw_predictions(rgb, pred, meta, score_thresh)], axis=1
        )
        path = os.path.join(out_dir, os.path.splitext(os.path.basename(d["file_name"]))[0] + ".png")
        cv2.imwrite(path, panel[:, :, ::-1])
        written.append(path)
    return written
