# ganlab: every target installs into .venv first if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
# Servers listen on 127.0.0.1 unless HOST= is given on the make command line (an exported HOST, which
# some shells set to the machine's name, is ignored); anything else prints a warning first.
HOST := $(if $(filter command line,$(origin HOST)),$(HOST),127.0.0.1)
EXPOSED = $(if $(filter 127.0.0.1 localhost ::1,$(HOST)),,@echo "WARNING: listening on $(HOST): anyone who can reach this machine can read and change every run and study, with no login. For a shared MLflow server use its basic-auth app (docs/tracking.md#a-shared-tracking-server)." >&2)
PORT ?= 5000
ARGS ?=
SWEEP ?= default
WORKERS ?= 2
TRIALS ?=
POPULATION ?=
# `make dashboard`: the sweep storage, and its own port (8080) unless PORT= is given
STORAGE ?= sqlite:///mlruns/optuna.db
DASHBOARD_PORT := $(if $(filter file,$(origin PORT)),8080,$(PORT))

.PHONY: install train test test-all bench sweep ui dashboard server lint clean

install: $(STAMP)

# torch goes in first and pinned: a bare `torch` requirement pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

train: install
	$(PY) -m ganlab.train $(ARGS)

# the fast tier, for every change (at most 5 minutes on 2 cores): everything but the tests marked slow
test: install
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow" tests

# the whole suite, what CI runs (17-20 minutes on 2 cores lately, measured; its goal is 20)
test-all: install
	$(PY) -m pytest -q -n 2 --dist worksteal tests

bench: install
	$(PY) -m benchmarks.run $(ARGS)

sweep: install
	$(PY) -m ganlab.sweep $(SWEEP) --workers $(WORKERS) $(if $(TRIALS),--trials $(TRIALS),) \
		$(if $(POPULATION),--population $(POPULATION),) $(ARGS)

ui: install
	@mkdir -p mlruns
	$(EXPOSED)
	@echo "MLflow UI on http://$(HOST):$(PORT)  (Ctrl-C to stop)"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root ./mlruns --host $(HOST) --port $(PORT)

# Optuna's own web UI on the sweep studies (trials, parameters, history and importance plots):
# make dashboard [PORT=9000] [STORAGE=postgresql://...]. A SQLite file must exist (a sweep creates it).
# --server wsgiref: one process (gunicorn, the default when installed, forks after opening the SQLite
# file); the SIGINT handler lets Ctrl-C end it without a traceback.
dashboard: install
	@$(if $(filter sqlite:///%,$(STORAGE)),test -f "$(patsubst sqlite:///%,%,$(STORAGE))" || \
		{ echo "No Optuna storage at $(patsubst sqlite:///%,%,$(STORAGE)) yet: run \`make sweep\` first (or pass STORAGE=<url>)" >&2; exit 1; },:)
	$(EXPOSED)
	@echo "Optuna dashboard on http://$(HOST):$(DASHBOARD_PORT)  (Ctrl-C to stop)"
	@$(PY) -c 'import runpy, signal, sys; sys.argv[0] = "optuna-dashboard"; signal.signal(signal.SIGINT, lambda *_: sys.exit(0)); runpy.run_path("$(VENV)/bin/optuna-dashboard", run_name="__main__")' \
		"$(STORAGE)" --host $(HOST) --port $(DASHBOARD_PORT) --server wsgiref

# A shared tracking server on the same local store: point training, sampling and sweeps at it with
# tracking.uri=http://$(HOST):$(PORT). It serves artifacts itself (clients upload through it) and the UI.
server: install
	@mkdir -p mlruns/artifacts
	$(EXPOSED)
	@echo "MLflow tracking server on http://$(HOST):$(PORT)  (Ctrl-C to stop)"
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///mlruns/mlflow.db \
		--artifacts-destination ./mlruns/artifacts --serve-artifacts --host $(HOST) --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf .pytest_cache .ruff_cache outputs multirun
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
