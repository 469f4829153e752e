# One entry for humans and CI: `make dev` runs the local stack, `make test` runs every check.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install dev test check lint typecheck pytest browser promtool schemas bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The local stack: embedded broker, sandbox, ingress, orders and trades workers, and a demo.
dev: install
	$(VENV)/bin/pooul-worker dev

## Everything CI runs: lint, types, contract files, the whole test suite against a real broker.
test: install browser promtool lint typecheck pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

pytest: install
	$(PY) -m pytest

## Headless Chromium for the cashier end-to-end test (Debian packages; needs root).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "chromium could not be installed: the browser test will be skipped"; \
	else echo "no chromium and no root: the browser test will be skipped"; fi

## promtool (Debian's prometheus package) runs the alert rules' unit tests (needs root).
promtool:
	@if command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing promtool for the alert rule tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends prometheus >/dev/null) \
			|| echo "promtool could not be installed: the alert rule tests will be skipped"; \
	else echo "no promtool and no root: the alert rule tests will be skipped"; fi

schemas: install
	$(VENV)/bin/pooul-worker schemas export

bench: install
	$(VENV)/bin/pooul-worker bench runtime
	$(VENV)/bin/pooul-worker bench ingress
	$(VENV)/bin/pooul-worker bench orders
	$(VENV)/bin/pooul-worker bench trades

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
