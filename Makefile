# Every target creates the virtual environment on first use; re-running is cheap.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Locally the slow tail is skipped; CI (CI=true) and `make test-all` run everything.
PYTEST_MARK := $(if $(filter true 1 yes,$(CI)),,-m "not slow")
# One pytest worker per core up to 4 (pytest-xdist; each heavy test peaks near 2.5 GB), idle
# workers take queued tests from busy ones; `make test PYTEST_WORKERS=` runs them one by one.
PYTEST_WORKERS ?= -n auto --maxprocesses 4 --dist worksteal
# The tests' files and every temporary file they make (torchrun, inductor) go under build/,
# not the system temp folder; pytest empties its basetemp at the start of each run.
TEST_TMP := $(CURDIR)/build/test-tmp
RUN_PYTEST = mkdir -p $(TEST_TMP) && TMPDIR=$(TEST_TMP) $(PY) -m pytest -q $(PYTEST_WORKERS) \
	--basetemp=$(TEST_TMP)/pytest

.PHONY: venv demo test test-all bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ffhq-tools demo

test: $(STAMP)
	$(RUN_PYTEST) $(PYTEST_MARK)

test-all: $(STAMP)
	$(RUN_PYTEST)

bench: $(STAMP)
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check ffhq_tools models eval leaderboards bench tests

clean:
	rm -rf $(VENV) .pytest_cache $(TEST_TMP)
