"""FCOS as a Detectron2 meta-architecture (``MODEL.META_ARCHITECTURE: "FCOS"``), AdelaiDet
flavour. Builds on Detectron2's ``DenseDetector`` (pre-processing, post-processing)."""
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import batched_nms, cat
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from fvcore.nn import sigmoid_focal_loss

from segzoo.errors import ConfigError, check_features
from segzoo.modeling import reduce_mean

from .checkpoint import register_adelaidet_load_hook
from .fcos_head import FCOSHead
from .fcos_targets import centerness_targets, compute_locations, fcos_targets, level_size_ranges

__all__ = ["FCOS", "FCOSPositives", "iou_loss", "flatten_levels"]

logger = logging.getLogger(__name__)


def iou_loss(pred: Tensor, target: Tensor, loss_type: str = "giou") -> Tensor:
    """Per-location IoU / GIoU loss of (P, 4) l, t, r, b distances from the same points."""
    pl, pt, pr, pb = pred.unbind(dim=1)
    tl, tt, tr, tb = target.unbind(dim=1)
    target_area = (tl + tr) * (tt + tb)
    pred_area = (pl + pr) * (pt + pb)
    w_inter = torch.min(pl, tl) + torch.min(pr, tr)
    h_inter = torch.min(pb, tb) + torch.min(pt, tt)
    area_inter = w_inter * h_inter
    area_union = target_area + pred_area - area_inter
    ious = (area_inter + 1.0) / (area_union + 1.0)
    if loss_type == "iou":
        return -torch.log(ious)
    if loss_type != "giou":
        raise ConfigError(f"MODEL.FCOS.LOC_LOSS_TYPE must be iou or giou, got {loss_type!r}")
    g_w = torch.max(pl, tl) + torch.max(pr, tr)
    g_h = torch.max(pb, tb) + torch.max(pt, tt)
    area_enclose = g_w * g_h + 1e-7
    gious = ious - (area_enclose - area_union) / area_enclose
    return 1 - gious


def flatten_levels(per_level: List[Tensor]) -> Tensor:
    """Per-level (N, D, Hi, Wi) -> (N * sum(Hi*Wi), D), image-major, level, then row-major."""
    n, d = per_level[0].shape[:2]
    return cat([x.permute(0, 2, 3, 1).reshape(n, -1, d) for x in per_level], dim=1).reshape(-1, d)


@dataclass(frozen=True)
class FCOSPositives:
    """The positive locations of one FCOS loss computation (P of them), which mask heads
    train on (BlendMask)."""

    #: (P,) int64: the positives' indices into the batch's locations flattened image-major,
    #: as :func:`flatten_levels` orders them (image, level, then row-major).
    location_inds: Tensor
    #: (P,) int64: the GT instance each positive is assigned to, indexed in the concatenation
    #: of all images' GT instances.
    gt_inds: Tensor
    #: (P,) the positives' centerness targets (the weights of their box and mask losses).
    ctr_targets: Tensor


@META_ARCH_REGISTRY.register()
class FCOS(DenseDetector):
    """FCOS: per-location classification (sigmoid focal loss), l/t/r/b regression (GIoU
    weighted by centerness targets) and centerness (BCE). All count-based normalisers are
    averaged over workers."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        head: FCOSHead,
        head_in_features: List[str],
        num_classes: int,
        sizes_of_interest: List[float],
        center_sampling_radius: float = 1.5,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        loc_loss_type: str = "giou",
        score_thresh_train: float = 0.05,
        score_thresh_test: float = 0.05,
        pre_nms_topk_train: int = 1000,
        pre_nms_topk_test: int = 1000,
        post_nms_topk_train: int = 100,
        post_nms_topk_test: int = 100,
        nms_thresh: float = 0.6,
        thresh_with_ctr: bool = True,
        pixel_mean,
        pixel_std,
        input_format: str = "BGR",
    ):
        super().__init__(backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std)
        shapes = backbone.output_shape()
        check_features(head_in_features, shapes, "MODEL.FCOS.IN_FEATURES")
        if loc_loss_type not in ("iou", "giou"):
            raise ConfigError(f"MODEL.FCOS.LOC_LOSS_TYPE must be iou or giou, got {loc_loss_type!r}")
        self.strides = [shapes[f].stride for f in head_in_features]
        self.size_ranges = level_size_ranges(sizes_of_interest, len(head_in_features))
        self.num_classes = num_classes
        self.center_sampling_radius = center_sampling_radius
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.loc_loss_type = loc_loss_type
        self.score_thresh = {True: score_thresh_train, False: score_thresh_test}
        self.pre_nms_topk = {True: pre_nms_topk_train, False: pre_nms_topk_test}
        self.post_nms_topk = {True: post_nms_topk_train, False: post_nms_topk_test}
        self.nms_thresh = nms_thresh
        self.thresh_with_ctr = thresh_with_ctr
        self.input_format = input_format
        register_adelaidet_load_hook(self)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        f = cfg.MODEL.FCOS
        check_features(f.IN_FEATURES, shapes, "MODEL.FCOS.IN_FEATURES")
        strides = [shapes[x].stride for x in f.IN_FEATURES]
        if f.FPN_STRIDES and list(f.FPN_STRIDES) != strides:
            raise ConfigError(
                f"MODEL.FCOS.FPN_STRIDES {list(f.FPN_STRIDES)} disagree with the strides of "
                f"{list(f.IN_FEATURES)} in the backbone: {strides}"
            )
        head = FCOSHead(
            [shapes[x] for x in f.IN_FEATURES],
            num_classes=f.NUM_CLASSES,
            num_cls_convs=f.NUM_CLS_CONVS,
            num_box_convs=f.NUM_BOX_CONVS,
            num_share_convs=f.NUM_SHARE_CONVS,
            norm=f.NORM,
            prior_prob=f.PRIOR_PROB,
            use_scale=f.USE_SCALE,
            use_relu=f.USE_RELU,
            ctr_on_reg=f.CTR_ON_REG,
        )
        return {
            "backbone": backbone,
            "head": head,
            "head_in_features": list(f.IN_FEATURES),
            "num_classes": f.NUM_CLASSES,
            "sizes_of_interest": list(f.SIZES_OF_INTEREST),
            "center_sampling_radius": f.POS_RADIUS if f.CENTER_SAMPLE else 0.0,
            "focal_loss_alpha": f.LOSS_ALPHA,
            "focal_loss_gamma": f.LOSS_GAMMA,
            "loc_loss_type": f.LOC_LOSS_TYPE,
            "score_thresh_train": f.INFERENCE_TH_TRAIN,
            "score_thresh_test": f.INFERENCE_TH_TEST,
            "pre_nms_topk_train": f.PRE_NMS_TOPK_TRAIN,
            "pre_nms_topk_test": f.PRE_NMS_TOPK_TEST,
            "post_nms_topk_train": f.POST_NMS_TOPK_TRAIN,
            "post_nms_topk_test": f.POST_NMS_TOPK_TEST,
            "nms_thresh": f.NMS_TH,
            "thresh_with_ctr": f.THRESH_WITH_CTR,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
        }

    # -- hooks for subclasses -------------------------------------------------------------
    def top_module(self) -> Optional[nn.Module]:
        """Module applied to the box tower of every level (BlendMask: attentions)."""
        return None

    # -- forward ----------------------------------------------------------------------------
    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        images = self.preprocess_image(batched_inputs)
        features, head_out, locations = self.run_network(images)
        if self.training:
            if "instances" not in batched_inputs[0]:
                raise ValueError("FCOS training needs 'instances' in every input")
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            return self.forward_training(images, features, head_out, locations, gt_instances)
        results = self.forward_inference(images, features, head_out, locations)
        return self.postprocess(results, batched_inputs, images.image_sizes)

    def inference(self, batched_inputs: List[Dict[str, Tensor]], do_postprocess: bool = True):
        """Eval-mode forward, as ``GeneralizedRCNN.inference``: with ``do_postprocess=False`` the
        raw detections (a list of ``Instances`` in the network's input size, masks, if any, as
        ``(n, 1, R, R)`` box-relative probabilities), which is what export traces."""
        assert not self.training
        if do_postprocess:
            return self(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        return self.forward_inference(images, *self.run_network(images))

    def run_network(self, images: ImageList):
        """Backbone and head of a preprocessed batch: (features, head outputs, locations)."""
        features = self.backbone(images.tensor)
        head_out = self.head([features[f] for f in self.head_in_features], self.top_module())
        locations = [
            compute_locations(x.shape[-2], x.shape[-1], s, x.device)
            for x, s in zip(head_out["logits"], self.strides)
        ]
        return features, head_out, locations

    def postprocess(self, results, batched_inputs, image_sizes):
        processed = []
        for r, inp, size in zip(results, batched_inputs, image_sizes):
            h = inp.get("height", size[0])
            w = inp.get("width", size[1])
            processed.append({"instances": detector_postprocess(r, h, w)})
        return processed

    # -- training ---------------------------------------------------------------------------
    def forward_training(self, images, features, head_out, locations, gt_instances):
        losses, _ = self.fcos_losses(head_out, locations, gt_instances)
        return losses

    def fcos_losses(self, head_out, locations, gt_instances) -> Tuple[Dict[str, Tensor], FCOSPositives]:
        """FCOS losses, and the positive locations with their GT and centerness targets,
        which mask heads reuse."""
        labels, reg_targets, gt_inds = fcos_targets(
            locations, self.strides, self.size_ranges, gt_instances, self.num_classes,
            self.center_sampling_radius,
        )
        num_images = len(gt_instances)
        # image-major flattening, like flatten_levels()
        labels = labels.reshape(-1)
        reg_targets = reg_targets.reshape(-1, 4)
        offsets = torch.tensor(
            [0] + [len(x) for x in gt_instances[:-1]], device=labels.device
        ).cumsum(0)
        gt_global = (gt_inds + offsets[:, None]).reshape(-1)

        logits = flatten_levels(head_out["logits"])
        bbox_reg = flatten_levels(head_out["bbox_reg"])
        ctrness = flatten_levels(head_out["ctrness"]).reshape(-1)

        pos_inds = torch.nonzero(labels != self.num_classes).squeeze(1)
        num_pos_avg = max(reduce_mean(pos_inds.numel()), 1.0)
        get_event_storage().put_scalar("fcos/num_pos_per_image", pos_inds.numel() / max(num_images, 1))

        class_target = torch.zeros_like(logits)
        class_target[pos_inds, labels[pos_inds]] = 1
        loss_cls = sigmoid_focal_loss(
            logits, class_target, alpha=self.focal_loss_alpha, gamma=self.focal_loss_gamma,
            reduction="sum",
        ) / num_pos_avg

        pos_reg_targets = reg_targets[pos_inds]
        ctr_targets = centerness_targets(pos_reg_targets)
        ctr_denorm = max(reduce_mean(ctr_targets.sum()), 1e-6)
        if pos_inds.numel() > 0:
            loss_loc = (
                iou_loss(bbox_reg[pos_inds], pos_reg_targets, self.loc_loss_type) * ctr_targets
            ).sum() / ctr_denorm
            loss_ctr = F.binary_cross_entropy_with_logits(
                ctrness[pos_inds], ctr_targets, reduction="sum"
            ) / num_pos_avg
        else:
            loss_loc = bbox_reg.sum() * 0
            loss_ctr = ctrness.sum() * 0
        losses = {"loss_fcos_cls": loss_cls, "loss_fcos_loc": loss_loc, "loss_fcos_ctr": loss_ctr}
        positives = FCOSPositives(location_inds=pos_inds, gt_inds=gt_global[pos_inds], ctr_targets=ctr_targets)
        return losses, positives

    # -- inference --------------------------------------------------------------------------
    def forward_inference(self, images: ImageList, features, head_out, locations) -> List[Instances]:
        return self.detect(head_out, locations, images.image_sizes)

    @torch.no_grad()
    def detect(self, head_out, locations, image_sizes) -> List[Instances]:
        """Detections per image: ``pred_boxes``, ``scores`` (sqrt(cls * ctr)),
        ``pred_classes``, ``fpn_levels`` and, with a top module, ``top_feat``."""
        training = self.training
        thresh = self.score_thresh[training]
        pre_topk = self.pre_nms_topk[training]
        post_topk = self.post_nms_topk[training]
        has_top = len(head_out["top_feats"]) > 0
        results = []
        for i, image_size in enumerate(image_sizes):
            boxes_all, scores_all, classes_all, levels_all, top_all = [], [], [], [], []
            for level, (locs, stride) in enumerate(zip(locations, self.strides)):
                c = head_out["logits"][level].shape[1]
                cls = head_out["logits"][level][i].permute(1, 2, 0).reshape(-1, c).sigmoid()
                ctr = head_out["ctrness"][level][i].permute(1, 2, 0).reshape(-1).sigmoid()
                scores = cls * ctr[:, None]
                candidates = (scores if self.thresh_with_ctr else cls) > thresh
                s = scores[candidates]
                idx = torch.nonzero(candidates)
                if torch.jit.is_tracing():
                    # the number of candidates is data: a traced top-min(n, k) (as Detectron2's RetinaNet)
                    s, order = s.topk(torch.clamp(torch._shape_as_tensor(s)[0], max=pre_topk))
                    idx = idx[order]
                elif s.numel() > pre_topk:
                    s, order = s.topk(pre_topk, sorted=False)
                    idx = idx[order]
                loc_idx, cls_idx = idx.unbind(dim=1)
                reg = head_out["bbox_reg"][level][i].permute(1, 2, 0).reshape(-1, 4)[loc_idx] * stride
                p = locs[loc_idx]
                boxes = torch.stack(
                    [p[:, 0] - reg[:, 0], p[:, 1] - reg[:, 1], p[:, 0] + reg[:, 2], p[:, 1] + reg[:, 3]],
                    dim=1,
                )
                boxes_all.append(boxes)
                scores_all.append(torch.sqrt(s))
                classes_all.append(cls_idx)
                levels_all.append(torch.full_like(cls_idx, level))
                if has_top:
                    t = head_out["top_feats"][level][i]
                    top_all.append(t.permute(1, 2, 0).reshape(-1, t.shape[0])[loc_idx])
            boxes = Boxes(cat(boxes_all))
            boxes.clip(image_size)
            inst = Instances(image_size)
            inst.pred_boxes = boxes
            inst.scores = cat(scores_all)
            inst.pred_classes = cat(classes_all)
            inst.fpn_levels = cat(levels_all)
            if has_top:
                inst.top_feat = cat(top_all)
            inst = inst[boxes.nonempty()]
            keep = batched_nms(inst.pred_boxes.tensor, inst.scores, inst.pred_classes, self.nms_thresh)
            results.append(inst[keep[:post_topk]])
        return results
