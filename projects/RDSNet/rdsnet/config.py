"""Config keys of RDSNet (``MODEL.RDSNET``) and its box refinement module (``MODEL.MBRM``).

The detector's own keys stay Detectron2's ``MODEL.RETINANET`` / ``MODEL.ANCHOR_GENERATOR``.
"""
__all__ = ["add_rdsnet_config"]


def add_rdsnet_config(cfg) -> None:
    if "RDSNET" in cfg.MODEL:
        return
    CN = type(cfg)  # nodes of the same class as the root, so yaml merges type-check
    _C = cfg
    _C.MODEL.RDSNET = CN()
    # cls / box towers of the RetinaNet head: conv + HEAD_NORM + ReLU (the authors: GN)
    _C.MODEL.RDSNET.HEAD_NORM = "GN"
    # object stream: a third tower beside cls/box, then A * 2 * REPR_DIM outputs
    _C.MODEL.RDSNET.REPR_DIM = 32  # d
    _C.MODEL.RDSNET.REPR_NUM_CONVS = 4
    _C.MODEL.RDSNET.REPR_NORM = "GN"
    # pixel stream: these levels merged to stride(first) / 2, then a 1x1 conv to REPR_DIM
    _C.MODEL.RDSNET.PIXEL_IN_FEATURES = ["p3", "p4", "p5"]
    _C.MODEL.RDSNET.PIXEL_CONV_DIM = 256
    _C.MODEL.RDSNET.PIXEL_NORM = "GN"
    # cropping: each side grows by max((EXPAND - 1) / 2 * size, MIN_CROP_MARGIN pixels of the
    # grid cropped: the stride-4 embeddings in training, the output image at inference)
    _C.MODEL.RDSNET.CROP_EXPAND_TRAIN = 1.5  # around the assigned GT box; outside ignored
    _C.MODEL.RDSNET.CROP_EXPAND_TEST = 1.2  # around the predicted box; outside set to 0
    _C.MODEL.RDSNET.MIN_CROP_MARGIN = 1.0
    # mask loss
    _C.MODEL.RDSNET.OHEM_NEG_RATIO = 1.0  # negatives kept per foreground pixel (< 0: all)
    _C.MODEL.RDSNET.MIN_MASK_AREA = 100  # instances with mask area <= this (px) train no mask
    _C.MODEL.RDSNET.MAX_POS_PER_IMAGE = 100  # positive anchors sampled per image for masks
    _C.MODEL.RDSNET.MASK_LOSS_WEIGHT = 1.0
    # inference
    _C.MODEL.RDSNET.MASK_THRESH = 0.4
    # boxes reported: "none" = regressed, "mbrm" = refined by MBRM, "direct" = tight box of
    # the mask (the paper's baseline)
    _C.MODEL.RDSNET.BOX_REFINEMENT = "none"

    _C.MODEL.MBRM = CN()
    _C.MODEL.MBRM.KERNEL_HALF = 4  # s: the 1-D kernel has 2s + 1 taps
    _C.MODEL.MBRM.GAMMA = 0.05  # prior sigma = GAMMA * box width (height)
    _C.MODEL.MBRM.MIN_SIGMA = 1.0  # px
    _C.MODEL.MBRM.PRIOR_CUTOFF = 0.0044  # prior set to 0 at or below this (about 3.3 sigma)
    # initial kernel: "authors" = the taps and bias set in the authors' code (learned by them on
    # COCO; usable without a second stage), "step" = a plain step detector
    _C.MODEL.MBRM.KERNEL_INIT = "authors"
    # second training stage: only MBRM learns, everything else frozen (eval mode)
    _C.MODEL.MBRM.TRAIN = False
    _C.MODEL.MBRM.MATCH_IOU = 0.5  # detections that train MBRM: IoU with a GT box >= this
    _C.MODEL.MBRM.LOSS_WEIGHT = 1.0
