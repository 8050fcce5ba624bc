# The README's two commands: `make sample` (screen sample studies on the embedded default) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

# The review app's film viewer (OpenSeadragon), pinned in its package-lock.json
VIEWER := screening/web/viewer/node_modules/openseadragon/package.json

.PHONY: sample test test-fast test-tools

$(BIN)/screen: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VIEWER): screening/web/viewer/package-lock.json
	npm ci --prefix screening/web/viewer --no-audit --no-fund --loglevel=error
	touch $@

sample: $(BIN)/screen $(VIEWER)
	$(BIN)/screen enqueue --wait ../shared/data/dicom ../shared/data/cxr-fullres/val
	$(BIN)/screen results --studies
	$(BIN)/screen results

# What the tests run besides Python (Debian's packages): a compose client to validate the compose files, a
# Chromium for the review app's browser test (Playwright drives it; its own browser download is not needed), and
# the DICOM peers a hospital has: dcmtk's storescu as the modality, Orthanc as the archive.
test-tools:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	@{ test -x /usr/bin/storescu && test -x /usr/sbin/Orthanc; } || \
	  { apt-get update -qq && apt-get install -y -qq dcmtk orthanc >/dev/null; }

test: $(BIN)/screen $(VIEWER) test-tools
	$(BIN)/screen weights fetch
	$(BIN)/ruff check screening tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadgroup   # two processes: most tests wait on workers, brokers and model loads

# The unit tier only (no Redis, PostgreSQL or `screen` processes): a minute, for the edit-test loop.
test-fast: $(BIN)/screen
	$(BIN)/screen weights fetch   # cached after the first time; the model tests read them
	$(BIN)/pytest -n 2 --dist loadgroup -m unit -q
