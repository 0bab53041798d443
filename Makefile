# The two set-up commands a newcomer needs are `make demo` and `make test`;
# each creates .venv and installs the project into it when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench examples clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nnpm needs Python 3.11+ (found " + sys.version.split()[0] + ")")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

examples: $(STAMP)
	$(BIN)/python -m examples.build build/examples

demo: $(STAMP)
	$(BIN)/python -m examples.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile   # one worker per core; a module's tests stay together

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf build dist *.egg-info
