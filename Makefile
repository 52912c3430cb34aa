# Two commands for a new user (see README):
#   make train   set up .venv and run the main job (the lecture CNN on the embedded Fashion-MNIST subset)
#   make test    set up .venv and run the test suite
# Both are idempotent: the virtualenv is (re)built only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup train test bench clean

setup: $(STAMP)

# torch==2.13.0 first: the CPU wheel (pip takes it from our machines' disk);
# installing the project afterwards then satisfies torch>=2.10,<2.14 without fetching a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $(STAMP)

train: $(STAMP)
	$(VENV)/bin/cnnlab train

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/cnnlab bench

clean:
	rm -rf $(VENV) runs
