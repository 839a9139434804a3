"""Plugins declare themselves with one entry point: the installed ones are found, and a new method
is one folder plus one entry-point line (a toy plugin written here, found without touching segzoo)."""
import ast
import os
import re
import subprocess
import sys
import textwrap

import pytest

from segzoo.errors import UserError
from segzoo.plugins import Plugin, import_plugins, plugin_entry_points
from segzoo.zoo import methods

from helpers import REPO, run_watched


def test_installed_plugins_declare_configs_architectures_and_methods():
    from detectron2.modeling import META_ARCH_REGISTRY

    plugins = import_plugins()
    assert set(plugins) == {"maskrcnn_roialign", "blendmask", "rdsnet", "sharpmask"}
    assert {ep.name for ep in plugin_entry_points()} == set(plugins)
    for name, plugin in plugins.items():
        assert isinstance(plugin, Plugin) and plugin.name == name
        for arch in plugin.meta_architectures:
            assert arch in META_ARCH_REGISTRY, (name, arch)
    declared = [m.name for p in plugins.values() for m in p.methods]
    assert list(methods()) == declared and len(declared) == 13
    for m in methods().values():
        assert os.path.isfile(m.config_file), m.config


def _docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                yield first.value


def test_the_library_imports_and_names_no_plugin():
    """segzoo imports nothing from the plugins, tools/ or train_net.py, and no string in its code
    (docstrings aside) names a plugin package."""
    plugins = set(import_plugins())
    forbidden = plugins | {"tools", "train_net"}
    root = os.path.join(REPO, "segzoo")
    checked = 0
    for dirpath, _, files in os.walk(root):
        for f in (f for f in files if f.endswith(".py")):
            path = os.path.join(dirpath, f)
            tree = ast.parse(open(path).read(), path)
            docs = {id(d) for d in _docstrings(tree)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    mods = [node.module or ""] if node.level == 0 else []
                else:
                    mods = []
                assert not [m for m in mods if m.split(".")[0] in forbidden], f"{path}:{node.lineno}"
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                    words = set(re.findall(r"[a-z_]+", node.value))
                    assert not words & plugins, f"{path}:{node.lineno}: {node.value!r}"
            checked += 1
    assert checked > 30


TOY_PACKAGE = '''
"""A toy plugin: one meta-architecture, one config key, one comparison method."""
import os

import segzoo  # noqa: F401
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from segzoo.plugins import Plugin
from segzoo.zoo import Method


@META_ARCH_REGISTRY.register()
class ToyRCNN(GeneralizedRCNN):
    """Mask R-CNN that scales its losses by MODEL.TOY.LOSS_SCALE."""

    def __init__(self, cfg):
        super().__init__(**GeneralizedRCNN.from_config(cfg))
        self.loss_scale = cfg.MODEL.TOY.LOSS_SCALE

    @classmethod
    def from_config(cls, cfg):
        return {"cfg": cfg}

    def forward(self, batched_inputs):
        out = super().forward(batched_inputs)
        return {k: v * self.loss_scale for k, v in out.items()} if self.training else out


def add_toy_config(cfg):
    from detectron2.config import CfgNode

    cfg.MODEL.TOY = CfgNode({"LOSS_SCALE": 1.0})


PLUGIN = Plugin(
    name="toyplugin",
    add_config=add_toy_config,
    meta_architectures=("ToyRCNN",),
    methods=(Method("toy_rcnn", "Toy R-CNN", os.path.join(os.path.dirname(__file__), "shapes_toy.yaml")),),
)
'''

TOY_CHECK = '''
import sys
import segzoo
from segzoo.benchmark import build_model_from
from segzoo.config import load_config
from segzoo.plugins import import_plugins
from segzoo.zoo import Harness, harness_opts, method_order, methods

plugins = import_plugins()
assert "toyplugin" in plugins and len(plugins) == 5, sorted(plugins)
m = methods()["toy_rcnn"]
assert method_order(["toy_rcnn"]) == ["toy_rcnn"]
cfg = load_config(m.config_file)
assert cfg.MODEL.TOY.LOSS_SCALE == 0.5 and cfg.MODEL.META_ARCHITECTURE == "ToyRCNN"
model, _ = build_model_from(m.config_file, [*harness_opts(m, Harness()), "MODEL.WEIGHTS", ""])
print("built", type(model).__name__)
'''


@pytest.fixture
def toy_plugin(tmp_path):
    """One folder (the package) + one entry-point line (in its distribution's metadata)."""
    pkg = tmp_path / "toyplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(TOY_PACKAGE))
    base = os.path.join(REPO, "configs", "MaskRCNN", "shapes_R_18_FPN.yaml")
    (pkg / "shapes_toy.yaml").write_text(f'_BASE_: "{base}"\nMODEL:\n  META_ARCHITECTURE: "ToyRCNN"\n'
                                         f'  TOY:\n    LOSS_SCALE: 0.5\n')
    dist = tmp_path / "toyplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[segzoo.plugins]\ntoyplugin = toyplugin:PLUGIN\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="2")
    return tmp_path, env


def test_a_new_plugin_is_one_folder_and_one_entry_point(toy_plugin):
    tmp_path, env = toy_plugin
    r = subprocess.run([sys.executable, "-c", TOY_CHECK], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    assert r.returncode == 0 and "built ToyRCNN" in r.stdout, r.stdout[-3000:]


def test_new_plugin_runs_in_the_comparison_harness(toy_plugin, tmp_path):
    root, env = toy_plugin
    out = str(tmp_path / "zoo")
    r = run_watched([sys.executable, os.path.join(REPO, "tools", "model_zoo.py"), "--methods", "toy_rcnn",
                     "--iters", "2", "--num-train", "8", "--num-val", "2", "--timed-images", "1", "--output", out],
                    cwd=str(root), env=env)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "| Toy R-CNN |" in open(os.path.join(out, "zoo.md")).read()


def test_a_broken_plugin_is_named_in_one_line(tmp_path):
    dist = tmp_path / "brokenplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[segzoo.plugins]\nbroken = no_such_package_here:PLUGIN\n")
    code = ("from segzoo.plugins import import_plugins\nfrom segzoo.errors import UserError\n"
            "try:\n    import_plugins()\nexcept UserError as e:\n    print('ERR', e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=300)
    assert "ERR plugin 'broken' (no_such_package_here:PLUGIN) failed to import: ModuleNotFoundError" in r.stdout, \
        r.stdout[-2000:]
    assert UserError  # the error type users catch


def test_keys_added_with_detectron2_cfgnode_merge(tmp_path):
    """A Detectron2 project's add_*_config (Detectron2's CfgNode) on top of segzoo's get_cfg: its
    keys merge from yaml and the command line."""
    from detectron2.config import CfgNode as D2Node

    from segzoo.config import get_cfg

    cfg = get_cfg()
    cfg.MODEL.MYPROJECT = D2Node({"DEPTH": 1, "INNER": D2Node({"ENABLED": False})})
    path = tmp_path / "mine.yaml"
    path.write_text("MODEL:\n  MYPROJECT:\n    DEPTH: 3\n    INNER:\n      ENABLED: true\n")
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(["MODEL.MYPROJECT.DEPTH", "4"])
    assert cfg.MODEL.MYPROJECT.DEPTH == 4 and cfg.MODEL.MYPROJECT.INNER.ENABLED is True
