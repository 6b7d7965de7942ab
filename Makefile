# Set-up and everyday commands; each target installs what it needs first (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SEEDS  ?= config/seeds.example.txt
ARGS   ?=
PYTEST_ARGS ?=
TEST_PROCS  ?= 6
# make bench: pages a site and runs of each contender. The full run (every contender, both
# sites, the frontier and hub runs) takes about 18 min so; REPEAT=3 gives medians (about 50 min)
N        ?= 5000
REPEAT   ?= 1
FRONTIER ?= 1000000
BIG      ?= 100000
SCRAPY   := bench/.venv-scrapy
PYWB     := tests/.venv-pywb
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)

# $(call apt,COMMAND,PACKAGES,WHY): install Debian packages when COMMAND (or a file they ship) is missing
apt = @command -v $(1) >/dev/null 2>&1 || test -x /usr/sbin/$(1) || test -e $(1) || { \
	echo "installing Debian's $(2) $(3)"; \
	$(SUDO) apt-get update -qq && \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $(2) >/dev/null; }

.PHONY: install browser redis nginx docs pywb proxy test screenshot crawl demo bench bench-big lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed as $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# bytecode now, as pip compiles what it installs: with PYTHONDONTWRITEBYTECODE set (CI
	@# machines, containers) every crawl and parse process would compile the sources again
	$(BIN)/python -m compileall -q crawler bench tests >/dev/null
	touch $(STAMP)

install: $(STAMP)

# the report test opens report.html in headless Chromium
browser:
	$(call apt,/usr/bin/chromium,chromium fonts-dejavu-core,for the report test)

# the shared-frontier tests start their own redis-server (tests/conftest.py: redis_server) on
# a free loopback port, and stop it at the end of the session, failed or not
redis:
	$(call apt,redis-server,redis-server,for the shared-frontier tests)

# the bench (and its test) serve the generated site with nginx
nginx:
	$(call apt,nginx,nginx,for the bench)

# real markup for the tests: Django's documentation (Debian's python-django-doc, ~700 pages),
# served by nginx from /usr/share/doc (tests/conftest.py: doc_site)
docs:
	$(call apt,/usr/share/doc/python-django-doc/html/index.html,python-django-doc,for the real-markup tests)

# the replay test runs pywb (wb-manager, wayback) on loopback; pywb pins redis 2 and fakeredis 0,
# which clash with ours, so it has a virtualenv of its own (tests/test_warc_replay.py)
$(PYWB)/.installed: tests/requirements-pywb.txt
	test -x $(PYWB)/bin/python || $(PYTHON) -m venv $(PYWB)
	$(PYWB)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

pywb: $(PYWB)/.installed

# the proxy tests start their own tinyproxy on a free loopback port (tests/proxies.py) and read
# its log; the SOCKS5 one is pproxy, from the dev extra
proxy:
	$(call apt,tinyproxy,tinyproxy,for the proxy tests)

$(SCRAPY)/.installed: bench/requirements-scrapy.txt
	test -x $(SCRAPY)/bin/python || $(PYTHON) -m venv $(SCRAPY)
	$(SCRAPY)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

test: install browser redis nginx docs pywb proxy
	$(BIN)/pytest -n $(TEST_PROCS) $(PYTEST_ARGS)

# refresh the README's picture: the Chromium test's screenshot of a report
screenshot: install browser
	CRAWLER_SCREENSHOT=docs/report.png $(BIN)/pytest -q tests/test_report_e2e.py -k chromium

crawl: install
	$(BIN)/crawl $(SEEDS) $(ARGS)

demo: install
	$(BIN)/python -m crawler.demo

bench: install nginx redis $(SCRAPY)/.installed
	$(BIN)/python -m bench --pages $(N) --repeat $(REPEAT) --frontier $(FRONTIER)

# flat cost as the job grows: the crawler alone on a big site, last tenth's pages/s vs first's
bench-big: install nginx
	$(BIN)/python -m bench --pages $(BIG) --repeat 1 --frontier 0 --contenders crawler \
		--results bench/results/big.json

lint: install
	$(BIN)/ruff check crawler tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(SCRAPY) $(PYWB) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
