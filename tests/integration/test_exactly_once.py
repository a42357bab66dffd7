"""Issue 7, qualification: at most one qualification call per referral when RF's answers are lost,
no link left unfinished when a worker dies, and the order of Intercom's notifications never matters.
On real parts: moto server, the simulators over HTTP (RF's `lose_answer_next`: applied, answer lost)."""
from __future__ import annotations

import pytest

from chalicelib.domain.link import PersonRef

from .conftest import WORKSPACE, join_body, new_lead, qualifying_settings
from .test_edge_cases import join
from .test_qualification import qualified_ids


def puts(rf) -> list[dict]:
    return [c["body"] for c in rf.qualification_calls]


def history(bridge, lead) -> list[tuple[str, str]]:
    return [(h["event"], h["outcome"]) for h in bridge.history(42, lead["id"])["history"]]


# --- at most one PUT ------------------------------------------------------------------------------
@pytest.mark.parametrize("lost", [1, 4], ids=["once", "four times in a row"])
def test_rf_applies_the_put_and_its_answer_is_lost(bridge, intercom, rf, lost):
    """RF qualifies the user and the answer never comes back; with four, the answers to the three
    tries before it asking RF whether the user is qualified (a first claim asks) are lost too. RF
    receives one PUT, and the referral ends qualified."""
    lead, contact = join(bridge, intercom, rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    rf.lose_answer_next("GET", r"^/users/\d", "drop", times=lost - 1)
    rf.lose_answer_next("PUT", r"^/users/qualification", "drop")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.poller.drain(retry_failures=True)
    assert puts(rf) == [{"id": lead["id"], "qualified": True}]
    assert qualified_ids(rf) == [lead["id"]] and len([r for r in rf.requests if r.get("lost")]) == lost
    person = bridge.history(42, lead["id"])
    assert person["link"]["qualification"] == "qualified" and bridge.dead_letters() == []
    assert "asked before calling it again" in person["history"][-1]["reason"]


def test_a_later_delivery_after_a_lost_answer_asks_rf_before_sending_again(bridge, intercom, rf, clock):
    """The PUT's answer is lost and RF cannot be asked either: the referral is left unconfirmed. The
    next webhook (or the retry) asks RF first; RF had applied it, so nothing is sent again."""
    lead, contact = join(bridge, intercom, rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    rf.lose_answer_next("*", r"^/users", "drop")
    rf.fail_next("GET", r"^/users/", 503, times=20)                  # RF cannot say: the retries run out
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "unconfirmed"
    rf.clear_faults()
    intercom.update_contact(contact["id"], name="Ann again")         # another notification
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.poller.expire_inflight()                                  # and the first one's retry
    bridge.poller.drain(retry_failures=True)
    assert len(puts(rf)) == 1 and bridge.history(42, lead["id"])["link"]["qualification"] == "qualified"


def test_a_lost_answer_rf_never_applied_is_sent_again_only_after_rf_says_no(bridge, intercom, rf, clock):
    lead, contact = join(bridge, intercom, rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    rf.fail_next("PUT", r"^/users/qualification$", 503, times=20)    # never applied
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    rf.clear_faults()
    bridge.poller.release_delayed()                                  # RF's 503s: an outage, waited out
    bridge.poller.drain(retry_failures=True)
    assert qualified_ids(rf) == [lead["id"]]
    asks = [r["method"] for r in rf.requests if r["path"].startswith("/users")]
    assert asks[-2:] == ["GET", "PUT"]                               # RF said no, then the one applied PUT


# A Retry-After neither seconds nor a date (`soon`, or empty) is read as none: RF's own wait (its rate window) is
# waited. It made urllib3 raise InvalidHeader: a 429 was said "no answer (InvalidHeader); it may have been applied",
# and a 503 failed the record ("InvalidHeader: Invalid Retry-After header: soon") until it was dead-lettered so.
# A date past any calendar made it raise OverflowError the same way.
UNREADABLE = ["soon", "", "Fri, 01 Jan 99999999999 00:00:00 GMT"]


@pytest.mark.parametrize("retry_after, waited", [("30", 31), *((value, 61) for value in UNREADABLE)])
def test_a_429_to_the_put_is_said_not_applied_and_the_next_try_sends_it_without_asking(bridge, intercom, rf, clock,
                                                                                      retry_after, waited):
    """README's `make fault ARGS="rf 429 --retry-after 30 --path qualification"`: explain said "qualification:
    unconfirmed" of a PUT RF refused, which reads as "may have qualified the user"."""
    lead, contact = join(bridge, intercom, rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    rf.fail_next("PUT", r"^/users/qualification$", 429, headers={"Retry-After": retry_after})
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    [said] = [h for h in bridge.history(42, lead["id"])["history"] if h["event"] == "qualification"]
    assert said["outcome"] == "not_applied" and said["reason"].startswith("Referral Factory answered 429"), said
    assert said["reason"].endswith(" — Referral Factory did not apply the qualification: the next try sends it")
    clock.now += waited
    bridge.poller.release_delayed()
    bridge.poller.drain(retry_failures=True)
    asks = [r["method"] for r in rf.requests if r["path"].startswith("/users")]
    assert asks[-3:] == ["GET", "PUT", "PUT"] and qualified_ids(rf) == [lead["id"]]


@pytest.mark.parametrize("retry_after", ["1", *UNREADABLE])
def test_a_503_with_retry_after_to_the_put_is_not_sent_again_before_rf_is_asked(bridge, intercom, rf, clock,
                                                                                retry_after):
    """A 503 to the PUT may have been applied. urllib3 retries a 503 that carries Retry-After even for
    a method it is told not to retry: the PUT would go out twice in one call. It is Uncertain
    instead, and the next try asks RF first."""
    lead, contact = join(bridge, intercom, rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    rf.fail_next("PUT", r"^/users/qualification$", 503, headers={"Retry-After": retry_after}, times=2)
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    link = bridge.history(42, lead["id"])["link"]
    assert len(puts(rf)) == 1 and link["qualification"] == "unconfirmed"
    assert link["reason"].startswith("Referral Factory answered 503"), link
    rf.clear_faults()
    bridge.poller.release_delayed()                                  # RF's 503s: an outage, waited out
    bridge.poller.drain(retry_failures=True)
    asks = [r["method"] for r in rf.requests if r["path"].startswith("/users")]
    assert asks.count("PUT") == 2 and asks[-2:] == ["GET", "PUT"] and qualified_ids(rf) == [lead["id"]]


def test_a_redirect_answered_to_the_put_never_counts_as_qualified(bridge, intercom, rf, clock):
    """Redirects are not followed (an API address that moved, e.g. http:// for https://): a 3xx to
    the PUT is not RF's yes, and may have been applied; the next try asks RF first."""
    lead, contact = join(bridge, intercom, rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    rf.fail_next("PUT", r"^/users/qualification$", 301, headers={"Location": "https://rf.example/users/qualification"})
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    link = bridge.history(42, lead["id"])["link"]
    assert link["qualification"] == "unconfirmed" and "answered 301" in link["reason"] and qualified_ids(rf) == []
    bridge.poller.expire_inflight()
    bridge.poller.drain(retry_failures=True)
    asks = [r["method"] for r in rf.requests if r["path"].startswith("/users")]
    assert asks[-2:] == ["GET", "PUT"] and qualified_ids(rf) == [lead["id"]]


# --- no link left unfinished -----------------------------------------------------------------------
def test_a_join_left_in_progress_by_a_dead_worker_is_finished_by_reconciliation(bridge, intercom, rf, clock):
    """A worker claimed the join, created the contact (with our marker), and died; its deliveries are
    gone. The next reconciliation run queues the join again; once Intercom's search can show the
    contact, the join resumes with it (found by its marker), and creates no other."""
    bridge.apply(qualifying_settings())
    lead = new_lead(rf)
    ref = PersonRef("42", str(lead["id"]))
    bridge.rt.store.links.claim(ref, WORKSPACE)
    created = intercom.add_contact("ann@example.com", role="lead",
                                   custom_attributes={"signed_up": "No", "rf_person": f"42#{lead['id']}"})
    assert bridge.reconcile()["overdue"] == 0                        # its lease still runs
    clock.now += 121
    assert bridge.reconcile()["overdue"] == 1
    for _ in range(4):                                               # it waits out the search lag
        bridge.drain()
        clock.now += 60
        bridge.poller.release_delayed()
    person = bridge.history(42, lead["id"])
    assert (person["link"]["status"], person["link"]["contact_id"]) == ("linked", created["id"])
    assert [c["id"] for c in intercom.contacts_by_email("ann@example.com")] == [created["id"]]
    assert ("reconciliation", "stuck_join") in history(bridge, lead) and bridge.dead_letters() == []
    intercom.update_contact(created["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", created["id"])
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]


def test_a_claim_held_by_a_dead_worker_while_the_other_deliveries_arrive(bridge, intercom, rf, clock):
    """The join's three deliveries arrive while a dead worker's claim holds it: they wait (a wait is not
    a try), and the join finishes without an operator; nothing is dead-lettered."""
    bridge.apply(qualifying_settings())
    lead = new_lead(rf)
    bridge.rt.store.links.claim(PersonRef("42", str(lead["id"])), WORKSPACE)   # ...and that worker died
    for _ in range(3):
        bridge.post_join(join_body(lead))
    for _ in range(3):
        bridge.poller.drain(retry_failures=True)
    clock.now += 121
    bridge.reconcile()
    for _ in range(4):             # the dead worker may have created the contact: the search lag first
        bridge.poller.drain(retry_failures=True)
        clock.now += 60
        bridge.poller.release_delayed()
    assert bridge.dead_letters() == []
    assert bridge.history(42, lead["id"])["link"]["status"] == "linked"
    assert len(intercom.contacts_by_email("ann@example.com")) == 1


def test_a_qualification_whose_worker_died_is_finished_asking_rf_first(bridge, intercom, rf, clock):
    lead, contact = join(bridge, intercom, rf)
    links = bridge.rt.store.links
    assert links.start_qualifying(links.get(PersonRef("42", str(lead["id"]))))   # claimed, then the Lambda died
    intercom.update_contact(contact["id"], signed_up="Maybe")        # what the contact says now does not matter
    clock.now += 121
    assert bridge.reconcile()["overdue"] == 1
    bridge.drain()
    assert len(puts(rf)) == 1 and qualified_ids(rf) == [lead["id"]]
    assert history(bridge, lead)[-3:] == [("reconciliation", "stuck_qualification"),
                                          ("qualification", "taken_over"), ("qualification", "qualified")]


# --- order never matters ---------------------------------------------------------------------------
def test_yes_newer_delivered_before_no_older_qualifies_within_the_same_drain(bridge, intercom, rf, clock):
    """require_change: the contact already had "Yes" when the person joined. It goes "No", then "Yes"
    again; Intercom delivers the newer "Yes" first (held: Link.held_at), then the older "No", which releases it.
    Qualified in the same drain, no reconciliation."""
    settings = qualifying_settings()
    settings["leads"]["duplicates"] = "skip"
    intercom.add_contact("ann@example.com", role="user", custom_attributes={"signed_up": "Yes"})
    lead, contact = join(bridge, intercom, rf, settings)
    clock.now += 10
    intercom.update_contact(contact["id"], signed_up="No")
    no = intercom.webhook_payload("contact.user.updated", contact["id"])
    clock.now += 10
    intercom.update_contact(contact["id"], signed_up="Yes")
    yes = intercom.webhook_payload("contact.user.updated", contact["id"])
    bridge.post_intercom(yes)
    bridge.post_intercom(no)
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    reasons = [h["reason"] or "" for h in bridge.history(42, lead["id"])["history"]]
    assert any("releasing the value held back" in r for r in reasons)
