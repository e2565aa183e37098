# kgmrc: `make demo` runs the pipeline on the local store, `make test` runs the tests.
# Both create .venv and install everything (torch==2.13.0 CPU + the package + dev tools) in one pip resolve.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared

.PHONY: demo test install browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q "torch==2.13.0" -e ".[dev]"
	touch $@

demo: install
	$(PY) scripts/demo.py --shared $(SHARED) --out demo_run

test: install
	$(PY) -m pytest -q

# Headless Chromium (and a CJK font for its screenshots) for tests/test_html.py's browser checks (Debian/Ubuntu, as root); the tests skip without it.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk)

clean:
	rm -rf demo_run .pytest_cache
