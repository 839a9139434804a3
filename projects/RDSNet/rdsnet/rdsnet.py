"""RDSNet (``MODEL.META_ARCHITECTURE: "RDSNet"``) on Detectron2's RetinaNet.

Object stream: RetinaNet's head plus a representation tower (per anchor a background and a
foreground kernel). Pixel stream: d-dim embeddings at stride 4. Their correlation gives each
detection's mask logits; anchors, matching, box transform, focal / smooth-L1 losses and box
decoding are RetinaNet's. MBRM refines the boxes from the masks.
"""
import logging
from typing import Dict, List, Tuple

import torch
from torch import Tensor

from detectron2.config import configurable
from detectron2.layers import batched_nms
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

from segzoo.errors import ConfigError
from segzoo.modeling.retinanet import NormRetinaNet
from segzoo.modeling.layers import instance_bitmasks, mask_tight_boxes

from .geometry import expand_boxes, pixel_ranges, sample_maps, window_masks
from .head import RDSNetHead
from .mask_loss import ImageMaskTargets, correlation_mask_loss
from .mbrm import MBRM, profiles
from .pixel_stream import PixelStream

__all__ = ["RDSNet"]

logger = logging.getLogger(__name__)

BOX_REFINEMENTS = ("none", "mbrm", "direct")


@META_ARCH_REGISTRY.register()
class RDSNet(NormRetinaNet):
    @configurable
    def __init__(
        self,
        *,
        pixel_stream: PixelStream,
        mbrm: MBRM,
        crop_expand_train: float = 1.5,
        crop_expand_test: float = 1.2,
        min_crop_margin: float = 1.0,
        ohem_neg_ratio: float = 1.0,
        min_mask_area: float = 100,
        max_pos_per_image: int = 100,
        mask_loss_weight: float = 1.0,
        mask_thresh: float = 0.4,
        box_refinement: str = "none",
        train_mbrm_only: bool = False,
        mbrm_match_iou: float = 0.5,
        mbrm_loss_weight: float = 1.0,
        mask_chunk: int = 16,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if box_refinement not in BOX_REFINEMENTS:
            raise ConfigError(
                f"MODEL.RDSNET.BOX_REFINEMENT must be one of {BOX_REFINEMENTS}, got {box_refinement!r}"
            )
        if not isinstance(self.head, RDSNetHead):
            raise ConfigError("RDSNet needs an RDSNetHead (object representations per anchor)")
        self.pixel_stream = pixel_stream
        self.mbrm = mbrm
        self.repr_dim = self.head.repr_dim
        self.crop_expand_train = crop_expand_train
        self.crop_expand_test = crop_expand_test
        self.min_crop_margin = min_crop_margin
        self.ohem_neg_ratio = ohem_neg_ratio
        self.min_mask_area = min_mask_area
        self.max_pos_per_image = max_pos_per_image
        self.mask_loss_weight = mask_loss_weight
        self.mask_thresh = mask_thresh
        self.box_refinement = box_refinement
        self.train_mbrm_only = train_mbrm_only
        self.mbrm_match_iou = mbrm_match_iou
        self.mbrm_loss_weight = mbrm_loss_weight
        self.mask_chunk = mask_chunk  # detections resampled per batch (sorted by window area)
        # stage 1 trains everything but MBRM (unused there: frozen, as DistributedDataParallel
        # needs every trainable parameter to take part), stage 2 MBRM alone
        for name, p in self.named_parameters():
            if train_mbrm_only or name.startswith("mbrm."):
                p.requires_grad_(train_mbrm_only == name.startswith("mbrm."))

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        shapes = ret["backbone"].output_shape()
        feature_shapes = [shapes[f] for f in cfg.MODEL.RETINANET.IN_FEATURES]
        ret["head"] = RDSNetHead(cfg, feature_shapes)
        r, m = cfg.MODEL.RDSNET, cfg.MODEL.MBRM
        ret["pixel_stream"] = PixelStream(
            shapes, in_features=r.PIXEL_IN_FEATURES, conv_dim=r.PIXEL_CONV_DIM, norm=r.PIXEL_NORM, repr_dim=r.REPR_DIM
        )
        try:
            ret["mbrm"] = MBRM(m.KERNEL_HALF, m.GAMMA, m.MIN_SIGMA, kernel=m.KERNEL_INIT, prior_cutoff=m.PRIOR_CUTOFF)
        except ValueError as e:
            raise ConfigError(f"MODEL.MBRM: {e}") from None
        ret.update(
            crop_expand_train=r.CROP_EXPAND_TRAIN,
            crop_expand_test=r.CROP_EXPAND_TEST,
            min_crop_margin=r.MIN_CROP_MARGIN,
            ohem_neg_ratio=r.OHEM_NEG_RATIO,
            min_mask_area=r.MIN_MASK_AREA,
            max_pos_per_image=r.MAX_POS_PER_IMAGE,
            mask_loss_weight=r.MASK_LOSS_WEIGHT,
            mask_thresh=r.MASK_THRESH,
            box_refinement=r.BOX_REFINEMENT,
            train_mbrm_only=m.TRAIN,
            mbrm_match_iou=m.MATCH_IOU,
            mbrm_loss_weight=m.LOSS_WEIGHT,
        )
        return ret

    def train(self, mode: bool = True):
        """In the MBRM stage everything but MBRM stays in eval mode (frozen norm statistics)."""
        super().train(mode)
        if mode and self.train_mbrm_only:
            for child in self.children():
                if child is not self.mbrm:
                    child.eval()
        return self

    # -- forward ----------------------------------------------------------------------------
    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        images = self.preprocess_image(batched_inputs)
        if self.training:
            if "instances" not in batched_inputs[0]:
                raise ValueError("RDSNet training needs 'instances' in every input")
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            if self.train_mbrm_only:
                return self.forward_mbrm_training(images, gt_instances)
        features, predictions, embeddings = self.streams(images)
        if self.training:
            return self.forward_training(images, features, predictions, embeddings, gt_instances)
        out_sizes = [
            (x.get("height", s[0]), x.get("width", s[1])) for x, s in zip(batched_inputs, images.image_sizes)
        ]
        results = self.forward_inference(images, features, predictions, embeddings, out_sizes)
        return [{"instances": r} for r in results]

    def streams(self, images):
        """Backbone, head (with the representation towers: the representations themselves are
        computed only for the anchors that need them) and pixel stream of a preprocessed batch
        (:meth:`preprocess_image`). Returns (the head's input features, the head's predictions
        (logits, box deltas, representation towers), the pixel embeddings (N, d, H, W))."""
        features = self.backbone(images.tensor)
        head_features = [features[f] for f in self.head_in_features]
        # a traced graph computes every anchor's representation (no data-dependent gathering)
        dense = torch.jit.is_tracing()
        return head_features, self.head(head_features, dense_repr=dense), self.pixel_stream(features)

    def inference(self, batched_inputs: List[Dict[str, Tensor]], do_postprocess: bool = True):
        """Eval-mode forward, as ``GeneralizedRCNN.inference``. RDSNet makes its masks directly
        at the output size (``height`` / ``width`` of each input, default its input size), so
        ``do_postprocess=False`` returns the same detections, as a plain list of ``Instances``
        with image-sized masks (:attr:`masks_at_output_size`: export feeds the output size)."""
        assert not self.training
        out = self(batched_inputs)
        return out if do_postprocess else [o["instances"] for o in out]

    masks_at_output_size = True

    # -- training ---------------------------------------------------------------------------
    def forward_training(self, images, features, predictions, embeddings, gt_instances):
        pred_logits, pred_deltas = self._transpose_dense_predictions(predictions[:2], [self.num_classes, 4])
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes, matched_idxs = self.match_anchors(anchors, gt_instances)
        losses = self.losses(anchors, pred_logits, gt_labels, pred_deltas, gt_boxes)
        losses["loss_mask"] = self.mask_loss(
            predictions[2], gt_labels, matched_idxs, embeddings, gt_instances
        ) * self.mask_loss_weight
        return losses

    @torch.no_grad()
    def match_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]):
        """RetinaNet's anchor labelling (``RetinaNet.label_anchors``, the same matcher and rules)
        that also returns each anchor's matched GT index, which the mask targets need.

        Returns three lists with one tensor per image, over the concatenated anchors of all
        levels (R of them): labels (R,) in {-1 (ignored), 0..K-1, K (background)}, matched GT
        boxes (R, 4) (meaningful for foreground anchors) and matched GT indices (R,) (likewise).
        """
        anchors = Boxes.cat(anchors)
        gt_labels, matched_gt_boxes, matched_gt_idxs = [], [], []
        for gt in gt_instances:
            match_quality_matrix = pairwise_iou(gt.gt_boxes, anchors)
            matched_idxs, anchor_labels = self.anchor_matcher(match_quality_matrix)
            del match_quality_matrix
            if len(gt) > 0:
                boxes = gt.gt_boxes.tensor[matched_idxs]
                labels = gt.gt_classes[matched_idxs]
                labels[anchor_labels == 0] = self.num_classes  # background
                labels[anchor_labels == -1] = -1  # ignored
            else:
                boxes = torch.zeros_like(anchors.tensor)
                labels = torch.zeros_like(matched_idxs) + self.num_classes
            gt_labels.append(labels)
            matched_gt_boxes.append(boxes)
            matched_gt_idxs.append(matched_idxs)
        return gt_labels, matched_gt_boxes, matched_gt_idxs

    def sample_mask_positives(self, labels: Tensor, matched: Tensor, mask_area: Tensor) -> Tuple[Tensor, Tensor]:
        """Positive anchors (and their GT) that train masks: GT mask area > min_mask_area, at
        most max_pos_per_image of them, sampled at random."""
        pos = ((labels >= 0) & (labels != self.num_classes)).nonzero()[:, 0]
        gt = matched[pos]
        keep = mask_area[gt] > self.min_mask_area
        pos, gt = pos[keep], gt[keep]
        if 0 <= self.max_pos_per_image < pos.numel():
            pick = torch.randperm(pos.numel(), device=pos.device)[: self.max_pos_per_image]
            pos, gt = pos[pick], gt[pick]
        return pos, gt

    def mask_loss(self, towers, gt_labels, matched_idxs, embeddings, gt_instances) -> Tensor:
        """:func:`~rdsnet.mask_loss.correlation_mask_loss` of the sampled positives of every image
        (:meth:`sample_mask_positives`), with their GT boxes expanded CROP_EXPAND_TRAIN x (at
        least MIN_CROP_MARGIN embedding pixels per side) as the crops.

        ``towers``: the representation towers (:meth:`RDSNetHead.forward` with
        ``dense_repr=False``); ``gt_labels``, ``matched_idxs``: :meth:`match_anchors`."""
        stride = self.pixel_stream.out_stride
        targets = []
        for i, gt in enumerate(gt_instances):
            if len(gt) == 0:
                continue
            if not gt.has("gt_masks"):
                raise ConfigError(
                    "RDSNet trains on instance masks: set MODEL.MASK_ON: True and use a dataset "
                    "with segmentations"
                )
            masks = instance_bitmasks(gt).to(embeddings.device)
            pos, gt_inds = self.sample_mask_positives(gt_labels[i], matched_idxs[i], masks.flatten(1).sum(dim=1))
            if pos.numel() == 0:
                continue
            crops = expand_boxes(
                gt.gt_boxes.tensor, self.crop_expand_train, self.min_crop_margin * stride, gt.image_size
            )
            targets.append(ImageMaskTargets(i, self.head.reprs_at(towers, i, pos), gt_inds, masks, crops))
        loss, num_pos = correlation_mask_loss(embeddings, targets, stride, self.ohem_neg_ratio)
        get_event_storage().put_scalar("num_mask_pos", num_pos / max(len(gt_instances), 1))
        return loss

    def forward_mbrm_training(self, images, gt_instances):
        """Second stage: the frozen detector's detections on training images that overlap a GT
        box (IoU >= MATCH_IOU) train MBRM against that GT's edges."""
        with torch.no_grad():
            features, predictions, embeddings = self.streams(images)
            detections = self.detect(features, predictions, images.image_sizes)
        losses = []
        for i, (det, gt) in enumerate(zip(detections, gt_instances)):
            if len(det) == 0 or len(gt) == 0:
                continue
            iou, g = pairwise_iou(det.pred_boxes, gt.gt_boxes).max(dim=1)
            keep = iou >= self.mbrm_match_iou
            if not keep.any():
                continue
            det = det[keep]
            size = images.image_sizes[i]
            with torch.no_grad():
                boxes, windows, probs = self.crop_probabilities(det, embeddings[i], size, size)
                px, py = window_profiles(probs, windows, size)
            losses.append(self.mbrm.edge_losses(px, py, boxes, gt.gt_boxes.tensor[g[keep]]))
        n = sum(x.shape[0] for x in losses)
        get_event_storage().put_scalar("mbrm_samples", n / max(len(gt_instances), 1))
        if n == 0:
            loss = sum(p.abs().sum() for p in self.mbrm.parameters()) * 0.0  # keeps the graph
        else:
            loss = torch.cat(losses).mean()
        return {"loss_mbrm": loss * self.mbrm_loss_weight}

    # -- inference --------------------------------------------------------------------------
    def forward_inference(self, images, features, predictions, embeddings, out_sizes) -> List[Instances]:
        detections = self.detect(features, predictions, images.image_sizes)
        segment = self.segment_dense if torch.jit.is_tracing() else self.segment
        return [segment(det, embeddings[i], images.image_sizes[i], out_sizes[i]) for i, det in enumerate(detections)]

    def detect(self, features, predictions, image_sizes) -> List[Instances]:
        """RetinaNet's decoding (score threshold, top-k per level, per-class NMS, max detections),
        then each kept detection's object representation (``obj_repr``) from its anchor; boxes
        clipped to the image."""
        logits, deltas, towers = predictions
        pred_logits, pred_deltas = self._transpose_dense_predictions([logits, deltas], [self.num_classes, 4])
        anchors = self.anchor_generator(features)
        offsets = [0]
        for a in anchors[:-1]:
            offsets.append(offsets[-1] + a.tensor.shape[0])  # a tensor when traced
        dense_reprs = None
        if torch.jit.is_tracing():  # towers are the dense representations (streams())
            dense_reprs = torch.cat(self._transpose_dense_predictions([towers], [2 * self.repr_dim])[0], dim=1)
        results = []
        for i, size in enumerate(image_sizes):
            per_level = [
                self._decode_level(a, s[i].sigmoid(), d[i], size, off)
                for a, s, d, off in zip(anchors, pred_logits, pred_deltas, offsets)
            ]
            det = Instances.cat(per_level)
            keep = batched_nms(det.pred_boxes.tensor, det.scores, det.pred_classes, self.test_nms_thresh)
            det = det[keep[: self.max_detections_per_image]]
            det.pred_boxes.clip(size)
            if dense_reprs is not None:
                det.obj_repr = dense_reprs[i][det.anchor]
            else:
                det.obj_repr = self.head.reprs_at(towers, i, det.anchor)
            det.remove("anchor")
            results.append(det)
        return results

    def _decode_level(self, anchors: Boxes, scores: Tensor, deltas: Tensor, size, offset: int) -> Instances:
        """Detectron2's per-level decoding, also keeping each candidate's anchor index."""
        keep = scores > self.test_score_thresh
        flat = scores[keep]
        idxs = torch.nonzero(keep)
        if torch.jit.is_tracing():  # the number of candidates is data (as Detectron2's RetinaNet)
            num = torch.clamp(torch._shape_as_tensor(idxs)[0], max=self.test_topk_candidates)
        else:
            num = min(self.test_topk_candidates, idxs.shape[0])
        flat, order = flat.sort(descending=True)
        idxs = idxs[order[:num]]
        anchor_idxs, classes = idxs.unbind(dim=1)
        boxes = self.box2box_transform.apply_deltas(deltas[anchor_idxs], anchors.tensor[anchor_idxs])
        return Instances(
            size, pred_boxes=Boxes(boxes), scores=flat[:num], pred_classes=classes, anchor=anchor_idxs + offset
        )

    def crop_probabilities(self, det: Instances, embedding: Tensor, in_size, out_size):
        """Foreground probabilities of each detection at ``out_size``, computed only inside its
        predicted box expanded CROP_EXPAND_TEST x (zero outside).

        The 2-class softmax is sigmoid(fg - bg) and bilinear upsampling is linear, so the
        difference of the two kernels is correlated with the embeddings once, and only the
        crop windows are resampled: by size order, in chunks padded to their largest window.

        Returns (boxes at ``out_size`` (N, 4), windows (N, 4) int64 pixel ranges x0, y0, x1, y1,
        list of N probability maps of each window's size)."""
        (h, w), (H, W) = in_size, out_size
        sy, sx = h / H, w / W
        boxes = det.pred_boxes.tensor / det.pred_boxes.tensor.new_tensor([sx, sy, sx, sy])
        windows = pixel_ranges(expand_boxes(boxes, self.crop_expand_test, self.min_crop_margin, (H, W)), 1.0, H, W)
        kernels = det.obj_repr.reshape(-1, 2, self.repr_dim)
        logits = torch.einsum("nd,dhw->nhw", kernels[:, 1] - kernels[:, 0], embedding)
        sizes = windows[:, 2:] - windows[:, :2]  # (N, 2): width, height
        order = torch.argsort(sizes[:, 0] * sizes[:, 1]).tolist()
        probs = [None] * len(det)
        for c in range(0, len(order), self.mask_chunk):
            idx = order[c : c + self.mask_chunk]
            wm, hm = sizes[idx].amax(dim=0).tolist()
            chunk = sample_maps(
                logits[idx], (hm, wm), (sy, sx), self.pixel_stream.out_stride, origins=windows[idx, :2]
            ).sigmoid_()
            for j, p, (ww, hh) in zip(idx, chunk, sizes[idx].tolist()):
                probs[j] = p[:hh, :ww]
        return boxes, windows, probs

    def segment(self, det: Instances, embedding: Tensor, in_size, out_size) -> Instances:
        """Masks (threshold MASK_THRESH) and, per BOX_REFINEMENT, refined boxes at ``out_size``."""
        H, W = out_size
        boxes, windows, probs = self.crop_probabilities(det, embedding, in_size, out_size)
        masks = paste_windows([p > self.mask_thresh for p in probs], windows, (H, W))
        return self._finish(det, boxes, masks, lambda: window_profiles(probs, windows, (H, W)), out_size)

    def segment_dense(self, det: Instances, embedding: Tensor, in_size, out_size) -> Instances:
        """:meth:`segment` without per-detection loops, for export: every detection's probability
        map at the full output size, zero outside its crop window (the same values the windows
        hold), then the same threshold and box refinement. Memory: N x H x W."""
        (h, w), (H, W) = in_size, out_size
        sy, sx = h / H, w / W
        boxes = det.pred_boxes.tensor
        boxes = boxes / torch.stack([torch.as_tensor(v, dtype=boxes.dtype) for v in (sx, sy, sx, sy)])
        windows = pixel_ranges(expand_boxes(boxes, self.crop_expand_test, self.min_crop_margin, (H, W)), 1.0, H, W)
        kernels = det.obj_repr.reshape(-1, 2, self.repr_dim)
        logits = torch.einsum("nd,dhw->nhw", kernels[:, 1] - kernels[:, 0], embedding)
        probs = sample_maps(logits, (H, W), (sy, sx), self.pixel_stream.out_stride).sigmoid()
        probs = probs * window_masks(windows, H, W)
        return self._finish(det, boxes, probs > self.mask_thresh, lambda: profiles(probs), out_size)

    def _finish(self, det: Instances, boxes: Tensor, masks: Tensor, mask_profiles, out_size) -> Instances:
        """Box refinement per BOX_REFINEMENT (``mask_profiles()``: MBRM's (px, py)), clipping, and the
        output Instances."""
        if self.box_refinement == "mbrm":
            boxes = self.mbrm.refine(*mask_profiles(), boxes)
        elif self.box_refinement == "direct":
            boxes = mask_tight_boxes(masks, boxes)
        boxes = Boxes(boxes)
        boxes.clip(out_size)
        return Instances(
            out_size, pred_boxes=boxes, scores=det.scores, pred_classes=det.pred_classes, pred_masks=masks
        )


def paste_windows(values: List[Tensor], windows: Tensor, size, dtype=torch.bool) -> Tensor:
    """(N, H, W) canvas, zero except each window (x0, y0, x1, y1), which gets its map."""
    H, W = size
    out = torch.zeros((len(values), H, W), dtype=dtype, device=windows.device)
    for j, (x0, y0, x1, y1) in enumerate(windows.tolist()):
        out[j, y0:y1, x0:x1] = values[j]
    return out


def window_profiles(probs: List[Tensor], windows: Tensor, size):
    """MBRM's profiles of windowed probability maps: max over rows (N, W) and over columns
    (N, H), zero outside the windows."""
    H, W = size
    dtype = probs[0].dtype if probs else torch.float32
    px = windows.new_zeros((len(probs), W), dtype=dtype)
    py = windows.new_zeros((len(probs), H), dtype=dtype)
    for j, (x0, y0, x1, y1) in enumerate(windows.tolist()):
        px[j, x0:x1] = probs[j].amax(dim=0)
        py[j, y0:y1] = probs[j].amax(dim=1)
    return px, py
