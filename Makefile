# The whole set-up on a fresh machine is `make demo` or `make test`: both create .venv with python3 when it is
# missing and install the project into it. Each stamp records which extras are installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: demo test test-slow lint check bench clean chromium java

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) -e ".[test,spark]"
	touch $@ $(VENV)/.stamp-base

$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PIP) -e ".[test,dev,spark]"
	touch $@ $(VENV)/.stamp-test $(VENV)/.stamp-base

$(VENV)/.stamp-bench: pyproject.toml | $(PY)
	$(PIP) -e ".[test,bench,spark]"
	touch $@ $(VENV)/.stamp-test $(VENV)/.stamp-base

demo: $(VENV)/.stamp-base
	$(VENV)/bin/clv demo

# The browser test (tests/test_report_browser.py) opens the reports in Debian's chromium: installed here when it
# is absent and we are root or have passwordless sudo; otherwise the test is skipped (and fails under CI=true).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is absent and cannot be installed here (not root, no sudo): the browser test is skipped" >&2; fi; }

# engine: spark (tests/test_spark.py) needs Java 17: Debian's openjdk-17-jre-headless, installed here when no java
# is on PATH and we are root or have passwordless sudo; otherwise the Spark tests are skipped (and fail under CI=true).
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	  else echo "java is absent and cannot be installed here (not root, no sudo): the Spark tests are skipped" >&2; fi; }

test: $(VENV)/.stamp-test chromium java
	$(PY) -m pytest -m "not slow" -q

test-slow: $(VENV)/.stamp-test java
	$(PY) -m pytest -m slow -q

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check clv tests bench
	$(VENV)/bin/ruff format --check clv tests bench
	$(VENV)/bin/mypy

check: lint test

bench: $(VENV)/.stamp-bench
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
