# Lens — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m lens.devstack
CHROMIUM ?= /usr/bin/chromium
# Tests get their own channel-layer prefix and queue, so a demo running beside them is untouched.
TEST_ENV := CHANNEL_LAYER_PREFIX=lens-test CELERY_QUEUE=lens-test DEBUG=true

.PHONY: demo test test-unit test-e2e install lint stack-down vendor clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[local,dev]"
	@touch $@

install: $(VENV)/.installed

## make demo: services, migrations, demo data, web + worker + beat; Ctrl-C stops all.
demo: install
	$(STACK) demo

## make test: the whole suite (unit/integration, then the real-browser tests).
test: install lint chromium
	$(STACK) run -- $(MAKE) --no-print-directory test-unit test-e2e

test-unit:
	$(TEST_ENV) $(PY) -m pytest --ignore=tests/e2e

# Browser tests need their own process (Playwright breaks async_to_sync beside them).
test-e2e:
	$(TEST_ENV) DJANGO_ALLOW_ASYNC_UNSAFE=true $(PY) -m pytest tests/e2e

lint: install
	$(VENV)/bin/ruff check .

# Debian's Chromium for the browser tests (Playwright must not download its own).
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Chromium first: sudo apt-get install -y chromium" >&2; exit 1; fi; }

stack-down:
	$(STACK) down

# Refresh static/vendor from the npm lockfile (the copies are committed).
vendor:
	npm ci --no-audit --no-fund
	cp node_modules/htmx.org/dist/htmx.min.js node_modules/htmx-ext-ws/dist/ws.min.js static/vendor/

clean: stack-down
	rm -rf var/ $(VENV)
