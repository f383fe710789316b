# Two commands do everything on a fresh machine:
#   make demo   - build the default data, meta-train, export, verify, emulate; writes demo-out/report.md
#   make test   - run the test suite
# Both create .venv with Python 3.10 on first use and install the project into it.

SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.neuromaml-installed
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: demo test venv clean-venv

venv: $(STAMP)

# Find a Python 3.10: python3.10 on PATH, else pyenv's 3.10.x.
$(VENV)/bin/python:
	@PYBIN=""; \
	if command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys; assert sys.version_info[:2]==(3,10)' >/dev/null 2>&1; then PYBIN=python3.10; \
	elif command -v pyenv >/dev/null 2>&1 && V=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$$' | tail -n1) && [ -n "$$V" ]; then PYBIN="$$(pyenv root)/versions/$$V/bin/python3.10"; \
	fi; \
	if [ -z "$$PYBIN" ]; then echo "error: neuromaml needs Python 3.10 (lava-nc 0.10 and lava-dl 0.6 require it); install it, e.g. 'pyenv install 3.10' or your OS package python3.10, then re-run make." >&2; exit 1; fi; \
	echo "creating $(VENV) with $$PYBIN"; \
	"$$PYBIN" -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/neuromaml demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
