# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-models test bench clean

install: $(STAMP)

# paddleclas and paddledet pin numpy/opencv versions that cannot be co-installed
# with paddle 3.3.1, so they go in with --no-deps after what they really import.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps paddleclas==2.6.0 paddledet==2.6.0
	touch $(STAMP)

demo: install
	$(PY) tools/demo.py

demo-models: install
	$(PY) tools/demo.py --retrain-only

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf output demo_output
