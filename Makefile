# One task runner. `make demo` and `make test` are the README's Quick start; both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo scan-example test lint typecheck unit bench bench-scan clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[server,admission,dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## The main job: scan the bundled example app (exit 1 = the gate fails, which is the point of the example),
## then start the control plane on the embedded SQLite with a demo organisation (Ctrl-C stops it).
DEMO_DIR ?= .dutyguard
demo: $(STAMP)
	@$(BIN)/dutyguard scan examples/ ; rc=$$?; test $$rc -le 1
	@echo
	@echo "Starting the control plane with a demo organisation in $(DEMO_DIR)/ (Ctrl-C to stop) ..."
	@$(BIN)/dutyguard up --demo --data-dir $(DEMO_DIR)

scan-example: demo

## The whole test suite: lint, strict typing, tests (PostgreSQL-backed tests start their own server).
test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadgroup

bench: bench-scan

bench-scan: $(STAMP)
	$(BIN)/python bench/scan_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
