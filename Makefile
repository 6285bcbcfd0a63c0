# make venv  - create .venv and install the pinned requirements and the package (no-op when up to date)
# make test  - venv, then the test-suite
# make demo  - venv, then the end-to-end job on the synthetic dataset
# make venv-ort - .venv-ort: onnxruntime and its own numpy (requirements-ort.txt), for deploy/export.py
# make export ARGS="--model PREFIX,EPOCH --out DIR --data-dir D ..." - both venvs, then deploy/export.py
# make deploy-bench - both venvs, then bench/deploy.py: the deployment table of make demo's models
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   ?= requirements.txt
VENV_ORT  := .venv-ort
PY_ORT    := $(VENV_ORT)/bin/python
STAMP_ORT := $(VENV_ORT)/.installed
REQS_ORT  ?= requirements-ort.txt

.PHONY: venv venv-ort test demo export deploy-bench bench clean

venv: $(STAMP)

$(STAMP): $(REQS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQS)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# onnxruntime needs numpy>=1.24.2, MXNet numpy<1.24: a second environment, checked by pip check
venv-ort: $(STAMP_ORT)

$(STAMP_ORT): $(REQS_ORT) pyproject.toml
	test -x $(PY_ORT) || $(PYTHON) -m venv $(VENV_ORT)
	$(PY_ORT) -m pip install --quiet -r $(REQS_ORT)
	$(PY_ORT) -m pip install --quiet --no-deps -e .
	$(PY_ORT) -m pip check
	touch $(STAMP_ORT)

test: venv venv-ort
	$(PY) -m pip check
	$(PY) -m pytest -q

export: venv venv-ort
	$(PY) -u deploy/export.py $(ARGS)

deploy-bench: venv venv-ort
	$(PY) -u bench/deploy.py $(ARGS)

demo: venv
	$(PY) -u bench/demo.py

clean:
	rm -rf $(VENV) $(VENV_ORT) demo_out
