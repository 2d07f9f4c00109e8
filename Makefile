# Téléimagerie — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PORT   ?= 8000
PYTHON_PATHS := server rooms dicomweb tests bench

.PHONY: install run test test-sqlite test-postgresql services lint clean bench-served

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/teleimagerie migrate
	$(BIN)/teleimagerie demo
	$(BIN)/teleimagerie serve --port $(PORT)

services:
	@bash scripts/services.sh

# The served path beside Orthanc, SQLite then PostgreSQL (docs/benchmarks.md "Served path").
# ARGS="--runs 3", "--database sqlite", "--baseline ../other-checkout" ...
bench-served: install
	@bash scripts/services.sh --bench
	$(BIN)/python bench/served.py $(ARGS)

# The whole suite runs twice: on the embedded SQLite default and on PostgreSQL, side by
# side (each run waits mostly on browsers, sockets and subprocesses, not on the CPU).
# Each run has its own databases, Redis key prefixes, temp dirs and pytest cache; its
# output is kept in var/test-<database>.log and printed whole; make fails if either fails.
test: lint services
	@mkdir -p var
	@TEST_DATABASE=sqlite $(BIN)/python -m pytest -o cache_dir=.pytest_cache/sqlite \
		> var/test-sqlite.log 2>&1 & sqlite=$$!; \
	TEST_DATABASE=postgresql $(BIN)/python -m pytest -o cache_dir=.pytest_cache/postgresql \
		> var/test-postgresql.log 2>&1 & postgresql=$$!; \
	wait $$sqlite; s=$$?; wait $$postgresql; p=$$?; \
	echo "== TEST_DATABASE=sqlite (exit $$s)"; cat var/test-sqlite.log; \
	echo "== TEST_DATABASE=postgresql (exit $$p)"; cat var/test-postgresql.log; \
	test $$s -eq 0 -a $$p -eq 0

test-sqlite: install services
	TEST_DATABASE=sqlite $(BIN)/python -m pytest $(ARGS)

test-postgresql: install services
	TEST_DATABASE=postgresql $(BIN)/python -m pytest $(ARGS)

# Lint, format, types and layers; mypy and lint-imports read pyproject.toml.
lint: install
	$(BIN)/python -m ruff check $(PYTHON_PATHS)
	$(BIN)/python -m ruff format --check $(PYTHON_PATHS)
	$(BIN)/python -m mypy server rooms dicomweb
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache
