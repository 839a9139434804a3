"""Helpers shared by the tests (paths, train_net.py in a subprocess)."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared"))
TINY_COCO = os.path.join(SHARED, "datasets", "tiny_coco")


def run_train_net(args, cwd=REPO, timeout=600, env=None):
    """Run train_net.py in a subprocess; return CompletedProcess (stdout+stderr in .stdout)."""
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "2")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "train_net.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def bf16_agreement(config_file, weights, *opts, num_images=4, top_k=10):
    """Inference of a trained model on the first ``num_images`` of shapes_val in fp32 and under
    CPU bfloat16 autocast. Returns (matched, total): of the ``top_k`` highest-scoring fp32
    detections per image, how many have a bf16 detection of the same class with box IoU >= 0.8,
    mask IoU >= 0.7 (when masks are predicted) and a score within 0.1."""
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.structures import pairwise_iou

    from segzoo.benchmark import build_model_from
    from segzoo.data import CheckedDatasetMapper

    model, cfg = build_model_from(os.path.join(REPO, config_file), ["MODEL.DEVICE", "cpu", *opts], str(weights))
    mapper = CheckedDatasetMapper(cfg, False)
    inputs = [mapper(d) for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])[:num_images]]
    matched = total = 0
    for x in inputs:
        with torch.no_grad():
            a = model([x])[0]["instances"]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                b = model([x])[0]["instances"]
        a = a[a.scores.float().argsort(descending=True)[:top_k]]
        total += len(a)
        if len(a) == 0 or len(b) == 0:
            continue
        iou = pairwise_iou(a.pred_boxes, b.pred_boxes)
        iou[a.pred_classes[:, None] != b.pred_classes[None, :]] = 0
        best_iou, j = iou.max(dim=1)
        ok = (best_iou >= 0.8) & ((a.scores.float() - b.scores.float()[j]).abs() <= 0.1)
        if a.has("pred_masks"):
            ma, mb = a.pred_masks.flatten(1), b.pred_masks[j].flatten(1)
            inter, union = (ma & mb).sum(1).float(), (ma | mb).sum(1).float().clamp(min=1)
            ok &= inter / union >= 0.7
        matched += int(ok.sum())
    return matched, total
