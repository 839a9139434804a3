#!/usr/bin/env bash
# Creates .venv in the repository root and installs everything the project needs:
# torch/torchvision, Detectron2 and its dependencies, the test tools, and this
# project (editable, compiling segzoo._C). Idempotent: each step checks what is
# already there and is skipped when nothing changed.
#
# Environment:
#   PYTHON       interpreter used to create the venv (default: python3)
#   FORCE_CUDA=1 compile the CUDA kernels even without a visible GPU
#   DEBUG=1      build segzoo._C with -O0 -g (default: -O3, no debug info)
#   TORCH_CUDA_ARCH_LIST, MAX_JOBS  passed to torch's extension builder
#   D2_SOURCE    Detectron2 source archive or folder to build when no Detectron2 works yet and
#                GitHub is not reachable (default: ../shared/vendor/detectron2-*.tar.gz if there)
#
# With --v0.6-overlay: (also) installs Detectron2 v0.6 from the package registry into
# .venv/detectron2-v0.6, to be put first on PYTHONPATH (`make test-v0.6`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
D2_SDIST=pb1-detectron2==0.6
D2_GIT=https://github.com/facebookresearch/detectron2.git

log() { echo "[setup] $*"; }
pipq() { "$PY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
hash_of() { (cat "$@" 2>/dev/null; echo "${FORCE_CUDA:-0} ${TORCH_CUDA_ARCH_LIST:-} ${DEBUG:-0}") | sha1sum | cut -c1-16; }

if [ ! -x "$PY" ]; then
  log "creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi

# 1. torch + torchvision (pinned; see README for why these builds).
if ! "$PY" - <<PYEOF 2>/dev/null
import sys, torch, torchvision
ok = torch.__version__.split("+")[0] == "$TORCH_VERSION" and torchvision.__version__.split("+")[0] == "$TORCHVISION_VERSION"
sys.exit(0 if ok else 1)
PYEOF
then
  log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
  pipq install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

# 2. Our dependencies, as declared in pyproject.toml (with the test and export extras), and Detectron2's
#    runtime dependencies (its registry sdist is installed without them). Detectron2 v0.6 needs
#    Pillow<10 (Image.LINEAR) and setuptools<81 (pkg_resources in model_zoo).
mapfile -t PROJECT_DEPS < <("$PY" - <<'PYEOF'
try:
    import tomllib
except ImportError:  # Python < 3.11
    from pip._vendor import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
extras = project["optional-dependencies"]
for dep in project["dependencies"] + extras["test"] + extras["export"]:
    if not dep.startswith(("torch", "torchvision")):  # pinned above
        print(dep)
PYEOF
)
DEPS=(
  "${PROJECT_DEPS[@]}"
  "Pillow<10" "setuptools<81" wheel ninja
  "fvcore>=0.1.5,<0.1.6" "iopath>=0.1.7,<0.1.10" "yacs>=0.1.8" termcolor tabulate
  cloudpickle tqdm tensorboard "omegaconf>=2.1" "hydra-core>=1.1" psutil
)
deps_stamp="$VENV/.segzoo-deps-$(printf '%s\n' "${DEPS[@]}" | sha1sum | cut -c1-16)"
if [ ! -f "$deps_stamp" ]; then
  log "installing dependencies"
  pipq install "torch==$TORCH_VERSION" "${DEPS[@]}"
  rm -f "$VENV"/.segzoo-deps-*
  touch "$deps_stamp"
fi

# 3. Detectron2, in this order: keep a working install; else upstream from git if reachable; else
#    upstream from a source archive or folder (D2_SOURCE, else ../shared/vendor/detectron2-*.tar.gz)
#    with its compiled C++ ops (CPU); else the registry's sdist of v0.6 (Python files only: built
#    without the extension, with its model-zoo configs kept and segzoo's stand-in for its compiled
#    ops, so that it imports on its own). "Working" means: it imports in a fresh interpreter outside
#    the repository, before anything of ours, and has its model-zoo configs. Detectron2's CUDA ops
#    are never built (FORCE_CUDA is for segzoo's kernels; ours are the ones we compile-check). Built
#    without debug info (CFLAGS -g0 after Python's -g), as segzoo._C: 72 s instead of 102 s in CI.
D2_SOURCE=${D2_SOURCE:-$(ls "$ROOT"/../shared/vendor/detectron2-*.tar.gz 2>/dev/null | sort | tail -1 || true)}
d2_ok() {  # d2_ok [PYTHONPATH]
  (cd / && PYTHONPATH="${1:-}" "$PY" - <<'PYEOF' 2>/dev/null
import os, sys
import detectron2.engine, detectron2.modeling  # noqa: E401
cfg = os.path.join(os.path.dirname(detectron2.__file__), "model_zoo", "configs", "Base-RCNN-FPN.yaml")
sys.exit(0 if os.path.exists(cfg) else 1)
PYEOF
  )
}
d2_install() {  # d2_install SOURCE WORKDIR [pip args]: unpack + patch (segzoo/detectron2_source.py), install
  local src=$1 work=$2 tree; shift 2
  rm -rf "$work"
  tree=$("$PY" segzoo/detectron2_source.py "$src" "$work") || return 1
  env -u FORCE_CUDA CFLAGS="${CFLAGS:-} -g0" "$PY" -m pip --disable-pip-version-check -q install --no-build-isolation \
    --no-deps "$@" "$tree" \
    2> >(grep -v "^WARNING: Location\|^WARNING: Target directory" >&2)
}
d2_sdist() {  # d2_sdist [pip args]: the registry's v0.6 sdist
  rm -rf "$VENV/src/d2-sdist" && mkdir -p "$VENV/src/d2-sdist"
  pipq download --no-deps --no-binary :all: --no-build-isolation -d "$VENV/src/d2-sdist" "$D2_SDIST"
  d2_install "$(ls "$VENV"/src/d2-sdist/pb1-detectron2-*.tar.gz)" "$VENV/src/d2-v0.6" "$@"
}
if [ "${1:-}" = "--v0.6-overlay" ]; then
  # Detectron2 v0.6 in a folder of its own, for PYTHONPATH=<folder>: `make test-v0.6`.
  overlay="$VENV/detectron2-v0.6"
  if d2_ok "$overlay" && [ -f "$overlay/.segzoo-v0.6" ]; then
    log "detectron2 v0.6 overlay already in $overlay"
  else
    log "installing $D2_SDIST into $overlay"
    rm -rf "$overlay"
    d2_sdist --target "$overlay"
    d2_ok "$overlay" || { echo "[setup] the detectron2 v0.6 overlay does not import" >&2; exit 1; }
    touch "$overlay/.segzoo-v0.6"
  fi
  exit 0
fi
d2_start=$(date +%s)
if d2_ok; then
  log "detectron2 already installed"
  d2_start=""
elif timeout 15 git ls-remote "$D2_GIT" HEAD >/dev/null 2>&1; then
  log "installing detectron2 from $D2_GIT"
  env -u FORCE_CUDA CFLAGS="${CFLAGS:-} -g0" "$PY" -m pip --disable-pip-version-check -q install --no-build-isolation \
    "git+$D2_GIT"
elif [ -n "$D2_SOURCE" ]; then
  log "github not reachable: building detectron2 from $D2_SOURCE (compiled C++ ops, CPU)"
  d2_install "$D2_SOURCE" "$VENV/src/d2-source"
else
  log "github not reachable, no source archive (D2_SOURCE): installing $D2_SDIST (no compiled ops)"
  d2_sdist
fi
d2_ok || { echo "[setup] detectron2 does not import on its own or has no model-zoo configs" >&2; exit 1; }
[ -n "$d2_start" ] && log "detectron2 installed in $(( $(date +%s) - d2_start ))s"

# 4. This project, editable, with its extension (reinstalled when setup.py / pyproject.toml, which
#    declares the plugins' entry points, or csrc/ change).
if [ "${FORCE_CUDA:-0}" = "1" ]; then
  export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
  nv_inc=$("$PY" -c "import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'include'))" 2>/dev/null || true)
  [ -n "$nv_inc" ] && [ -d "$nv_inc" ] && export CPATH="$nv_inc${CPATH:+:$CPATH}"
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
ext_stamp="$VENV/.segzoo-ext-$(hash_of setup.py pyproject.toml $(find csrc -type f | sort))"
if [ -f "$ext_stamp" ] && "$PY" -c "import segzoo._C" 2>/dev/null; then
  log "segzoo already built"
else
  log "building segzoo (FORCE_CUDA=${FORCE_CUDA:-0})"
  start=$(date +%s)
  "$PY" -m pip --disable-pip-version-check install --no-build-isolation --no-deps -e . \
    2> >(grep -v "^WARNING: Location" >&2) | grep -v "^Requirement already\|^Looking in\|^Obtaining" || true
  "$PY" -c "import segzoo._C" || { echo "[setup] segzoo._C failed to load" >&2; exit 1; }
  rm -f "$VENV"/.segzoo-ext-*
  touch "$ext_stamp"
  log "built in $(( $(date +%s) - start ))s"
fi
"$PY" -c "import segzoo, torch, detectron2; print('[setup] ok: torch', torch.__version__, '| detectron2', detectron2.__version__, '| segzoo CUDA kernels:', segzoo.ops.cuda_compiled())"
