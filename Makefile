# Two commands on a fresh machine (Python 3.11): `make book` builds the book, `make test` runs every check.
# Both create or refresh the virtual environment from requirements.txt themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Tests and CI never touch the network and run the small CPU budget.
TEST_ENV := COURSE_OFFLINE=1 COURSE_PROFILE=smoke COURSE_PLAIN_PROGRESS=1 PYTHONHASHSEED=0

.PHONY: venv book test unit chromium clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -c "import course_lib, torch, jupyter_book, nbval, papermill"
	touch $(STAMP)

venv: $(STAMP)

## The book: renders the stored notebook outputs (they come from `python -m course_lib.experiments`).
book: $(STAMP)
	rm -rf _build/html    # jupyter-book never deletes pages that left the toc
	$(VENV)/bin/jupyter-book build --all --warningiserror --keep-going --nitpick . 
	@echo "Book built: open _build/html/index.html"

## Every check: unit tests, notebooks under nbval + papermill, then the built book in headless Chromium.
## Models trained by the notebook tests go to a fresh temporary folder, never into the working tree.
test: $(STAMP) chromium
	WORK=$$(mktemp -d) && $(TEST_ENV) COURSE_WORKDIR=$$WORK $(PY) -m pytest -q tests --nbval-lax notebooks \
	  && rm -rf $$WORK
	$(MAKE) book
	$(TEST_ENV) $(PY) tools/check_book.py _build/html --screenshots artifacts/screenshots

## Debian's Chromium for the browser checks (installed once; needs root or sudo).
chromium:
	@command -v chromium >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

unit: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -q tests

clean:
	rm -rf _build artifacts .pytest_cache
