# flowpaint: `make run` serves the app, `make test` runs the suite; both install into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench screenshots lint clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@# Debian's Chromium for the browser test (as root, e.g. in CI); without it that test skips.
	command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m inpaint_app serve --host 127.0.0.1 --port 7860

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# Rewrites the tracked docs/screenshots/*.png (make test writes its screenshots to a temp folder).
screenshots: $(STAMP)
	FLOWPAINT_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_browser.py

bench: $(STAMP)
	$(PY) -m pip install --quiet --no-deps -r requirements-bench.txt
	$(PY) -m pipelines.benchmark

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(PY) -m ruff check inpaint_app pipelines tests

clean:
	rm -rf $(VENV) .pytest_cache
