# otel-anomaly — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?= config/default.yaml
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 600

.PHONY: run test install bench eval fuzz demo clean config-docs

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/otel-anomaly serve --config $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m tests.bench.run_all

eval: $(STAMP)
	$(VENV)/bin/otel-anomaly eval --out tests/bench/EVAL.md

fuzz: $(STAMP)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m tests.fuzz.run

demo: $(STAMP)
	$(VENV)/bin/otel-anomaly demo

config-docs: $(STAMP)
	$(PY) -m detector.config.render > config/default.yaml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
