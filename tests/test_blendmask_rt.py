"""The real-time BlendMask of AdelaiDet: per-level batch norms in the FCOS head (its
"bn-head" checkpoints load), the RT configs, and the names MODEL.FCOS.NORM accepts."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec

from blendmask import FCOSHead
from blendmask.fcos_head import LevelNorms
from model_inputs import config, model_from
from segzoo.errors import ConfigError

RT = "configs/BlendMask/RT_R_50_4x.yaml"
FCOS = "proposal_generator.fcos_head."


def _bn(keys, prefix, c):
    for s in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{prefix}.{s}"] = (c,)
    keys[f"{prefix}.num_batches_tracked"] = ()


def _conv(keys, prefix, cout, cin, k, bias=True):
    keys[f"{prefix}.weight"] = (cout, cin, k, k)
    if bias:
        keys[f"{prefix}.bias"] = (cout,)


def _adelaidet_rt_bn_head_keys(use_scale=False):
    """Keys and shapes of AdelaiDet's RT_R_50_4x_bn-head_syncbn_shtw model, as its modules
    build them: Detectron2's R-50 with SyncBN and FPN P3-P5; the FCOS head with 3 shared
    tower convs, each followed by one SyncBN per level in a ModuleList (``.<level>.``) and
    a ReLU; ProtoNet with 2 tower convs and the semantic head; the top layer."""
    keys = {}
    # backbone.bottom_up: Detectron2's ResNet-50 (BottleneckBlock, conv without bias + norm)
    bu = "backbone.bottom_up."
    keys[f"{bu}stem.conv1.weight"] = (64, 3, 7, 7)
    _bn(keys, f"{bu}stem.conv1.norm", 64)
    cin = 64
    for stage, (blocks, mid) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512)), start=2):
        cout = mid * 4
        for b in range(blocks):
            p = f"{bu}res{stage}.{b}"
            if b == 0:
                _conv(keys, f"{p}.shortcut", cout, cin, 1, bias=False)
                _bn(keys, f"{p}.shortcut.norm", cout)
            for i, (o, n, k) in enumerate(((mid, cin, 1), (mid, mid, 3), (cout, mid, 1)), start=1):
                _conv(keys, f"{p}.conv{i}", o, n, k, bias=False)
                _bn(keys, f"{p}.conv{i}.norm", o)
            cin = cout
    for lvl, c in ((3, 512), (4, 1024), (5, 2048)):
        _conv(keys, f"backbone.fpn_lateral{lvl}", 256, c, 1)
        _conv(keys, f"backbone.fpn_output{lvl}", 256, 256, 3)
    # FCOS head: share_tower = [conv, ModuleListDial([SyncBN] * levels), ReLU] * 3
    for i in range(3):
        _conv(keys, f"{FCOS}share_tower.{3 * i}", 256, 256, 3)
        for level in range(3):
            _bn(keys, f"{FCOS}share_tower.{3 * i + 1}.{level}", 256)
    for name, c in (("cls_logits", 80), ("bbox_pred", 4), ("ctrness", 1)):
        _conv(keys, f"{FCOS}{name}", c, 256, 3)
    if use_scale:
        for level in range(3):
            keys[f"{FCOS}scales.{level}.scale"] = (1,)
    # BlendMask: top layer (K * M * M = 4 * 14 * 14), ProtoNet (conv without bias + SyncBN)
    _conv(keys, "top_layer", 784, 256, 3)
    for i in range(3):
        _conv(keys, f"basis_module.refine.{i}.0", 128, 256, 3, bias=False)
        _bn(keys, f"basis_module.refine.{i}.1", 128)
    for i in (0, 1, 3):  # tower.2 is the upsampling
        _conv(keys, f"basis_module.tower.{i}.0", 128, 128, 3, bias=False)
        _bn(keys, f"basis_module.tower.{i}.1", 128)
    _conv(keys, "basis_module.tower.4", 4, 128, 1)
    _conv(keys, "basis_module.seg_head.0", 128, 256, 3, bias=False)
    _bn(keys, "basis_module.seg_head.1", 128)
    _conv(keys, "basis_module.seg_head.3", 128, 128, 3, bias=False)
    _bn(keys, "basis_module.seg_head.4", 128)
    _conv(keys, "basis_module.seg_head.6", 81, 128, 1)
    return keys


@pytest.mark.parametrize("use_scale", [False, True], ids=["rt", "rt+scales"])
def test_adelaidet_rt_bn_head_checkpoint_loads(use_scale):
    g = torch.Generator().manual_seed(0)
    adelai = {
        k: torch.randn(s, generator=g) if s else torch.randint(1, 1000, (), generator=g)
        for k, s in _adelaidet_rt_bn_head_keys(use_scale).items()
    }
    model = model_from(RT, "MODEL.FCOS.USE_SCALE", str(use_scale))
    incompatible = model.load_state_dict(adelai, strict=False)
    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == [], incompatible
    head = model.head
    for i, level in ((1, 2), (4, 0), (7, 1)):
        norm = head.share_tower[i][level]
        key = f"{FCOS}share_tower.{i}.{level}."
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(getattr(norm, name), adelai[key + name]), key + name
    assert torch.equal(head.share_tower[3].weight, adelai[f"{FCOS}share_tower.3.weight"])
    assert torch.equal(head.ctrness.bias, adelai[f"{FCOS}ctrness.bias"])
    if use_scale:
        assert torch.equal(head.scales[2].scale, adelai[f"{FCOS}scales.2.scale"])
    bu = model.backbone.bottom_up
    assert torch.equal(bu.res4[5].conv2.norm.running_var, adelai["backbone.bottom_up.res4.5.conv2.norm.running_var"])
    assert torch.equal(model.basis_module.tower[3][1].weight, adelai["basis_module.tower.3.1.weight"])


def _head(norm, share=1, cls=0, box=0, channels=32, levels=3):
    torch.manual_seed(0)
    shapes = [ShapeSpec(channels=channels, stride=8 * 2**i) for i in range(levels)]
    return FCOSHead(shapes, num_classes=3, num_cls_convs=cls, num_box_convs=box, num_share_convs=share,
                    norm=norm, use_scale=False)


def test_bn_head_has_one_norm_per_level():
    head = _head("BN", share=1, cls=2, box=1)
    for tower in (head.share_tower, head.cls_tower, head.bbox_tower):
        norms = [m for m in tower if isinstance(m, LevelNorms)]
        assert norms and all(len(n) == 3 and isinstance(n[0], nn.BatchNorm2d) for n in norms)
        assert all(len({id(m) for m in n}) == 3 for n in norms)
    assert "cls_tower.4.2.running_mean" in head.state_dict()
    assert isinstance(_head("FrozenBN").share_tower[1][0], FrozenBatchNorm2d)


def test_bn_head_forward_uses_each_levels_norm():
    head = _head("BN").eval()
    g = torch.Generator().manual_seed(1)
    for level, bn in enumerate(head.share_tower[1]):
        bn.running_mean.copy_(torch.randn(32, generator=g) * (level + 1))
        bn.running_var.copy_(torch.rand(32, generator=g) + 0.5 * level + 0.1)
        bn.weight.data.copy_(torch.randn(32, generator=g))
        bn.bias.data.copy_(torch.randn(32, generator=g))
    feats = [torch.randn(2, 32, 8 >> i, 8 >> i, generator=g) for i in range(3)]
    with torch.no_grad():
        out = head(feats)
        conv = head.share_tower[0]
        for level, x in enumerate(feats):
            expected, shared = (
                head.cls_logits(F.relu(F.batch_norm(conv(x), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                                    eps=bn.eps)))
                for bn in (head.share_tower[1][level], head.share_tower[1][0])
            )
            torch.testing.assert_close(out["logits"][level], expected)
            if level > 0:
                assert not torch.allclose(out["logits"][level], shared)


def test_bn_head_training_keeps_statistics_per_level():
    head = _head("BN").train()
    feats = [torch.randn(2, 32, 4, 4) + 10 * level for level in range(3)]
    with torch.no_grad():
        head(feats)
        conv = head.share_tower[0]
        for level, x in enumerate(feats):
            bn = head.share_tower[1][level]
            y = conv(x)
            torch.testing.assert_close(bn.running_mean, 0.1 * y.mean(dim=(0, 2, 3)))
            assert int(bn.num_batches_tracked) == 1


def test_shared_norm_state_dict_loads_into_every_level():
    """A state dict saved with one BN per tower position (this head before per-level
    norms) gives every level that norm."""
    head = _head("BN")
    old = {k: v for k, v in head.state_dict().items() if not k.startswith("share_tower.1.")}
    bn = nn.BatchNorm2d(32)
    bn.running_mean.fill_(3.0)
    bn.weight.data.fill_(2.0)
    old.update({f"share_tower.1.{k}": v for k, v in bn.state_dict().items()})
    head.load_state_dict(old, strict=True)
    for level in range(3):
        assert (head.share_tower[1][level].running_mean == 3.0).all()
        assert (head.share_tower[1][level].weight == 2.0).all()


@pytest.mark.parametrize("norm", ["GN", "", "none", "None"])
def test_gn_and_no_norm_heads_keep_their_layout(norm):
    head = _head(norm, share=0, cls=2, box=2)
    keys = set(head.state_dict())
    if norm == "GN":
        assert isinstance(head.cls_tower[1], nn.GroupNorm) and "cls_tower.4.weight" in keys
        assert not any(isinstance(m, LevelNorms) for m in head.modules())
    else:
        assert [type(m) for m in head.cls_tower] == [nn.Conv2d, nn.ReLU] * 2
        assert keys == {f"{t}_tower.{i}.{p}" for t in ("cls", "bbox") for i in (0, 2) for p in ("weight", "bias")} | {
            f"{n}.{p}" for n in ("cls_logits", "bbox_pred", "ctrness") for p in ("weight", "bias")}
    # the towers still run as plain Sequentials
    x = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        assert torch.equal(head([x])["logits"][0], head.cls_logits(head.cls_tower(x)))


def test_none_norm_from_config_builds():
    model = model_from("configs/BlendMask/shapes_FCOS_R_18.yaml", "MODEL.FCOS.NORM", "none")
    assert not any(isinstance(m, (nn.GroupNorm, nn.BatchNorm2d, LevelNorms)) for m in model.head.modules())


@pytest.mark.parametrize("share", [1, 0])
def test_unknown_norm_is_one_config_error_line(share):
    with pytest.raises(ConfigError) as e:
        _head("BatchNorm", share=share)
    msg = str(e.value)
    assert "\n" not in msg and "MODEL.FCOS.NORM" in msg and "'BatchNorm'" in msg, msg


@pytest.mark.parametrize("name", ["Base-RT.yaml", "RT_R_50_4x.yaml"])
def test_rt_configs_load_and_build(name):
    """SyncBN on a CPU in one process: Detectron2's "SyncBN" is torch's nn.SyncBatchNorm,
    which normalises like BatchNorm2d while no process group is initialised, so the model
    builds (and test_blendmask.py runs a training step and inference of RT_R_50_4x on the
    CPU); this test checks the config values and module types."""
    cfg = config(f"configs/BlendMask/{name}")
    assert (cfg.MODEL.FCOS.NORM, cfg.MODEL.FCOS.NUM_SHARE_CONVS, cfg.MODEL.FCOS.NUM_CLS_CONVS) == ("SyncBN", 3, 0)
    assert list(cfg.MODEL.FCOS.IN_FEATURES) == ["p3", "p4", "p5"] and cfg.MODEL.FCOS.TOP_LEVELS == 0
    model = model_from(f"configs/BlendMask/{name}")
    norms = [m for m in model.head.modules() if isinstance(m, LevelNorms)]
    assert len(norms) == 3 and all(len(n) == 3 and isinstance(n[0], nn.SyncBatchNorm) for n in norms)
    bottom_up = model.backbone.bottom_up
    if name == "RT_R_50_4x.yaml":
        assert cfg.MODEL.RESNETS.NORM == "SyncBN" and cfg.MODEL.BACKBONE.FREEZE_AT == -1
        assert isinstance(bottom_up.stem.conv1.norm, nn.SyncBatchNorm)
        assert not any(isinstance(m, FrozenBatchNorm2d) for m in bottom_up.modules())
        assert all(p.requires_grad for p in bottom_up.parameters())


def test_freeze_at_minus_one_on_slim_resnet():
    model = model_from("configs/BlendMask/shapes_RT_R_18.yaml", "MODEL.BACKBONE.FREEZE_AT", "-1")
    assert all(p.requires_grad for p in model.backbone.bottom_up.parameters())
