# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch is installed first, pinned, so that no other requirement pulls a CUDA build of it.
VENV ?= .venv
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.arc-installed-$(TORCH_VERSION)

.PHONY: install test demo lint format bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m arc.cli.sample --preset tiny --prompt "a low sine tone, steady, panned left" \
		--prompt "a high square tone, pulsing, panned right" --num 2 --steps 8 --out outputs/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check arc tests scripts
	$(VENV)/bin/ruff format --check arc tests scripts

format: $(STAMP)
	$(VENV)/bin/ruff format arc tests scripts
	$(VENV)/bin/ruff check --fix arc tests scripts

bench: $(STAMP)
	$(PY) -m arc.cli.bench dit
