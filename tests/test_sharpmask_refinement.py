"""SharpMask's two refinement topologies: the authors' code (default) and the paper's text."""
import math

import numpy as np
import pytest
import torch

from model_inputs import config, model_from, train_step

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from segzoo.errors import ConfigError
from sharpmask import SharpMaskDatasetMapper

DEEPMASK = "configs/SharpMask/shapes_deepmask_R_18.yaml"
SHARPMASK = "configs/SharpMask/shapes_sharpmask_R_18.yaml"


def _convs(seq):
    return [m for m in seq if isinstance(m, torch.nn.Conv2d)]


def test_reference_refinement_topology():
    model = model_from(SHARPMASK).eval()  # the default
    ref = model.refinement
    assert ref.topology == "reference" and ref.upsample_mode == "nearest" and not hasattr(ref, "merges")
    trunk = model.trunk.channels
    for i, (name, c) in enumerate(zip(["res4", "res3", "res2", "conv1"], [32, 16, 8, 4])):
        skip = _convs(ref.skips[i])
        hidden = 32 if name == "conv1" else 64  # the conv1 skip narrowed 64 -> 32
        assert [(m.in_channels, m.out_channels) for m in skip] == [(trunk[name], hidden), (hidden, c), (c, c // 2)]
        vert = _convs(ref.verticals[i])
        assert [(m.in_channels, m.out_channels) for m in vert] == [(c, c), (c, c // 2)]
        assert all(m.padding_mode == "replicate" for m in skip + vert)
    assert (ref.predictor.in_channels, ref.predictor.padding_mode, ref.skip_halo) == (2, "replicate", 3)
    # symmetric padding by one (= edge replication): a constant map stays constant through a conv
    with torch.no_grad():
        out = ref.verticals[0][0](torch.full((1, 32, 10, 10), 0.7))
    assert float(out.std(dim=(2, 3)).max()) < 1e-5
    # stage i: M^{i+1} = nearest_x2(ReLU(S^i + V^i)) — what the second stage receives
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2, 512, generator=g)
    skips = [torch.randn(2, c // 2, 10 * 2 ** i, 10 * 2 ** i, generator=g) for i, c in enumerate([32, 16, 8, 4])]
    seen = {}
    ref.verticals[1].register_forward_pre_hook(lambda mod, inp: seen.setdefault("m2", inp[0].detach().clone()))
    with torch.no_grad():
        ref(emb, skips)
        m1 = ref.encode(emb)
        expected = torch.relu(skips[0] + ref.verticals[0](m1)).repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(seen["m2"], expected)


def test_paper_refinement_topology():
    model = model_from(SHARPMASK, "MODEL.SHARPMASK.REFINEMENT_TOPOLOGY", "paper").eval()
    ref = model.refinement
    assert ref.topology == "paper" and ref.upsample_mode == "bilinear" and not hasattr(ref, "verticals")
    for i, (name, c) in enumerate(zip(["res4", "res3", "res2", "conv1"], [32, 16, 8, 4])):
        skip = _convs(ref.skips[i])
        assert [(m.in_channels, m.out_channels) for m in skip] == [(model.trunk.channels[name], 64), (64, c)]
        assert (ref.merges[i].in_channels, ref.merges[i].out_channels) == (2 * c, c // 2)  # concat(S, M)
        assert all(m.padding_mode == "zeros" for m in skip + [ref.merges[i]])
    assert ref.skip_halo == 2
    with pytest.raises(ConfigError, match="REFINEMENT_TOPOLOGY"):
        model_from(SHARPMASK, "MODEL.SHARPMASK.REFINEMENT_TOPOLOGY", "deconv")


@pytest.mark.parametrize("topology,init,expected", [("reference", "auto", "authors"), ("paper", "auto", "he"),
                                                      ("reference", "he", "he"), ("paper", "authors", "authors")])
def test_refinement_init(topology, init, expected):
    ref = model_from(SHARPMASK, "MODEL.SHARPMASK.REFINEMENT_TOPOLOGY", topology,
                     "MODEL.SHARPMASK.REFINE_INIT", init).refinement
    conv = _convs(ref.skips[0])[0]  # res4 (128 channels here) -> 64: fan-in 1152, fan-out 576
    bound = 1 / math.sqrt(conv.in_channels * 9)
    w = conv.weight.detach()
    if expected == "authors":  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the authors' (Torch7's default)
        assert float(w.abs().max()) <= bound and float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert float(conv.bias.abs().max()) > 0
    else:  # He (MSRA, fan-out): N(0, 2 / fan_out), zero bias
        assert float(w.std()) == pytest.approx(math.sqrt(2 / (conv.out_channels * 9)), rel=0.05)
        assert float(conv.bias.abs().max()) == 0
    assert float(ref.predictor.weight.abs().max()) < 0.005  # N(0, 0.001) (18 weights), not U(+-0.24)
    if init == "auto":
        with pytest.raises(ConfigError, match="REFINE_INIT"):
            model_from(SHARPMASK, "MODEL.SHARPMASK.REFINE_INIT", "xavier")


@pytest.mark.parametrize("topology", ["reference", "paper"])
def test_stage2_trains_only_the_refinement_in_both_topologies(tmp_path, topology):
    stage1 = model_from(DEEPMASK)
    torch.save({"model": stage1.state_dict()}, tmp_path / "stage1.pth")
    # each topology's own init ("auto"; the shapes config picks He for AdamW): plain SGD here
    cfg = config(SHARPMASK, "MODEL.WEIGHTS", str(tmp_path / "stage1.pth"), "MODEL.SHARPMASK.REFINEMENT_TOPOLOGY", topology,
                 "MODEL.SHARPMASK.REFINE_INIT", "auto")
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("refinement.")}
    refine_before = {k: v.clone() for k, v in model.refinement.state_dict().items()}
    mapper = SharpMaskDatasetMapper(cfg, True)
    mapper.sampler.samples_per_image = 4
    np.random.seed(0)
    batch = [mapper(d) for d in DatasetCatalog.get("shapes_train")[:2]]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005)
    first = None
    for _ in range(6):
        losses = train_step(model, batch)
        first = first or losses
        opt.step()
    assert losses["loss_mask_refined"] < first["loss_mask_refined"]
    after = model.state_dict()
    for k, v in frozen.items():
        assert torch.equal(after[k], v), k
    changed = [k for k, v in refine_before.items() if not torch.equal(model.refinement.state_dict()[k], v)]
    assert len(changed) == len(refine_before)  # every refinement weight trained
