"""Helpers shared by the model tests: configs from the repo's yaml files, small synthetic
inputs with rectangular instances, one training step."""
import os

import segzoo  # noqa: F401  (first: Detectron2 compat)
import torch

from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from segzoo.config import load_config
from segzoo.plugins import import_plugins

import_plugins()  # registers every plugin's models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(path, *opts):
    """The yaml at ``path`` (relative to the repo) on CPU, no pretrained weights, plus opts."""
    return load_config(os.path.join(REPO, path), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts])


def model_from(path, *opts, seed=0):
    torch.manual_seed(seed)
    return build_model(config(path, *opts))


def synthetic_image(h, w, boxes, classes, seed=0):
    """A noisy image with one flat-coloured rectangle per instance (masks = the rectangles)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(3, h, w, generator=g) * 60 + 40
    masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = True
        img[:, y0:y1, x0:x1] = 200 - 40 * classes[i]
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    inst.gt_masks = BitMasks(masks)
    return {"image": img, "instances": inst, "height": h, "width": w}


def synthetic_batch():
    return [
        synthetic_image(128, 160, [(10, 20, 60, 90), (70, 30, 150, 110), (40, 40, 56, 56)], [0, 2, 4]),
        synthetic_image(128, 128, [(30, 30, 100, 100)], [1], seed=1),
    ]


def without_annotations(batch):
    return [{k: v for k, v in x.items() if k != "instances"} for x in batch]


def predict_blank_image(model, size=(100, 120), out_size=(200, 240)):
    """Eval-mode prediction on a black image reported at another size (the model must be
    set up to detect nothing); asserts an empty result of the output size with empty masks."""
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, *size), "height": out_size[0], "width": out_size[1]}])
    inst = out[0]["instances"]
    assert len(inst) == 0 and inst.image_size == tuple(out_size)
    assert inst.pred_masks.shape == (0, *out_size)
    return inst


def train_step(model, batch, iteration=0):
    """Forward + backward in train mode; the losses as floats (gradients left in place)."""
    model.train()
    with EventStorage(iteration):
        losses = model(batch)
    total = sum(losses.values())
    model.zero_grad()
    total.backward()
    return {k: float(v.detach()) for k, v in losses.items()}
