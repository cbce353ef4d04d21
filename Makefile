# The two commands in the README are `make demo` and `make test`; both set up .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
# nbgrader calls `alembic` when it creates a gradebook: the venv's bin must be on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
# Tests run two processes (pytest-xdist) on a 2-core machine: one BLAS/OpenMP thread each.
# Letting every process spawn a thread per core made small-tensor training up to 50x slower.
TEST_THREADS ?= 1

.PHONY: setup demo test test-fast lectures release lint

setup:
	bash scripts/setup_env.sh

## build the student release and autograde the shipped example submissions, print grades
demo: setup
	$(BIN)/python -m course_tools.grading demo

## every test: library, notebooks (nbval), grading pipeline
# Without a GPU, tests/test_kernels.py and lectures/A1_gpu_convolution.ipynb run the Triton
# kernels in Triton's interpreter: each sets TRITON_INTERPRET=1 itself before the first kernel
# import (Triton ships with PyTorch's Linux wheels), so nothing needs exporting here.
test: setup
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -n 2 --dist loadfile tests lectures solutions \
		--nbval --nbval-current-env --nbval-cell-timeout=600 \
		--nbval-sanitize-with tests/nbval_sanitize.cfg

## library tests only (seconds)
test-fast: setup
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -n 2 tests -m "not slow"

## re-execute the lecture and solution notebooks in place (after editing them); lectures (and
## their answer keys) are stamped with the code they ran, and tests/test_lectures.py fails when a
## stored notebook is older than its code. One notebook:
##   make lectures NOTEBOOKS=lectures/01_convolution.ipynb SOLUTION_NOTEBOOKS=
## (LECTURES_SETUP= skips the environment check, for an environment made some other way.)
NOTEBOOKS ?= $(wildcard lectures/*.ipynb lectures/answers/*.ipynb)
SOLUTION_NOTEBOOKS ?= $(wildcard solutions/*/*.ipynb)
LECTURES_SETUP ?= setup
lectures: $(LECTURES_SETUP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m course_tools.execute $(NOTEBOOKS)
	$(if $(strip $(SOLUTION_NOTEBOOKS)),OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m course_tools.execute --no-stamp $(SOLUTION_NOTEBOOKS))

## regenerate the committed student release in assignments/ from solutions/
release: setup
	$(BIN)/python -m course_tools.grading release

lint: setup
	$(BIN)/ruff check course_lib course_tools tests lectures solutions
