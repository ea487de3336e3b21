# Two commands are the whole set-up: `make bench` and `make test` (each installs what is missing).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATASET ?= digits
PRESET  ?=
TASK    ?= classify
GEN     := $(filter generate,$(TASK))
OUT     ?= outputs/$(DATASET)$(if $(GEN),-generate)
ARGS    ?=
TUNED   ?= auto

.PHONY: help install bench tune test lint report clean-cache

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/' | expand -t 14

install: $(STAMP)  ## create .venv and install the suite with its dev tools (once)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "[install] pip install -e '.[dev]' into $(VENV) (first time: a few minutes)"
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import torch, lightning, wandb, omegaconf, sklearn, optuna, ray" && touch $(STAMP)

SWEEP   ?= $(if $(GEN),,$(if $(filter-out digits,$(DATASET)),$(if $(wildcard configs/sweep/$(DATASET).yaml),$(DATASET))))

bench: $(STAMP)  ## digits: every method (tuned), random 10%, seed 0; other DATASETs: configs/sweep/DATASET.yaml; TUNED=false: defaults; TASK=generate: diffusion models (configs/generate/DATASET.yaml); ARGS=k=v adds overrides
	$(BIN)/python -m benchmark run dataset=$(DATASET) $(if $(GEN),task=generate,tuned=$(TUNED)) $(if $(SWEEP),sweep=$(SWEEP)) $(if $(PRESET),preset=$(PRESET)) output_dir=$(OUT) $(ARGS)

tune: $(STAMP)  ## tune every method on DATASET with the same budget (tune.* keys); writes configs/tuned/, OUT/tune/
	$(BIN)/python -m benchmark tune dataset=$(DATASET) $(if $(PRESET),preset=$(PRESET)) output_dir=$(OUT) $(ARGS)

test: $(STAMP)  ## run the test suite
	WANDB_MODE=offline WANDB_SILENT=true $(BIN)/python -m pytest

report: $(STAMP)  ## leaderboard.md, leaderboard.html and figures for OUT (default outputs/DATASET)
	$(BIN)/python -m benchmark report $(OUT)

lint: $(STAMP)  ## ruff check
	$(BIN)/ruff check benchmark baselines tests

clean-cache:  ## delete cached reference models, decoded datasets and outputs (.cache/)
	rm -rf .cache
