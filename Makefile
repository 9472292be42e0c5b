# pgjobs developer commands. `make demo` and `make test` are all a newcomer needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint format mypy check bench bench-views bench-dashboard bench-worker-exit bench-volume bench-task-stats faults faults-quick clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,bench,dashboard]"
	touch $(STAMP)

install: $(STAMP)

## Run the end-to-end demo on the embedded PostgreSQL (or PGJOBS_DATABASE_URL).
demo: $(STAMP)
	$(VENV)/bin/pgjobs demo

## Run the whole test suite (embedded PostgreSQL unless PGJOBS_TEST_DATABASE_URL).
test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check pgjobs tests examples migrations bench faults
	$(VENV)/bin/ruff format --check pgjobs tests examples migrations bench faults

format: $(STAMP)
	$(VENV)/bin/ruff format pgjobs tests examples migrations bench faults
	$(VENV)/bin/ruff check --fix pgjobs tests examples migrations bench faults

mypy: $(STAMP)
	$(VENV)/bin/mypy

check: lint mypy test

## Benchmarks against stock procrastinate and pgqueuer (see bench/README.md).
bench: $(STAMP)
	$(PY) -m bench

## Fault injection (worker kills, database restart, cut connections, locks under
## concurrency, 10 minutes of sustained load): prints a table; exit 1 if a job is lost.
faults: $(STAMP)
	$(PY) -m faults

faults-quick: $(STAMP)
	$(PY) -m faults --quick

## The monitoring views timed with 1,000,000 finished jobs in the table.
bench-views: $(STAMP)
	$(PY) -m bench.views

## Every dashboard page timed with 1,000,000 finished jobs in the table.
bench-dashboard: $(STAMP)
	$(PY) -m bench.dashboard

## A worker's exit and a dead worker's pruning with 1,000,000 finished jobs
## each, at migration 0015 (before) and 0016 (after): seconds, WAL, rows.
bench-worker-exit: $(STAMP)
	$(PY) -m bench.worker_exit --output bench/results/worker-exit.md

## A compressed day: jobs enqueued, run and pruned for minutes with autovacuum
## on; WAL, bytes on disk, dead rows, claim waits over time (bench/README.md).
## VOLUME_ARGS="--jobs 300000 --rate 700" to change the run.
VOLUME_ARGS ?=
bench-volume: $(STAMP)
	$(PY) -m bench.volume $(VOLUME_ARGS) --output bench/results/volume.md

## pgjobs.task_stats with 1,000,000 attempts in its window: the rollups
## (migration 0020) against the events query they replaced.
bench-task-stats: $(STAMP)
	$(PY) -m bench.task_stats

clean:
	rm -rf $(VENV) .venv-django6 .pgjobs .pytest_cache .mypy_cache .ruff_cache
