"""A non-editable install (``pip install .``) works on its own: from a folder outside the repository
it finds every plugin, builds every method's shapes model and runs the comparison harness."""
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from helpers import REPO, run_watched

CHECK = r'''
import os, sys
site = sys.argv[1]
import segzoo, segzoo._C
from segzoo.benchmark import build_model_from
from segzoo.plugins import import_plugins
from segzoo.zoo import Harness, harness_opts, methods

assert segzoo.__file__.startswith(site), segzoo.__file__
plugins = import_plugins()
assert sorted(plugins) == ["blendmask", "maskrcnn_roialign", "rdsnet", "sharpmask"], sorted(plugins)
for name in plugins:
    mod = sys.modules[name]
    assert mod.__file__.startswith(site), mod.__file__
h = Harness(extra_opts=["MODEL.SHARPMASK.TEST.SCALES", "[1.0]"])
for m in methods().values():
    assert m.config_file.startswith(site), m.config_file
    model, cfg = build_model_from(m.config_file, [*harness_opts(m, h), "MODEL.WEIGHTS", ""])
    print("built", m.name, type(model).__name__, flush=True)
print("ALL BUILT", len(methods()))
'''


def _copy_sources(dst):
    ignore = shutil.ignore_patterns(".git", ".venv", "output", "build", "datasets", "*.egg-info", "__pycache__",
                                    "*.so", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, dst, ignore=ignore)


@pytest.mark.slow
def test_non_editable_install_runs_outside_the_repository(tmp_path):
    src, venv, elsewhere = tmp_path / "src", tmp_path / "venv", tmp_path / "elsewhere"
    _copy_sources(src)
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()
    # torch, Detectron2 and the other dependencies come from this environment (as --system-site-packages)
    with open(os.path.join(site, "_base_environment.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_CUDA", "PYTHONPATH")}
    env.setdefault("OMP_NUM_THREADS", "2")
    env["MAX_JOBS"] = "2"
    r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", "-q", str(src)],
                       cwd=str(elsewhere), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:]
    shutil.rmtree(src)  # nothing may read the sources any more

    r = subprocess.run([py, "-c", CHECK, site], cwd=str(elsewhere), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=1200)
    assert r.returncode == 0 and "ALL BUILT 13" in r.stdout, r.stdout[-4000:]

    out = elsewhere / "zoo"
    r = run_watched([py, "-m", "segzoo.zoo",
                     "--methods", "mask_rcnn_ROIAlign", "blendmask", "rdsnet_mbrm", "fast_rcnn_sharpmask",
                     "--iters", "2", "--num-train", "8", "--num-val", "2", "--timed-images", "1",
                     "--proposals", "50", "--output", str(out),
                     "MODEL.SHARPMASK.TEST.SCALES", "[1.0]", "MODEL.SHARPMASK.TEST.TOP_N", "50"],
                    cwd=str(elsewhere), env=dict(env, SEGZOO_DATASETS=str(tmp_path / "data")))
    assert r.returncode == 0, r.stdout[-4000:]
    md = (out / "zoo.md").read_text()
    for label in ("| Mask R-CNN (ROIAlign) |", "| BlendMask |", "| RDSNet + MBRM |", "| Fast R-CNN on SharpMask |"):
        assert label in md, md
    assert (out / "fast_rcnn_sharpmask" / "proposals_shapes_val.pkl").is_file()  # exported by sharpmask.export
