# Two commands do all setup on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@echo ">> creating $(VENV) and installing pinned dependencies (torch is large: a few minutes)"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/split-perception demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) out packets results.json
