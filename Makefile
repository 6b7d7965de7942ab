# Set-up and everyday commands; each target installs what it needs first (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SEEDS  ?= config/seeds.example.txt
ARGS   ?=
PYTEST_ARGS ?=
CHROMIUM := /usr/bin/chromium
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install browser redis test screenshot crawl demo lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed as $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# the report test opens report.html in headless Chromium from the system packages
browser:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the report test"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium fonts-dejavu-core >/dev/null; }

# the shared-frontier tests start their own redis-server (tests/conftest.py: redis_server) on
# a free loopback port, and stop it at the end of the session, failed or not
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing Debian's redis-server for the shared-frontier tests"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends redis-server >/dev/null; }

test: install browser redis
	$(BIN)/pytest $(PYTEST_ARGS)

# refresh the README's picture: the Chromium test's screenshot of a report
screenshot: install browser
	CRAWLER_SCREENSHOT=docs/report.png $(BIN)/pytest -q tests/test_report_e2e.py -k chromium

crawl: install
	$(BIN)/crawl $(SEEDS) $(ARGS)

demo: install
	$(BIN)/python -m crawler.demo

lint: install
	$(BIN)/ruff check crawler tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
