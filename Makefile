PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint run demo bridge fault chaos orders bench models deploy destroy clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## make test — the type checker (mypy.ini), then the whole suite (unit, contract, integration on moto server + simulators),
## in two processes (pytest-xdist): each has its own moto server and simulators; beside them the chaos run in a
## pytest of its own (mostly waiting on its processes), whose report and seed are printed at the end
## (pytest-xdist would keep them in its worker)
test: $(STAMP)
	$(BIN)/cfn-lint infra/template.yaml
	$(BIN)/mypy
	chaos_out=$$(mktemp); \
	$(BIN)/python -m pytest -q tests/chaos > $$chaos_out 2>&1 & chaos=$$!; \
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --ignore=tests/chaos; suite=$$?; \
	wait $$chaos; chaos_rc=$$?; cat $$chaos_out; rm -f $$chaos_out; \
	test $$suite -eq 0 && test $$chaos_rc -eq 0

lint: $(STAMP)
	$(BIN)/cfn-lint infra/template.yaml
	$(BIN)/mypy

## make run [PORT=8000] [LOGS=json] — the whole pipeline locally on http://127.0.0.1:$(PORT) (moto server + simulators);
##   the terminal shows a line a log record (LOGS=json: the JSON lines the Lambdas write)
PORT ?= 8000
run: $(STAMP)
	PORT=$(PORT) $(BIN)/python -m infra.local.run

## make demo — play a referral joining against a running `make run`
demo: $(STAMP)
	$(BIN)/python -m infra.local.demo

## make bridge ARGS="settings show 42" — the same as ./bridge settings show 42 (on a failure or Ctrl-C, make adds its
##   own "Error" line and exits 2: scripts use ./bridge, whose exit code is the CLI's)
bridge: $(STAMP)
	@$(BIN)/python -m infra.local.bridge_env $(ARGS)

## make fault ARGS="intercom 503 --for 120" — break a simulator of the running `make run` (README "Rehearse an
##   incident locally"): an error status for the next N calls (--times) or S seconds (--for), drop, revoke-token,
##   clear, show, log
fault: $(STAMP)
	@$(BIN)/python -m infra.local.fault $(ARGS)

## make chaos [SEED=..] [N=30] [KILLS=4] [WORKERS=3] [REPEATS=3] [UPDATES=3] [FAULT_RATE=0.1] [RF_SHARED=0] ...
##   issue 7's chaos run on the local stack (docs/chaos.md): faults, repeated and shuffled webhooks, killed workers;
##   prints its seed, figures and checks. Any knob of infra/local/chaos/harness.py:ChaosConfig, upper-case.
CHAOS_KNOBS := SEED N UPDATES REPEATS WORKERS KILLS FAULT_RATE PROBES EXISTING EXISTING_YES NEVER_YES THIN \
	HTTP_TIMEOUT RETRY_AFTER VISIBILITY_TIMEOUT FUNCTION_TIMEOUT RECORD_BUDGET_MS LEASE_SECONDS MAX_ATTEMPTS \
	INTERCOM_LIMIT INTERCOM_BUDGET RF_LIMIT RF_BUDGET RF_SHARED RF_OFFSET SEARCH_LAG JOIN_SPREAD SPREAD \
	RECONCILE_EVERY RECONCILE_RETRY KILL_WINDOW DEADLINE MOTO MOTO_PATCH SENDERS KEEP_LOGS REPORT \
	SIGNUPS LOST BRIDGE_SEARCH_LAG
chaos: $(STAMP)
	$(BIN)/python -m infra.local.chaos $(foreach k,$(CHAOS_KNOBS),$(if $($(k)),$(k)=$($(k))))

## make orders [ARGS="--family merge-kept --max-events 3 --show 2 --json --baseline FILE --store dynamodb"]
##   every delivery order of families of contact events, merges, takes, reconciliations and the join's duplicate
##   check, each judged against in-order delivery (docs/development.md "Delivery orders"): run it before landing a
##   change to how qualification is judged. Fails on a false qualification or a double PUT among distinct-second
##   orders (or, --baseline, on misses a previous --json did not have). ~224,000 orders: 9 minutes of CPU on the
##   in-memory twin.
orders: $(STAMP)
	$(BIN)/python -m tests.orders $(ARGS)

## make bench [QUICK=1] — each figure beside its floor, interleaved, with ratios (docs/performance.md);
##   QUICK=1: a few samples of each, a smoke check
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick) $(BENCH_ARGS)

## make models — chalicelib/adapters/aws_models/: botocore's DynamoDB, SQS and SSM models trimmed to the operations
##   the bridge calls, and its endpoints.json to those services (infra/aws_models.py); after a botocore upgrade,
##   or a new operation called
models: $(STAMP)
	$(BIN)/python -m infra.aws_models

## make deploy STAGE=prod [ALARM_EMAIL=you@example.com|none] [API_CONCURRENCY=50] [RENDER_ONLY=1]
##   the stage's stack, its .chalice config and policies, `chalice deploy`; prints the webhook URLs
## make destroy STAGE=prod [PURGE=1] — `chalice delete`, then the stack (PURGE: the table and secrets too)
ifneq ($(filter deploy destroy,$(MAKECMDGOALS)),)
ifeq ($(STAGE),)
$(error which stage? make $(filter deploy destroy,$(MAKECMDGOALS)) STAGE=dev (or prod))
endif
# Yes-or-no knobs: 1, or left out. Any other value (PURGE=0, PURGE=no) is refused, not taken as yes.
ifneq ($(filter-out 1,$(PURGE)),)
$(error PURGE=$(PURGE): give PURGE=1 to delete the kept table and secrets too, or leave PURGE out to keep them)
endif
ifneq ($(filter-out 1,$(RENDER_ONLY)),)
$(error RENDER_ONLY=$(RENDER_ONLY): give RENDER_ONLY=1 to stop before `chalice deploy`, or leave RENDER_ONLY out)
endif
endif

deploy: $(STAMP)
	$(BIN)/python -m infra.deploy deploy --stage $(STAGE) $(if $(RENDER_ONLY),--render-only) \
		$(if $(ALARM_EMAIL),--alarm-email $(ALARM_EMAIL)) $(if $(API_CONCURRENCY),--api-concurrency $(API_CONCURRENCY))

destroy: $(STAMP)
	$(BIN)/python -m infra.deploy destroy --stage $(STAGE) $(if $(PURGE),--purge)

clean:
	rm -rf $(VENV) .pytest_cache
