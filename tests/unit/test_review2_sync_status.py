"""Review of `sync status`'s page error (services/sync._page_error, domain/sync.describe_page_error): what it
says once the queue has given up on the page."""
from __future__ import annotations

import json
from contextlib import nullcontext

import pytest

from chalicelib.services import sync
from chalicelib.services.worker import RetryBatch, handle_batch
from tests.unit.test_sync import a_run_whose_second_page_fails, drain, throttled

PAGE_2 = {"kind": "sync.page", "campaign_id": "42", "run": 1, "page": 1, "cursor": "2"}


def test_a_page_the_worker_gave_up_on_is_not_shown_as_retrying(monkeypatch, capsys):
    """Scenario: page 2 of a sync run fails on every try (throttled; a vendor's outage is waited out instead).
    On its last try (BRIDGE_MAX_ATTEMPTS) the worker gives up and sends it to the dead-letter queue ("gave up after 3
    tries: ..."): nothing retries it any more, and the run stays "running" at page 2 until someone
    replays the letter.
    Expected: `sync status` says the page failed and waits in the dead-letter queue (as it does for a page
    refused for good: "page 2 failed: ... — it waits in the dead-letter queue: ... `bridge dlq replay`"),
    not "retrying page 2", which tells the operator to wait for a retry that never comes. Today the page
    error's state is chosen from the exception alone (retryable -> "retrying"), before the worker decides
    it was the last try."""
    from tests.support.cli import run_cli
    busy = throttled()
    work, rt = a_run_whose_second_page_fails(monkeypatch, busy, busy, busy)
    with pytest.raises(RetryBatch):
        drain(work)                                   # page 1 works; page 2 fails its first try
    for tries in (2, 3):                             # the queue gives it back; the 3rd is the last try
        work.clock.now += 60
        record = {"messageId": f"p2-{tries}", "body": json.dumps(PAGE_2), "receiptHandle": f"rh{tries}",
                  "attributes": {"ApproximateReceiveCount": str(tries)}}
        with pytest.raises(RetryBatch) if tries < 3 else nullcontext():    # the last try is dead-lettered
            handle_batch([record], work)
    assert len(work.queue.dead) == 1, "the page is in the dead-letter queue: nothing retries it now"
    assert sync.status(work.deps, "42")["page_error"]["state"] != "retrying"
    out = run_cli(rt, capsys, "sync", "status", "42")[1]
    assert "retrying page 2" not in out and "dead-letter queue" in out
