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

.PHONY: run train-cpu test install lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# `make run`: the shipped model (docs/model_card.md) on the bundled pictures (examples/images: three
# synthetic people and scikit-image's astronaut; OUT/demo/*_result.png = input | bodies | side view),
# then `dsrbody eval` of the same model on a freshly generated synthetic test split (256 people, a seed
# the training never used), printed beside the mean body's metrics (OUT/eval/metrics_test.json).
RUN_TEST ?= 256
DSRBODY := $(VENV)/bin/dsrbody

run: $(STAMP)
	$(DSRBODY) demo --folder examples/images --bbox examples/images/boxes.json --out $(OUT)/demo --no-mesh
	$(DSRBODY) demo --image examples/images/astronaut.jpg --out $(OUT)/detect --no-mesh
	$(DSRBODY) synth --out $(OUT)/test --num $(RUN_TEST) --split test --seed 7 --res 128 --workers 2 --resume
	$(DSRBODY) eval --data $(OUT)/test --mean-body --out $(OUT)/eval

# `make train-cpu`: the shipped model's data and training run from scratch (docs/model_card.md;
# on a 2-core CPU ~25 + ~45 + ~26 min of data generation, 5 x ~25-45 min of BlazePose caches, ~61 min of
# mirrored ones and ~48 min of both for the last stage's new people, ~60 + ~50 + ~25 + ~70 + ~40 + ~45 +
# ~45 + ~44 min of training in eight stages: the head on the frozen features, then BlazePose's last stages
# with it, then the same with the terms that leave out stature and the head started at the data's mean
# shape, then BlazePose tuned from its last 8 x 8 block, then from its last 8 x 8 unit, then the same on
# 100,000 samples instead of 50,000, then with each crop's mirror image cached too and half the items
# mirrored, then on 130,000 people). `dsrbody cache --jobs 2` builds each stage's feature
# caches with one process per core (the shape stage reads the tuned stage's). DATA and TRAIN_OUT are variables.
DATA ?= data/synth
TRAIN_OUT ?= runs/synth_blazepose

train-cpu: $(STAMP)
	$(DSRBODY) synth --out $(DATA)/train128 --num 10000 --split train --seed 0 --res 128 --workers 2 --resume
	$(DSRBODY) synth --out $(DATA)/train128b --num 30000 --split train --seed 1 --res 128 --workers 2 --resume
	$(DSRBODY) synth --out $(DATA)/train128_hard --num 10000 --split train --seed 100 --res 128 --hard --workers 2 --resume
	$(DSRBODY) synth --out $(DATA)/val128 --num 256 --split val --seed 9 --res 128 --workers 2 --resume
	$(DSRBODY) synth --out $(DATA)/test128 --num 256 --split test --seed 7 --res 128 --workers 2 --resume
	$(DSRBODY) synth --out $(DATA)/test128_hard --num 256 --split test --seed 8 --res 128 --hard --workers 2 --resume
	$(DSRBODY) cache --config configs/synth_blazepose.yaml --jobs 2 data.root=$(DATA)
	$(DSRBODY) train --config configs/synth_blazepose.yaml data.root=$(DATA) --out $(TRAIN_OUT) --resume-if-any
	$(DSRBODY) cache --config configs/synth_blazepose_tuned.yaml --jobs 2 data.root=$(DATA)
	$(DSRBODY) train --config configs/synth_blazepose_tuned.yaml data.root=$(DATA) --out $(TRAIN_OUT)_tuned \
		--resume-if-any model.init_checkpoint=$(TRAIN_OUT)/checkpoints/best.ckpt
	$(DSRBODY) train --config configs/synth_blazepose_shape.yaml data.root=$(DATA) --out $(TRAIN_OUT)_shape \
		--resume-if-any model.init_checkpoint=$(TRAIN_OUT)_tuned/checkpoints/best.ckpt
	$(DSRBODY) cache --config configs/synth_blazepose_tuned8.yaml --jobs 2 data.root=$(DATA)
	$(DSRBODY) train --config configs/synth_blazepose_tuned8.yaml data.root=$(DATA) --out $(TRAIN_OUT)_tuned8 \
		--resume-if-any model.init_checkpoint=$(TRAIN_OUT)_shape/checkpoints/best.ckpt
	$(DSRBODY) export --ckpt $(TRAIN_OUT)_tuned8/checkpoints/best.ckpt --out $(TRAIN_OUT)_tuned8/dsrbody_synth_cpu.pt
	$(DSRBODY) cache --config configs/synth_blazepose_tuned8b.yaml --jobs 2 data.root=$(DATA)
	OMP_NUM_THREADS=2 $(DSRBODY) train --config configs/synth_blazepose_tuned8b.yaml data.root=$(DATA) --out $(TRAIN_OUT)_tuned8b \
		--resume-if-any model.init_checkpoint=$(TRAIN_OUT)_tuned8/dsrbody_synth_cpu.pt
	$(DSRBODY) export --ckpt $(TRAIN_OUT)_tuned8b/checkpoints/best.ckpt --out $(TRAIN_OUT)_tuned8b/dsrbody_synth_cpu.pt
	$(DSRBODY) synth --out $(DATA)/train128c --num 20000 --split train --seed 2 --res 128 --workers 2 --resume
	$(DSRBODY) synth --out $(DATA)/train128d --num 20000 --split train --seed 3 --res 128 --workers 2 --resume
	$(DSRBODY) synth --out $(DATA)/train128_hard2 --num 10000 --split train --seed 101 --res 128 --hard --workers 2 --resume
	$(DSRBODY) cache --config configs/synth_blazepose_100k.yaml --jobs 2 data.root=$(DATA)
	OMP_NUM_THREADS=2 $(DSRBODY) train --config configs/synth_blazepose_100k.yaml data.root=$(DATA) --out $(TRAIN_OUT)_100k \
		--resume-if-any model.init_checkpoint=$(TRAIN_OUT)_tuned8b/dsrbody_synth_cpu.pt
	$(DSRBODY) export --ckpt $(TRAIN_OUT)_100k/checkpoints/best.ckpt --out $(TRAIN_OUT)_100k/dsrbody_synth_cpu.pt
	$(DSRBODY) cache --config configs/synth_blazepose_mirrored.yaml --jobs 2 data.root=$(DATA)
	OMP_NUM_THREADS=2 $(DSRBODY) train --config configs/synth_blazepose_mirrored.yaml data.root=$(DATA) --out $(TRAIN_OUT)_mirrored \
		--resume-if-any model.init_checkpoint=$(TRAIN_OUT)_100k/dsrbody_synth_cpu.pt
	$(DSRBODY) export --ckpt $(TRAIN_OUT)_mirrored/checkpoints/best.ckpt --out $(TRAIN_OUT)_mirrored/dsrbody_synth_cpu.pt
	$(DSRBODY) synth --out $(DATA)/train128e --num 24000 --split train --seed 4 --res 128 --workers 2 --resume
	$(DSRBODY) synth --out $(DATA)/train128_hard3 --num 6000 --split train --seed 102 --res 128 --hard --workers 2 --resume
	$(DSRBODY) cache --config configs/synth_blazepose_130k.yaml --jobs 2 --splits train data.root=$(DATA)
	OMP_NUM_THREADS=2 $(DSRBODY) train --config configs/synth_blazepose_130k.yaml data.root=$(DATA) --out $(TRAIN_OUT)_130k \
		--resume-if-any model.init_checkpoint=$(TRAIN_OUT)_mirrored/dsrbody_synth_cpu.pt
	$(DSRBODY) export --ckpt $(TRAIN_OUT)_130k/checkpoints/best.ckpt --out $(TRAIN_OUT)_130k/dsrbody_synth_cpu.pt

test: $(STAMP)
	$(PY) -m pytest -q -m "not benchmark" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
