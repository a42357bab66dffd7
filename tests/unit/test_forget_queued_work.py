"""`bridge forget <email>` says when work waits in the work queue (docs/operating.md, "Erasure": run it once the
queue is empty): a join of the person still queued there (waiting on a rate limit) links them again
after the erasure, so the answer counts the queue's messages (`queued_work`) and warns to run it again
once the queue is empty. It still exits 0: the erasure happened."""
from __future__ import annotations

import json

from chalicelib.cli import main
from chalicelib.config import Config
from chalicelib.domain.link import LinkStatus, PersonRef
from tests.fakes import FakeWork
from tests.unit.scenario import run
from tests.unit.test_join_use_case import join, world

ANN = "ann@example.com"


def operator_world() -> FakeWork:
    """Ann linked (her join worked), the work queue empty."""
    work = world()
    work.config = Config.from_env({"BRIDGE_MAX_ATTEMPTS": "3", "BRIDGE_QUEUE_URL": "memory://queue",
                                   "BRIDGE_DLQ_URL": "memory://dlq"})
    run(work, join())
    work.queue.sent.clear()                                  # (the check of her new contact, worked too)
    assert work.store.links.get(PersonRef("42", "7")).status is LinkStatus.LINKED
    return work


def forget(work: FakeWork, capsys, *flags: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["forget", ANN, *flags], rt=work)           # type: ignore[arg-type]
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_forget_warns_that_a_join_still_queued_would_bring_the_person_back(capsys):
    work = operator_world()
    work.queue.send(join())                                  # her join again, waiting on a rate limit

    code, answer, err = forget(work, capsys)
    assert code == 0 and answer["links"] == 1                # erased all the same
    assert answer["queued_work"] == 1
    assert err.strip() == ("warning: 1 message(s) wait in the work queue: one may be this person's and bring them "
                           "back — run `bridge forget` again once it is empty")

    run(work, *work.queue.sent)                              # ...as the warning said: the queued join links her again
    work.queue.sent.clear()
    assert work.store.links.get(PersonRef("42", "7")) is not None

    code, answer, err = forget(work, capsys, "--json")       # the queue empty: erased, nothing to warn of
    assert code == 0 and answer["links"] == 1 and answer["queued_work"] == 0
    assert answer["warnings"] == [] and err == ""


def test_forget_json_carries_the_warning(capsys):
    work = operator_world()
    work.queue.send(join())
    work.queue.send(join(user="8"))
    code, answer, err = forget(work, capsys, "--json")
    assert code == 0 and answer["queued_work"] == 2 and err == ""
    assert answer["warnings"] == ["2 message(s) wait in the work queue: one may be this person's and bring them back "
                                  "— run `bridge forget` again once it is empty"]


def test_forget_without_the_work_queue_says_it_did_not_check(capsys):
    work = world()                                           # no BRIDGE_QUEUE_URL
    code, answer, _ = forget(work, capsys)
    assert code == 0 and answer["queued_work"] == "not checked: BRIDGE_QUEUE_URL is not set"
