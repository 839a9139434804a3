"""segzoo/detectron2_source.py (run by path): how `make setup` and the GPU kit prepare a Detectron2 source."""
import ast
import glob
import os
import subprocess
import sys
import tarfile

import pytest

from helpers import REPO, SHARED

TOOL = os.path.join(REPO, "segzoo", "detectron2_source.py")

# the parts of upstream's setup.py (main and v0.6) that the tool edits
SETUP_PY = '''import os
from setuptools import find_packages, setup


def get_extensions():
    return ["the C++ extension"]


def get_model_zoo_configs():
    return ["configs/*.yaml"]


PROJECTS = {
    "detectron2.projects.point_rend": "projects/PointRend/point_rend",
    "detectron2.projects.deeplab": "projects/DeepLab/deeplab",
}

setup(
    name="detectron2",
    packages=find_packages(exclude=("configs", "tests*")) + list(PROJECTS.keys()),
    package_dir=PROJECTS,
    package_data={"detectron2.model_zoo": get_model_zoo_configs()},
    ext_modules=get_extensions(),
)
'''


def _tree(root, csrc=True, configs=True, projects=()):
    os.makedirs(os.path.join(root, "detectron2", "model_zoo", "configs"))
    if csrc:
        os.makedirs(os.path.join(root, "detectron2", "layers", "csrc"))
    if configs:
        os.makedirs(os.path.join(root, "configs"))
    for p in projects:
        os.makedirs(os.path.join(root, p))
    with open(os.path.join(root, "setup.py"), "w") as f:
        f.write(SETUP_PY)
    return root


def _run(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True, timeout=300)


def _setup_kwargs(tree):
    """Runs the patched setup.py with stubbed setuptools; returns what it passes to setup()."""
    seen = {}
    code = open(os.path.join(tree, "setup.py")).read()
    code = code.replace("from setuptools import find_packages, setup\n", "")
    cwd = os.getcwd()
    os.chdir(tree)
    try:
        exec(compile(code, "setup.py", "exec"),
             {"find_packages": lambda exclude=(): ["detectron2"], "setup": lambda **kw: seen.update(kw)})
    finally:
        os.chdir(cwd)
    return seen


def test_archive_of_upstream_main_keeps_ops_and_existing_projects(tmp_path):
    src = _tree(str(tmp_path / "src" / "detectron2-abc"), projects=["projects/PointRend/point_rend"])
    archive = tmp_path / "detectron2-abc.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="detectron2-abc")
    r = _run(archive, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    tree = r.stdout.strip()
    assert tree == str(tmp_path / "out" / "detectron2-abc")
    kw = _setup_kwargs(tree)
    assert kw["ext_modules"] == ["the C++ extension"]
    assert kw["package_dir"] == {"detectron2.projects.point_rend": "projects/PointRend/point_rend"}
    assert kw["packages"] == ["detectron2", "detectron2.projects.point_rend"]
    assert kw["package_data"] == {"detectron2.model_zoo": ["configs/*.yaml"]}
    assert not os.path.exists(os.path.join(tree, "detectron2", "_C.py"))
    assert "projects/DeepLab/deeplab" in r.stderr


def test_sdist_without_sources_gets_stand_in_and_packaged_zoo_configs(tmp_path):
    src = _tree(str(tmp_path / "pb1-detectron2-0.6"), csrc=False, configs=False,
                projects=["projects/PointRend/point_rend", "projects/DeepLab/deeplab"])
    r = _run(src, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    tree = r.stdout.strip()
    kw = _setup_kwargs(tree)
    assert kw["ext_modules"] == []
    assert kw["package_data"]["detectron2.model_zoo"][0] == "configs/*.yaml"
    assert len(kw["package_dir"]) == 2  # both projects exist: nothing dropped
    stub = open(os.path.join(tree, "detectron2", "_C.py")).read()
    assert stub == open(os.path.join(REPO, "segzoo", "_detectron2_c_stub.py")).read()
    assert "SEGZOO_STUB" in stub
    assert "absent" not in r.stderr  # no project dropped
    # the source folder itself is untouched
    assert open(os.path.join(src, "setup.py")).read() == SETUP_PY


def test_python_only_leaves_out_the_extension(tmp_path):
    src = _tree(str(tmp_path / "d2"))
    r = _run("--python-only", src, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    kw = _setup_kwargs(r.stdout.strip())
    assert kw["ext_modules"] == []
    assert os.path.isfile(os.path.join(r.stdout.strip(), "detectron2", "_C.py"))


@pytest.mark.parametrize("case", ["missing", "not_detectron2", "unexpected_setup", "dest_not_empty", "bad_format"])
def test_bad_sources_fail_with_one_line(tmp_path, case):
    dest = tmp_path / "out"
    if case == "missing":
        src = tmp_path / "nope.tar.gz"
    elif case == "not_detectron2":
        src = tmp_path / "other"
        os.makedirs(src)
        (src / "setup.py").write_text("")
    elif case == "unexpected_setup":
        src = _tree(str(tmp_path / "d2"), csrc=False)
        with open(os.path.join(src, "setup.py"), "w") as f:
            f.write(SETUP_PY.replace("ext_modules=get_extensions(),", "ext_modules=exts,"))
    elif case == "dest_not_empty":
        src = _tree(str(tmp_path / "d2"))
        os.makedirs(dest)
        (dest / "x").write_text("keep me")
    else:
        src = tmp_path / "d2.rar"
        src.write_text("")
    r = _run(src, dest)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[detectron2-source] error:"), r.stderr
    if case == "dest_not_empty":
        assert (dest / "x").read_text() == "keep me"


def test_real_archive_setup_py_is_patched_consistently(tmp_path):
    archives = sorted(glob.glob(os.path.join(SHARED, "vendor", "detectron2-*.tar.gz")))
    if not archives:
        pytest.skip(f"no Detectron2 source archive in {os.path.join(SHARED, 'vendor')} (../shared is absent)")
    r = _run(archives[-1], tmp_path / "out")
    assert r.returncode == 0, r.stderr
    tree = r.stdout.strip()
    text = open(os.path.join(tree, "setup.py")).read()
    ast.parse(text)
    assert "ext_modules=get_extensions()," in text  # upstream main keeps its compiled ops
    assert "PROJECTS = {k: v for k, v in PROJECTS.items() if os.path.isdir(v)}" in text
    assert os.path.isdir(os.path.join(tree, "detectron2", "layers", "csrc"))
