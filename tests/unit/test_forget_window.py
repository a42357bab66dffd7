"""`bridge forget` erases a person while a worker's batch, which read their link just before, still judges
what Intercom said of them: nothing about the person is written back (README "Erasing a person") — no
note of a repeat or of a settled qualification, no judgement's entry, no "another worker is qualifying"
entry for a claim that failed because the link is gone, and no call to Referral Factory."""
from __future__ import annotations

from typing import Callable

import pytest

from chalicelib.domain.link import PersonRef
from chalicelib.errors import Deferred, Permanent, Transient
from chalicelib.services.privacy import forget
from chalicelib.services.worker import RetryBatch
from tests.fakes import FakeWork
from tests.unit.scenario import RULE, check, event, joined, run, set_value, settings, world

ANN = PersonRef("42", "7")


def forgotten_once_read(work: FakeWork) -> None:
    """The next batch reads its links, then `bridge forget ann@example.com` runs."""
    look_up = work.store.lookup.look_up

    def read_then_forgotten(**kw):
        found = look_up(**kw)
        work.store.lookup.look_up = look_up                  # type: ignore
        assert forget(work, "ann@example.com")["links"] == 1
        return found
    work.store.lookup.look_up = read_then_forgotten          # type: ignore


def meets_the_target(work: FakeWork) -> list[dict]:
    _, contact = joined(work)
    return [event(set_value(work, contact, "Yes"))]


def checked_meeting_the_target(work: FakeWork) -> list[dict]:
    _, contact = joined(work)
    set_value(work, contact, "Yes")                          # its webhook lost: reconciliation checks the lead
    return [check()]


def notified_again(work: FakeWork) -> list[dict]:
    _, contact = joined(work)
    run(work, event(contact))
    return [event(contact)]                                  # the same notification: a counted repeat


def changed_once_qualified(work: FakeWork) -> list[dict]:
    _, contact = joined(work)
    run(work, event(set_value(work, contact, "Yes")))
    return [event(contact, notification="n2")]               # "already qualified": a counted note


def duplicate_meets_the_target(work: FakeWork) -> list[dict]:
    work.store.settings.put("42", settings({**RULE, "match": "contact"}), "ws")
    joined(work)
    twin = work.apis.intercom_.add("ann@example.com", signed_up="No")
    return [event(set_value(work, twin, "Yes"), notification="n-dup")]    # does not count: noted for the lead


@pytest.mark.parametrize("before", [meets_the_target, checked_meeting_the_target, notified_again,
                                    changed_once_qualified, duplicate_meets_the_target],
                         ids=["qualify", "check", "repeat", "settled", "duplicate"])
def test_a_batch_that_read_a_link_before_forget_erased_it_writes_nothing_about_the_person(
        before: Callable[[FakeWork], list[dict]]):
    work = world()
    messages = before(work)
    rf_calls = list(work.apis.rf_.calls)
    forgotten_once_read(work)
    run(work, *messages)
    assert work.store.links.get(ANN) is None
    assert work.store.history.entries(ANN) == []
    assert work.apis.rf_.calls == rf_calls


def forgotten_as_intercom_fails(work: FakeWork, error: Exception) -> None:
    """`bridge forget ann@example.com` runs as the worker's next call to Intercom is made, which then fails."""
    intercom = work.apis.intercom_

    def forgotten(name: str) -> None:
        del intercom._call                                   # type: ignore   # (the fake's own, from now on)
        assert forget(work, "ann@example.com")["links"] == 1
        raise error
    intercom._call = forgotten                               # type: ignore


@pytest.mark.parametrize("error, outcome", [
    (Transient("Intercom answered 503: service_unavailable"), "retry"),
    (Permanent("Intercom answered 400: bad_request"), "dead"),
    (Deferred("Intercom answered 429: rate_limited", retry_after=30), "waiting"),
], ids=["retried", "dead-lettered", "waiting"])
def test_a_try_about_a_person_forgotten_meanwhile_that_fails_notes_nothing_about_them(error: Exception, outcome: str):
    """Reconciliation's check of Ann fails as `bridge forget` erases her: the worker's own notes of a failed try
    (its retry, its dead letter, its wait in the queue) are about her too, and none is written (README "Erasing a
    person")."""
    work = world()
    messages = checked_meeting_the_target(work)
    forgotten_as_intercom_fails(work, error)
    try:
        summary = run(work, *messages)
    except RetryBatch:
        summary = {"retry": 1}
    assert summary.get(outcome) == 1
    assert work.store.links.get(ANN) is None
    assert work.store.history.entries(ANN) == []
