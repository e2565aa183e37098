# kgmrc: `make demo` runs the pipeline on the local store, `make test` runs the tests.
# Both create .venv and install everything (torch==2.13.0 CPU + the package + dev tools) in one pip resolve.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
KG_TRIPLES := $(firstword $(wildcard $(SHARED)/data/kg/xywy_triples.tsv) examples/sample_kg.tsv)
KG_CONFIG := $(if $(findstring xywy,$(KG_TRIPLES)),configs/kg/xywy.yaml,configs/kg/sample.yaml)

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q "torch==2.13.0" -e ".[dev]"
	touch $@

demo: install
	$(PY) scripts/build_kg.py --triples $(KG_TRIPLES) --config $(KG_CONFIG) --store demo_store \
		--stats --neighbours 糖尿病 --hops 2

test: install
	$(PY) -m pytest -q

clean:
	rm -rf demo_store .pytest_cache
