# flowpaint: `make run` serves the app, `make test` runs the suite; both install into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench screenshots lint lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# The package in editable mode with its test extra, every version pinned by the lock.
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	@# Debian's Chromium for the browser test (as root, e.g. in CI); without it that test skips.
	command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m inpaint_app serve --host 127.0.0.1 --port 7860

# PYTEST_ARGS picks a part of the suite, e.g. make test PYTEST_ARGS='-m "not data"'.
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# Rewrites the tracked docs/screenshots/*.png (make test writes its screenshots to a temp folder).
screenshots: $(STAMP)
	FLOWPAINT_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_browser.py

bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(PY) -m benchmarks.benchmark

lint: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m ruff check inpaint_app pipelines benchmarks tests

# Pins what this venv holds (after a passing `make test`) as the new lock.
lock: $(STAMP)
	( echo "# The tested set of every package, pinned: make installs with '-c constraints.txt'."; \
	  echo "# Regenerate from a venv that passes 'make test' with 'make lock'."; \
	  $(PY) -m pip freeze --exclude-editable | grep -iv '^flowpaint' ) > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
