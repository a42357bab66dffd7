"""`make run`'s terminal: a short line for each of the bridge's log records, emails masked as in its logs, and
no CloudWatch metric (EMF) blobs; `LOGS=json` shows the lines as the Lambdas write them (CloudWatch reads
those: the functions' own logging is not changed)."""
from __future__ import annotations

import io
import json
import signal
import subprocess
import sys

import pytest
import requests

from chalicelib.observability import count, flush, logger
from infra.local import run
from infra.local.terminal import Terminal
from tests.local.test_local_errors import ROOT, closed_port, env_without_apis

MAKE_RUN = ("import sys; from pathlib import Path; from infra.local import run; run.STATE = Path(sys.argv[1]); "
            "run.ROOT = run.STATE.parent; sys.exit(run.main())")


def make_run_until_stopped(tmp_path, logs: str, visit) -> str:
    """`make run` (its main, with a state file of its own) in a process: `visit(api_url)` once its banner is out,
    then Ctrl-C; what its terminal showed."""
    port = closed_port()
    proc = subprocess.Popen([sys.executable, "-c", MAKE_RUN, str(tmp_path / "stack.json")], cwd=ROOT,
                            env=env_without_apis(PORT=str(port), LOGS=logs), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    shown = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            shown.append(line)
            if "Ctrl-C stops everything" in line:
                break
        visit(f"http://127.0.0.1:{port}")      # (its lines are written before its answers)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    return "".join(shown) + rest


def refused_then_accepted(api_url: str) -> None:
    assert requests.post(f"{api_url}/webhooks/referral-factory", json={"id": 1},
                         headers={"X-Bridge-Secret": "wrong"}, timeout=10).status_code == 401
    assert requests.post(f"{api_url}/webhooks/referral-factory", timeout=10,
                         json={"id": 7, "campaign_id": 42, "email": "ann@example.com", "first_name": "Ann"},
                         headers={"X-Bridge-Secret": run.RF_WEBHOOK_SECRET}).status_code == 202


@pytest.mark.parametrize("logs", ["", "json"])
def test_make_runs_terminal_shows_a_line_a_record_and_no_metric_blobs_unless_logs_json(tmp_path, logs):
    """Walkthrough: the terminal was a wall of raw JSON, log records and CloudWatch's metric blobs (~100 lines
    in 10 minutes)."""
    shown = make_run_until_stopped(tmp_path, logs, refused_then_accepted)
    rejected = [line for line in shown.splitlines() if "webhook rejected" in line]
    assert len(rejected) == 1, shown
    if logs == "json":
        assert json.loads(rejected[0])["status"] == 401 and '"_aws"' in shown
        return
    assert '"_aws"' not in shown and not any(line.startswith("{") for line in shown.splitlines()), shown
    assert rejected[0].split(" ", 1)[1] == "WARNING webhook rejected  path=/webhooks/referral-factory status=401 " \
                                           "error=unauthorized"


def test_a_bad_logs_value_stops_make_run_naming_the_choices(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOGS", "yaml")
    monkeypatch.setenv("PORT", str(closed_port()))
    monkeypatch.setattr(run, "STATE", tmp_path / "stack.json")
    monkeypatch.setattr(run, "start", lambda **_: pytest.fail("started with LOGS=yaml"))
    assert run.main() == 1
    assert capsys.readouterr().err == "make run: LOGS=yaml: give LOGS=json for the JSON lines the Lambdas write " \
                                      "(or no LOGS: a short line each)\n"


@pytest.fixture
def terminal():
    """The bridge's logger and stdout (where its metrics go) through `make run`'s terminal."""
    out = io.StringIO()
    shown = Terminal(out)
    handler = logger.registered_handler
    before = handler.setStream(shown)        # type: ignore[attr-defined]
    real, sys.stdout = sys.stdout, shown
    try:
        yield out
    finally:
        sys.stdout = real
        handler.setStream(before)            # type: ignore[attr-defined]


def test_a_record_s_line_keeps_its_fields_emails_masked_and_an_errors_traceback(terminal):
    logger.warning("record will be retried", extra={"reason": "Intercom refused ann@example.com", "attempt": 2})
    try:
        raise KeyError("zoe@example.com")
    except KeyError:
        logger.exception("worker failed")
    count("RecordsProcessed")
    flush()
    first, second, *trace = terminal.getvalue().splitlines()
    assert first[8:] == ' WARNING record will be retried  reason="Intercom refused a***@example.com" attempt=2'
    assert second[8:] == " ERROR   worker failed"
    assert trace[0] == "    Traceback (most recent call last):" and trace[-1] == "    KeyError: 'z***@example.com'"


def test_a_field_s_text_is_shown_as_written_not_escaped(terminal):
    """Walkthrough: a dead letter's reason read `Unauthenticated. \\u2014 the RF token is invalid` in the terminal."""
    logger.error("record sent to the dead-letter queue", extra={"reason": "Referral Factory answered 401 — run "
                                                                          "`bridge rf connect`", "to": "Zoë"})
    assert terminal.getvalue().splitlines()[0][8:] == ' ERROR   record sent to the dead-letter queue  reason="Referral ' \
                                                     'Factory answered 401 — run `bridge rf connect`" to=Zoë'
