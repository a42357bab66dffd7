"""RF refused a qualification for good (a 4xx): the link is written `failed` first, then its dead letter is sent
(the worker's, or the search of changed contacts' own). A worker killed in between, or a dead letter SQS did not
take, left a failed qualification with no letter: its redelivered record found it failed and noted "already
failed", so `dlq list` and `doctor` said nothing, and the replay `explain` advised replayed nothing. The link now
owes its letter until one is sent: the next sighting that is no replay fails as the first did, with its reason."""
from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from botocore.exceptions import EndpointConnectionError

from chalicelib.domain.judge import Sighting
from chalicelib.domain.qualification import QState
from chalicelib.domain.settings import CampaignSettings, Qualification
from chalicelib.errors import Permanent, Transient
from chalicelib.messages import ContactMessage
from chalicelib.services import dead_letters
from chalicelib.services.explain import explain
from chalicelib.services.worker import RetryBatch
from tests.fakes import FakeWork
from tests.support.cli import replay_selectors
from tests.support.killed import Killed
from tests.unit.scenario import WS, changed, changes, check, event, history, joined, link_of, run, set_value, world

REFUSED = Permanent("Referral Factory answered 422: campaign paused", status=422)
STOPS = {"killed": Killed(), "send_failed": EndpointConnectionError(endpoint_url="https://sqs.eu-west-1.amazonaws.com")}


def _unconfirmed(work: FakeWork, contact: dict) -> dict:
    """RF busy at the first try (the link left unconfirmed); the contact changed away since: reconciliation's
    check resumes the qualification whatever it says now."""
    rule = Qualification(attribute="custom_attributes.signed_up", value="Yes")
    work.apis.rf_.answers.insert(0, Transient("Referral Factory answered 429"))
    with pytest.raises(Transient):
        work.deps.qualifier.evaluate(link_of(work), CampaignSettings(campaign_id="42", workspace=WS, qualification=rule),
                                     Sighting({**contact, "custom_attributes": {"signed_up": "Yes"}}, "webhook"))
    assert link_of(work).qualification is QState.UNCONFIRMED
    return check()


def _thin(contact: dict, notification: str = "n1") -> dict:
    """A notification too large to queue whole: its contact is read from Intercom when it is worked."""
    return ContactMessage(workspace=WS, topic="contact.lead.updated", notification_id=notification,
                          item=dict(contact)).thin(300_000, 262_144).wire()


#: Per path: the record whose qualification RF refuses, and a later one about the same lead.
PATHS: dict[str, tuple[Callable[[FakeWork, dict], Any], Callable[[FakeWork, dict], Any]]] = {
    "webhook": (lambda work, c: event(set_value(work, c, "Yes")), lambda work, c: event(c, notification="n2")),
    "thin_webhook": (lambda work, c: _thin(set_value(work, c, "Yes")), lambda work, c: _thin(c, notification="n2")),
    "check": (lambda work, c: set_value(work, c, "Yes") and check(), lambda work, c: check()),
    "check_resuming": (_unconfirmed, lambda work, c: check()),
    "changes_search": (lambda work, c: changed(work, c, "Yes") and changes(work),
                       lambda work, c: changed(work, c, "Yes", at=work.clock() + 60) and changes(work, work.clock() + 60)),
}


def refused(path: str) -> tuple[FakeWork, dict, Any]:
    """Ann has joined, RF will refuse her qualification, and the record `path` judges her is made."""
    work = world()
    _, contact = joined(work)
    work.apis.rf_.answers = [REFUSED]
    return work, contact, PATHS[path][0](work, contact)


def letters(work: FakeWork) -> list[tuple[str, str]]:
    return [(d["body"], d["reason"]) for d in work.queue.dead]


@pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS.keys())
@pytest.mark.parametrize("path", PATHS)
def test_a_refused_qualification_whose_letter_was_lost_gets_it_from_its_redelivery_and_only_once(path, stop):
    plain, _, body = refused(path)
    run(plain, body)
    [expected] = letters(plain)
    assert link_of(plain).qualification is QState.FAILED

    work, contact, body = refused(path)
    send = work.queue.dead_letter

    def stopped(*args: Any) -> None:
        raise stop
    work.queue.dead_letter = stopped                                     # type: ignore[method-assign]
    with pytest.raises((type(stop), RetryBatch)):
        run(work, body)
    work.queue.dead_letter = send                                        # type: ignore[method-assign]
    assert link_of(work).qualification is QState.FAILED and letters(work) == []
    run(work, body, receives=2)
    # What the run without a fault wrote, its reason; a webhook's is a check of the lead (its replay pays her, as the
    # webhook's did: a webhook that came later, with another value, may be the one that sends it)
    assert letters(work) == [expected if path != "webhook" else (json.dumps(check()), expected[1])]
    assert history(work)[-1] == ("dead_letter", "failed")

    run(work, body, receives=3)                          # delivered again: its letter is there already
    run(work, PATHS[path][1](work, contact))             # a later sighting of the failed lead
    assert len(letters(work)) == 1 and work.apis.rf_.qualified == []
    [letter] = [dead_letters.read(m) for m in work.queue.letters.values()]
    selectors = replay_selectors(explain(work, "7").view(), letter.view())
    assert selectors and all(dead_letters.matches(letter, *s) for s in selectors), selectors


def test_a_letter_sent_again_because_the_worker_died_before_noting_it_is_listed_twice_and_qualifies_once():
    """The one duplicate left: the letter went out, and the worker was killed before the link noted it. The
    redelivery sends it again (the same body and reason): `dlq list` shows both, the advised replay sends both,
    and the lead is qualified once (the first replay's claim asks RF first; the second finds her qualified)."""
    work, contact, body = refused("check")
    lettered = work.store.links.lettered

    def killed(*args: Any) -> None:
        raise Killed()
    work.store.links.lettered = killed                                   # type: ignore[method-assign]
    with pytest.raises(Killed):
        run(work, body)
    work.store.links.lettered = lettered                                 # type: ignore[method-assign]
    run(work, body, receives=2)
    assert len(letters(work)) == 2 and len(set(letters(work))) == 1
    assert len(dead_letters.look(work).letters) == 2
    [selector] = set(replay_selectors(explain(work, "7").view()))
    work.clock.now += 60
    assert dead_letters.replay(work, *selector)["replayed"] == 2
    run(work, *work.queue.sent[-2:])
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED
    assert work.apis.rf_.calls[-2:] == ["get_user 7", "qualify 7"] and len(letters(work)) == 2


@pytest.mark.parametrize("path", PATHS)
def test_a_replayed_letter_of_a_refused_qualification_pays_it_whatever_the_contact_says_now(path):
    """The rule was met and RF refused the qualification (a paused campaign); the operator resumed the campaign and
    replayed the letter, as `explain` advises. A check's letter was judged again on the contact as it is now: it had
    changed since (the user downgraded), so the replay noted `not_met` and the reward was lost, where a webhook's
    letter (its own old value) paid it. The decision sticks: the replay finishes it, asking RF first."""
    work, contact, body = refused(path)
    run(work, body)
    assert link_of(work).qualification is QState.FAILED and len(letters(work)) == 1
    set_value(work, contact, "No")                       # changed away since RF refused
    work.clock.now += 60
    [selector] = set(replay_selectors(explain(work, "7").view()))
    assert dead_letters.replay(work, *selector)["replayed"] == 1
    run(work, work.queue.sent[-1])
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED
    assert work.apis.rf_.calls[-2:] == ["get_user 7", "qualify 7"]      # RF asked first: it may have been paid by hand


@pytest.mark.parametrize("path", PATHS)
def test_a_lost_letter_a_later_webhook_becomes_pays_the_lead_on_replay_whatever_that_webhook_said(path):
    """RF refused, and the letter was lost (the worker killed before sending it). Before the record came back, a
    webhook of the lead's contact came: she had downgraded ("No"). That webhook failed in the record's place and was
    the letter; its replay judged its own "No", as any webhook's replay does, and the reward was lost."""
    work, contact, body = refused(path)
    send = work.queue.dead_letter

    def killed(*args: Any) -> None:
        raise Killed()
    work.queue.dead_letter = killed                                      # type: ignore[method-assign]
    with pytest.raises((Killed, RetryBatch)):
        run(work, body)
    work.queue.dead_letter = send                                        # type: ignore[method-assign]
    run(work, event(set_value(work, contact, "No"), notification="n2"))
    run(work, body, receives=2)                          # the record, back: the letter is there already
    assert len(letters(work)) == 1 and link_of(work).qualification is QState.FAILED
    work.clock.now += 60
    [selector] = set(replay_selectors(explain(work, "7").view()))
    assert dead_letters.replay(work, *selector)["replayed"] == 1
    run(work, work.queue.sent[-1])
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED
