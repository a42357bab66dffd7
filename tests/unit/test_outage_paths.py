"""Every path a record takes to Intercom waits out Intercom's 5xx outage (walkthrough: during a rehearsed
outage joins, their delayed duplicate checks and reconciliation's reads used up their tries and were
dead-lettered within minutes, "gave up after 5 tries: asked to wait 60s"). The failures are the ones the
real HTTP client raises during a 503 outage (its retries spent, or a Retry-After too long for a Lambda);
each path's record must wait in the queue without using up a try, and say Intercom and its 503."""
from __future__ import annotations

import copy
import json
import logging
from functools import partial
from typing import Any, Callable

import pytest

from chalicelib.adapters.intercom import IntercomClient
from chalicelib.domain.link import PersonRef
from chalicelib.errors import WorkError
from chalicelib.messages import JoinMessage, VerifyMessage
from tests.fakes import FakeClock, FakeWork
from tests.support.answering_server import answering
from tests.unit.scenario import check, event, joined, run, settings, world

DOWN = {"type": "error.list", "errors": [{"code": "service_unavailable", "message": "Service Unavailable"}]}


def client_failure(retry_after: str | None) -> WorkError:
    """What the real Intercom client raises when every answer is 503 (with `Retry-After`, if given)."""
    with answering(503, DOWN, {"Retry-After": retry_after} if retry_after else {}) as (url, _):
        clock = FakeClock()
        api = IntercomClient(url, "t", clock=clock, sleeper=clock.sleep, timeout=2, max_wait=20)
        with pytest.raises(WorkError) as failed:
            api.get_contact("c1")
    return failed.value


@pytest.fixture(scope="module", params=[None, "60"], ids=["retries-spent", "retry-after-too-long"])
def outage(request) -> WorkError:
    return client_failure(request.param)


def failing(work: FakeWork, call: str, error: WorkError) -> None:
    """Intercom answers this call (search, create, tag, get...) as in the outage; the others as usual."""
    intercom = work.apis.intercom_
    answer = intercom._call

    def _call(name: str) -> None:
        answer(name)
        if name == call:
            raise copy.copy(error)
    intercom._call = _call          # type: ignore[method-assign]


def a_join(work: FakeWork) -> dict:
    return JoinMessage(campaign_id="42", rf_user_id="9", person={"id": "9", "campaign_id": "42", "type": "lead",
                                                                  "email": "new@example.com", "first_name": "N"}).wire()


def a_verification(work: FakeWork, duplicate: bool = False, user: str = "7", email: str = "ann@example.com") -> dict:
    link, contact = joined(work, user, email)
    if duplicate:                   # an older user with that email, which search did not show at the join
        older = work.apis.intercom_.add(email, role="user")
        older["created_at"] = 0
    return VerifyMessage(campaign_id="42", rf_user_id=user, workspace="ws", contact_id=contact["id"],
                         email=email, created_at=contact["created_at"], not_before=work.clock()).wire()


def an_event(work: FakeWork, user: str = "7", email: str = "ann@example.com") -> dict:
    _, contact = joined(work, user, email)      # its initial value arms the link: the contact is read now
    return event(contact, notification=f"n{user}")


def a_check(work: FakeWork) -> dict:
    joined(work)
    return check()


PATHS: dict[str, tuple[str, Callable[[FakeWork], Any]]] = {
    "join's search": ("search", a_join),
    "join's create": ("create", a_join),
    "join's tag": ("tag", a_join),
    "join.verify's batched search": ("search", a_verification),
    "duplicate check's read of the older contact": ("get", lambda work: a_verification(work, duplicate=True)),
    "contact event's read of the contact": ("get", an_event),
    "qualification check's read of the contact": ("get", a_check),
}


@pytest.mark.parametrize("path", PATHS)
def test_each_path_to_intercom_waits_out_its_503_outage_without_using_up_a_try(path, outage, caplog):
    call, message = PATHS[path]
    work = world(settings(tag="Referred"))
    body = message(work)
    failing(work, call, outage)
    with caplog.at_level(logging.INFO):
        assert run(work, body) == {"done": 0, "retry": 0, "dead": 0, "waiting": 1}
    # An expected outage is logged in lines that say it, at most a warning, never with a traceback.
    assert [(r.levelname, r.exc_info) for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] in (
        [], [("WARNING", None)])
    assert call in work.apis.intercom_.calls
    [copy_] = work.queue.deferred
    assert copy_.tries == 0 and copy_.outage_since is not None       # no try used, and waiting for the vendor
    if "rf_user_id" in body:            # its history says whom it waits for, and what they answered
        [said] = [e.reason or "" for e in work.store.history.entries(PersonRef("42", body["rf_user_id"]))
                  if e.event == "waiting"]
        assert said.startswith("Intercom unavailable since") and "Intercom answered 503" in said, said


def test_a_spent_budget_names_the_budget_in_force_when_a_429_lowered_it():
    # What a user sees: "the shared Referral Factory budget (600 calls per 60s) is spent" for minutes, with
    # little RF traffic: the budget in force had been lowered by a 429 long before, which the reason hid.
    from tests.support.budget import limiter, spend
    gate, clock = limiter("referral-factory", 600, "Referral Factory", block_status=403)
    gate.throttled(1.0)
    clock.now += 2
    reason = spend(gate).reason
    assert "(lowered to 76 of its 600 calls per 60s after Referral Factory's 429 at 1970-01-01T01:40:00.000Z; back " \
        "to full speed (570/min) by about 01:51 UTC if Referral Factory throttles no more)" in reason, reason


def failing_for(work: FakeWork, email: str, call: str, error: WorkError) -> None:
    """Intercom answers `call` ("search" or "get") as in the outage only when it is about `email`'s contacts
    (a search that includes the email, a read of a contact with it), every time; all else as usual."""
    intercom = work.apis.intercom_
    search, get = intercom.search, intercom.get_contact

    def poisoned(emails=(), markers=()):
        if call == "search" and email in emails:
            raise copy.copy(error)
        return search(emails, markers)

    def poisoned_get(contact_id):
        if call == "get" and (intercom.contacts.get(contact_id) or {}).get("email") == email:
            raise copy.copy(error)
        return get(contact_id)
    intercom.search, intercom.get_contact = poisoned, poisoned_get     # type: ignore[method-assign]


# The paths whose batch of ten shares a read of Intercom: a batched search (join.verify), or reads made one
# record at a time but side by side (the duplicate check's read of the older contact, a contact event's read).
SHARED = {"join.verify's batched search": ("search", a_verification),
          "duplicate check's read of the older contact": ("get", partial(a_verification, duplicate=True)),
          "contact event's read of the contact": ("get", an_event)}


@pytest.mark.parametrize("path", SHARED)
def test_one_record_in_an_outage_of_its_own_does_not_hold_back_the_nine_others_of_its_batch(path):
    # What a user sees: Intercom answers 503 (every time) for one contact only; the worker finds that record
    # by reading the batch's records one by one, and its nine neighbours must complete in the same invocation,
    # not wait out "Intercom unavailable" with it (as they did while one outage failure held every Intercom
    # call of the container).
    call, message = SHARED[path]
    work = world(settings(tag="Referred"))
    bodies = [message(work, user=str(n), email=f"p{n}@example.com") for n in range(10)]
    failing_for(work, "p4@example.com", call, client_failure(None))
    assert run(work, *bodies) == {"done": 9, "retry": 0, "dead": 0, "waiting": 1}
    [copy_] = work.queue.deferred       # only the bad one waits, for Intercom, without using up a try
    assert json.loads(copy_.body) == bodies[4] and copy_.tries == 0 and copy_.outage_since is not None
