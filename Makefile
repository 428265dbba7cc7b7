# dsrbody: `make run` sets up and runs the main job on the embedded default body model (Anny);
# `make test` sets up and runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
# Torch is installed first, only when the venv has none, so that a CPU wheel can be chosen.
# Override e.g. `make test TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cpu"`.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dsrbody-installed
OUT ?= outputs/run
PYTEST_ARGS ?=

.PHONY: run test install lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/dsrbody body --model anny --pose-file examples/pose_wave.json --out $(OUT)/anny_posed.obj

test: $(STAMP)
	$(PY) -m pytest -q -m "not benchmark" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
