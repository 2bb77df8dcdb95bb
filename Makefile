# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install chromium demo demo-models test bench clean

install: $(STAMP) chromium

# The browser test of the service's page (tests/serving/test_page.py) drives Debian's chromium
# through Playwright (never `playwright install`). Installed with apt-get only where it is missing
# and only as root (or in CI with passwordless sudo); elsewhere the test is skipped, and a second
# `make install` does nothing.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "note: no chromium and no apt-get: tests/serving/test_page.py will be skipped"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	elif [ -n "$$CI" ] && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "note: chromium is not installed (sudo apt-get install chromium); tests/serving/test_page.py will be skipped"; \
	fi

# paddleclas and paddledet pin numpy/opencv versions that cannot be co-installed
# with paddle 3.3.1, so they go in with --no-deps after what they really import.
# The checkout itself is installed in editable mode (pyproject.toml, its dependencies being those just
# installed; -qq: setuptools warns at every editable install): the `ppshitu` command in .venv/bin runs
# this checkout's code.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps paddleclas==2.6.0 paddledet==2.6.0
	$(PY) -m pip install -qq --no-deps -e .
	touch $(STAMP)

demo: install
	$(PY) tools/demo.py

demo-models: install
	$(PY) tools/demo.py --retrain-only

test: install
	$(PY) -m pytest -q -p no:cacheprovider -rs --durations=12 -n 2 --dist loadfile tests

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf output demo_output
