#!/usr/bin/env bash
# Prepares .gpu-kit/ (ignored by git) for tools/gpu_kit/run.sh on a GPU machine that has Python
# 3.12, torch, torchvision, numpy, opencv, matplotlib, pytest and nvcc but no internet and no
# Detectron2: the missing pure-Python / manylinux wheels for CPython 3.12 and a Detectron2 source
# archive (D2_SOURCE, else ../shared/vendor/detectron2-*.tar.gz). Run here, where the package
# index is reachable; the folder stays well under the 64 MiB a run may carry.
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT=.gpu-kit
PY=${PY:-.venv/bin/python}
mkdir -p "$KIT/wheels"
src=${D2_SOURCE:-$(ls ../shared/vendor/detectron2-*.tar.gz 2>/dev/null | head -1 || true)}
[ -n "$src" ] && [ -f "$src" ] || { echo "[gpu-kit] no Detectron2 source archive: set D2_SOURCE" >&2; exit 1; }
cp "$src" "$KIT/detectron2.tar.gz"
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
# Detectron2's and segzoo's imports that the GPU image lacks: pycocotools compiled for CPython
# 3.12; the rest are pure Python (some published as sdists only), so wheels built here serve
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
  -d "$KIT/wheels" "pycocotools==2.0.10"
"$PY" -m pip wheel -q --no-deps -w "$KIT/wheels" "fvcore==0.1.5.post20221221" "iopath==0.1.9" "yacs==0.1.8" \
  "termcolor==2.4.0" "omegaconf==2.3.0" "hydra-core==1.3.2" "antlr4-python3-runtime==4.9.3"
du -sh "$KIT"
ls "$KIT/wheels"
