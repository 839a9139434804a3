"""Helpers shared by the tests (paths, train_net.py in a subprocess)."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared"))
TINY_COCO = os.path.join(SHARED, "datasets", "tiny_coco")


# A subprocess is taken as hung when it prints nothing for this long (Detectron2 logs every 20
# iterations and every 5 s of inference: about 10-60 s apart here, ~10x that on a shared machine). Runs
# are bounded by their iterations, not by the clock: a slow machine only makes them longer.
HANG_AFTER = 900


def run_watched(cmd, cwd=None, env=None, hang_after=HANG_AFTER):
    """Run ``cmd`` with stdout and stderr captured together (``.stdout``; ``.stderr`` is ""). It runs
    as long as it needs; one that prints nothing for ``hang_after`` seconds is killed as hung
    (``subprocess.TimeoutExpired`` with what it printed)."""
    import threading
    import time

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    chunks, last = [], [time.monotonic()]

    def read():
        for line in proc.stdout:
            chunks.append(line)
            last[0] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        if time.monotonic() - last[0] > hang_after:
            proc.kill()
            proc.wait()
            reader.join(10)
            raise subprocess.TimeoutExpired(cmd, hang_after, output="".join(chunks))
        time.sleep(0.5)
    reader.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout="".join(chunks), stderr="")


def run_train_net(args, cwd=REPO, env=None, hang_after=HANG_AFTER):
    """Run train_net.py in a subprocess (:func:`run_watched`); return CompletedProcess (stdout+stderr in .stdout)."""
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "2")
    full_env.update(env or {})
    return run_watched([sys.executable, os.path.join(REPO, "train_net.py"), *args], cwd=cwd, env=full_env,
                       hang_after=hang_after)


def run_tool(name, args):
    """Run ``tools/<name>`` from the repository root (:func:`run_watched`)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    return run_watched([sys.executable, os.path.join(REPO, "tools", name), *args], cwd=REPO, env=env)


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
