#!/usr/bin/env bash
# The GPU check, run on the lent GPU machine from the repository root with .gpu-kit carried
# (tools/gpu_kit/prepare.sh makes it). One command, about 8 minutes on one H200:
#   PYTHONUNBUFFERED=1 bash tools/gpu_kit/run.sh        (results in $OUT, else output/gpu_kit)
# 1. installs the carried wheels and Detectron2 (Python only: our ops are ours) into /tmp/site;
# 2. compiles segzoo's C++/CUDA extension in place for the GPU's architecture;
# 3. runs the CUDA tests: op parity with the CPU kernels (fp32/fp64/fp16/bf16, forward and
#    backward), autocast, every method's CUDA inference and AMP training (tests marked `cuda`);
# 4. benchmarks the ops on the GPU against their PyTorch compositions.
# Each step logs its time; a failing step is reported and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUTDIR=${OUT:-output/gpu_kit}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_kit.log"
exec > >(tee -a "$LOG") 2>&1
KIT=.gpu-kit
PY=${PY:-python3}
SITE=/tmp/site
status=0
step() {  # step NAME COMMAND...: run, time and report
  local name=$1 start; shift
  start=$(date +%s)
  echo "[gpu-kit] $name ..."
  if "$@"; then echo "[gpu-kit] $name: ok ($(( $(date +%s) - start )) s)"
  else echo "[gpu-kit] $name: FAILED ($(( $(date +%s) - start )) s)"; status=1; fi
}
[ -d "$KIT/wheels" ] && [ -f "$KIT/detectron2.tar.gz" ] || { echo "[gpu-kit] $KIT missing: run tools/gpu_kit/prepare.sh here and carry it"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

install_deps() {
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$KIT"/wheels/*.whl
}
install_detectron2() {
  # no compiled ops (ours are ours; a stand-in _C names any op used); the git archive has no
  # projects/ folders, so only those that are there are packaged (segzoo/detectron2_source.py)
  local tree
  rm -rf /tmp/d2 && tree=$("$PY" segzoo/detectron2_source.py --python-only "$KIT/detectron2.tar.gz" /tmp/d2) || return 1
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" "$tree"
}
build_segzoo() {
  FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
    "$PY" setup.py -q build_ext --inplace && "$PY" setup.py -q egg_info
}
step "install wheels" install_deps
step "install detectron2 (Python only)" install_detectron2
export PYTHONPATH="$SITE:$PWD:$PWD/projects/MaskRCNN:$PWD/projects/BlendMask:$PWD/projects/RDSNet:$PWD/projects/SharpMask"
step "build segzoo CUDA extension" build_segzoo
step "environment" "$PY" -c "import torch, detectron2, segzoo.ops as o; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), '| detectron2', detectron2.__version__, '| segzoo CUDA kernels:', o.cuda_compiled()); \
assert o.cuda_compiled()"
step "CUDA tests" "$PY" -m pytest -q -m cuda -p no:cacheprovider --junitxml "$OUTDIR/cuda_tests.xml" \
  tests/test_blender_op.py tests/test_roi_align_family.py tests/test_gpu_models.py
step "op benchmark" "$PY" tools/bench_ops.py --device cuda --output "$OUTDIR/bench_ops_cuda.json"
echo "[gpu-kit] done, status $status"
exit $status
