# Two commands on a fresh machine (Python 3.11): `make book` builds the book, `make test` runs every check.
# Each creates or refreshes the virtual environment it needs: the book's small one (.venv-book, from
# requirements-book.txt: Jupyter Book only, no torch) and, for the tests, the full one (.venv, requirements.txt).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BOOK_VENV  ?= .venv-book
BOOK_STAMP := $(BOOK_VENV)/.installed
# Tests and CI never touch the network and run the small CPU budget.
TEST_ENV := COURSE_OFFLINE=1 COURSE_PROFILE=smoke COURSE_PLAIN_PROGRESS=1 PYTHONHASHSEED=0
# pip's notes about this machine's extra package folders, which say nothing about the install.
QUIET_PIP := { grep -v "is ignored" || true; }

.PHONY: venv book test unit chromium clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt 2>&1 | $(QUIET_PIP)
	$(PY) -c "import course_lib, torch, jupyter_book, nbval, papermill"
	touch $(STAMP)

# The book's own environment. A .gitignore inside keeps it out of git (python3.13's venv writes one itself).
$(BOOK_STAMP): requirements-book.txt
	test -x $(BOOK_VENV)/bin/python || { python3 -m venv $(BOOK_VENV) && echo '*' > $(BOOK_VENV)/.gitignore; }
	$(BOOK_VENV)/bin/python -m pip install --quiet -r requirements-book.txt 2>&1 | $(QUIET_PIP)
	$(BOOK_VENV)/bin/python -c "import jupyter_book, sphinxcontrib.bibtex, pybtex, linkify_it"
	touch $(BOOK_STAMP)

venv: $(STAMP)

# Build the book with the jupyter-book of the environment $(1). It renders the notebooks' stored outputs (they come
# from `python -m course_lib.experiments`) and executes nothing, so any environment with requirements-book.txt does.
define build_book
	rm -rf _build/html    # jupyter-book never deletes pages that left the toc
	$(1)/bin/jupyter-book build --all --warningiserror --keep-going --nitpick .
endef

## The book, from its own small environment (no torch).
book: $(BOOK_STAMP)
	$(call build_book,$(BOOK_VENV))
	@echo "Book built: open _build/html/index.html"

## Every check: unit tests and the notebooks under nbval; the notebook tests (papermill) twice in a row on the state
## the runs before them left, as someone running `pytest tests` twice would (no COURSE_WORKDIR: each run keeps its
## models in its own pytest temporary folder); then the book, built as `make book` builds it, in headless Chromium.
## Models trained under nbval go to a fresh temporary folder, never into the working tree.
PAPERMILL := tests/test_notebooks.py::test_papermill_runs_with_injected_parameters
test: $(STAMP) $(BOOK_STAMP) chromium
	WORK=$$(mktemp -d) && $(TEST_ENV) COURSE_WORKDIR=$$WORK COURSE_INSTALL_CHECKS=1 $(PY) -m pytest -q tests \
	  --deselect $(PAPERMILL) --nbval-lax notebooks && rm -rf $$WORK
	for run in 1 2; do env -u COURSE_WORKDIR $(TEST_ENV) $(PY) -m pytest -q tests/test_notebooks.py; done
	$(call build_book,$(BOOK_VENV))
	$(TEST_ENV) $(PY) tools/check_book.py _build/html --screenshots artifacts/screenshots

## Debian's Chromium for the browser checks (installed once; needs root or sudo).
chromium:
	@command -v chromium >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

## The fast tests (a few minutes): everything but the tests marked slow (papermill, venv and wheel builds,
## Chromium, training in a subprocess), which `make test` runs too.
unit: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf _build artifacts .pytest_cache
