# segzoo — the two commands that matter: `make demo` and `make test`.
PY := .venv/bin/python
OUTPUT ?= output/demo
# pytest processes for `make test` / `make test-v0.6` (pytest-xdist; tests sharing an expensive fixture stay together)
PYTEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup --durations=30

.PHONY: setup demo test test-v0.6 lint zoo bench-zoo bench-ops bench-export build clean

setup:  ## create .venv and install everything (idempotent)
	bash tools/setup_env.sh

demo: setup  ## generate the synthetic data, train + evaluate Mask R-CNN, write visualisations
	$(PY) tools/quickstart.py --output $(OUTPUT)

test: setup lint  ## lint, then the test suite
	$(PYTEST) tests

test-v0.6: setup  ## the non-slow tests against Detectron2 v0.6 (registry sdist, put first on PYTHONPATH)
	bash tools/setup_env.sh --v0.6-overlay
	SEGZOO_EXPECT_DETECTRON2=v0.6 PYTHONPATH=$(CURDIR)/.venv/detectron2-v0.6 $(PYTEST) -m "not slow" tests

lint: setup  ## ruff (configured in pyproject.toml)
	$(PY) -m ruff check .

zoo: setup  ## every method on one harness (synthetic data): tables + plot in output/zoo/...
	$(PY) tools/model_zoo.py $(ZOO_ARGS)

bench-zoo: setup  ## per-method latency vs instances, training throughput, peak memory
	$(PY) tools/bench_zoo.py $(BENCH_ARGS)

bench-ops: setup  ## the C++/CUDA ops (RoIAlign family, blender) against their PyTorch compositions
	$(PY) tools/bench_ops.py $(BENCH_ARGS)

bench-export: setup  ## eager PyTorch vs exported TorchScript vs ONNX Runtime latency per method
	$(PY) tools/bench_export.py $(BENCH_ARGS)

build:  ## force a rebuild of the C++/CUDA extension
	rm -f .venv/.segzoo-ext-*
	bash tools/setup_env.sh

clean:
	rm -rf build output segzoo/_C*.so *.egg-info
