# One virtual environment in .venv; every target installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

.PHONY: setup demo lint test test-fast bench reliability bench-tumult-env clean airflow-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -m mobility.spark --warm   # fetch and cache the Delta JVM package once
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/mobility demo --workdir $(or $(WORKDIR),demo-out)

# ruff (lint and import order) on all Python code, mypy on src/; settings in pyproject.toml.
# Both always run, so one call shows every problem; the target fails if either found one.
lint: $(STAMP)
	@status=0; \
	$(BIN)/ruff check src tests bench jobs infra || status=1; \
	$(BIN)/mypy || status=1; \
	exit $$status

# The full suite: local Spark, the standalone cluster, Chromium and Airflow tests (those two skip
# themselves when the browser or .venv-airflow is missing) and the slow end-to-end runs.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Day-to-day subset: local Spark only; no cluster, browser, Airflow, object store or slow end-to-end runs.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not cluster and not browser and not airflow and not airflow_run and not objectstore \
	  and not slow" $(PYTEST_ARGS)

# Airflow pins clash with our pandas/pyspark, so it gets a venv of its own; only the DAG tests use it
# (tests/infra/test_airflow_dag.py loads the DAG, tests/infra/test_dag_run.py runs it with `airflow dags test`).
# apache-airflow 3 brings the standard provider (BashOperator), the only one the DAG needs.
$(AIRFLOW_STAMP):
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet "apache-airflow>=3.1,<4"
	touch $(AIRFLOW_STAMP)

airflow-venv: $(AIRFLOW_STAMP)

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# docs/reliability.md: the fault-matrix, bad-input and executor-loss tests (two pytest runs), then a key
# rotation of a lake of 1m events (bench/reliability.py). Options, e.g. RELIABILITY_ARGS="--skip-rotation".
reliability: $(STAMP)
	$(BIN)/python -m bench.reliability $(RELIABILITY_ARGS)

# Tumult Analytics for the accuracy comparison only (bench/peer_accuracy.py): it pins pyspark<3.6 and
# pandas<2 on Python 3.11, so it gets its own environment and exchanges data with .venv as Parquet.
TUMULT_VENV := .venv-tumult
$(TUMULT_VENV)/.installed:
	$(PYTHON) -m venv $(TUMULT_VENV)
	$(TUMULT_VENV)/bin/pip install --quiet --upgrade pip
	$(TUMULT_VENV)/bin/pip install --quiet "tmlt.analytics==0.21.0" pyarrow
	touch $@

bench-tumult-env: $(TUMULT_VENV)/.installed

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
