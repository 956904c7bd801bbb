# One command to serve the dashboard, one to run the tests; each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5006
# torch is pinned to the CPU build in constraints.txt; an unpinned torch would pull a CUDA build.
# pip compiles every installed module on one core (half of a fresh set-up's minute and a half);
# compileall does it on every core. Compiled here, not on first import: an environment with
# PYTHONDONTWRITEBYTECODE (this one has it) would otherwise compile torch in every process.
# The packages' own test folders (a quarter of the sources) are never imported here: left out.
# A few test-only files of torch use Python 3.12 syntax; pip skips them too, hence `|| true`.
# torch comes from pip, which reads this machine's pip configuration (where the CPU build lies;
# uv reads none of it); the 100-odd other packages from uv, which installs in parallel: a fresh
# install-test took 44-49 s instead of 56-76 s with pip alone. Where uv cannot be installed or
# fails (no index it can reach), pip installs them.
PIP_INSTALL := $(BIN)/pip install --disable-pip-version-check -q --no-compile -c constraints.txt
INSTALL = $(PIP_INSTALL) torch==2.13.0 && { $(BIN)/uv pip install -q --python $(BIN)/python \
	-c constraints.txt $(1) || $(PIP_INSTALL) $(1); }
TEST_SPEC := -e ".[test,interop]"
COMPILE := $(BIN)/python -m compileall -qq -j 0 -x 'site-packages/.*/tests?/' $(VENV)/lib spikeviz || true

.PHONY: serve test install install-test browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q uv || true

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(call INSTALL,-e .)
	$(COMPILE)
	touch $@

# A superset of .installed, installed and compiled in one pass (not one after the other).
$(VENV)/.installed-test: $(BIN)/python pyproject.toml constraints.txt
	$(call INSTALL,$(TEST_SPEC))
	$(COMPILE)
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test browser

# Headless Chromium for the end-to-end tests: Debian's package (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "warning: chromium not found (apt-get install chromium); browser tests will be skipped"; fi; }

serve: install
	$(BIN)/panel serve app.py --setup spikeviz/dashboard/warm.py --address $(HOST) --port $(PORT) --allow-websocket-origin=$(HOST):$(PORT)

# Two pytest-xdist workers, one thread each; the browser tests run one at a time on one of them
# (conftest.py: two at once on two cores starved each other's pages past their timeouts).
# TEST_WORKERS=0 runs everything in one process. The 15 slowest tests are listed at the end.
TEST_WORKERS ?= 2
test: install-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
