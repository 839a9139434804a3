"""LazyConfig twin of R_50_1x.yaml: RDSNet, COCO, the authors' rdsnet_r50_fpn_1x: Detectron2's
RetinaNet R50-FPN (P6/P7 from res5) with GN cls / box towers, smooth-L1 beta 0.11, the
object-representation tower (d = 32) and a 256-channel pixel stream at stride 4; Detectron2's COCO
data at a single 800 px scale, SGD at 0.01 (the authors' 0.005 for 8 images, linearly scaled) with
the gradient norm clipped to 35 over the whole model, warm-up from 1/3 over 250 iterations, 1x.

    python tools/lazyconfig_train_net.py --config-file configs/RDSNet/R_50_1x.py --num-gpus 8
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config

from rdsnet import MBRM, PixelStream, RDSNet, RDSNetHead
from segzoo.engine.optim import full_model_clipped

LEVELS = {"p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}  # FPN output -> stride
REPR_DIM = 32

model = get_config("common/models/retinanet.py").model
model.backbone.bottom_up.freeze_at = 2  # stem and res2 frozen (as Detectron2's retinanet_R_50_FPN_1x.py)
model._target_ = RDSNet
model.head._target_ = RDSNetHead
model.head.update(norm="GN", repr_dim=REPR_DIM, repr_num_convs=4, repr_norm="GN")
model.smooth_l1_beta = 0.11
model.pixel_stream = L(PixelStream)(
    input_shape={k: ShapeSpec(channels=256, stride=s) for k, s in LEVELS.items()},
    in_features=["p3", "p4", "p5"],
    conv_dim=256,
    norm="GN",
    repr_dim=REPR_DIM,
)
model.mbrm = L(MBRM)(half_size=4, gamma=0.05, min_sigma=1.0, kernel="authors", prior_cutoff=0.0044)

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper.augmentations[0].short_edge_length = (800,)  # the authors' single scale

optimizer = get_config("common/optim.py").SGD
optimizer._target_ = full_model_clipped
optimizer.optimizer = "torch.optim.SGD"
optimizer.lr = 0.01
optimizer.max_norm = 35.0

lr_multiplier = get_config("common/coco_schedule.py").lr_multiplier_1x
lr_multiplier.warmup_length = 250 / 90000
lr_multiplier.warmup_factor = 1.0 / 3

train = get_config("common/train.py").train
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "./output/RDSNet/R_50_1x"
