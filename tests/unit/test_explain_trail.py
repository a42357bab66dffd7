"""`bridge explain` after a failure and after a replay, as an operator reads it: a failed join says
it was received and whether a lead or a referrer; a replayed try says it was one; a fix shows only
while it still applies (a later success marks the failure resolved, a later try takes the fix)."""
from __future__ import annotations

import dataclasses
import re

import pytest

from chalicelib.adapters.memory import MemoryStore
from chalicelib.domain.history import Entry
from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from chalicelib.errors import Deferred, Disconnected, Permanent, Transient, Uncertain
from chalicelib.services.explain import as_text, explain
from chalicelib.services.worker import RetryBatch
from tests.fakes import FakeClock
from tests.unit import scenario
from tests.unit.test_join_use_case import LEAD, join, world

AMY = {k: v for k, v in LEAD.items() if k != "type"}          # the body says `referrer_id`, not `type`
REFUSED = "Intercom answered 400 parameter_invalid: Custom attribute 'lead_source' does not exist"
REPLAYED = "replayed from the dead-letter queue (bridge dlq replay)"
GONE = "Referral Factory answered 404: User not found."


def trail(work, who: str = "ann@example.com") -> tuple[str, dict]:
    found = explain(work, who)
    return as_text(found), found.view()


def lines(text: str, part: str) -> list[str]:
    return [line for line in text.splitlines() if part in line]


def test_a_failed_join_says_it_was_received_and_the_kind_its_webhook_gave():
    work = world()
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)
    assert scenario.run(work, join(AMY))["dead"] == 1
    text, view = trail(work)
    assert "campaign 42, RF user 7 (lead, a***@example.com): no Intercom contact yet" in text
    assert view["people"][0]["kind"] == "lead"
    assert [(e["event"], e["outcome"]) for e in view["trail"]] == [
        ("join_received", "received"), ("join", "failed"), ("dead_letter", "failed")]
    assert view["trail"][0]["details"]["type"] == "lead"
    assert len(lines(text, "fix: fix the cause named here, then `bridge dlq replay --campaign 42`")) == 2


def test_a_join_that_failed_before_the_person_was_read_takes_the_kind_from_the_webhook():
    work = world()
    work.apis.rf_.get_answers = [Permanent("Referral Factory answered 401: bad token")]
    assert scenario.run(work, join(AMY))["dead"] == 1
    text, view = trail(work)
    assert "RF user 7 (lead, " in text and "kind unknown" not in text
    assert view["trail"][0]["event"] == "join_received" and view["trail"][0]["details"]["type"] == "lead"


def test_a_join_whose_webhook_gave_no_type_shows_none_as_text_not_pythons_none():
    work = world()
    work.apis.rf_.get_answers = [Permanent("Referral Factory answered 401: bad token")]
    assert scenario.run(work, join({k: v for k, v in AMY.items() if k != "referrer_id"}))["dead"] == 1
    text, view = trail(work)
    [received] = lines(text, "join_received: received")
    assert view["trail"][0]["details"]["type"] is None and "None" not in received, received


def test_a_retry_of_a_failed_join_does_not_say_received_again():
    work = world()
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)
    scenario.run(work, join(AMY))
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)
    scenario.run(work, join(AMY))                       # the same webhook, sent again by RF
    _, view = trail(work)
    assert [e["event"] for e in view["trail"]].count("join_received") == 1


def test_a_replayed_join_says_it_was_a_replay_and_the_failure_it_fixed_shows_no_fix():
    work = world()
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)
    scenario.run(work, join(AMY))
    work.clock.now += 60                                # the attribute created, then `bridge dlq replay`
    assert scenario.run(work, join(AMY, replayed_from="dead-1"))["done"] == 1
    text, view = trail(work)
    assert "fix:" not in text
    [replayed] = lines(text, REPLAYED)
    assert "join_received: received — " + REPLAYED in replayed and "replayed_from=dead-1" in replayed
    failed = [e for e in view["trail"] if e["outcome"] == "failed"]
    assert [e["event"] for e in failed] == ["join", "dead_letter"]
    assert all(e["resolved"] and "fix" not in e for e in failed)
    assert len(lines(text, "(resolved since)")) == 2
    assert "RF user 7 (lead, a***@example.com): Intercom contact c1 (lead)" in text


def test_a_replay_that_fails_again_has_the_only_fix_of_the_trail():
    work = world()
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)
    scenario.run(work, join(AMY))
    work.clock.now += 60
    work.apis.intercom_.fail["create"] = Permanent("Intercom answered 400: email invalid")
    scenario.run(work, join(AMY, replayed_from="dead-1"))
    text, view = trail(work)
    with_fix = [(e["event"], e["reason"]) for e in view["trail"] if e.get("fix")]
    assert with_fix == [("join", "Intercom answered 400: email invalid"),
                        ("dead_letter", "Intercom answered 400: email invalid")]
    assert not any(e.get("resolved") for e in view["trail"])          # not resolved: it failed again
    assert "(resolved since)" not in text


def test_a_failed_join_replayed_is_said_back_in_the_queue_without_fixes_until_its_next_try():
    """`bridge dlq replay` wrote nothing in the history: until the next try, explain said the join failed and
    advised the replay just made. The replay is noted: back in the queue; a next try that fails again says so."""
    from chalicelib.services.dead_letters import replay
    work = world()
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)
    scenario.run(work, join(AMY))
    work.clock.now += 60
    assert replay(work, campaign="42")["replayed"] == 1
    text, view = trail(work)
    [person] = view["people"]
    assert person["status"] == "replayed" and "fix:" not in text, text
    assert lines(text, "RF user 7")[0].endswith(f"; replayed at {person['replayed_at']}: back in the queue"), text
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)            # the cause was not fixed
    scenario.run(work, work.queue.sent[-1])
    text, view = trail(work)
    assert view["people"][0]["status"] == "failed" and lines(text, f"; failed — {REFUSED}") and "fix:" in text


def test_a_replay_that_fails_again_at_once_is_said_failed_whatever_the_clis_clock_says():
    """The CLI stamps its replay note by its estimate of AWS's time, here 0.4 s ahead of the worker's: the copy's
    try, failing again at once, wrote its entries before the note by time, and the header said "back in the
    queue" while the letter was dead again. The note is ordered before the try that names it."""
    from chalicelib.services.dead_letters import replay
    work = world()
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)
    scenario.run(work, join(AMY))
    work.clock.now += 60
    sent_at = work.clock.now
    work.clock.now = sent_at + 0.4                       # the CLI's clock, ahead of the worker's
    assert replay(work, campaign="42")["replayed"] == 1
    work.clock.now = sent_at + 0.1                       # the worker's, as it takes the copy at once
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)
    assert scenario.run(work, work.queue.sent[-1])["dead"] == 1
    text, view = trail(work)
    [person] = view["people"]
    assert person["status"] == "failed" and "back in the queue" not in text, text
    events = [(e["event"], e["outcome"]) for e in view["trail"]]
    assert events[-4:] == [("dead_letter", "replayed"), ("join_received", "received"), ("join", "failed"),
                           ("dead_letter", "failed")], events
    assert [e["at"] for e in view["trail"]] == sorted(e["at"] for e in view["trail"])   # no later than the try
    assert len([e for e in view["trail"] if e.get("fix")]) == 2, text      # the new failure's, as at first
    letter = view["trail"][-4]["details"]["message_id"]
    assert view["trail"][-1]["details"]["replayed_from"] == letter        # its dead letter names the replay too


def failed_qualification():
    """A lead whose rule was met, and whose qualification Referral Factory refused."""
    work = scenario.world()
    _, contact = scenario.joined(work)
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: paused")]
    scenario.set_value(work, contact, "Yes")
    scenario.run(work, scenario.check())
    return work


def test_a_failed_qualification_whose_letter_was_replayed_is_said_back_in_the_queue_until_its_next_try():
    """The header said "qualification failed — <RF's refusal>" after the replay, as if nothing was done."""
    from chalicelib.services.dead_letters import replay
    work = failed_qualification()
    work.clock.now += 60
    assert replay(work, reason="Referral Factory answered 422")["replayed"] == 1
    text, view = trail(work, "7")
    [person] = view["people"]
    assert (person["status"], person["qualification"]) == ("linked", "replayed"), person
    assert lines(text, "RF user 7")[0].endswith(
        f"; linked, qualification replayed at {person['replayed_at']}: back in the queue; baseline 'No'"), text
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: paused")]     # the cause was not fixed
    scenario.run(work, work.queue.sent[-1])
    text, view = trail(work, "7")
    assert lines(text, "; linked, qualification failed; baseline 'No' — Referral Factory answered 422: paused")


def test_a_replayed_qualification_failing_again_at_once_is_told_after_the_replay_by_the_clis_earliest_time():
    """The CLI's estimate of AWS's time ran 0.4 s ahead of the worker's: the replayed check's qualification,
    refused again at once, was written before the replay's note by time (it names no letter) and lost its fix to
    it. The note is stamped no later than AWS's time may be (AwsClock.earliest): it comes first, whatever names
    the letter."""
    from email.utils import formatdate
    from types import SimpleNamespace

    from chalicelib.adapters.aws_clock import AwsClock
    from chalicelib.services.dead_letters import replay
    work = failed_qualification()
    work.clock.now = true = int(work.clock.now) + 60.1       # AWS's time, early in its second
    cli = AwsClock(FakeClock(now=true + 5.0))                # the operator's computer, 5 s ahead
    sent = cli.local()
    cli.answered(sent, sent + 0.1, formatdate(int(true), usegmt=True))
    assert cli() - true > 0.3                                # its estimate: ahead, as in a walk
    work.clock.now = cli()                                   # the CLI's store stamps by the estimate
    assert replay(SimpleNamespace(store=work.store, queue=work.queue, clock=cli),
                  reason="Referral Factory answered 422")["replayed"] == 1
    work.clock.now = true + 0.1                              # the worker takes the copy at once
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: paused")]
    scenario.run(work, work.queue.sent[-1])
    text, view = trail(work, "7")
    assert "back in the queue" not in text and lines(text, "; linked, qualification failed; baseline 'No'"), text
    events = [(e["event"], e["outcome"], bool(e.get("fix"))) for e in view["trail"]]
    assert events[-3:] == [("dead_letter", "replayed", False), ("qualification", "failed", True),
                           ("dead_letter", "failed", True)], events


def test_a_qualified_lead_whose_old_qualification_letter_is_replayed_shows_qualified_not_replayed_forever():
    """The lead was qualified since its check was dead-lettered; replaying the letter then wrote "qualification
    replayed at T: back in the queue" in the header, and kept it after the replayed check ran: it writes no
    evaluation nor qualification of a lead already qualified. A qualified link shows qualified."""
    from chalicelib.services.dead_letters import replay
    work = failed_qualification()
    work.queue.dead_letter(__import__("json").dumps(scenario.check()), "gave up after 3 tries: timeout", 3, "t")
    work.apis.rf_.answers = []
    assert replay(work, reason="Referral Factory answered 422")["replayed"] == 1
    scenario.run(work, work.queue.sent[-1])
    assert scenario.link_of(work, "7").qualification == "qualified"
    work.clock.now += 60
    assert replay(work, reason="timeout")["replayed"] == 1
    for _ in range(2):                  # just replayed, then once the replayed check ran
        text, view = trail(work, "7")
        [person] = view["people"]
        assert person.get("qualification") == "qualified" and "back in the queue" not in text, (person, text)
        scenario.run(work, work.queue.sent[-1])


def test_a_failed_qualification_replayed_says_so_and_is_resolved():
    work = failed_qualification()
    text, view = trail(work, "7")
    assert lines(text, "qualification: failed") and lines(text, "fix: fix the cause at Referral Factory")
    work.clock.now += 60
    scenario.run(work, scenario.check(replayed_from="dead-1"))
    text, view = trail(work, "7")
    assert "fix:" not in text
    [failed] = [e for e in view["trail"] if e["event"] == "qualification" and e["outcome"] == "failed"]
    assert failed["resolved"]
    [qualified] = lines(text, "qualification: qualified")
    assert REPLAYED in qualified


def test_intercom_news_of_a_failed_joins_contact_does_not_resolve_the_join():
    """The join created the contact, then Intercom refused its tag: the failed link keeps the contact,
    so Intercom's webhooks about it (the lead converted to a user) reach it. They are not the join
    applied: the failure and its dead letter keep their fix."""
    work = world()
    work.apis.intercom_.fail["tag"] = Permanent("Intercom answered 403: tags not allowed")
    assert scenario.run(work, join(LEAD))["dead"] == 1
    link = work.store.links.get(PersonRef("42", "7"))
    assert link is not None and link.contact_id
    work.clock.now += 60
    contact = work.apis.intercom_.contacts[link.contact_id]
    scenario.run(work, scenario.event({**contact, "role": "user"}, topic="contact.user.created"))
    text, view = trail(work)
    assert ("contact", "role_changed") in [(e["event"], e["outcome"]) for e in view["trail"]]
    assert "(resolved since)" not in text
    assert len(lines(text, "fix: fix the cause named here, then `bridge dlq replay --campaign 42`")) == 2
    work.clock.now += 60                                # tags allowed again, then `bridge dlq replay`
    assert scenario.run(work, join(LEAD, replayed_from="dead-1"))["done"] == 1
    text, _ = trail(work)
    assert "fix:" not in text and len(lines(text, "(resolved since)")) == 2


@pytest.mark.parametrize("answer, said, header, not_applied", [
    (Uncertain("Referral Factory answered 503 (to PUT /users/qualification, which may have been applied)"),
     "qualification: unconfirmed — Referral Factory answered 503", "linked, qualification unconfirmed;", False),
    (Transient("Referral Factory answered 429"),
     "qualification: not_applied — Referral Factory answered 429 — Referral Factory did not apply the qualification: "
     "the next try sends it", "linked, qualification not applied yet;", True),
])
def test_a_qualification_left_unfinished_does_not_resolve_the_failed_one(answer, said, header, not_applied):
    """The header says `unconfirmed` only when the PUT may have reached RF; a PUT RF refused (429) is
    said not applied yet (the link's state stays `unconfirmed`, for machines too)."""
    work = failed_qualification()
    work.clock.now += 60
    work.apis.rf_.answers = [answer]
    with pytest.raises(RetryBatch):                     # the replay's try is left for a retry
        scenario.run(work, scenario.check(replayed_from="dead-1"))
    text, view = trail(work, "7")
    assert lines(text, said)
    assert lines(text, header) and bool(lines(text, "qualification unconfirmed")) is not not_applied
    [person] = view["people"]
    assert person["qualification"] == "unconfirmed" and person.get("qualification_not_applied", False) is not_applied
    [failed] = [e for e in view["trail"] if e["event"] == "qualification" and e["outcome"] == "failed"]
    assert not failed.get("resolved") and "(resolved since)" not in text
    assert lines(text, "fix: fix the cause at Referral Factory")


def test_entries_written_before_these_details_still_render_and_resolve():
    """An old history: a join_received without a type, a dead letter without its message's kind."""
    clock = FakeClock()
    store = MemoryStore(clock)
    store.settings.put("42", {"campaign_id": "42"}, "ws")
    ref = PersonRef("42", "7")
    claim = store.links.claim(ref, "ws")
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", reason=REFUSED),
                       [Entry("join", "failed", REFUSED)])
    store.links.note(ref, [Entry("dead_letter", "failed", f"gave up after 5 tries: {REFUSED}",
                                 {"attempts": 5, "replay": "bridge dlq replay"})])
    rt = type("R", (), {"store": store, "clock": clock})()
    text = as_text(explain(rt, "7"))
    assert "(kind unknown, a***@example.com)" in text and len(lines(text, "fix:")) == 2
    clock.sleep(60)
    claim = store.links.claim(ref, "ws")
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, email="ann@example.com", contact_id="c1"),
                       [Entry("join_received", "received"), Entry("contact", "created", "created a lead")])
    text = as_text(explain(rt, "7"))
    assert "fix:" not in text and len(lines(text, "(resolved since)")) == 2


def parked_and_resolved(work, who: str, kind: str, line: str, says: str) -> str:
    """explain after the replay: no fix left, the dead letter (of `kind`) resolved, and the one line
    with `line` saying `says`. That line."""
    text, view = trail(work, who)
    assert "fix:" not in text
    [parked] = [e for e in view["trail"] if e["event"] == "dead_letter"]
    assert parked["resolved"] and parked["details"]["kind"] == kind
    [found] = lines(text, line)
    assert says in found
    return found


def test_a_parked_duplicate_check_replayed_says_so_and_resolves_its_dead_letter():
    """A duplicate check Intercom refused (its workspace disconnected): once replayed and done, its dead
    letter shows no fix, and the check's entry says it was a replay. A check never parked writes nothing."""
    work = world()
    scenario.run(work, join(AMY))
    [check] = [m for m in work.queue.sent if isinstance(m, dict) and m.get("kind") == "join.verify"]
    work.clock.now = check["not_before"]
    work.apis.intercom_.fail["search"] = Disconnected("ws")
    assert scenario.run(work, check)["dead"] == 1
    text, _ = trail(work)
    assert len(lines(text, "fix: reconnect workspace ws")) == 1
    work.clock.now += 60                                # reconnected, then `bridge dlq replay`
    assert scenario.run(work, {**check, "replayed_from": "dead-1"})["done"] == 1
    parked_and_resolved(work, "ann@example.com", "join.verify", "duplicate_check: unique",
                        f"duplicate check {REPLAYED}: no other contact has this email")


RITA_ID = "100"


def parked_count(refusal: Exception) -> tuple:
    """Rita's referral count, after her lead joined, refused by Intercom and dead-lettered: (work, its message)."""
    from tests.unit.test_referral_count import lead_join, sent, world as counting_world
    work = counting_world()
    scenario.joined(work, RITA_ID, "rita@example.com", kind="referrer", role="user")
    scenario.run(work, lead_join("1"))
    [count] = sent(work)
    work.apis.intercom_.fail["update"] = refusal
    assert scenario.run(work, count)["dead"] == 1
    return work, count


def test_a_parked_referral_count_replayed_says_so_and_resolves_its_dead_letter():
    work, count = parked_count(Disconnected("ws"))
    work.clock.now += 60
    assert scenario.run(work, {**count, "replayed_from": "dead-1"})["done"] == 1
    parked_and_resolved(work, RITA_ID, "referral.count", "referral_count: written", REPLAYED)


@pytest.mark.parametrize("turn_off", ["the count attribute", "the campaign's settings"])
def test_a_parked_referral_count_replayed_after_the_count_was_turned_off_resolves_its_dead_letter(turn_off):
    """Replayed once the campaign keeps no count any more, the write has nothing to do: the trail says
    why, and the dead letter's fix is gone (else the operator would replay it again and again)."""
    from tests.unit.test_referral_count import WS, counting_settings
    work, count = parked_count(Permanent(REFUSED))
    text, _ = trail(work, RITA_ID)
    assert len(lines(text, "fix: fix the cause named here, then `bridge dlq replay --campaign 42`")) == 1
    work.clock.now += 60
    if turn_off == "the count attribute":
        document = counting_settings()
        del document["sync"]["referral_count_attribute"]
        work.store.settings.put("42", document, WS)
    else:
        work.store.settings.delete("42")
    assert scenario.run(work, {**count, "replayed_from": "dead-1"})["done"] == 1
    assert work.apis.intercom_.calls.count("update") == 1                 # the failed try only
    parked_and_resolved(work, RITA_ID, "referral.count", "referral_count: off",
                        f"referral count {REPLAYED}: referral count off in the settings since: nothing to write")


def test_a_parked_referral_count_replayed_after_its_only_lead_was_forgotten_resolves_its_dead_letter():
    """The count's write failed (never written), then its only lead was forgotten (the count is 0): the
    replay has nothing to write, and says so; the dead letter's fix is gone."""
    from chalicelib.services.privacy import forget
    work, count = parked_count(Permanent(REFUSED))
    work.clock.now += 60
    forget(work, "lead1@example.com")
    assert scenario.run(work, {**count, "replayed_from": "dead-1"})["done"] == 1
    parked_and_resolved(work, RITA_ID, "referral.count", "referral_count: nothing",
                        f"referral count {REPLAYED}: no lead counted since: nothing to write")


RATE_LIMITED = "Intercom answered 429 Too Many Requests: rate limit exceeded"


def header(work, who: str) -> str:
    [line] = lines(trail(work, who)[0], "RF user ")
    return line


def test_a_join_waiting_on_an_intercom_429_says_it_waits_and_its_next_try_ends_with_one_contact():
    """Ann's create got no answer (it was applied), Bea is new; then Intercom's 429 holds both back. Each
    link says it waits (not failed), keeping what the next try needs; the next try links each to one contact."""
    work = world()
    intercom = work.apis.intercom_
    intercom.after["create"] = Transient("Intercom did not answer POST /contacts in time")
    with pytest.raises(RetryBatch):
        scenario.run(work, join())
    lost = scenario.link_of(work).uncertain_since
    assert lost is not None
    work.clock.now += 30
    bea = {**LEAD, "id": "8", "email": "bea@example.com"}
    work.apis.rf_.users["8"] = {**LEAD, "id": "8", "email": "bea@example.com", "code": "c8"}
    intercom.fail["search"] = Deferred(RATE_LIMITED, retry_after=10.0, status=429)
    assert scenario.run(work, join(), join(bea, user="8")) == {"done": 0, "retry": 0, "dead": 0, "waiting": 2}
    for who, user in (("ann@example.com", "7"), ("bea@example.com", "8")):
        said = header(work, who)
        assert f"; waiting — {RATE_LIMITED} (waits in the queue, without using up a try)" in said, said
        assert "failed" not in said and scenario.link_of(work, user).status is LinkStatus.WAITING
    ann = scenario.link_of(work)
    assert ann.uncertain_since == lost and ann.contact_id is None      # the lost create is still looked for
    work.clock.now += 30
    assert scenario.run(work, join(), join(bea, user="8")) == {"done": 2, "retry": 0, "dead": 0}
    assert intercom.calls.count("create") == 2 and len(intercom.contacts) == 2
    assert {scenario.link_of(work, u).contact_id for u in ("7", "8")} == set(intercom.contacts)
    assert all(scenario.link_of(work, u).status is LinkStatus.LINKED for u in ("7", "8"))
    assert ("contact", "resumed") in scenario.history(work, "7")


def test_a_wait_days_after_the_last_ones_is_counted_on_its_own():
    """The worker's counted note of a person's waits never restarted: after two outages days apart, explain counted
    the waits of both as one ("x140")."""
    work = world()

    def waits(seconds_later: float) -> str:
        work.clock.now += seconds_later
        work.apis.intercom_.fail["search"] = Deferred(RATE_LIMITED, retry_after=10.0, status=429)
        assert scenario.run(work, join())["waiting"] == 1
        [said] = lines(trail(work)[0], "waiting: deferred")
        return said
    waits(0)
    assert waits(60).endswith("(x2)")
    assert waits(3 * 86400).endswith(f"{RATE_LIMITED} (waits in the queue, without using up a try)")


def test_a_join_a_try_holds_again_does_not_say_the_last_tries_reason_as_its_own():
    work = world()
    work.apis.intercom_.fail["search"] = Deferred(RATE_LIMITED, status=429)
    assert scenario.run(work, join())["waiting"] == 1
    work.store.links.claim(PersonRef("42", "7"), "ws")                # the next try, now running
    said = header(work, "ann@example.com")
    assert said.endswith("; in_progress") and "429" not in said, said
    assert RATE_LIMITED in trail(work)[0]                                # the trail still says it


def test_a_dead_letter_of_an_intercom_notification_is_replayed_by_its_reason_not_its_campaign():
    """The notification's message names no campaign: `dlq replay --campaign 42` leaves its letter ("1 left
    (not matching)"). explain advises the replay that reaches it, by a part of its reason, as doctor does."""
    from chalicelib.services import dead_letters
    work = scenario.world()
    _, contact = scenario.joined(work)
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: paused")]
    assert scenario.run(work, scenario.event(scenario.set_value(work, contact, "Yes")))["dead"] == 1
    text, view = trail(work, "7")
    [letter] = [e for e in view["trail"] if e["event"] == "dead_letter"]
    assert letter["details"]["kind"] == "intercom.contact"
    replay = "`bridge dlq replay --reason 'Referral Factory answered 422: paused'`"
    assert replay in letter["fix"] and "--campaign 42" not in text
    assert lines(text, "fix: fix the cause at Referral Factory, then " + replay)
    [queued] = [dead_letters.read(m) for m in work.queue.letters.values()]
    assert dead_letters.matches(queued, "Referral Factory answered 422: paused", None)
    assert not dead_letters.matches(queued, None, "42")


def test_the_reason_a_replay_names_matches_letters_of_the_cause_whatever_their_tries_and_never_an_email():
    from chalicelib.services.dead_letters import replay_fix
    fix = replay_fix("gave up after 5 tries: Intercom answered 400: email zoë@exämple.com is invalid", None)
    assert "`bridge dlq replay --reason 'Intercom answered 400: email'`" in fix


def test_every_discard_explain_advises_for_a_notifications_dead_letter_reaches_that_letter():
    """Ann's lead qualifies by an Intercom notification; RF answers 404 to the qualification (deleted there).
    The dead letter (kind intercom.contact) says `dlq discard --reason "Referral Factory answered 404" --yes`,
    but the qualification failure above it says the same with `--campaign 42`: run as said, it matches
    nothing ("0 dead letter(s) match"), the letter stays and doctor stays BAD."""
    from chalicelib.services import dead_letters
    work = scenario.world()
    _, contact = scenario.joined(work)
    work.apis.rf_.answers = [Permanent(GONE, status=404)]
    assert scenario.run(work, scenario.event(scenario.set_value(work, contact, "Yes")))["dead"] == 1
    [letter] = [dead_letters.read(m) for m in work.queue.letters.values()]
    assert letter.kind == "intercom.contact" and letter.campaign_id is None
    _, view = trail(work, "7")
    advised = [e for e in view["trail"] if "dlq discard" in (e.get("fix") or "")]
    assert advised
    for e in advised:
        said = re.search(r'dlq discard --reason "([^"]+)"(?: --campaign (\S+))? --yes', e["fix"])
        assert said, e["fix"]
        assert dead_letters.matches(letter, said.group(1), said.group(2)), (e["event"], e["fix"])


def test_after_the_advised_discard_explain_no_longer_shows_the_notifications_failure_as_open():
    """The same letter discarded as the dead letter's own fix says (by its reason): its message names no
    campaign nor RF user, but the worker recorded the failure under Ann — her trail shows the qualification
    failure and the dead letter resolved as discarded, with no fix left, and the discard itself."""
    from chalicelib.services import dead_letters
    work = scenario.world()
    _, contact = scenario.joined(work)
    work.apis.rf_.answers = [Permanent(GONE, status=404)]
    assert scenario.run(work, scenario.event(scenario.set_value(work, contact, "Yes")))["dead"] == 1
    assert dead_letters.discard(work, reason="Referral Factory answered 404")["discarded"] == 1
    assert work.queue.dead_count() == 0
    _, view = trail(work, "7")
    still = [(e["event"], e.get("fix")) for e in view["trail"] if e["outcome"] == "failed" and e.get("fix")]
    assert still == [], still
    failed = [e for e in view["trail"] if e["outcome"] == "failed"]
    assert [e["event"] for e in failed] == ["qualification", "dead_letter"]
    assert all(e.get("resolved") and e.get("discarded") and "fix" not in e for e in failed), failed
    assert (view["trail"][-1]["event"], view["trail"][-1]["outcome"]) == ("dead_letter", "discarded")


OUTAGE = "Intercom answered 503: service unavailable"


def test_a_join_the_queue_tries_again_says_retrying_which_try_and_when_and_never_advises_a_replay():
    """Intercom is down: Ann's join fails on its first try and the queue tries it again (3 tries here).
    Nothing is dead-lettered, so explain says retrying (try 1 of 3, the next due when the failure said), never
    `dlq replay`; while try 2 runs the header says so; only the last try's dead letter advises the replay."""
    work = world()
    work.apis.intercom_.fail["search"] = Transient(OUTAGE, retry_after=30.0)
    with pytest.raises(RetryBatch):
        scenario.run(work, join(AMY))
    text, view = trail(work)
    assert "dlq replay" not in text and "fix:" not in text, text
    assert [(e["event"], e["outcome"]) for e in view["trail"]] == [("join_received", "received"), ("join", "retrying")]
    [retrying] = lines(text, "join: retrying")
    assert f"{OUTAGE} (try 1 of 3 failed; the queue tries it again at about " in retrying, retrying
    assert view["people"][0]["status"] == "retrying" and view["people"][0]["retry"]["try"] == 1
    assert f"; retrying — {OUTAGE} (try 1 of 3 failed; the queue tries it again at about " in header(work, "7")

    work.clock.now += 30
    work.store.links.claim(PersonRef("42", "7"), "ws")                # try 2, now running
    said = header(work, "7")
    assert "retrying" in said and "(try 2 of 3 under way; try 1 failed)" in said and "in_progress" not in said, said



def test_only_the_last_try_of_a_join_that_gave_up_advises_the_replay():
    work = world()
    work.apis.intercom_.fail["search"] = Transient(OUTAGE)
    with pytest.raises(RetryBatch):
        scenario.run(work, join(AMY))
    work.clock.now += 720
    work.apis.intercom_.fail["search"] = Transient(OUTAGE)
    assert scenario.run(work, join(AMY), receives=3)["dead"] == 1          # its last try: dead-lettered
    text, view = trail(work)
    assert [(e["event"], e["outcome"], bool(e.get("fix"))) for e in view["trail"]] == [
        ("join_received", "received", False), ("join", "retrying", False), ("join", "failed", True),
        ("dead_letter", "failed", True)]
    [retrying] = lines(text, "join: retrying")
    assert "(try 1 of 3 failed; the queue tries it again once its visibility timeout ends (minutes))" in retrying
    assert header(work, "7").endswith(f"; failed — {OUTAGE}")


RF_REVOKED = ("Referral Factory answered 401: Unauthenticated. — the RF token is invalid: run `bridge rf connect`, "
              "then replay the dead-letter queue")


def test_a_revoked_rf_token_is_advised_as_the_bridges_stored_token_alike_by_explain_dlq_list_and_doctor():
    """RF refuses the token the bridge has stored (revoked): the qualification fails for good. The fix is the
    bridge's (`bridge rf connect`, then the replay), never "fix the cause at Referral Factory", and explain,
    `dlq list` and doctor's dead-letter finding say the same."""
    from chalicelib.services.dead_letters import look
    from chalicelib.services.doctor import examine
    from tests.unit.doctoring import checks, healthy
    rt = healthy()
    work = rt.work
    work.config = dataclasses.replace(work.config, queue_url="memory://queue", dlq_url="memory://dlq")
    rt.config = work.config
    _, contact = scenario.joined(work)
    work.apis.rf_.answers = [Permanent(RF_REVOKED, status=401)]
    scenario.set_value(work, contact, "Yes")
    assert scenario.run(work, scenario.check())["dead"] == 1
    # The replay by RF's refusal, as doctor's [rf.campaign] says it: one command, whatever the campaign.
    fix = ("Referral Factory refuses the RF token the bridge has stored (revoked or replaced in RF): `bridge rf "
           "connect` (it asks for the new token), then `bridge dlq replay --reason 'Referral Factory answered 401'` "
           "brings back the work that failed meanwhile (it is valid: do not discard it)")
    text, view = trail(work, "7")
    assert [(e["event"], e["fix"]) for e in view["trail"] if e.get("fix")] == [
        ("qualification", fix), ("dead_letter", fix)], text
    assert "at Referral Factory" not in text
    [letter] = look(work).letters                                       # type: ignore[arg-type]
    assert letter.view()["fix"] == fix
    [letters] = checks(examine(rt, "42").view(), "dead_letters")       # type: ignore[arg-type]
    assert letters["fix"] == fix


# --- the text's noise: empty details, and the same entry again and again ---------------------------------------
RECEIVED = Entry("join_received", "received", None, {"type": "lead", "fetched_from_referral_factory": []})


def said_of(*entries: Entry) -> tuple[str, dict]:
    """RF user 7's trail of these entries, a minute apart, then their join applied."""
    clock = FakeClock()
    store = MemoryStore(clock)
    store.settings.put("42", {"campaign_id": "42"}, "ws")
    ref = PersonRef("42", "7")
    claim = store.links.claim(ref, "ws")
    for entry in entries:
        store.links.note(ref, [entry])
        clock.now += 60
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c1"),
                       [Entry("contact", "created", "created for ann@example.com", {"contact_id": "c1"})])
    found = explain(type("R", (), {"store": store, "clock": clock})(), "7")
    return as_text(found), found.view()


def test_explain_text_shows_no_empty_detail_and_one_line_with_a_count_for_the_same_entry_in_a_row():
    """Walkthrough: `fetched_from_referral_factory=[]` (nothing fetched) was printed, and "join_received:
    received" once per try (three tries in a row: RF sent it again, a try deferred before it did anything).
    The text drops the empty detail and says the repeated entry once, how many times and when last; --json
    keeps every entry and detail as stored."""
    text, view = said_of(RECEIVED, RECEIVED, RECEIVED)
    assert "fetched_from_referral_factory" not in text, text
    [line] = lines(text, "join_received")
    assert line == ("2026-09-21T14:13:20.000Z  42#7           join_received: received (x3, the last at "
                    "2026-09-21T14:15:20.000Z)  type=lead"), text
    assert len(lines(text, "contact: created")) == 1
    received = [e for e in view["trail"] if e["event"] == "join_received"]
    assert [e["details"] for e in received] == [{"type": "lead", "fetched_from_referral_factory": []}] * 3
    assert len({e["at"] for e in received}) == 3 and all("count" not in e for e in received)


def test_the_same_entry_is_said_again_once_another_came_between_it():
    text, _ = said_of(RECEIVED, Entry("join", "waiting", "Intercom answered 429"), RECEIVED)
    assert len(lines(text, "join_received: received  type=lead")) == 2 and "(x" not in text, text


@pytest.mark.parametrize("baseline, of, said", [
    ("No", "custom_attributes.signed_up", "; baseline custom_attributes.signed_up='No'"),
    (None, "custom_attributes.plan", "; baseline custom_attributes.plan=(no value)"),
    (None, "(unknown: moved to an older contact)", "; baseline not known (moved to an older contact)"),
    ("No", None, "; baseline 'No'"),                     # stored before links recorded the attribute
])
def test_the_header_names_the_attribute_a_baseline_is_a_value_of(baseline, of, said):
    """After the rule moved from signed_up to plan, a held lead's header said "baseline 'No'": a value of
    which attribute, and why is it held? The header names it, as the history's hold does."""
    work = scenario.world()
    scenario.joined(work, signed_up=baseline, baseline_of=of)
    text, _ = trail(work, "7")
    [header] = lines(text, "RF user 7")
    assert header.endswith(f"; linked, qualification pending{said}"), header


@pytest.mark.parametrize("topic, state", [("contact.deleted", "deleted"), ("contact.archived", "archived")])
def test_the_header_says_the_linked_contact_was_deleted_or_archived_in_intercom(topic, state):
    """The header said "Intercom contact c1 (lead) in workspace ws; linked, qualification pending" of a contact
    Intercom deleted (or archived), as of a live one: only `--json` had its `contact_state`."""
    work = scenario.world()
    _, contact = scenario.joined(work)
    scenario.run(work, scenario.event(contact, topic))
    text, view = trail(work)
    assert view["people"][0]["contact_state"] == state
    assert lines(text, "RF user 7")[0].startswith(
        f"  campaign 42, RF user 7 (lead, a***@example.com): Intercom contact c1 (lead, {state} in Intercom) in "
        "workspace ws; linked"), text


def test_a_referrers_header_shows_no_baseline_and_a_leads_does():
    """Walkthrough on `make run`: `bridge explain` of a referrer (the demo's Rita, a user sync enrolled) said
    "linked; baseline custom_attributes.signed_up=(no value)", as if a rule were judged on her: referrers never
    qualify. Her link keeps the baseline its join took; the header shows none."""
    from tests.unit.test_join_use_case import SETTINGS
    work = world({**SETTINGS, "referrers": {"action": "create_user", "fields": [{"from": "email", "to": "email"}]}})
    rita = {"id": "3", "campaign_id": "42", "email": "rita@example.com", "first_name": "Rita", "type": "referrer"}
    assert scenario.run(work, join(rita, user="3"), join())["done"] == 2
    text, view = trail(work, "rita@example.com")
    [header] = lines(text, "RF user 3 (referrer, ")
    assert view["people"][0]["kind"] == "referrer" and "linked" in header and "baseline" not in header, header
    text, _ = trail(work)
    [header] = lines(text, "RF user 7 (lead, ")
    assert "; baseline custom_attributes.signed_up=" in header, header
