"""Every method on a CUDA device (skipped without one; run by tools/gpu_kit/run.sh): inference
with n forced detections in fp32 and under fp16 autocast, and a few iterations of Detectron2's AMP
training (``SOLVER.AMP.ENABLED``) with finite losses."""
import json

import pytest
import torch

from helpers import REPO, run_train_net
from segzoo.benchmark import build_model_from, random_inputs
from segzoo.zoo import Harness, detections_opts, methods
from segzoo.zoo.bench import method_opts

pytestmark = pytest.mark.cuda

AMP_TRAINING = {  # one config per meta-architecture / training stage
    "mask_rcnn": "configs/MaskRCNN/shapes_R_18_FPN_pooler_ROIAlignV2.yaml",
    "blendmask": "configs/BlendMask/shapes_R_18.yaml",
    "rdsnet": "configs/RDSNet/shapes_R_18.yaml",
    "retinanet_gn": "configs/RDSNet/shapes_RetinaNet_GN_R_18.yaml",
    "deepmask": "configs/SharpMask/shapes_deepmask_R_18.yaml",
    "sharpmask": "configs/SharpMask/shapes_sharpmask_R_18.yaml",
}


@pytest.mark.parametrize("name", list(methods()))
def test_cuda_inference_fp32_and_fp16_autocast(name, tmp_path):
    m = methods()[name]
    torch.manual_seed(0)
    n = 37
    model, _ = build_model_from(m.config_file, [*method_opts(m, Harness(), str(tmp_path)), *detections_opts(m, n),
                                                "MODEL.DEVICE", "cuda"])
    for autocast in (False, True):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            out = model(random_inputs(256, "cuda"))[0]["instances"]
        assert len(out) == n, autocast
        assert out.pred_boxes.tensor.is_cuda and torch.isfinite(out.pred_boxes.tensor).all()
        if m.kind != "boxes":
            assert out.pred_masks.shape[-2:] == (256, 256)


@pytest.mark.parametrize("name", list(AMP_TRAINING))
def test_amp_training_on_cuda(name, tmp_path):
    r = run_train_net(["--config-file", AMP_TRAINING[name], "MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", "True",
                       "SOLVER.MAX_ITER", "20", "SOLVER.WARMUP_ITERS", "5", "SOLVER.CHECKPOINT_PERIOD", "1000",
                       "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "2", "MODEL.WEIGHTS", "",
                       "OUTPUT_DIR", str(tmp_path)], cwd=REPO)
    assert r.returncode == 0, r.stdout[-4000:]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    losses = [v for row in metrics for k, v in row.items() if k.startswith("loss_") or k == "total_loss"]
    assert losses and all(v == v and abs(v) < 1e6 for v in losses), metrics[-1]
