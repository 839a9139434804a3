"""Small building blocks shared by the plugins' heads."""
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from detectron2.layers import batched_nms, get_norm, paste_masks_in_image
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks

__all__ = ["conv_block", "conv_tower", "instance_bitmasks", "mask_tight_boxes", "norm_layer", "paste_segments"]


def norm_layer(norm: str, channels: int):
    """"GN" = GroupNorm(32, C) (as AdelaiDet and mmdetection); "" / None = no norm; else
    Detectron2's get_norm."""
    if not norm:
        return None
    if norm == "GN":
        return nn.GroupNorm(32, channels)
    return get_norm(norm, channels)


def conv_block(in_channels, out_channels, kernel_size=3, norm="", activation=True):
    """conv (kaiming-uniform, a=1) [+ norm] [+ ReLU]; a bare conv when neither is used."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=not norm
    )
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if not norm:
        nn.init.constant_(conv.bias, 0)
    modules = [conv]
    n = norm_layer(norm, out_channels)
    if n is not None:
        modules.append(n)
    if activation:
        modules.append(nn.ReLU(inplace=True))
    return nn.Sequential(*modules) if len(modules) > 1 else conv


def conv_tower(
    in_channels: int,
    conv_dims: Sequence[int],
    norm: Union[str, None, Callable[[int], Optional[nn.Module]]] = "",
    *,
    bias: Optional[bool] = None,
) -> nn.Sequential:
    """The dense heads' tower: per entry of ``conv_dims`` a 3x3 conv (weights N(0, 0.01), bias 0),
    the norm if any, ReLU. Module indices follow Detectron2's towers (conv, [norm,] ReLU per
    layer), so state-dict keys are ``<i>.weight`` etc.

    ``norm``: a name for :func:`norm_layer` ("" / None: none), or a function making the norm
    module of a given channel count (None: none), for heads with their own norms (e.g. one batch
    norm per FPN level). ``bias``: whether the convs have a bias; None: only when there is no norm
    (``norm`` given by name). Per layer the conv is made and initialised before its norm, so
    seeded initialisation consumes the random generator as a hand-written tower does."""
    if bias is None:
        if callable(norm):
            raise ValueError("conv_tower: say whether the convs have a bias when norm is a function")
        bias = not norm
    make_norm = norm if callable(norm) else (lambda channels: norm_layer(norm, channels))
    layers = []
    for c_in, c_out in zip([in_channels] + list(conv_dims), conv_dims):
        conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
        nn.init.normal_(conv.weight, std=0.01)
        if conv.bias is not None:
            nn.init.constant_(conv.bias, 0)
        layers.append(conv)
        n = make_norm(c_out)
        if n is not None:
            layers.append(n)
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def instance_bitmasks(inst: Instances) -> Tensor:
    """(G, h, w) bool ground-truth masks of an Instances at its image size (bitmask or
    polygon annotations)."""
    h, w = inst.image_size
    masks = inst.gt_masks
    if isinstance(masks, BitMasks):
        return masks.tensor.bool()
    if isinstance(masks, PolygonMasks):
        return BitMasks.from_polygon_masks(masks, h, w).tensor.to(inst.gt_classes.device)
    if isinstance(masks, Tensor):
        return masks.bool()
    raise TypeError(f"unsupported gt_masks type {type(masks).__name__}")


def mask_tight_boxes(masks: Tensor, fallback: Tensor) -> Tensor:
    """(N, 4) tight XYXY boxes of (N, H, W) bool masks; empty masks keep ``fallback``."""
    n, h, w = masks.shape
    if n == 0 and not torch.jit.is_tracing():
        return fallback.clone()
    cols = masks.any(dim=1)  # (N, W)
    rows = masks.any(dim=2)  # (N, H)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    big = h + w + 1  # larger than any index (sizes are tensors when traced)
    x0 = torch.where(cols, xs, big).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1) + 1
    y0 = torch.where(rows, ys, big).amin(dim=1)
    y1 = torch.where(rows, ys, -1).amax(dim=1) + 1
    tight = torch.stack([x0, y0, x1, y1], dim=1).to(fallback.dtype)
    return torch.where(cols.any(dim=1, keepdim=True), tight, fallback)


def paste_segments(boxes: Tensor, mask_probs: Tensor, logits: Tensor, input_size, output_size,
                   mask_thresh: float, nms_thresh: float = 1.0) -> Instances:
    """Class-agnostic segments from box-relative masks: the (N, M, M) probabilities pasted into
    their (N, 4) XYXY ``boxes`` of an ``input_size`` image, scaled to ``output_size`` (boxes not
    clipped: a window may extend past the image), thresholded at ``mask_thresh``; empty masks
    dropped; each segment's box is its mask's tight box; box NMS at ``nms_thresh`` (1.0: none).
    Instances with ``pred_boxes``, ``scores`` (sigmoid of ``logits``), ``objectness_logits``,
    ``pred_classes`` (0) and ``pred_masks`` (bool)."""
    (h, w), (oh, ow) = input_size, output_size
    boxes = boxes * boxes.new_tensor([ow / w, oh / h, ow / w, oh / h])
    if len(boxes) == 0:
        bitmasks = torch.zeros((0, oh, ow), dtype=torch.bool, device=boxes.device)
    else:
        bitmasks = paste_masks_in_image(mask_probs, Boxes(boxes), (oh, ow), mask_thresh)
    keep = bitmasks.flatten(1).any(1) if len(bitmasks) else torch.zeros(0, dtype=torch.bool)
    bitmasks, logits = bitmasks[keep], logits[keep]
    tight = mask_tight_boxes(bitmasks, torch.zeros((len(bitmasks), 4), device=bitmasks.device))
    if nms_thresh < 1.0 and len(tight):
        k = batched_nms(tight, logits, torch.zeros_like(logits, dtype=torch.long), nms_thresh)
        bitmasks, logits, tight = bitmasks[k], logits[k], tight[k]
    result = Instances((oh, ow))
    result.pred_boxes = Boxes(tight)
    result.scores = logits.sigmoid()
    result.objectness_logits = logits
    result.pred_classes = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    result.pred_masks = bitmasks
    return result
