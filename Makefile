# Touchpoints — `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
WAREHOUSE ?= duckdb:///touchpoints.duckdb
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint format bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# GrowthBook's gbstats, the experiments tests' reference: its metadata pins pandas<2,
	# numpy<2, yet it runs on ours, so without its dependencies (see pyproject.toml)
	$(BIN)/pip install --quiet --no-deps 'gbstats>=0.8'
	touch $(STAMP)

install: $(STAMP)

# Java for the Spark tests, Debian's Chromium for the browser tests and Node.js for the
# analytics.js bundle: installed here when the machine lacks them.
system-deps:
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

run: $(STAMP)
	$(BIN)/touchpoints --warehouse $(WAREHOUSE) demo --if-empty
	$(BIN)/touchpoints --warehouse $(WAREHOUSE) build
	$(BIN)/touchpoints --warehouse $(WAREHOUSE) serve --host $(HOST) --port $(PORT)

test: $(STAMP) system-deps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python ../shared/tools/check_layers.py src/touchpoints 2>/dev/null || \
	  { [ ! -f ../shared/tools/check_layers.py ] || exit 1; }
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
