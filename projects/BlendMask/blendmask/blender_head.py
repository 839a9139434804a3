"""The blender module: crops the bases by box, blends them with each instance's
attentions (fused op or PyTorch composition) and computes BlendMask's mask loss."""
from typing import List

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.structures import Instances

from segzoo.errors import ConfigError
from segzoo.modeling import ROIPooler, reduce_mean
from segzoo.ops import blender as fused_blender
from segzoo.ops import blender_composition

__all__ = ["Blender"]

BLENDERS = {"fused": fused_blender, "composition": blender_composition}


class Blender(nn.Module):
    def __init__(
        self,
        *,
        num_bases: int,
        attn_size: int,
        bottom_resolution: int,
        interp: str = "bilinear",
        pooler_type: str = "ROIAlignV2",
        sampling_ratio: int = 1,
        pooler_scale: float = 0.25,
        implementation: str = "fused",
        instance_loss_weight: float = 1.0,
        max_proposals: int = -1,
    ):
        super().__init__()
        if implementation not in BLENDERS:
            raise ConfigError(
                f"MODEL.BLENDMASK.BLENDER must be one of {sorted(BLENDERS)}, got {implementation!r}"
            )
        if interp not in ("bilinear", "nearest"):
            raise ConfigError(f"MODEL.BLENDMASK.TOP_INTERP must be bilinear or nearest, got {interp!r}")
        self.num_bases = num_bases
        self.attn_size = attn_size
        self.resolution = bottom_resolution
        self.interp = interp
        self.blend_fn = BLENDERS[implementation]
        self.instance_loss_weight = instance_loss_weight
        self.max_proposals = max_proposals
        self.pooler = ROIPooler(
            output_size=bottom_resolution,
            scales=(pooler_scale,),
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
        )

    @property
    def attn_channels(self) -> int:
        return self.num_bases * self.attn_size * self.attn_size

    def blend(self, crops: Tensor, attentions: Tensor) -> Tensor:
        """(N, K, R, R) crops + (N, K*M*M) attentions -> (N, R, R) (logits for K > 1,
        probabilities for K = 1)."""
        attn = attentions.reshape(-1, self.num_bases, self.attn_size, self.attn_size)
        return self.blend_fn(crops, attn.to(crops.dtype), self.interp)

    def loss(
        self,
        bases: Tensor,
        gt_instances: List[Instances],
        attentions: Tensor,
        gt_inds: Tensor,
        ctr_targets: Tensor,
    ):
        """Mask loss of the positive locations.

        ``attentions`` (P, K*M*M) of the P positives, ``gt_inds`` (P,) their GT in the
        concatenation of the images' GT, ``ctr_targets`` (P,) their centerness targets.
        Per location: BCE averaged over the R x R pixels, weighted by the centerness target;
        summed and divided by the (all-worker average) sum of the centerness targets.
        """
        if self.max_proposals >= 0 and len(gt_inds) > self.max_proposals:
            keep = torch.randperm(len(gt_inds), device=gt_inds.device)[: self.max_proposals]
            attentions, gt_inds, ctr_targets = attentions[keep], gt_inds[keep], ctr_targets[keep]
        denorm = max(reduce_mean(ctr_targets.sum()), 1e-6)
        if gt_inds.numel() == 0:
            return {"loss_mask": bases.sum() * 0 + attentions.sum() * 0}
        gt_boxes = [x.gt_boxes for x in gt_instances]
        crops = self.pooler([bases], gt_boxes)  # one crop per GT instance
        targets = torch.cat(
            [
                x.gt_masks.crop_and_resize(x.gt_boxes.tensor, self.resolution).to(bases.dtype)
                for x in gt_instances
                if len(x) > 0
            ]
        )
        # only the GT instances with positives are blended
        used, inverse = torch.unique(gt_inds, return_inverse=True)
        logits = self.blend(crops[used][inverse], attentions)
        targets = targets[used][inverse]
        if self.num_bases == 1:
            per_pixel = F.binary_cross_entropy(
                logits.float().clamp(1e-6, 1 - 1e-6), targets.float(), reduction="none"
            )
        else:
            per_pixel = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
        per_instance = per_pixel.flatten(1).mean(dim=1)
        loss = (per_instance * ctr_targets).sum() / denorm
        return {"loss_mask": loss * self.instance_loss_weight}

    def inference(self, bases: Tensor, detections: List[Instances]) -> List[Instances]:
        """Adds ``pred_masks`` (n, 1, R, R) mask probabilities to each image's detections
        (which carry ``top_feat``); drops ``top_feat``."""
        boxes = [d.pred_boxes for d in detections]
        crops = self.pooler([bases], boxes)
        attentions = torch.cat([d.top_feat for d in detections]) if detections else bases.new_zeros((0, self.attn_channels))
        masks = self.blend(crops, attentions)
        if self.num_bases > 1:
            masks = masks.sigmoid()
        out = []
        # one image (export traces one): no split, whose sizes would be frozen into the trace
        per_image = [masks] if len(detections) == 1 else masks.split([len(d) for d in detections])
        for d, m in zip(detections, per_image):
            d.remove("top_feat")
            d.pred_masks = m[:, None].float()
            out.append(d)
        return out


