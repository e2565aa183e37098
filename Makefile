# kgmrc: `make demo` runs the pipeline on the local store, `make test` runs the tests.
# Both create .venv and install everything (torch==2.13.0 CPU + the package + dev tools) in one pip resolve.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q "torch==2.13.0" -e ".[dev]"
	touch $@

demo: install
	$(PY) scripts/demo.py --shared $(SHARED) --out demo_run

test: install
	$(PY) -m pytest -q

clean:
	rm -rf demo_run .pytest_cache
