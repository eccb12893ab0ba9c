# The two commands of the README: `make test` and `make demo` (DEMO_ARGS="--approve all --days 3"). Each bootstraps what it needs on a
# machine that has only python3: uv (installed with pip into .tools/ when not on PATH), then the
# locked dependencies into .venv, with bytecode compiled (without it every start pays seconds).

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif
export UV_COMPILE_BYTECODE := 1
export UV_LINK_MODE := copy
# Use the platform certificate store (corporate proxies add their CA there, not to uv's bundle).
export UV_SYSTEM_CERTS := 1
VENV_STAMP := .venv/.synced

.PHONY: test lint typecheck pytest demo bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

$(VENV_STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

lint: $(VENV_STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: $(VENV_STAMP)
	.venv/bin/mypy

pytest: $(VENV_STAMP)
	.venv/bin/pytest

test: lint typecheck pytest

demo: $(VENV_STAMP)
	.venv/bin/tradeops demo $(DEMO_ARGS)

bench: $(VENV_STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; .venv/bin/python $$script || exit 1; done

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache var
