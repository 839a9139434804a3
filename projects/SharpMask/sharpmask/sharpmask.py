"""The ``SharpMask`` meta-architecture: DeepMask-ours (stage 1) and SharpMask (stage 2).

Training consumes the patches of :class:`~sharpmask.sampler.SharpMaskDatasetMapper`.
Inference runs the trunk fully convolutionally over an image pyramid, scores every 16-px
window position of every scale, keeps the top N across scales, and decodes only those:
coarse 56x56 masks (DeepMask path) or, in stage 2, masks refined top-down in one batch from
skip features computed once per scale. Masks are pasted into the image at 0.2; boxes are the
masks' tight boxes; scores are the objectness probabilities.

Losses are sums over samples, as the authors' trainer: the mask loss is each mask sample's
per-pixel mean, summed over the mask samples; the score loss is SCORE_LOSS_WEIGHT (1/32) times
the sum over the score samples. At the authors' learning rate this gives their step per sample
(they average over a batch of 32 and multiply the mask gradient by the batch size), whatever the
mix of mask and score samples in a batch. The sums are over the whole batch: with N training
processes each process's sum is multiplied by N (DistributedDataParallel averages gradients).
"""
import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm

from segzoo.errors import ConfigError
from segzoo.modeling.layers import mask_tight_boxes, paste_segments

from .refinement import SharpMaskRefinement
from .sampler import PatchGeometry
from .trunk import DeepMaskHead, DeepMaskTrunk

__all__ = ["SharpMask", "WindowSet"]


def _scaled_length(v, s):
    """round(v * s), at least 1: on a number, or on a float64 tensor when traced."""
    if isinstance(v, torch.Tensor):
        return torch.round(v * s).clamp(min=1).long()
    return max(int(round(v * s)), 1)


def _grid_cells(v):
    """ceil(v / 16), the window grid's cells along a side of v pixels (number or traced tensor)."""
    if isinstance(v, torch.Tensor):
        return torch.ceil(v.double() / 16).long()  # float division in ONNX too
    return math.ceil(v / 16)


class WindowSet:
    """The selected windows of one image: objectness logits, boxes (XYXY, input-image
    pixels, the WINDOW x WINDOW region each mask covers) and mask logits (N, S, S)."""

    def __init__(self, logits, boxes, masks, image_size):
        self.logits, self.boxes, self.masks, self.image_size = logits, boxes, masks, image_size

    def __len__(self):
        return len(self.logits)


@META_ARCH_REGISTRY.register()
class SharpMask(nn.Module):
    @configurable
    def __init__(self, *, trunk: DeepMaskTrunk, head: DeepMaskHead, refinement: Optional[SharpMaskRefinement],
                 geometry: PatchGeometry, pixel_mean, pixel_std, score_loss_weight=1 / 32,
                 coarse_loss_size=112, scales=(1.0,), top_n=1000, refine=True, mask_thresh=0.2,
                 nms_thresh=1.0, refine_batch=0):
        super().__init__()
        self.trunk, self.head, self.refinement, self.geometry = trunk, head, refinement, geometry
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.score_loss_weight = float(score_loss_weight)
        self.coarse_loss_size = int(coarse_loss_size)
        self.scales = [float(s) for s in scales]
        self.top_n = int(top_n)
        self.refine = bool(refine) and refinement is not None
        self.mask_thresh, self.nms_thresh = float(mask_thresh), float(nms_thresh)
        self.refine_batch = int(refine_batch)
        if refinement is not None:  # stage 2: only the refinement trains
            for m in (self.trunk, self.head):
                for p in m.parameters():
                    p.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SHARPMASK
        if s.STAGE not in (1, 2):
            raise ConfigError(f"MODEL.SHARPMASK.STAGE must be 1 (DeepMask) or 2 (SharpMask), got {s.STAGE}")
        if not s.TEST.SCALES or min(s.TEST.SCALES) <= 0:
            raise ConfigError(f"MODEL.SHARPMASK.TEST.SCALES must be positive, got {list(s.TEST.SCALES)}")
        if s.TEST.TOP_N < 1:
            raise ConfigError("MODEL.SHARPMASK.TEST.TOP_N must be >= 1")
        trunk = DeepMaskTrunk(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
        refinement = SharpMaskRefinement(cfg, trunk.channels, trunk.strides) if s.STAGE == 2 else None
        return {
            "trunk": trunk,
            "head": DeepMaskHead(cfg),
            "refinement": refinement,
            "geometry": PatchGeometry.from_cfg(cfg),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "score_loss_weight": s.SCORE_LOSS_WEIGHT,
            "coarse_loss_size": s.COARSE_LOSS_SIZE,
            "scales": s.TEST.SCALES,
            "top_n": s.TEST.TOP_N,
            "refine": s.TEST.REFINE,
            "mask_thresh": s.TEST.MASK_THRESH,
            "nms_thresh": s.TEST.NMS_THRESH,
            "refine_batch": s.TEST.REFINE_BATCH,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    @property
    def stage(self) -> int:
        return 1 if self.refinement is None else 2

    def train(self, mode: bool = True):
        super().train(mode)
        if self.refinement is not None:  # frozen parts keep eval-mode BN / dropout
            self.trunk.eval()
            self.head.eval()
        return self

    def normalize(self, x):
        return (x.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std

    # ------------------------------------------------------------------ training
    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return self.inference(batched_inputs)
        if any("patches" not in d for d in batched_inputs):
            raise ValueError("SharpMask training needs patch samples: use sharpmask.SharpMaskDatasetMapper "
                             "(INPUT.TRAIN_MAPPER: 'sharpmask_patches')")
        patches = self.normalize(torch.cat([d["patches"] for d in batched_inputs]))
        masks = torch.cat([d["masks"] for d in batched_inputs]).to(self.device)
        labels = torch.cat([d["labels"] for d in batched_inputs]).to(self.device)
        mask_sample = torch.cat([d["mask_sample"] for d in batched_inputs]).to(self.device)
        losses = self.losses(patches, masks, labels, mask_sample)
        # sums over the whole batch: DistributedDataParallel averages the gradients of the N
        # processes, each summing over its share of the batch, so each sum counts N times
        world = comm.get_world_size()
        return {k: v * world for k, v in losses.items()} if world > 1 else losses

    def patch_forward(self, patches):
        """Trunk features and the per-patch 512-d vector of normalized patches (B,3,P,P)."""
        feats = self.trunk.features(patches)
        return feats, self.trunk.embed(feats["reduced"], patch=True)

    def window_skips(self, feats):
        """Skip features of the central window of each patch, per refinement stage (the skip
        convs run on the window plus a halo of one cell per conv only: same values, less work)."""
        c, w = self.geometry.context, self.geometry.window
        halo = self.refinement.skip_halo
        out = []
        for skip, name, t in zip(self.refinement.skips, self.refinement.skip_features, self.refinement.strides):
            f = feats[name]
            r0, r1 = max(c // t - halo, 0), min((c + w) // t + halo, f.shape[2])
            s_map = skip(f[:, :, r0:r1, r0:r1])
            out.append(s_map[:, :, c // t - r0 : (c + w) // t - r0, c // t - r0 : (c + w) // t - r0])
        return out

    def losses(self, patches, masks, labels, mask_sample):
        if self.refinement is not None:
            with torch.no_grad():
                feats, emb = self.patch_forward(patches)
            sel = mask_sample.nonzero().squeeze(1)
            skips = self.window_skips({k: v[sel] for k, v in feats.items()})
            logits = self.refinement(emb[sel], skips)
            return {"loss_mask_refined": _summed_bce(logits, masks[sel].float())}
        feats, emb = self.patch_forward(patches)
        m = mask_sample
        coarse = self.head.masks(emb[m])[:, None]
        size = self.coarse_loss_size
        coarse = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        target = F.interpolate(masks[m][:, None].float(), size=(size, size), mode="area")[:, 0]
        scores = self.head.scores(emb[~m])
        return {
            "loss_mask": _summed_bce(coarse, (target >= 0.5).float()),
            "loss_score": self.score_loss_weight * _summed_bce(scores, labels[~m]),
        }

    # ------------------------------------------------------------------ inference
    def pyramid_sizes(self, image_size, base_size=None):
        """The scaled (h, w) of every pyramid scale: the scales apply to ``base_size`` (the
        original image's (H, W)) when given, else to ``image_size``."""
        h, w = base_size or image_size
        return [(_scaled_length(h, s), _scaled_length(w, s)) for s in self.scales]

    def scale_pyramid(self, image, base_size=None):
        """(scaled size, grid size, padded normalized image) per scale. The image is resized to
        the scaled size (antialiased when shrinking) and padded with the mean (0) by
        WINDOW/2 + CONTEXT on the top and left and up to the last window's patch on the bottom
        and right: one window centre on every 16-px position of the scaled image, each with
        exactly its training patch (window + context) inside the padded image. When traced the
        sizes are tensors and the same arithmetic becomes graph ops."""
        h, w = image.shape[-2:]
        g = self.geometry
        pad = g.window // 2 + g.context
        traced = torch.jit.is_tracing()
        if traced:
            base = [torch.as_tensor(v, dtype=torch.float64) for v in (base_size or (h, w))]
            sizes = [(_scaled_length(base[0], s), _scaled_length(base[1], s)) for s in self.scales]
        else:
            sizes = self.pyramid_sizes((h, w), base_size)
        for s, (hs, ws) in zip(self.scales, sizes):
            x = image[None]
            # traced: whether to resize is decided by the scale, not by comparing traced sizes
            resize, shrink = (s != 1.0 or base_size is not None, s < 1.0) if traced else ((hs, ws) != (h, w), hs < h)
            if resize:
                x = F.interpolate(x, size=(hs, ws), mode="bilinear", align_corners=False, antialias=shrink)
            ny, nx = _grid_cells(hs), _grid_cells(ws)
            x = F.pad(x, (pad, 16 * (nx - 1) + pad - ws, pad, 16 * (ny - 1) + pad - hs))
            yield (hs, ws), (ny, nx), x

    def dense_windows(self, image, base_size=None):
        """Score every window of every scale of a normalized (3, H, W) image. Returns the
        per-scale state and flat (scale, y, x, logit) tensors over all windows."""
        per_scale, flat = [], []
        for k, ((hs, ws), (ny, nx), x) in enumerate(self.scale_pyramid(image, base_size)):
            feats = self.trunk.features(x)
            emb = self.trunk.embed(feats["reduced"], patch=False)
            logits = self.head.dense_scores(emb)[0]
            per_scale.append({"size": (hs, ws), "feats": feats, "emb": emb[0]})
            yy, xx = torch.meshgrid(torch.arange(ny, device=x.device), torch.arange(nx, device=x.device), indexing="ij")
            pos = torch.stack([torch.full_like(yy, k).flatten(), yy.flatten(), xx.flatten()], 1)
            flat.append((pos, logits.flatten()))
        return per_scale, torch.cat([p for p, _ in flat]), torch.cat([l for _, l in flat])

    def _skip_regions(self, feats, yx):
        """Skip features S^i over the part of each feature map that the windows at grid
        positions ``yx`` (n, 2) cover, plus a halo of one cell per 3x3 conv (so values equal
        the whole-map ones). Returns [(map (C, h, w), row0, col0)] per stage."""
        c, w = self.geometry.context, self.geometry.window
        halo = self.refinement.skip_halo
        out = []
        for skip, name, t in zip(self.refinement.skips, self.refinement.skip_features, self.refinement.strides):
            f = feats[name][0]
            y0, x0 = ((16 * yx.min(0).values + c) // t).tolist()
            y1, x1 = ((16 * yx.max(0).values + c + w) // t).tolist()
            r0, c0 = max(y0 - halo, 0), max(x0 - halo, 0)
            r1, c1 = min(y1 + halo, f.shape[1]), min(x1 + halo, f.shape[2])
            region = f[None, :, r0:r1, c0:c1].contiguous(memory_format=torch.channels_last)  # ~1.7x faster convs
            out.append((skip(region)[0], r0, c0))
        return out

    def _crop_skips(self, regions, yx):
        """Per stage, the (n, C, WINDOW/t, WINDOW/t) skip crops of the windows ``yx`` (slice
        copies: twice as fast as one advanced-indexing gather on the CPU)."""
        c, w = self.geometry.context, self.geometry.window
        out = []
        for (s_map, r0, c0), t in zip(regions, self.refinement.strides):
            n = w // t
            rows = ((16 * yx[:, 0] + c) // t - r0).tolist()
            cols = ((16 * yx[:, 1] + c) // t - c0).tolist()
            out.append(torch.stack([s_map[:, y : y + n, x : x + n] for y, x in zip(rows, cols)]))
        return out

    def gather_skips(self, feats, yx):
        """Per refinement stage, the (n, C, WINDOW/t, WINDOW/t) skip features of the windows at
        grid positions ``yx`` (n, 2) of a dense pass (``feats``: a scale's ``"feats"`` from
        :meth:`dense_windows`). The skip convs run only over the region the windows cover (plus
        their halo), so the crops equal those of the whole-map skip features."""
        return self._crop_skips(self._skip_regions(feats, yx), yx)

    def select_windows(self, image, top_n=None, refine=None, base_size=None) -> WindowSet:
        """The top-N windows of a normalized image and their mask logits; boxes in ``image``'s
        pixels. ``base_size``: the (H, W) the pyramid scales apply to (default: the image's)."""
        refine = self.refine if refine is None else refine
        if refine and self.refinement is None:
            raise ValueError("refinement requested but this is a stage-1 (DeepMask) model")
        if torch.jit.is_tracing():
            return self._select_windows_traced(image, top_n, refine, base_size)
        per_scale, idx, logits = self.dense_windows(image, base_size)
        n = min(top_n or self.top_n, len(logits))
        order = logits.topk(n).indices
        idx, logits = idx[order], logits[order]
        h, w = image.shape[-2:]
        boxes = torch.empty((n, 4), device=image.device)
        mask_size = self.geometry.window if refine else self.head.mask_size
        masks = torch.empty((n, mask_size, mask_size), device=image.device)
        for k, state in enumerate(per_scale):
            sel = (idx[:, 0] == k).nonzero().squeeze(1)
            if len(sel) == 0:
                continue
            yx = idx[sel, 1:]
            boxes[sel] = self._window_boxes(yx, state["size"], (h, w))
            emb = state["emb"][:, yx[:, 0], yx[:, 1]].t()
            if not refine:
                masks[sel] = self.head.masks(emb).to(masks.dtype)  # fp32 buffers under autocast
                continue
            regions = self._skip_regions(state["feats"], yx)
            m1 = self.refinement.encode(emb)  # one GEMM for all windows of this scale
            # small batches: the top-down pass is memory-bound (2-8 channels at 80-160 px),
            # chunks that stay in cache run several times faster on the CPU
            batch = self.refine_batch or (16 if image.device.type == "cpu" else len(sel))
            for chunk in torch.split(torch.arange(len(sel), device=sel.device), batch):
                masks[sel[chunk]] = self.refinement.top_down(m1[chunk], self._crop_skips(regions, yx[chunk])).to(masks.dtype)
        return WindowSet(logits, boxes, masks, (h, w))

    def _window_boxes(self, yx, scaled_size, image_size):
        """(n, 4) XYXY boxes in the image's pixels of the windows at grid positions ``yx`` (n, 2)
        of the scale whose image is ``scaled_size``; sizes are numbers, or tensors when traced."""
        (hs, ws), (h, w) = scaled_size, image_size
        if isinstance(hs, torch.Tensor):
            hs, ws = hs.double(), ws.double()  # float division in ONNX too
        sy, sx = hs / h, ws / w
        half = self.geometry.window / 2
        cy, cx = 16.0 * yx[:, 0], 16.0 * yx[:, 1]
        return torch.stack([(cx - half) / sx, (cy - half) / sy, (cx + half) / sx, (cy + half) / sy], 1)

    def _select_windows_traced(self, image, top_n, refine, base_size) -> WindowSet:
        """:meth:`select_windows` for export: no data-dependent Python (counts are tensors, each
        scale's windows gathered, skip features over the whole map, crops by indexing)."""
        per_scale, idx, logits = self.dense_windows(image, base_size)
        n = torch.clamp(torch._shape_as_tensor(logits)[0], max=top_n or self.top_n)
        order = logits.topk(n).indices
        idx, logits = idx[order], logits[order]
        h, w = image.shape[-2:]
        c, win = self.geometry.context, self.geometry.window
        positions, boxes, masks = [], [], []
        for k, state in enumerate(per_scale):
            sel = (idx[:, 0] == k).nonzero().squeeze(1)
            yx = idx[sel, 1:]
            boxes.append(self._window_boxes(yx, state["size"], (h, w)))
            emb = state["emb"][:, yx[:, 0], yx[:, 1]].t()
            if not refine:
                masks.append(self.head.masks(emb).float())
            else:
                skips = []
                for skip, name, t in zip(self.refinement.skips, self.refinement.skip_features, self.refinement.strides):
                    s_map = skip(state["feats"][name])[0]
                    r = torch.arange(win // t, device=yx.device)
                    rows = ((16 * yx[:, 0] + c) // t)[:, None] + r
                    cols = ((16 * yx[:, 1] + c) // t)[:, None] + r
                    skips.append(s_map[:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3))
                masks.append(self.refinement.top_down(self.refinement.encode(emb), skips).float())
            positions.append(sel)
        back = torch.argsort(torch.cat(positions))  # each window back to its rank
        return WindowSet(logits, torch.cat(boxes)[back], torch.cat(masks)[back], (h, w))

    # export: raw windows are box-relative masks pasted (not clipped) as segments, see inference()
    export_postprocess = "segments"

    def windows_to_instances(self, windows: WindowSet, output_size) -> Instances:
        """Paste the window masks into an (oh, ow) image at MASK_THRESH; tight boxes; drop
        empty masks; optional box NMS."""
        return paste_segments(windows.boxes, windows.masks.sigmoid(), windows.logits, windows.image_size, output_size,
                              self.mask_thresh, self.nms_thresh)

    def propose_boxes(self, image, output_size, top_n=None, base_size=None):
        """Box proposals of a normalized image without pasting masks: each selected mask's
        tight box in its window (thresholded at MASK_THRESH), mapped to ``output_size`` and
        clipped; windows whose mask is empty are dropped. ``base_size`` as in
        :meth:`select_windows`. Returns (boxes, objectness logits)."""
        windows = self.select_windows(image, top_n=top_n, base_size=base_size)
        oh, ow = output_size
        h, w = windows.image_size
        fg = windows.masks.sigmoid() >= self.mask_thresh
        keep = fg.flatten(1).any(1)
        fg, win, logits = fg[keep], windows.boxes[keep], windows.logits[keep]
        tight = mask_tight_boxes(fg, torch.zeros((len(fg), 4), device=fg.device)) / fg.shape[-1]  # window fractions
        size = win[:, 2:] - win[:, :2]
        boxes = torch.cat([win[:, :2] + tight[:, :2] * size, win[:, :2] + tight[:, 2:] * size], 1)
        boxes = Boxes(boxes * boxes.new_tensor([ow / w, oh / h, ow / w, oh / h]))
        boxes.clip((oh, ow))
        keep = boxes.nonempty()
        return boxes[keep], logits[keep]

    @torch.no_grad()
    def inference(self, batched_inputs: List[Dict], do_postprocess: bool = True):
        """Segment proposals per image; with ``do_postprocess=False`` the raw windows (what export
        traces): ``Instances`` of the input size with the windows' ``pred_boxes`` (the region each
        mask covers), ``scores``, ``pred_classes`` (0) and ``pred_masks`` (N, 1, M, M) probabilities,
        which :func:`segzoo.modeling.layers.paste_segments` turns into the postprocessed result."""
        results = []
        for d in batched_inputs:
            image = self.normalize(d["image"])
            h, w = image.shape[-2:]
            windows = self.select_windows(image)
            if not do_postprocess:
                results.append(Instances((h, w), pred_boxes=Boxes(windows.boxes), scores=windows.logits.sigmoid(),
                                         pred_classes=torch.zeros_like(windows.logits, dtype=torch.long),
                                         pred_masks=windows.masks.sigmoid()[:, None]))
                continue
            size = (d.get("height", h), d.get("width", w))
            results.append({"instances": self.windows_to_instances(windows, size)})
        return results


def _summed_bce(logits, target):
    """Soft-margin (binary logistic) loss of (N, ...) logits: each sample's mean over its
    elements, summed over the N samples; 0 (still in the graph) when there are none."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss.flatten(1).mean(1).sum() if loss.dim() > 1 else loss.sum()
