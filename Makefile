# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.
# Each creates the virtual environment and installs what it needs on first use.
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

.PHONY: run test
run: $(STAMP)
	$(VENV)/bin/neurox run

test: $(STAMP)
	bash tests/setup_tools.sh $(VENV)
	$(VENV)/bin/pytest -q --durations=15
