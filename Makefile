# Set-up and everyday commands; each target installs what it needs first (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SEEDS  ?= config/seeds.example.txt
ARGS   ?=
PYTEST_ARGS ?=
N        ?= 10000
REPEAT   ?= 3
FRONTIER ?= 1000000
SCRAPY   := bench/.venv-scrapy
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install test crawl demo lint clean bench nginx

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed as $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# nginx from the system packages, for the bench and its test; Debian puts it in /usr/sbin
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nginx; }

$(SCRAPY)/.installed: bench/requirements-scrapy.txt
	test -x $(SCRAPY)/bin/python || $(PYTHON) -m venv $(SCRAPY)
	$(SCRAPY)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

test: install nginx
	$(BIN)/pytest $(PYTEST_ARGS)

crawl: install
	$(BIN)/crawl $(SEEDS) $(ARGS)

demo: install
	$(BIN)/python -m crawler.demo

bench: install nginx $(SCRAPY)/.installed
	$(BIN)/python -m bench --pages $(N) --repeat $(REPEAT) --frontier $(FRONTIER)

lint: install
	$(BIN)/ruff check crawler tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(SCRAPY) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
