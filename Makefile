# make venv  - create .venv: the runtime requirements (REQS), every dependency pinned by constraints.txt,
#              and the package (no-op when up to date)
# make test  - venv with requirements-test.txt, venv-ort, then the test-suite
# make demo  - venv, then the end-to-end job on the synthetic dataset
# make venv-ort - .venv-ort: onnxruntime and its own numpy (requirements-ort.txt), for deploy/export.py
# make export ARGS="--model PREFIX,EPOCH --out DIR --data-dir D ..." - both venvs, then deploy/export.py
# make deploy-bench - both venvs, then bench/deploy.py: the deployment table of make demo's models
# make constraints - rewrite constraints.txt after a pin changed: resolve the requirement files afresh (docs/installation.md)
# New environments are made with PYTHON (python3), which must be 3.8-3.11: make venv PYTHON=python3.11
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   ?= requirements.txt
CONSTRAINTS := constraints.txt
REQS_TEST   := requirements-test.txt
STAMP_TEST  := $(VENV)/.installed-test
VENV_ORT  := .venv-ort
PY_ORT    := $(VENV_ORT)/bin/python
STAMP_ORT := $(VENV_ORT)/.installed
REQS_ORT  ?= requirements-ort.txt

# a comma inside an argument of $(call)
, := ,

.PHONY: venv venv-test venv-ort test demo export deploy-bench bench constraints clean

# Before a new environment is made: PYTHON must be 3.8-3.11 (pyproject.toml's requires-python).
# $(1): the target to repeat, $(2): why a newer Python fails. One line, then make stops.
check_python = v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || \
	{ echo "make: $(PYTHON) not found: run make $(1) PYTHON=python3.11" >&2; exit 1; }; \
	case "$$v" in 3.8|3.9|3.10|3.11) ;; \
	2.*|3.[0-7]) echo "make: Python $$v is not supported (pyproject.toml's requires-python is >=3.8$(,)<3.12): run make $(1) PYTHON=python3.11" >&2; exit 1;; \
	*) echo "make: Python $$v is not supported ($(2)): run make $(1) PYTHON=python3.11" >&2; exit 1;; esac

venv: $(STAMP)

$(STAMP): $(REQS) $(CONSTRAINTS) pyproject.toml
	@test -x $(PY) || { $(call check_python,venv,MXNet 1.9.1 needs numpy<1.24$(,) which has no wheels for it); }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQS) -c $(CONSTRAINTS)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# the test tools, beside the runtime
venv-test: $(STAMP_TEST)

$(STAMP_TEST): $(STAMP) $(REQS_TEST) $(CONSTRAINTS)
	$(PY) -m pip install --quiet -r $(REQS_TEST) -c $(CONSTRAINTS)
	touch $(STAMP_TEST)

# onnxruntime needs numpy>=1.24.2, MXNet numpy<1.24: a second environment, checked by pip check
venv-ort: $(STAMP_ORT)

$(STAMP_ORT): $(REQS_ORT) pyproject.toml
	@test -x $(PY_ORT) || { $(call check_python,venv-ort,pyproject.toml's requires-python is >=3.8$(,)<3.12); }
	test -x $(PY_ORT) || $(PYTHON) -m venv $(VENV_ORT)
	$(PY_ORT) -m pip install --quiet -r $(REQS_ORT)
	$(PY_ORT) -m pip install --quiet --no-deps -e .
	$(PY_ORT) -m pip check
	touch $(STAMP_ORT)

test: venv-test venv-ort
	$(PY) -m pip check
	$(PY) -m pytest -q

export: venv venv-ort
	$(PY) -u deploy/export.py $(ARGS)

deploy-bench: venv venv-ort
	$(PY) -u bench/deploy.py $(ARGS)

demo: venv
	$(PY) -u bench/demo.py

# a fresh resolution of the requirement files, without the old lock, in a throwaway environment
constraints:
	@$(call check_python,constraints,MXNet 1.9.1 needs numpy<1.24$(,) which has no wheels for it)
	lock=$$(mktemp -d) && trap 'rm -rf "$$lock"' EXIT && \
	$(PYTHON) -m venv "$$lock" && \
	"$$lock/bin/python" -m pip install --quiet --upgrade pip && \
	"$$lock/bin/python" -m pip install --quiet -r $(REQS) -r $(REQS_TEST) && \
	"$$lock/bin/python" -m pip install --quiet --no-deps . && \
	"$$lock/bin/python" tools/freeze_constraints.py --requirements $(REQS),$(REQS_TEST) --out $(CONSTRAINTS)

clean:
	rm -rf $(VENV) $(VENV_ORT) demo_out
