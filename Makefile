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

# `make run`: make a small synthetic set if missing, train the synthetic DSR recipe briefly, evaluate it on
# the synthetic test split and draw the predictions (OUT/eval/overlays_test.png). Sizes are variables:
# e.g. `make run RUN_EPOCHS=30 RUN_TRAIN=512` trains longer.
RUN_TRAIN ?= 96
RUN_TEST ?= 24
RUN_EPOCHS ?= 6
RUN_CONFIG ?= configs/synth_dsr.yaml
DSRBODY := $(VENV)/bin/dsrbody

run: $(STAMP)
	$(DSRBODY) body --model anny --pose-file examples/pose_wave.json --out $(OUT)/anny_posed.obj
	$(DSRBODY) synth --out $(OUT)/data --num $(RUN_TRAIN) --split train --resume
	$(DSRBODY) synth --out $(OUT)/data --num $(RUN_TEST) --split test --resume
	$(DSRBODY) train --config $(RUN_CONFIG) --out $(OUT)/train data.root=$(OUT)/data trainer.max_epochs=$(RUN_EPOCHS)
	$(DSRBODY) eval --config $(RUN_CONFIG) --ckpt $(OUT)/train/checkpoints/best.ckpt --out $(OUT)/eval \
		data.root=$(OUT)/data

test: $(STAMP)
	$(PY) -m pytest -q -m "not benchmark" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
