"""Unpack a Detectron2 source (archive or folder) and make its setup.py installable here.

    python segzoo/detectron2_source.py SOURCE DEST [--python-only]

(run by path: it imports nothing of segzoo or Detectron2, so it works before either is installed).

SOURCE is a ``.tar.gz`` / ``.tgz`` / ``.zip`` archive (a ``git archive`` of upstream, the package
registry's sdist) or a source folder; it is unpacked / copied into the new folder DEST, and the
path of the prepared tree (the folder holding ``setup.py``) is printed. Used by
``tools/setup_env.sh`` and ``tools/gpu_kit/run.sh``. ``setup.py`` is changed only where the source
cannot be installed as it is:

* the ``projects/`` packages it lists (PointRend, DeepLab, ...) are kept only if their folders
  exist (a ``git archive`` of upstream main has none of them);
* the model-zoo configs are packaged from ``detectron2/model_zoo/configs`` when the tree has no
  top-level ``configs/`` (the registry's v0.6 sdist);
* ``--python-only``, or a tree without ``detectron2/layers/csrc`` (the sdist), builds no compiled
  extension and installs segzoo's stand-in as ``detectron2/_C.py`` (it names any compiled op that
  is then used), so that ``import detectron2.layers`` works on its own.
"""
import argparse
import os
import re
import shutil
import sys
import tarfile
import zipfile

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_detectron2_c_stub.py")


class SourceError(RuntimeError):
    pass


def unpack(source, dest):
    """Copies / extracts ``source`` into the new folder ``dest``; returns the tree with setup.py."""
    if os.path.exists(dest) and os.listdir(dest):
        raise SourceError(f"{dest} exists and is not empty")
    if os.path.isdir(source):
        tree = os.path.join(dest, os.path.basename(os.path.normpath(source)))
        shutil.copytree(source, tree, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so", ".git"))
    elif source.endswith((".tar.gz", ".tgz", ".tar")):
        os.makedirs(dest, exist_ok=True)
        with tarfile.open(source) as tar:
            tar.extractall(dest, filter="data")
    elif source.endswith(".zip"):
        with zipfile.ZipFile(source) as z:
            z.extractall(dest)
    elif not os.path.exists(source):
        raise SourceError(f"Detectron2 source {source} does not exist")
    else:
        raise SourceError(f"Detectron2 source {source}: expected a folder or a .tar.gz/.tgz/.tar/.zip archive")
    candidates = [dest] + [os.path.join(dest, d) for d in sorted(os.listdir(dest))]
    for tree in candidates:
        if os.path.isfile(os.path.join(tree, "setup.py")) and os.path.isdir(os.path.join(tree, "detectron2")):
            return tree
    raise SourceError(f"{source} holds no Detectron2 source tree (setup.py next to detectron2/)")


def _replace(text, old, new, what):
    if old not in text:
        raise SourceError(f"unexpected Detectron2 setup.py: cannot {what} ({old.strip()!r} not found)")
    return text.replace(old, new, 1)


def patch_setup(tree, python_only=False):
    """Edits ``tree/setup.py`` in place (see the module docstring); returns the changes made."""
    path = os.path.join(tree, "setup.py")
    with open(path) as f:
        text = f.read()
    changes = []
    if re.search(r"^PROJECTS = \{", text, re.M):
        missing = [d for d in re.findall(r'"(projects/[^"]+)"', text) if not os.path.isdir(os.path.join(tree, d))]
        if missing:
            text = _replace(text, "\nsetup(\n",
                            "\nPROJECTS = {k: v for k, v in PROJECTS.items() if os.path.isdir(v)}\n\nsetup(\n",
                            "drop the missing projects/ packages")
            changes.append(f"not packaged (absent): {', '.join(missing)}")
    zoo = os.path.join(tree, "detectron2", "model_zoo", "configs")
    if not os.path.isdir(os.path.join(tree, "configs")) and os.path.isdir(zoo):
        text = _replace(text, 'package_data={"detectron2.model_zoo": get_model_zoo_configs()},',
                        'package_data={"detectron2.model_zoo": ["configs/*.yaml", "configs/**/*.yaml", '
                        '"configs/**/*.py"]},', "keep the model-zoo configs")
        changes.append("model-zoo configs packaged from detectron2/model_zoo/configs")
    has_csrc = os.path.isdir(os.path.join(tree, "detectron2", "layers", "csrc"))
    if python_only or not has_csrc:
        text = _replace(text, "ext_modules=get_extensions(),", "ext_modules=[],", "leave out the extension")
        shutil.copyfile(STUB, os.path.join(tree, "detectron2", "_C.py"))
        changes.append("no compiled ops: segzoo's stand-in installed as detectron2/_C.py"
                       + ("" if has_csrc else " (the source has no detectron2/layers/csrc)"))
    with open(path, "w") as f:
        f.write(text)
    return changes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="Detectron2 source: archive (.tar.gz/.tgz/.tar/.zip) or folder")
    parser.add_argument("dest", help="new (or empty) folder to unpack into")
    parser.add_argument("--python-only", action="store_true", help="build without Detectron2's compiled ops")
    args = parser.parse_args(argv)
    try:
        tree = unpack(os.path.abspath(args.source), os.path.abspath(args.dest))
        for change in patch_setup(tree, args.python_only):
            print(f"[detectron2-source] {change}", file=sys.stderr)
    except (SourceError, OSError, tarfile.TarError, zipfile.BadZipFile) as e:
        sys.exit(f"[detectron2-source] error: {e}")
    print(tree)


if __name__ == "__main__":
    main()
