# Two commands for a new user (see README):
#   make train   set up .venv and run the main job (the lecture CNN on the embedded Fashion-MNIST subset)
#   make test    set up .venv and run the test suite
# Both are idempotent: the virtualenv is (re)built only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup train test bench clean

setup: $(STAMP)

# torch==2.13.0 first: the CPU wheel (pip takes it from our machines' disk);
# installing the project afterwards then satisfies torch>=2.10,<2.14 without fetching a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip install -q -e .
	touch $(STAMP)

# The test tools, and Triton: tests/test_native_pool_triton.py runs cnnlab's CUDA pooling kernels
# in Triton's interpreter and compiles them for an H100, on a CPU. 3.5.0 is pinned for repeatable
# runs and for its size (a 170 MB wheel, 0.6 GB installed; 3.9.0 takes 1.0 GB); the tests pass on
# 3.9.0 too. A CUDA build of torch brings its own Triton, which is kept (the [test] extra accepts it).
$(TEST_STAMP): $(STAMP)
	$(VENV)/bin/python -c 'import triton' 2>/dev/null || $(VENV)/bin/python -m pip install -q triton==3.5.0
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

train: $(STAMP)
	$(VENV)/bin/cnnlab train

test: $(TEST_STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/cnnlab bench

clean:
	rm -rf $(VENV) runs
