"""Config keys of FCOS and BlendMask.

Key names and defaults follow AdelaiDet (``MODEL.FCOS``, ``MODEL.BASIS_MODULE``,
``MODEL.BLENDMASK``), so its yaml files need few changes to run here.
"""
__all__ = ["add_fcos_config", "add_blendmask_config"]


def add_fcos_config(cfg) -> None:
    if "FCOS" in cfg.MODEL:
        return
    CN = type(cfg)  # nodes of the same class as the root, so yaml merges type-check
    _C = cfg
    _C.MODEL.FCOS = CN()
    _C.MODEL.FCOS.NUM_CLASSES = 80
    _C.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # P6/P7 above the FPN (computed from P5) for build_fcos_resnet_fpn_backbone: 0, 1 or 2
    _C.MODEL.FCOS.TOP_LEVELS = 2
    # strides of IN_FEATURES; () = taken from the backbone (if given, they must agree)
    _C.MODEL.FCOS.FPN_STRIDES = []
    # one boundary less than levels: level i takes max(l, t, r, b) in [SOI[i-1], SOI[i]]
    _C.MODEL.FCOS.SIZES_OF_INTEREST = [64, 128, 256, 512]
    _C.MODEL.FCOS.CENTER_SAMPLE = True
    _C.MODEL.FCOS.POS_RADIUS = 1.5
    _C.MODEL.FCOS.PRIOR_PROB = 0.01
    _C.MODEL.FCOS.LOSS_ALPHA = 0.25
    _C.MODEL.FCOS.LOSS_GAMMA = 2.0
    _C.MODEL.FCOS.LOC_LOSS_TYPE = "giou"  # giou | iou
    # head
    # GN = GroupNorm(32); "" or "none" = no norm; BN, SyncBN, FrozenBN: one norm per level
    _C.MODEL.FCOS.NORM = "GN"
    _C.MODEL.FCOS.NUM_CLS_CONVS = 4
    _C.MODEL.FCOS.NUM_BOX_CONVS = 4
    _C.MODEL.FCOS.NUM_SHARE_CONVS = 0
    _C.MODEL.FCOS.CTR_ON_REG = True  # centerness branch on the box tower
    _C.MODEL.FCOS.USE_SCALE = True  # learnable per-level scale of the regression
    _C.MODEL.FCOS.USE_RELU = True  # relu(x) on the regression (else exp)
    # inference
    _C.MODEL.FCOS.INFERENCE_TH_TRAIN = 0.05
    _C.MODEL.FCOS.INFERENCE_TH_TEST = 0.05
    _C.MODEL.FCOS.PRE_NMS_TOPK_TRAIN = 1000
    _C.MODEL.FCOS.PRE_NMS_TOPK_TEST = 1000
    _C.MODEL.FCOS.POST_NMS_TOPK_TRAIN = 100
    _C.MODEL.FCOS.POST_NMS_TOPK_TEST = 100
    _C.MODEL.FCOS.NMS_TH = 0.6
    _C.MODEL.FCOS.THRESH_WITH_CTR = True  # multiply centerness in before the score threshold


def add_blendmask_config(cfg) -> None:
    add_fcos_config(cfg)
    if "BLENDMASK" in cfg.MODEL:
        return
    CN = type(cfg)
    _C = cfg
    # Bottom module (ProtoNet): the K bases at stride 4.
    _C.MODEL.BASIS_MODULE = CN()
    _C.MODEL.BASIS_MODULE.NAME = "ProtoNet"
    _C.MODEL.BASIS_MODULE.NUM_BASES = 4  # K
    _C.MODEL.BASIS_MODULE.IN_FEATURES = ["p3", "p4", "p5"]
    _C.MODEL.BASIS_MODULE.CONVS_DIM = 128
    _C.MODEL.BASIS_MODULE.NUM_CONVS = 3
    _C.MODEL.BASIS_MODULE.NORM = "SyncBN"
    # auxiliary semantic loss, targets built on the fly from the instance masks
    _C.MODEL.BASIS_MODULE.LOSS_ON = True
    _C.MODEL.BASIS_MODULE.LOSS_WEIGHT = 0.3
    _C.MODEL.BASIS_MODULE.COMMON_STRIDE = 8  # stride of the semantic head / targets
    _C.MODEL.BASIS_MODULE.NUM_CLASSES = 80
    _C.MODEL.BASIS_MODULE.ANN_SET = "coco"  # accepted for AdelaiDet yaml; unused
    # Top layer: K*M*M attention channels from the box tower.
    _C.MODEL.TOP_MODULE = CN()
    _C.MODEL.TOP_MODULE.NAME = "conv"
    _C.MODEL.TOP_MODULE.DIM = 16  # accepted for AdelaiDet yaml; the conv outputs K*M*M
    # Blender.
    _C.MODEL.BLENDMASK = CN()
    _C.MODEL.BLENDMASK.ATTN_SIZE = 14  # M
    _C.MODEL.BLENDMASK.TOP_INTERP = "bilinear"  # bilinear | nearest
    _C.MODEL.BLENDMASK.BOTTOM_RESOLUTION = 56  # R
    _C.MODEL.BLENDMASK.POOLER_TYPE = "ROIAlignV2"  # any segzoo.modeling.POOLER_TYPES
    _C.MODEL.BLENDMASK.POOLER_SAMPLING_RATIO = 1
    _C.MODEL.BLENDMASK.POOLER_SCALES = ()  # () = 1 / stride of the bases
    _C.MODEL.BLENDMASK.INSTANCE_LOSS_WEIGHT = 1.0
    _C.MODEL.BLENDMASK.VISUALIZE = False
    # fused: segzoo's C++/CUDA op; composition: interpolate + softmax + sum in PyTorch
    _C.MODEL.BLENDMASK.BLENDER = "fused"
    # cap on positive locations per batch that train the masks (-1: all of them)
    _C.MODEL.BLENDMASK.MAX_PROPOSALS = -1
