"""LazyConfig (Python) configs: each builds the model of its yaml twin (same parameter names and
shapes; with the twin's weights, the same detections), trains a step from its own dataloader and
optimizer, and trains with Detectron2's tools/lazyconfig_train_net.py."""
import glob
import os
import sys

import pytest
import torch
from omegaconf import ListConfig

from detectron2.config import LazyConfig, instantiate

from helpers import REPO, SHARED, run_watched
from segzoo.benchmark import build_model_from, random_inputs

# lazy config -> its yaml twin (+ overrides)
TWINS = {
    "MaskRCNN/shapes_R_18_FPN_pooler_ROIAlignV2.py": ("MaskRCNN/shapes_R_18_FPN_pooler_ROIAlignV2.yaml", []),
    "MaskRCNN/mask_rcnn_R_50_FPN_1x.py": ("MaskRCNN/mask_rcnn_R_50_FPN_1x.yaml",
                                         ["MODEL.ROI_HEADS.NAME", "AlignFamilyROIHeads"]),
    "BlendMask/shapes_R_18.py": ("BlendMask/shapes_R_18.yaml", []),
    "BlendMask/R_50_1x.py": ("BlendMask/R_50_1x.yaml", []),
    "RDSNet/shapes_R_18.py": ("RDSNet/shapes_R_18.yaml", []),
    "RDSNet/R_50_1x.py": ("RDSNet/R_50_1x.yaml", []),
    "SharpMask/shapes_deepmask_R_18.py": ("SharpMask/shapes_deepmask_R_18.yaml", []),
    "SharpMask/shapes_sharpmask_R_18.py": ("SharpMask/shapes_sharpmask_R_18.yaml", []),
    "SharpMask/deepmask_R_50.py": ("SharpMask/deepmask_R_50.yaml", []),
    "SharpMask/sharpmask_R_50.py": ("SharpMask/sharpmask_R_50.yaml", []),
}
# untrained models detect little: both twins compared with every candidate kept (lazy overrides, yaml opts)
ALL_DETECTIONS = {
    "MaskRCNN": (["model.roi_heads.box_predictor.test_score_thresh=0.0"], ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]),
    "BlendMask": (["model.score_thresh_test=0.0"], ["MODEL.FCOS.INFERENCE_TH_TEST", "0.0"]),
    "RDSNet": (["model.test_score_thresh=0.0"], ["MODEL.RETINANET.SCORE_THRESH_TEST", "0.0"]),
    # segment proposals: no score threshold; the top 100 windows (of 1,000), each refined and pasted
    "SharpMask": (["model.top_n=100"], ["MODEL.SHARPMASK.TEST.TOP_N", "100"]),
}
# evaluation of an untrained model kept short: one pyramid scale, the top 50 windows
QUICK_EVAL = {
    "SharpMask": ["model.scales=[1.0]", "model.top_n=50"],
    # after two iterations the focal-loss prior (0.01) keeps every score under the 0.05 threshold:
    # keep all detections so both evaluations (bbox and segm) run
    "BlendMask": ["model.score_thresh_test=0.0"],
    "RDSNet": ["model.test_score_thresh=0.0"],
}
# what each evaluates (COCO AP, or segment-proposal AR)
TASKS = {"SharpMask": ("box_proposals", "segm_proposals")}
# the ones trained here (the shapes regime; COCO configs train on COCO). SharpMask's stage 2 starts
# from stage 1's checkpoint: trained here from scratch (train.init_checkpoint="")
TRAINABLE = [name for name in TWINS if "shapes" in name]


def _plain(v, depth=0):
    """A comparable value: objects (a box transform, a matcher) by their type and attributes;
    OmegaConf lists (Detectron2's ``instantiate`` keeps them) as lists."""
    if isinstance(v, ListConfig):
        v = list(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x, depth) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x, depth) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        return tuple(v.shape)
    if hasattr(v, "__dict__") and not callable(v) and depth < 3:
        return type(v).__name__, _plain({k: x for k, x in vars(v).items() if not k.startswith("_")}, depth + 1)
    return v if isinstance(v, (int, float, str, bool, type(None))) else type(v).__name__


def _settings(model):
    """Every module's plain (non-tensor, non-module) attributes: thresholds, strides, scales..."""
    out = {f"{name}.{k}": _plain(v) for name, m in model.named_modules() for k, v in vars(m).items()
           if not k.startswith("_") and k != "training" and not isinstance(v, (torch.Tensor, torch.nn.Module))}
    for k, v in out.items():  # FastRCNNOutputLayers weighs a loss missing from loss_weight by 1.0
        if k.endswith("box_predictor.loss_weight") and isinstance(v, dict):
            out[k] = {"loss_cls": 1.0, "loss_box_reg": 1.0, **v}
    return out


def _load(name, *overrides):
    cfg = LazyConfig.load(os.path.join(REPO, "configs", name))
    return LazyConfig.apply_overrides(cfg, list(overrides))


@pytest.mark.parametrize("name", list(TWINS))
def test_lazy_config_has_what_lazyconfig_train_net_reads(name):
    cfg = _load(name)
    assert {"model", "dataloader", "optimizer", "lr_multiplier", "train"} <= set(cfg), sorted(cfg)
    assert {"train", "test", "evaluator"} <= set(cfg.dataloader), sorted(cfg.dataloader)
    scheduler = cfg.lr_multiplier.get("scheduler", cfg.lr_multiplier)  # inside a warm-up, or not
    assert scheduler.get("num_updates", cfg.train.max_iter) == cfg.train.max_iter


@pytest.mark.parametrize("name", list(TWINS))
def test_lazy_config_builds_its_yaml_twin(name):
    config, opts = TWINS[name]
    lazy_all, yacs_all = ALL_DETECTIONS[name.split("/")[0]]
    torch.manual_seed(0)
    lazy = instantiate(_load(name).model).eval()
    yacs, _ = build_model_from(os.path.join(REPO, "configs", config), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts])
    shapes = {k: tuple(v.shape) for k, v in lazy.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in yacs.state_dict().items()}
    # buffers a checkpoint does not carry (anchors) must be equal by value
    kept = set(lazy.state_dict())
    volatile = {k: v for k, v in lazy.named_buffers() if k not in kept}
    yacs_buffers = dict(yacs.named_buffers())
    assert set(volatile) == {k for k in yacs_buffers if k not in kept}
    for k, v in volatile.items():
        torch.testing.assert_close(v, yacs_buffers[k], rtol=0, atol=0, msg=k)
    a, b = _settings(lazy), _settings(yacs)
    assert a == b, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    # the same detections with the same weights, every candidate kept
    lazy = instantiate(_load(name, *lazy_all).model).eval()
    yacs, _ = build_model_from(os.path.join(REPO, "configs", config),
                               ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts, *yacs_all])
    lazy.load_state_dict(yacs.state_dict())
    x = random_inputs(256, count=2)
    with torch.no_grad():
        a, b = lazy(x), yacs(x)
    for ra, rb in zip(a, b):
        ia, ib = ra["instances"], rb["instances"]
        assert len(ia) == len(ib) > 0
        torch.testing.assert_close(ia.pred_boxes.tensor, ib.pred_boxes.tensor)
        torch.testing.assert_close(ia.scores, ib.scores)
        assert torch.equal(ia.pred_classes, ib.pred_classes)
        if ib.has("pred_masks"):
            assert torch.equal(ia.pred_masks, ib.pred_masks)


# how an optimizer runs, not what it computes (Detectron2 main's yacs SGD sets foreach=True)
IMPLEMENTATION_KEYS = {"params", "foreach", "fused", "capturable", "differentiable"}


def _param_groups(optimizer, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return sorted((tuple(sorted(names[id(p)] for p in g["params"])),
                   tuple(sorted((k, str(v)) for k, v in g.items() if k not in IMPLEMENTATION_KEYS)))
                  for g in optimizer.param_groups)


@pytest.mark.parametrize("name", list(TWINS))
def test_lazy_config_trains_as_its_yaml_twin(name):
    """Same optimizer (class, clipping, parameter groups and their hyper-parameters), learning-rate
    curve, iterations, batch, checkpoint period, initial weights and datasets as the yaml twin."""
    from detectron2.solver import build_lr_scheduler

    from segzoo.engine.optim import build_optimizer

    config, opts = TWINS[name]
    cfg = _load(name)
    torch.manual_seed(0)
    lazy = instantiate(cfg.model)
    yacs, ycfg = build_model_from(os.path.join(REPO, "configs", config), ["MODEL.DEVICE", "cpu", *opts])
    cfg.optimizer.params.model = lazy
    opt_lazy, opt_yacs = instantiate(cfg.optimizer), build_optimizer(ycfg, yacs)
    assert type(opt_lazy).__name__ == type(opt_yacs).__name__
    assert _param_groups(opt_lazy, lazy) == _param_groups(opt_yacs, yacs)
    # the learning-rate factor along the schedule
    sched = build_lr_scheduler(ycfg, opt_yacs)
    multiplier = instantiate(cfg.lr_multiplier)
    n = ycfg.SOLVER.MAX_ITER
    points = sorted({0, 1, ycfg.SOLVER.WARMUP_ITERS // 2, ycfg.SOLVER.WARMUP_ITERS, n - 1}
                    | {s + d for s in ycfg.SOLVER.STEPS for d in (-1, 0, 1)})
    for i in points:
        assert multiplier(i / n) == pytest.approx(sched._multiplier(i / n), rel=1e-6, abs=1e-12), i
    assert cfg.train.max_iter == n
    assert cfg.train.checkpointer.period == ycfg.SOLVER.CHECKPOINT_PERIOD
    assert cfg.dataloader.train.total_batch_size == ycfg.SOLVER.IMS_PER_BATCH
    assert cfg.train.init_checkpoint == ycfg.MODEL.WEIGHTS
    assert [cfg.dataloader.train.dataset.names] == list(ycfg.DATASETS.TRAIN)
    assert cfg.dataloader.test.dataset.names == ycfg.DATASETS.TEST[0]
    if ycfg.SOLVER.CLIP_GRADIENTS.ENABLED:
        assert cfg.optimizer.max_norm == ycfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE


@pytest.mark.parametrize("name", TRAINABLE)
def test_lazy_config_trains_a_step(name):
    cfg = _load(name, "dataloader.train.num_workers=0", "dataloader.train.total_batch_size=2", "train.init_checkpoint=")
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    from detectron2.utils.events import EventStorage

    with EventStorage():
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0, losses
    optimizer.zero_grad()
    total.backward()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def _lazyconfig_train_net():
    archives = sorted(glob.glob(os.path.join(SHARED, "vendor", "detectron2-*.tar.gz")))
    if not archives:
        pytest.skip(f"no Detectron2 source archive in {os.path.join(SHARED, 'vendor')} (../shared is absent)")
    return archives[-1]


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINABLE)
def test_lazyconfig_train_net_trains_and_evaluates(name, tmp_path):
    import tarfile

    archive = _lazyconfig_train_net()
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("tools/lazyconfig_train_net.py"))
        tar.extract(member, tmp_path, filter="data")
    tool = tmp_path / member.name
    out = tmp_path / "out"
    r = run_watched(
        [sys.executable, str(tool), "--config-file", os.path.join(REPO, "configs", name),
         "train.max_iter=2", "train.seed=0", "train.init_checkpoint=", f"train.output_dir={out}", "train.device=cpu",
         "train.eval_period=0",
         "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "dataloader.train.total_batch_size=2",
         *QUICK_EVAL.get(name.split("/")[0], [])],
        cwd=str(tmp_path),
    )
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert os.path.isfile(out / "model_final.pth"), log[-3000:]
    for task in TASKS.get(name.split("/")[0], ("bbox", "segm")):
        assert f"copypaste: Task: {task}" in log, log[-3000:]
