# The two commands of the README: `make run` and `make test`. Everything they need is set up
# here, on a fresh Debian machine with Python 3.11, as root.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: install tools run test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Prometheus and promtool for the rule tests and the end-to-end proof; kubectl for the
# manifests. Installed only when missing.
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
		{ $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends prometheus; }

run: install
	$(PY) -m exporter --demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: install tools lint
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
