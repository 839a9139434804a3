"""Config keys of the DeepMask / SharpMask plugin (``MODEL.SHARPMASK``)."""
__all__ = ["add_sharpmask_config"]


def add_sharpmask_config(cfg) -> None:
    """Add ``MODEL.SHARPMASK`` (architecture, patch sampling, losses, dense inference)."""
    if "SHARPMASK" in cfg.MODEL:
        return
    CN = type(cfg)  # nodes of the same class as the root, so yaml merges type-check
    cfg.MODEL.SHARPMASK = CN()
    s = cfg.MODEL.SHARPMASK
    # 1: DeepMask-ours (trunk + score + coarse mask are trained, no refinement modules);
    # 2: SharpMask (refinement modules added and trained; trunk, score and coarse mask frozen).
    s.STAGE = 1
    # --- trunk (a Detectron2 ResNet, MODEL.RESNETS.*, run through res4) ---
    s.TRUNK_FEATURE = "res4"  # stride-16 feature the 10x10 "fully connected" layer reads
    s.TRUNK_REDUCE_DIM = 128  # 1x1 conv after res4
    s.EMBED_DIM = 512  # the 10x10 conv ("fully connected" over the window): the shared vector
    s.SCORE_HIDDEN_DIM = 1024
    s.SCORE_DROPOUT = 0.5
    s.MASK_SIZE = 56  # coarse mask: linear 512 -> MASK_SIZE^2
    s.REFLECT_PADDING = True  # reflect instead of zero padding in every trunk conv
    # --- refinement (schedule b: k_m = k_s = K / 2^(i-1)) ---
    # "reference": the authors' code (skip path 3 convs, mask path conv + ReLU + conv, merge by
    # addition, symmetric padding, nearest upsampling, conv1 skip narrowed to REFINE_SKIP_DIM / 2);
    # "paper": the paper's text (skip path 2 convs, concat + conv, zero padding, bilinear)
    s.REFINEMENT_TOPOLOGY = "reference"
    # refinement conv init: "authors" (PyTorch's default U(+-1/sqrt(fan_in)) = Torch7's, the authors';
    # safe under their plain SGD), "he" (faster with AdamW), "auto": authors for "reference", he for "paper"
    s.REFINE_INIT = "auto"
    s.REFINE_K = 32
    s.REFINE_SKIP_DIM = 64  # width of the first 3x3 skip conv
    s.SKIP_FEATURES = ["res4", "res3", "res2", "conv1"]  # strides 16, 8, 4, 2
    # --- patch geometry ---
    s.WINDOW = 160  # the patch the mask covers; the trunk sees WINDOW + 2 * CONTEXT
    s.CONTEXT = 16
    s.CANONICAL_SIZE = 92.0  # max side of a centred object in the window
    # --- patch sampling (training) ---
    s.SAMPLES_PER_IMAGE = 4
    s.MASK_SAMPLE_FRACTION = 0.5  # the rest are score samples, half positive, half negative
    # how mask samples pick their instance: "category" (the authors': a category uniformly, then
    # one of its usable instances in the whole training set, from any image) or "image" (a usable
    # instance of the image being mapped; instances of frequent categories dominate)
    s.MASK_SAMPLING = "category"
    s.SCALE_JITTER = 0.25  # log2: mask/positive samples at canonical * 2^U(-j, j)
    s.SHIFT_JITTER = 16.0  # px, in the window
    s.NEG_SCALE_RANGE = [-3.0, 2.0]  # log2 of the image scale of negative windows (uniform)
    s.NEG_SHIFT_MARGIN = 32.0  # negatives are farther than this from every object centre ...
    s.NEG_SCALE_MARGIN = 1.0  # ... or more than 2^this off its canonical scale
    s.MIN_INSTANCE_AREA = 100.0  # instances usable as mask samples
    s.MIN_INSTANCE_SIDE = 5.0
    s.FLIP_PROB = 0.5
    # --- losses (sums over samples: mask = sum of per-sample pixel means, score = weight x sum) ---
    s.SCORE_LOSS_WEIGHT = 1.0 / 32
    s.COARSE_LOSS_SIZE = 112  # the 56x56 coarse logits are upsampled to this for the loss
    # --- dense inference ---
    s.TEST = CN()
    s.TEST.SCALES = [2 ** -2.5, 2 ** -2.0, 2 ** -1.5, 2 ** -1.0, 2 ** -0.5, 2 ** 0.0, 2 ** 0.5]
    s.TEST.TOP_N = 1000  # windows kept across scales (and refined, for stage 2)
    s.TEST.REFINE = True  # False: the coarse DeepMask masks of the same checkpoint
    s.TEST.MASK_THRESH = 0.2
    s.TEST.NMS_THRESH = 1.0  # box NMS on the mask boxes; 1.0 = off (as the authors)
    # windows per top-down pass; 0 = auto: 16 on the CPU (the pass is memory-bound and small,
    # cache-resident batches run several times faster), all at once on a GPU
    s.TEST.REFINE_BATCH = 0
    # Proposal generator (SharpMaskProposals): checkpoint of a trained DeepMask/SharpMask model.
    s.PROPOSAL_CONFIG = ""  # its config file
    s.PROPOSAL_WEIGHTS = ""
    s.PROPOSAL_TOPK_TRAIN = 1000
    s.PROPOSAL_TOPK_TEST = 1000
