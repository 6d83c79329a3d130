# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit test-real real-model bench install java clean notebooks

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "Java 17 or newer is needed for Spark. Install it, e.g. 'apt-get install openjdk-17-jre-headless' (Debian/Ubuntu) or 'brew install openjdk@17' (macOS)."; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	  if [ -z "$$v" ] || [ "$$v" -lt 17 ]; then \
	    echo "Java 17 or newer is needed for Spark (found: $${v:-unknown}). Install openjdk-17 and put it first on PATH or set JAVA_HOME."; exit 1; fi

demo: $(STAMP) java
	$(VENV)/bin/rlm-pipeline demo

lint: $(STAMP)
	$(VENV)/bin/ruff check rlm_pipeline tests bench jobs
	$(VENV)/bin/mypy rlm_pipeline

# Tests marked real_model need a real local model: `make test-real`, not `make test`.
# The suite runs on two workers (pytest-xdist): tests/conftest.py puts every Spark test in
# one xdist group (one JVM) and spreads the rest; `make test XDIST=` runs it serially.
XDIST ?= -n 2 --dist loadgroup
unit: $(STAMP) java
	SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m pytest -m "not real_model" $(XDIST)

test: lint unit

# Qwen2.5-Coder-0.5B on a local llama.cpp server (bench/real_model.py: own venv under
# ~/.cache/rlm_pipeline/real_model; the first build compiles llama.cpp, ~5 min on 2 cores).
real-model: $(STAMP)
	$(PY) bench/real_model.py install

test-real: real-model java
	SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m pytest -m real_model tests/real -s

bench: $(STAMP) java
	$(PY) bench/run_all.py

# Run notebooks/*.ipynb top to bottom and store them with their outputs (the [notebooks]
# extra: matplotlib, nbclient, ipykernel; the Spark notebook needs Java).
notebooks: $(STAMP) java
	$(PY) -m pip install --quiet -e '.[notebooks]'
	SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$(abspath $(PY)) $(PY) notebooks/build.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
