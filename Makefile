# fvc-dagster: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
FVC_DATA_DIR ?= $(CURDIR)/data
export FVC_DATA_DIR
export DAGSTER_HOME := $(FVC_DATA_DIR)/dagster_home

.PHONY: demo test dev serve bench lint format clean

$(BIN)/fvc: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/uv pip install --quiet -e '.[dev,scaleout]'
	touch $(BIN)/fvc

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(BIN)/fvc $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/fvc demo

dev: $(BIN)/fvc $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

# fvc-detector@champion over HTTP on 127.0.0.1:$(SERVE_PORT) (POST /invocations): video bytes in
# base64, or paths under $$FVC_SERVING_ROOT; the registry of MLFLOW_TRACKING_URI or the data root.
SERVE_PORT ?= 5001
serve: $(BIN)/fvc
	$(BIN)/fvc serve --port $(SERVE_PORT)

# Three pytest workers on two cores, one compute thread each (OpenMP/BLAS threads of workers
# sharing cores spin against each other: a quarter more CPU time, a minute more wall time). The
# end-to-end tests mostly wait on servers and subprocesses: a third worker fills that time
# (measured in docs/testing.md).
test: $(BIN)/fvc lint
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  $(BIN)/python -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder --timeout=900

lint: $(BIN)/fvc
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/fvc
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BIN)/fvc
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.training_input
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.network_input --section "Recommended settings"
	$(BIN)/python -m bench.generalisation --shift codec=mpeg4

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
