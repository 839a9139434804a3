# segzoo — the two commands that matter: `make demo` and `make test`.
PY := .venv/bin/python
OUTPUT ?= output/demo

.PHONY: setup demo test lint zoo bench-zoo bench-ops build clean

setup:  ## create .venv and install everything (idempotent)
	bash tools/setup_env.sh

demo: setup  ## generate the synthetic data, train + evaluate Mask R-CNN, write visualisations
	$(PY) tools/quickstart.py --output $(OUTPUT)

test: setup lint  ## lint, then the test suite
	$(PY) -m pytest -q tests

lint: setup  ## ruff (configured in pyproject.toml)
	$(PY) -m ruff check .

zoo: setup  ## every method on one harness (synthetic data): tables + plot in output/zoo/...
	$(PY) tools/model_zoo.py $(ZOO_ARGS)

bench-zoo: setup  ## per-method latency vs instances, training throughput, peak memory
	$(PY) tools/bench_zoo.py $(BENCH_ARGS)

bench-ops: setup  ## the C++/CUDA ops (RoIAlign family, blender) against their PyTorch compositions
	$(PY) tools/bench_ops.py $(BENCH_ARGS)

build:  ## force a rebuild of the C++/CUDA extension
	rm -f .venv/.segzoo-ext-*
	bash tools/setup_env.sh

clean:
	rm -rf build output segzoo/_C*.so *.egg-info
