# The README's two commands: `make sample` (screen sample studies on the embedded default) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: sample test

$(BIN)/screen: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

sample: $(BIN)/screen
	$(BIN)/screen enqueue --wait ../shared/data/dicom ../shared/data/cxr-fullres/val
	$(BIN)/screen results --studies
	$(BIN)/screen results

test: $(BIN)/screen
	$(BIN)/screen weights fetch
	$(BIN)/ruff check screening tests bench
	$(BIN)/pytest
