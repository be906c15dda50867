# Flotilla developer targets. CI (.ci/run) calls `make check` and `make test`.
.PHONY: setup demo serve check test test-fast bench clean

setup:            ## system packages, .venv, node image
	scripts/setup.sh

demo: setup       ## the main job: a server plus a real cluster on this machine
	scripts/demo.sh

serve: setup      ## run API + conductor (embedded default: SQLite, local Docker provider)
	.venv/bin/flotilla serve

check:            ## ruff + mypy --strict + the import contracts (pyproject: tool.importlinter)
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache

test:             ## everything: unit, API (SQLite + PostgreSQL), e2e (Docker), compat (real clients)
	scripts/test.sh

# test-fast: no PostgreSQL, Keystone, RabbitMQ or Docker Engine. The schemathesis fuzz run
# (about 45 s) is opt-in here: `make test-fast FUZZ=1`; `make test` always runs it.
FAST_MARKS = not postgres and not keystone and not amqp and not e2e$(if $(FUZZ),, and not fuzz)
test-fast:        ## unit + API + conductor integration + fake-provider contract, on SQLite
	.venv/bin/python -m pytest -q tests/unit tests/api tests/integration tests/contract -m "$(FAST_MARKS)"

bench: setup
	.venv/bin/python bench/api.py
