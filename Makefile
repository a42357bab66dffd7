PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint run demo bridge clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## make test — the whole suite (unit, contract, integration on moto server + simulators)
test: $(STAMP)
	$(BIN)/cfn-lint infra/template.yaml
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/cfn-lint infra/template.yaml

## make run — the whole pipeline locally on http://127.0.0.1:8000 (moto server + simulators)
run: $(STAMP)
	$(BIN)/python -m infra.local.run

## make demo — play a referral joining against a running `make run`
demo: $(STAMP)
	$(BIN)/python -m infra.local.demo

## make bridge ARGS="settings show 42" — the same as ./bridge settings show 42 (prints only the CLI's output)
bridge: $(STAMP)
	@$(BIN)/python -m infra.local.bridge_env $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
