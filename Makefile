# Every target bootstraps .venv itself when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_BIN := node_modules/.bin
# npm writes this file on every install: it stands for "the Node worker's deps are in".
NODE_WORKER_DEPS := workers/node/node_modules/.package-lock.json

.PHONY: demo test proto lint buf-lint buf-breaking node-worker bench clean-venv

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

$(NODE_BIN)/buf: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

proto: $(STAMP)
	$(BIN)/python tools/protogen.py

buf-lint: $(NODE_BIN)/buf
	$(NODE_BIN)/buf lint

# The contract against the last release tag, else the parent commit (see the script).
buf-breaking: $(NODE_BIN)/buf
	BUF=$(NODE_BIN)/buf sh tools/buf-breaking.sh

$(NODE_WORKER_DEPS): workers/node/package.json workers/node/package-lock.json
	cd workers/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-worker: $(NODE_WORKER_DEPS)

lint: $(STAMP)
	$(BIN)/ruff check host workers tests bench
	$(BIN)/ruff format --check host workers tests bench
	$(BIN)/mypy host workers bench

test: $(STAMP) $(NODE_BIN)/buf $(NODE_WORKER_DEPS) lint buf-lint buf-breaking
	$(BIN)/python -m pytest -q -ra

demo: $(STAMP)
	$(BIN)/python -m swayhost demo

bench: $(STAMP)
	$(BIN)/python -m bench

clean-venv:
	rm -rf $(VENV)
