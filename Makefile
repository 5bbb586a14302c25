# make demo: set up and run trainer + sampler, then write a grid of generated images.
# make test: set up and run the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed

.PHONY: setup deps protos dataset demo test clean

setup: deps protos dataset

deps: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

protos: $(STAMP)
	$(BIN)/python -m protos.generate

dataset:
	bash scripts/install_dataset.sh

demo: setup
	PYTHON=$(BIN)/python bash scripts/demo.sh

test: setup
	$(BIN)/python -m protos.generate --check
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) demo-store demo-output
	find protos -name '*_pb2*.py*' -delete
