# make venv  - create .venv and install the pinned requirements and the package (no-op when up to date)
# make test  - venv, then the test-suite
# make demo  - venv, then the end-to-end job on the synthetic dataset
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   ?= requirements.txt

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(STAMP): $(REQS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQS)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) -u bench/demo.py

clean:
	rm -rf $(VENV) demo_out
