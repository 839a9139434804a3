"""LazyConfig: Detectron2's own Mask R-CNN R50-FPN 1x (COCO, its model zoo's
``COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py``) with the box and mask heads pooling through
segzoo's RoIAlign-family op. The yaml twin is mask_rcnn_R_50_FPN_1x.yaml with
``MODEL.ROI_HEADS.NAME AlignFamilyROIHeads``. Other pooler types: ``model.roi_heads.box_pooler.pooler_type=ROIAlign``
(any of ROIPool, ROIWarp, ROIAlign, ROIAlignMax, ROIAlignV2) and the same for ``mask_pooler``.

    python tools/lazyconfig_train_net.py --config-file configs/MaskRCNN/mask_rcnn_R_50_FPN_1x.py --num-gpus 8
"""
from detectron2.model_zoo import get_config

import maskrcnn_roialign  # noqa: F401  (the plugin: registers AlignFamilyROIHeads for the yaml twin)
from segzoo.modeling import ROIPooler

_d2 = get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
model, dataloader, optimizer, lr_multiplier, train = (
    _d2.model, _d2.dataloader, _d2.optimizer, _d2.lr_multiplier, _d2.train
)
model.roi_heads.box_pooler._target_ = ROIPooler
model.roi_heads.mask_pooler._target_ = ROIPooler
train.output_dir = "./output/MaskRCNN/mask_rcnn_R_50_FPN_1x"
