"""SharpMask as a Detectron2 proposal generator (``MODEL.PROPOSAL_GENERATOR.NAME:
"SharpMaskProposals"``): a frozen DeepMask/SharpMask model, built from its own config file
and checkpoint, proposes the boxes of its top-N segment proposals to a ``GeneralizedRCNN``
(Fast R-CNN, or box + mask heads) of meta-architecture ``SharpMaskRCNN``, which passes it the
original image sizes: the pyramid scales apply to those, as when SharpMask runs alone."""
import logging

import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY, GeneralizedRCNN
from detectron2.structures import Instances

from segzoo.errors import ConfigError

from .sharpmask import SharpMask

__all__ = ["SharpMaskProposals", "SharpMaskRCNN", "build_proposal_model"]

logger = logging.getLogger(__name__)


def build_proposal_model(config_file: str, weights: str, device: str = "cpu") -> SharpMask:
    """A frozen, eval-mode SharpMask/DeepMask model from its config file and checkpoint."""
    from segzoo.config import load_config

    if not config_file:
        raise ConfigError("MODEL.SHARPMASK.PROPOSAL_CONFIG: give the config file of the SharpMask model "
                          "that proposes (e.g. configs/SharpMask/sharpmask_R_50.yaml)")
    pcfg = load_config(config_file)
    if pcfg.MODEL.META_ARCHITECTURE != "SharpMask":
        raise ConfigError(f"{config_file} is not a DeepMask/SharpMask config "
                          f"(META_ARCHITECTURE {pcfg.MODEL.META_ARCHITECTURE})")
    model = SharpMask(pcfg).to(device)
    if weights:
        DetectionCheckpointer(model).load(weights)
    else:
        logger.warning("SharpMaskProposals: MODEL.SHARPMASK.PROPOSAL_WEIGHTS is empty, proposals come "
                       "from an untrained model")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@META_ARCH_REGISTRY.register()
class SharpMaskRCNN(GeneralizedRCNN):
    """``GeneralizedRCNN`` whose preprocessed images carry the inputs' original sizes
    (``images.original_sizes``: their "height" / "width", else the image's own), so that a
    ``SharpMaskProposals`` generator runs its pyramid relative to the original image."""

    def preprocess_image(self, batched_inputs):
        images = super().preprocess_image(batched_inputs)
        images.original_sizes = [(int(d.get("height", h)), int(d.get("width", w)))
                                 for d, (h, w) in zip(batched_inputs, images.image_sizes)]
        return images


@PROPOSAL_GENERATOR_REGISTRY.register()
class SharpMaskProposals(nn.Module):
    """Proposals (``proposal_boxes``, ``objectness_logits``) from a frozen SharpMask model.

    The detector's normalized images are un-normalized with its own PIXEL_MEAN/STD and
    re-normalized with the SharpMask model's. The pyramid scales of the SharpMask config apply
    to the original image size (``images.original_sizes``, set by ``SharpMaskRCNN``): the same
    scaled images, windows and compute as SharpMask on the original image, whatever size the
    detector resizes to; boxes come back in the detector's input coordinates. No losses: the
    proposer is not trained here.
    """

    def __init__(self, cfg, input_shape=None):
        super().__init__()
        arch = cfg.MODEL.META_ARCHITECTURE
        if arch not in META_ARCH_REGISTRY or not issubclass(META_ARCH_REGISTRY.get(arch), SharpMaskRCNN):
            raise ConfigError(f"SharpMaskProposals needs MODEL.META_ARCHITECTURE 'SharpMaskRCNN' (a GeneralizedRCNN "
                              f"that passes the original image sizes to the proposer), got {arch!r}")
        s = cfg.MODEL.SHARPMASK
        self.model = build_proposal_model(s.PROPOSAL_CONFIG, s.PROPOSAL_WEIGHTS, cfg.MODEL.DEVICE)
        self.register_buffer("det_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("det_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1), False)
        self.topk = {True: s.PROPOSAL_TOPK_TRAIN, False: s.PROPOSAL_TOPK_TEST}

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # always frozen
        return self

    @torch.no_grad()
    def forward(self, images, features, gt_instances=None):
        proposals = []
        topk = self.topk[self.training]
        original = getattr(images, "original_sizes", None)
        if original is None:
            raise ValueError("SharpMaskProposals: the images carry no original_sizes (build the detector as "
                             "META_ARCHITECTURE 'SharpMaskRCNN', or set images.original_sizes)")
        for i, (h, w) in enumerate(images.image_sizes):
            raw = images.tensor[i, :, :h, :w] * self.det_std + self.det_mean
            boxes, logits = self.model.propose_boxes(self.model.normalize(raw), (h, w), top_n=topk,
                                                     base_size=original[i])
            inst = Instances((h, w))
            inst.proposal_boxes = boxes
            inst.objectness_logits = logits
            proposals.append(inst)
        return proposals, {}
