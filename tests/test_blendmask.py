"""BlendMask / FCOS models built from the yaml configs: train steps for every config
family and ablation switch, empty images, zero detections, the fused vs composition
blender, semantic targets and AdelaiDet checkpoint loading."""
import os

import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.structures import BitMasks, Instances, PolygonMasks

from blendmask import convert_adelaidet_state_dict, semantic_targets
from model_inputs import REPO, config, model_from, predict_blank_image, synthetic_batch, synthetic_image, train_step

CONFIGS = "configs/BlendMask"


def _model(name, *opts, seed=0):
    return model_from(f"{CONFIGS}/{name}", *opts, seed=seed)


_image = synthetic_image
_batch = synthetic_batch
_step = train_step


FAMILIES = [
    ("shapes_R_18.yaml", ()),
    ("shapes_550_R_18.yaml", ()),
    ("shapes_RT_R_18.yaml", ()),
    ("shapes_R_18_K1.yaml", ()),
    ("shapes_FCOS_R_18.yaml", ()),
    ("R_50_1x.yaml", ()),
    ("R_50_3x.yaml", ()),
    ("550_R_50_3x.yaml", ()),
    ("RT_R_50_4x.yaml", ()),
    ("R_101_3x.yaml", ("MODEL.BASIS_MODULE.CONVS_DIM", "64")),
]


@pytest.mark.parametrize("name,opts", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_train_step_and_inference_per_config_family(name, opts):
    # threshold 0: an untrained model's scores (prior 0.01) would give no detections
    model = _model(name, "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", *opts)
    losses = _step(model, _batch())
    expected = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    is_blendmask = "FCOS" not in name
    if is_blendmask:
        expected |= {"loss_mask", "loss_semantic"}
    assert set(losses) == expected
    assert all(torch.isfinite(torch.tensor(v)) and v > 0 for v in losses.values()), losses
    if is_blendmask:
        assert model.top_layer.weight.grad.abs().sum() > 0
        assert model.basis_module.tower[-1].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([{k: v for k, v in x.items() if k != "instances"} for x in _batch()])
    assert len(out) == 2
    inst = out[0]["instances"]
    assert inst.image_size == (128, 160) and len(inst) > 0
    if is_blendmask:
        assert inst.pred_masks.shape == (len(inst), 128, 160)
        assert not inst.has("top_feat")


ABLATIONS = [
    (("MODEL.BLENDMASK.TOP_INTERP", "nearest"), lambda m: m.blender.interp == "nearest"),
    (("MODEL.BLENDMASK.POOLER_TYPE", "ROIPool"), lambda m: m.blender.pooler.level_poolers[0].mode == "pool"),
    (("MODEL.BLENDMASK.ATTN_SIZE", "7"), lambda m: m.top_layer.out_channels == 4 * 7 * 7),
    (("MODEL.BLENDMASK.BOTTOM_RESOLUTION", "28"), lambda m: m.blender.resolution == 28),
    (("MODEL.BASIS_MODULE.NUM_BASES", "2"), lambda m: m.basis_module.tower[-1].out_channels == 2),
    (("MODEL.BASIS_MODULE.IN_FEATURES", "['p3']"), lambda m: len(m.basis_module.refine) == 1),
    (("MODEL.BASIS_MODULE.LOSS_ON", "False"), lambda m: not hasattr(m.basis_module, "seg_head")),
    (("MODEL.BLENDMASK.BLENDER", "composition"), lambda m: m.blender.blend_fn.__name__ == "blender_composition"),
]


@pytest.mark.parametrize("opt,check", ABLATIONS, ids=[a[0][0].split(".")[-1] + "=" + a[0][1] for a in ABLATIONS])
def test_ablation_switches(opt, check):
    model = _model("shapes_R_18.yaml", *opt)
    assert check(model)
    losses = _step(model, _batch())
    assert ("loss_semantic" in losses) == (opt != ("MODEL.BASIS_MODULE.LOSS_ON", "False"))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_semantic_loss_weight():
    a = _step(_model("shapes_R_18.yaml"), _batch())["loss_semantic"]
    b = _step(_model("shapes_R_18.yaml", "MODEL.BASIS_MODULE.LOSS_WEIGHT", "0.6"), _batch())["loss_semantic"]
    assert b == pytest.approx(2 * a, rel=1e-5)


def test_fused_and_composition_models_agree():
    fused = _model("shapes_R_18.yaml")
    comp = _model("shapes_R_18.yaml", "MODEL.BLENDMASK.BLENDER", "composition")
    comp.load_state_dict(fused.state_dict())
    la, lb = _step(fused, _batch()), _step(comp, _batch())
    for k in la:
        assert la[k] == pytest.approx(lb[k], abs=1e-5), k
    ga = fused.top_layer.weight.grad
    gb = comp.top_layer.weight.grad
    torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-4)


def test_losses_fall_when_fitting_one_batch():
    model = _model("shapes_R_18.yaml")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = _batch()
    first = last = None
    for i in range(25):
        last = _step(model, batch, i)
        opt.step()
        first = first or last
    assert sum(last.values()) < 0.6 * sum(first.values()), (first, last)
    assert last["loss_mask"] < 0.8 * first["loss_mask"], (first, last)


def test_images_without_instances():
    model = _model("shapes_R_18.yaml")
    empty = _image(128, 128, [], [])
    losses = _step(model, [_batch()[0], empty])
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    losses = _step(model, [empty, _image(96, 128, [], [], seed=3)])
    assert losses["loss_mask"] == 0 and losses["loss_fcos_loc"] == 0
    assert losses["loss_fcos_cls"] > 0 and torch.isfinite(torch.tensor(losses["loss_fcos_cls"]))


def test_zero_detections():
    predict_blank_image(_model("shapes_R_18.yaml", "MODEL.FCOS.INFERENCE_TH_TEST", "1.1"))


def test_semantic_targets_from_instance_masks():
    inst = Instances((16, 16))
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 0:12, 0:12] = True  # big, class 3
    masks[1, 8:16, 8:16] = True  # small, class 1, overlaps the big one at [8:12, 8:12]
    inst.gt_masks = BitMasks(masks)
    inst.gt_classes = torch.tensor([3, 1])
    empty = Instances((16, 16))
    empty.gt_masks = BitMasks(torch.zeros(0, 16, 16, dtype=torch.bool))
    empty.gt_classes = torch.zeros(0, dtype=torch.int64)
    t = semantic_targets([inst, empty], (4, 4), stride=4)  # samples pixels 0, 4, 8, 12
    expected = torch.tensor([[4, 4, 4, 0], [4, 4, 4, 0], [4, 4, 2, 2], [0, 0, 2, 2]])
    assert t[0].tolist() == expected.tolist()
    assert (t[1] == 0).all()
    # polygons (COCO's default mask format) give the same targets
    poly = Instances((16, 16))
    poly.gt_masks = PolygonMasks([[[0, 0, 12, 0, 12, 12, 0, 12]], [[8, 8, 16, 8, 16, 16, 8, 16]]])
    poly.gt_classes = torch.tensor([3, 1])
    assert semantic_targets([poly], (4, 4), stride=4)[0].tolist() == expected.tolist()


def _adelaidet_blendmask_r50_head_keys():
    """Key names and shapes of an AdelaiDet BlendMask R_50 checkpoint (heads and FPN)."""
    keys = {}
    for tower in ("cls_tower", "bbox_tower"):
        for i in range(4):
            keys[f"proposal_generator.fcos_head.{tower}.{3 * i}.weight"] = (256, 256, 3, 3)
            keys[f"proposal_generator.fcos_head.{tower}.{3 * i}.bias"] = (256,)
            keys[f"proposal_generator.fcos_head.{tower}.{3 * i + 1}.weight"] = (256,)
            keys[f"proposal_generator.fcos_head.{tower}.{3 * i + 1}.bias"] = (256,)
    for name, c in (("cls_logits", 80), ("bbox_pred", 4), ("ctrness", 1)):
        keys[f"proposal_generator.fcos_head.{name}.weight"] = (c, 256, 3, 3)
        keys[f"proposal_generator.fcos_head.{name}.bias"] = (c,)
    keys["top_layer.weight"] = (784, 256, 3, 3)
    keys["top_layer.bias"] = (784,)

    def bn(prefix, c):
        for s in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{s}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    for i in range(3):
        keys[f"basis_module.refine.{i}.0.weight"] = (128, 256, 3, 3)
        bn(f"basis_module.refine.{i}.1", 128)
        keys[f"basis_module.tower.{i}.0.weight"] = (128, 128, 3, 3)
        bn(f"basis_module.tower.{i}.1", 128)
    keys["basis_module.tower.4.0.weight"] = (128, 128, 3, 3)
    bn("basis_module.tower.4.1", 128)
    keys["basis_module.tower.5.weight"] = (4, 128, 1, 1)
    keys["basis_module.tower.5.bias"] = (4,)
    keys["basis_module.seg_head.0.weight"] = (128, 256, 3, 3)
    bn("basis_module.seg_head.1", 128)
    keys["basis_module.seg_head.3.weight"] = (128, 128, 3, 3)
    bn("basis_module.seg_head.4", 128)
    keys["basis_module.seg_head.6.weight"] = (81, 128, 1, 1)
    keys["basis_module.seg_head.6.bias"] = (81,)
    for lvl, c in ((3, 512), (4, 1024), (5, 2048)):
        keys[f"backbone.fpn_lateral{lvl}.weight"] = (256, c, 1, 1)
        keys[f"backbone.fpn_lateral{lvl}.bias"] = (256,)
        keys[f"backbone.fpn_output{lvl}.weight"] = (256, 256, 3, 3)
        keys[f"backbone.fpn_output{lvl}.bias"] = (256,)
    for p in ("p6", "p7"):
        keys[f"backbone.top_block.{p}.weight"] = (256, 256, 3, 3)
        keys[f"backbone.top_block.{p}.bias"] = (256,)
    return keys


def test_adelaidet_checkpoint_keys_load(tmp_path):
    model = _model("R_50_1x.yaml")
    ours = model.state_dict()
    adelai_keys = _adelaidet_blendmask_r50_head_keys()
    g = torch.Generator().manual_seed(0)
    adelai = {k: torch.randn(s, generator=g) if s else torch.tensor(7) for k, s in adelai_keys.items()}
    adelai["proposal_generator.fcos_outputs.loc_loss_func.dummy"] = torch.zeros(1)
    # AdelaiDet's backbone keys are Detectron2's: copy ours for the bottom-up part
    for k, v in ours.items():
        if k.startswith("backbone.bottom_up."):
            adelai[k] = torch.randn(v.shape, generator=g) if v.dtype.is_floating_point else v
    converted = convert_adelaidet_state_dict(adelai)
    assert set(converted) == set(ours), (set(converted) ^ set(ours))
    for k, v in converted.items():
        assert tuple(v.shape) == tuple(ours[k].shape), k
    # through Detectron2's checkpointer, with the AdelaiDet names as saved in its .pth files
    path = tmp_path / "adelaidet_blendmask_R_50_1x.pth"
    torch.save({"model": adelai}, path)
    fresh = _model("R_50_1x.yaml", seed=1)
    DetectionCheckpointer(fresh).load(str(path))
    sd = fresh.state_dict()
    torch.testing.assert_close(sd["head.cls_tower.3.weight"], adelai["proposal_generator.fcos_head.cls_tower.3.weight"])
    torch.testing.assert_close(sd["top_layer.weight"], adelai["top_layer.weight"])
    torch.testing.assert_close(sd["basis_module.seg_head.6.bias"], adelai["basis_module.seg_head.6.bias"])
    # fine-tuning on another number of classes: the 80-class layers are skipped, the rest loads
    few = _model("R_50_1x.yaml", "MODEL.FCOS.NUM_CLASSES", "5", "MODEL.BASIS_MODULE.NUM_CLASSES", "5", seed=2)
    before = few.head.cls_logits.weight.detach().clone()
    DetectionCheckpointer(few).load(str(path))
    assert torch.equal(few.head.cls_logits.weight, before)
    torch.testing.assert_close(few.top_layer.weight, adelai["top_layer.weight"])


def test_backbone_is_the_library_fpn_builder_with_top_levels():
    """build_fcos_resnet_fpn_backbone is segzoo's build_slim_resnet_fpn: TOP_LEVELS 2 gives the
    P6/P7 builder's network and weights exactly, 1 a conv P6 from P5, 0 no extra level."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import BACKBONE_REGISTRY
    from detectron2.modeling.backbone.fpn import LastLevelP6P7

    from segzoo.modeling import LastLevelP6

    def build(name, *opts):
        torch.manual_seed(0)
        return BACKBONE_REGISTRY.get(name)(config(f"{CONFIGS}/shapes_R_18.yaml", *opts), ShapeSpec(channels=3))

    fcos, p67 = build("build_fcos_resnet_fpn_backbone"), build("build_slim_resnet_fpn_p67_backbone")
    assert isinstance(fcos.top_block, LastLevelP6P7) and str(fcos) == str(p67)
    a, b = fcos.state_dict(), p67.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 64, 64)
    assert all(torch.equal(u, v) for u, v in zip(fcos(x).values(), p67(x).values()))
    one = build("build_fcos_resnet_fpn_backbone", "MODEL.FCOS.TOP_LEVELS", "1")
    assert isinstance(one.top_block, LastLevelP6) and one.top_block.in_feature == "p5"
    assert list(one.output_shape()) == ["p3", "p4", "p5", "p6"]
    zero = build("build_fcos_resnet_fpn_backbone", "MODEL.FCOS.TOP_LEVELS", "0")
    assert zero.top_block is None and list(zero.output_shape()) == ["p3", "p4", "p5"]


@pytest.mark.parametrize(
    "opts,match",
    [
        (("MODEL.FCOS.FPN_STRIDES", "[8, 16, 32, 64]"), "FPN_STRIDES"),
        (("MODEL.FCOS.SIZES_OF_INTEREST", "[32]"), "SIZES_OF_INTEREST"),
        (("MODEL.BLENDMASK.POOLER_SCALES", "(0.125,)"), "POOLER_SCALES"),
        (("MODEL.BLENDMASK.BLENDER", "cuda"), "BLENDER"),
        (("MODEL.FCOS.LOC_LOSS_TYPE", "l1"), "LOC_LOSS_TYPE"),
        (("MODEL.FCOS.TOP_LEVELS", "3"), "TOP_LEVELS"),
        (("MODEL.BLENDMASK.TOP_INTERP", "bicubic"), "TOP_INTERP"),
        (("MODEL.FCOS.IN_FEATURES", "['p2', 'p3']"), "IN_FEATURES"),
        (("MODEL.BASIS_MODULE.IN_FEATURES", "['p4', 'p5']"), "COMMON_STRIDE"),
    ],
)
def test_bad_config_values_are_named(opts, match):
    with pytest.raises(ValueError, match=match):
        _model("shapes_R_18.yaml", *opts)


def test_converter_tool(tmp_path):
    import subprocess
    import sys

    src = tmp_path / "adelai.pth"
    torch.save({"model": {"proposal_generator.fcos_head.cls_logits.bias": torch.ones(5),
                          "top_layer.bias": torch.zeros(3)}}, src)
    dst = tmp_path / "ours.pth"
    tool = os.path.join(REPO, "tools", "convert_adelaidet_blendmask.py")
    r = subprocess.run([sys.executable, tool, str(src), str(dst)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = torch.load(dst, weights_only=False)["model"]
    assert set(model) == {"head.cls_logits.bias", "top_layer.bias"}
    r = subprocess.run([sys.executable, tool, str(dst), str(tmp_path / "x.pth")], capture_output=True, text=True)
    assert r.returncode != 0 and "no AdelaiDet" in r.stderr


def test_bad_config_value_is_one_line_from_train_net(tmp_path):
    from helpers import run_train_net

    r = run_train_net(["--config-file", "configs/BlendMask/shapes_R_18.yaml", "MODEL.DEVICE", "cpu",
                       "MODEL.FCOS.SIZES_OF_INTEREST", "[32, 64]", "OUTPUT_DIR", str(tmp_path)])
    assert r.returncode == 2, r.stdout[-3000:]
    assert "error: MODEL.FCOS.SIZES_OF_INTEREST needs 4 values for 5 levels" in r.stdout
    assert "Traceback" not in r.stdout
