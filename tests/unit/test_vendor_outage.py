"""A vendor's outage is waited out, not failed (domain/outage.py): Intercom answering 5xx for hours
uses up no try; the joins wait with growing delays and, once it answers again, each arrives exactly once
with nothing in the dead-letter queue. Past the outage budget (BRIDGE_OUTAGE_HOURS) they are
dead-lettered with a reason that says the vendor was unavailable that long."""
from __future__ import annotations

import itertools
import json
from typing import Any, Callable, Optional

import pytest

from chalicelib.domain.outage import LONGEST_WAIT, outage_wait
from chalicelib.adapters.http import JsonApi
from chalicelib.errors import ApiError, Deferred
from chalicelib.messages import JoinMessage
from chalicelib.domain.link import LinkStatus, PersonRef
from chalicelib.services.explain import as_text, explain
from chalicelib.services.worker import RetryBatch, handle_batch
from tests.fakes import FakeApis, FakeIntercom, FakeRF, FakeWork
from tests.support.budget import limiter, spend
from tests.support.sqs import Sqs
from tests.unit.test_outage_faults import join, record

HOUR = 3600.0


# --- the decision -----------------------------------------------------------------------------------------
def test_the_waits_start_at_30_s_and_double_up_to_sqs_longest_delay_without_passing_the_budget():
    now, since, delays = 1000.0, None, []
    while True:
        decided = outage_wait("Intercom", "Intercom answered 503: Service Unavailable", since, now, 2 * HOUR,
                              status=503)
        if decided.delay is None:
            break
        since, now = decided.since, now + decided.delay
        delays.append(decided.delay)
    assert delays[:7] == [30, 30, 60, 120, 240, 480, 900] and max(delays) == LONGEST_WAIT
    assert now == 1000 + 2 * HOUR                      # the last wait ends at the budget, not after it
    assert decided.since == 1000 and decided.reason.startswith(
        "Intercom unavailable for 2 h (BRIDGE_OUTAGE_HOURS): Intercom answered 503: Service Unavailable")
    assert "`bridge dlq replay`" in decided.reason


def test_jitter_only_shortens_a_wait_by_up_to_a_fifth():
    waits = [outage_wait("Referral Factory", "no answer", 0.0, 5000.0, 24 * HOUR, spread).delay
             for spread in (0.0, 0.5, 0.999)]
    assert waits[0] == LONGEST_WAIT and waits[1] == 0.9 * LONGEST_WAIT and 0.8 * LONGEST_WAIT < waits[2] < waits[1]
    first = outage_wait("Referral Factory", "no answer", None, 5000.0, 24 * HOUR)
    assert first.since == 5000.0 and first.reason.startswith("Referral Factory unavailable since")


@pytest.mark.parametrize("waited, answered, does", [
    (24 * HOUR, None, "dead"),                # no answer known (a fresh container): the outage's dead letter
    (24 * HOUR, -HOUR, "dead"),               # its last answer came before the record began waiting
    (24 * HOUR, 24 * HOUR - 300, "try"),      # it answers again: the record's own failure, a try like any other
    (24 * HOUR, 3 * HOUR, "dead"),            # a few minutes of answers at hour 3 of the outage did not end it
    (23 * HOUR, 22 * HOUR, "wait"),           # within the budget nothing changes
])
def test_past_the_budget_a_vendor_that_answered_since_the_record_began_waiting_is_not_out(waited, answered, does):
    since = 1000.0
    decided = outage_wait("Intercom", "Intercom answered 503: Service Unavailable", since, since + waited, 24 * HOUR,
                          status=503, answered=None if answered is None else since + answered)
    assert ("try" if decided is None else "dead" if decided.delay is None else "wait") == does


# --- the worker, on a simulated queue ---------------------------------------------------------------------
LEAD = {"campaign_id": "42", "first_name": "Ann", "type": "lead", "referrer_id": "3"}
SETTINGS = {"campaign_id": "42", "workspace": "ws",
            "leads": {"action": "create_lead", "duplicates": "update",
                      "fields": [{"from": "email", "to": "email"}, {"from": "first_name", "to": "name"}]},
            "referrers": {"action": "nothing"}}


def outage(hours: float, budget: Optional[str] = None) -> tuple[FakeWork, FakeIntercom]:
    """Five joins while Intercom answers 503 to every call for `hours`, then Intercom answers again."""
    intercom = FakeIntercom()
    work = FakeWork(FakeApis(intercom, FakeRF()), **({"BRIDGE_OUTAGE_HOURS": budget} if budget else {}))
    work.store.settings.put("42", SETTINGS, "ws")
    intercom.down = lambda: ApiError("Intercom", 503, "Service Unavailable")
    sqs, start = Sqs(work), work.clock.now
    for n in range(5):
        sqs.send(JoinMessage(campaign_id="42", rf_user_id=str(n),
                             person={**LEAD, "id": str(n), "email": f"p{n}@example.com"}).wire(), start)
    sqs.run_until(start + hours * HOUR)
    assert intercom.contacts == {}
    intercom.down = None
    sqs.run_until(start + 48 * HOUR)
    assert sqs.due == []
    return work, intercom


def test_joins_wait_out_a_three_hour_intercom_outage_and_each_arrives_exactly_once():
    work, intercom = outage(3)
    assert work.queue.dead == []
    assert sorted(c["email"] for c in intercom.contacts.values()) == [f"p{n}@example.com" for n in range(5)]
    assert intercom.calls.count("create") == 5
    waits = [d.waits for d in work.queue.deferred]
    assert 10 <= max(waits) <= 30 and {d.tries for d in work.queue.deferred} == {0}    # no try used up
    delays = sorted(d.delay for d in work.queue.deferred)
    assert delays[0] < 40 and delays[-1] <= LONGEST_WAIT + 2


def test_past_the_outage_budget_the_joins_are_dead_lettered_saying_intercom_was_unavailable():
    work, intercom = outage(3, budget="2")
    assert len(work.queue.dead) == 5 and intercom.contacts == {}
    [reason] = {d["reason"] for d in work.queue.dead}       # one outage, one reason
    assert reason.startswith("Intercom unavailable for 2 h (BRIDGE_OUTAGE_HOURS): Intercom answered 503: Service "
                             "Unavailable") and {d["attempts"] for d in work.queue.dead} == {1}


def past_the_budget(work: FakeWork, answered_ago: Optional[float]) -> Sqs:
    """One join that began waiting for Intercom 24 h ago (BRIDGE_OUTAGE_HOURS) meets Intercom's 503; this
    container's last answer from Intercom is always `answered_ago` seconds old (None: none since it started)."""
    work.store.settings.put("42", SETTINGS, "ws")
    work.apis.intercom_.down = lambda: ApiError("Intercom", 503, "Service Unavailable")
    if answered_ago is not None:
        work.apis.answered = lambda vendor, where: work.clock() - answered_ago
    sqs, since = Sqs(work), work.clock() - 24 * HOUR
    sqs.send(join(), work.clock(), attributes={"bridge-outage-since": {"stringValue": str(since),
                                                                       "dataType": "Number"}})
    return sqs


@pytest.mark.parametrize("answered_hours_ago, reason, tries", [
    (5 / 60, "gave up after 3 tries: Intercom answered 503: Service Unavailable", 3),
    (1, "Intercom unavailable for 24 h (BRIDGE_OUTAGE_HOURS): Intercom answered 503: Service Unavailable", 1),
    (None, "Intercom unavailable for 24 h (BRIDGE_OUTAGE_HOURS): Intercom answered 503: Service Unavailable", 1)])
def test_after_a_long_outage_a_503_dead_letters_a_join_only_after_its_tries_once_intercom_answers_again(
        answered_hours_ago, reason, tries):
    # What a user sees: a 23-hour Intercom outage ends, the backlog drains for an hour, and the first single 503
    # this join meets dead-lettered it at once, "Intercom unavailable for 24 h", though Intercom had answered
    # for an hour. Now that 503 is a try like any other. A container that has had no answer from Intercom (a
    # fresh one) cannot tell: the join is dead-lettered as the outage's, as before.
    work = FakeWork(FakeApis(FakeIntercom(), FakeRF()))
    sqs = past_the_budget(work, None if answered_hours_ago is None else answered_hours_ago * HOUR)
    sqs.run_until(work.clock())
    assert len(work.queue.dead) == (tries == 1)          # the first 503: a failed try (or the outage's letter)
    sqs.run_until(work.clock() + 24 * HOUR)
    [letter] = work.queue.dead
    assert letter["reason"].startswith(reason) and letter["attempts"] == tries


def test_a_join_whose_own_calls_fail_while_intercom_answers_others_still_ends_in_the_dead_letter_queue():
    # Poison isolation: Intercom answers every other record all along, and answers 503 to this join's calls only;
    # the join waits out the outage budget (no try used up), then fails its tries, and waits no longer.
    work = FakeWork(FakeApis(FakeIntercom(), FakeRF()))
    work.apis.answered = lambda vendor, where: work.clock()
    work.store.settings.put("42", SETTINGS, "ws")
    work.apis.intercom_.down = lambda: ApiError("Intercom", 503, "Service Unavailable")
    sqs, start = Sqs(work), work.clock()
    sqs.send(join(), start)
    sqs.run_until(start + 48 * HOUR)
    [letter] = work.queue.dead
    assert letter["reason"].startswith("gave up after 3 tries: Intercom answered 503") and letter["attempts"] == 3
    assert sqs.due == [] and work.clock() < start + 25 * HOUR


def one_join(error: Callable[[], Exception], hours: float = 1, budget: Optional[str] = None) -> FakeWork:
    """One join while every Intercom call raises `error`, for `hours` (the outage budget: `budget` hours)."""
    intercom = FakeIntercom()
    work = FakeWork(FakeApis(intercom, FakeRF()), **({"BRIDGE_OUTAGE_HOURS": budget} if budget else {}))
    work.store.settings.put("42", SETTINGS, "ws")
    intercom.down = error
    sqs = Sqs(work)
    sqs.send(JoinMessage(campaign_id="42", rf_user_id="7", person={**LEAD, "id": "7", "email": "a@example.com"}
                         ).wire(), work.clock.now)
    sqs.run_until(work.clock.now + hours * HOUR)
    return work


def test_explain_shows_a_join_waiting_for_intercom_not_failed():
    work = one_join(lambda: ApiError("Intercom", 503, "Service Unavailable"))
    text = as_text(explain(work, "a@example.com"))
    assert "Intercom unavailable since" in text and "without using up a try" in text and "failed" not in text
    assert work.store.links.get(PersonRef("42", "7")).status is LinkStatus.WAITING and work.queue.dead == []


def test_past_the_outage_budget_explain_says_the_join_is_dead_lettered_with_its_replay_not_waiting_in_the_queue():
    """The join's link stays `waiting` when the worker gives its work up after BRIDGE_OUTAGE_HOURS: explain said
    "waiting — Intercom answered 503 ... (waits in the queue, without using up a try)" while its letter was in
    the dead-letter queue, where nothing brings it back without a replay. It says the letter (its reason, when)
    and the replay doctor advises for it."""
    from chalicelib.services.dead_letters import replay_fix
    work = one_join(lambda: ApiError("Intercom", 503, "Service Unavailable"), hours=3, budget="2")
    [letter] = work.queue.dead
    assert work.store.links.get(PersonRef("42", "7")).status is LinkStatus.WAITING
    found = explain(work, "a@example.com")
    fix = replay_fix(letter["reason"], "42")
    assert fix.startswith("once Intercom answers again, `bridge dlq replay --campaign 42`"), fix
    [person] = found.view()["people"]
    assert person["status"] == "dead_lettered" and person["dead_letter"]["reason"] == letter["reason"], person
    assert person["dead_letter"]["fix"] == fix
    header = header_of(found)
    assert "waits in the queue" not in header and f"; dead-lettered — {letter['reason']} (since " in header, header
    assert header.endswith(f"; fix: {fix}"), header


def test_a_replayed_join_is_said_back_in_the_queue_until_its_next_try_not_dead_lettered():
    """`bridge dlq replay` wrote nothing in the person's history: until the join's next try, explain went on saying
    "dead-lettered — ... (since <time>...); fix: <the replay>" of a letter no longer there. The replay is noted in
    the history: explain says it was replayed, back in the queue, without the replay's fix, until the next try."""
    from chalicelib.domain.history import iso
    from chalicelib.services.dead_letters import replay
    from tests.unit.scenario import run
    work = one_join(lambda: ApiError("Intercom", 503, "Service Unavailable"), hours=3, budget="2")
    work.clock.now += 60
    at = iso(work.clock())
    assert replay(work, campaign="42")["replayed"] == 1
    found = explain(work, "a@example.com")
    [person] = found.view()["people"]
    assert person["status"] == "replayed" and person["replayed_at"] == at and "dead_letter" not in person, person
    header = header_of(found)
    assert header.endswith(f"; replayed at {at}: back in the queue"), header
    assert "fix:" not in as_text(found)                   # the replay it advised is done
    [noted] = [e for e in work.store.history.entries(PersonRef("42", "7")) if e.outcome == "replayed"]
    assert noted.event == "dead_letter" and noted.reason.startswith("dead letter replayed by the operator: ")

    work.apis.intercom_.down = None                         # Intercom is back: the next try links the join
    assert run(work, work.queue.sent[-1])["done"] == 1
    header = header_of(explain(work, "a@example.com"))
    assert "replayed at" not in header and "; linked" in header, header

@pytest.mark.parametrize("sqs", ["refuses the copy", "fails the call"])
def test_a_letter_the_replay_could_not_send_back_is_still_said_dead_lettered_not_back_in_the_queue(sqs):
    """The replay notes each letter replayed before sending it. SQS refused the copy (`dlq replay` said "they are
    still dead letters", exit 1), or the call failed (the replay stopped with its error): explain said "replayed at
    T: back in the queue" of a join whose letter stayed in the dead-letter queue, with no fix, and would until the
    next replay: nothing brings it back by itself."""
    from chalicelib.ports import NotSent
    from chalicelib.services.dead_letters import replay
    work = one_join(lambda: ApiError("Intercom", 503, "Service Unavailable"), hours=3, budget="2")
    [letter] = work.queue.dead
    work.clock.now += 60

    def send_many(messages, delay=0):
        if sqs == "refuses the copy":
            raise NotSent([(m, "InternalError") for m in messages], len(messages))
        raise ConnectionError("the link to SQS dropped")
    work.queue.send_many = send_many                                    # type: ignore[method-assign]
    if sqs == "refuses the copy":
        assert replay(work, campaign="42")["refused"] == 1
    else:
        with pytest.raises(ConnectionError):
            replay(work, campaign="42")
    assert work.queue.dead_count() == 1                                 # still a dead letter
    found = explain(work, "a@example.com")
    [person] = found.view()["people"]
    assert person["status"] == "dead_lettered" and person["dead_letter"]["reason"] == letter["reason"], person
    header = header_of(found)
    assert "back in the queue" not in header and "; fix: once Intercom answers again" in header, header



def header_of(found: Any) -> str:
    [header] = [line for line in as_text(found).splitlines() if "RF user 7" in line]
    return header


def test_past_the_outage_budget_while_intercom_answers_again_explain_says_the_waiting_join_retries_then_its_letter():
    """Past the budget, a join whose Intercom answers others again fails tries (its link still says `waiting`):
    explain said "(waits in the queue, without using up a try)" while the trail below said "try 1 of 3 failed",
    and went on saying it once the letter was dead."""
    work = FakeWork(FakeApis(FakeIntercom(), FakeRF()))
    sqs = past_the_budget(work, 300)
    sqs.run_until(work.clock())
    header = header_of(explain(work, "7"))
    assert "; retrying — " in header and "(try 1 of 3 failed; the queue tries it again" in header, header
    assert "waits in the queue" not in header and work.store.links.get(PersonRef("42", "7")).status is LinkStatus.WAITING
    sqs.run_until(work.clock() + 24 * HOUR)
    [letter] = work.queue.dead
    header = header_of(explain(work, "7"))
    assert f"; dead-lettered — {letter['reason']} (since " in header and "waits in the queue" not in header, header


def test_a_discarded_outage_letter_of_a_waiting_join_is_said_discarded_not_waiting_in_the_queue():
    """The operator discarded the letter of a join an outage held past BRIDGE_OUTAGE_HOURS (its link still says
    `waiting`): explain said "waiting — ... (waits in the queue, without using up a try)" (and --json
    "waiting"), though nothing holds the join any more. It says it as a failed join's discarded letter."""
    from chalicelib.services.dead_letters import discard
    work = one_join(lambda: ApiError("Intercom", 503, "Service Unavailable"), hours=3, budget="2")
    assert discard(work, reason="Intercom unavailable")["discarded"] == 1   # type: ignore[arg-type]
    found = explain(work, "a@example.com")
    [person] = found.view()["people"]
    assert person["status"] == "failed" and person.get("discarded") is True, person
    header = header_of(found)
    assert "; discarded (its dead letter, by the operator) — it failed: Intercom unavailable" in header, header
    assert "waits in the queue" not in header, header


def test_a_join_sent_again_after_its_outage_letter_is_said_waiting_while_it_waits_for_the_same_outage():
    """After the letter, the join is sent again (RF's webhook again, or `bridge backfill --apply`, which sends
    waiting joins) and waits for Intercom's same outage: its wait writes no new `join` note (one a link's
    outage), and explain went on saying "dead-lettered ... fix: replay" while the join waited in the queue."""
    work = one_join(lambda: ApiError("Intercom", 503, "Service Unavailable"), hours=3, budget="2")
    assert len(work.queue.dead) == 1
    work.clock.now += 600
    again = JoinMessage(campaign_id="42", rf_user_id="7", person={**LEAD, "id": "7", "email": "a@example.com"})
    assert handle_batch([record(1, json.dumps(again.wire()))], work)["waiting"] == 1
    found = explain(work, "a@example.com")
    [person] = found.view()["people"]
    assert person["status"] == "waiting" and "dead_letter" not in person, person
    header = header_of(found)
    assert "dead-lettered" not in header and "(waits in the queue, without using up a try)" in header, header


def test_a_join_notes_its_wait_for_one_outage_once_however_long_and_whatever_the_vendor_answers():
    """A join that waited out a day's outage had a `join: waiting` note per wait (~100), each saying the same. One
    note now says it waits for the vendor's outage, from when; the counted note beside it, how often it waited since
    and last when. A wait of another kind is noted again."""
    answers = itertools.cycle([ApiError("Intercom", 503, "Service Unavailable"), ApiError("Intercom", 502, "Bad Gateway")])
    work = one_join(lambda: next(answers), hours=3)
    ref = PersonRef("42", "7")
    received, noted, counted = work.store.history.entries(ref)
    assert (noted.event, noted.outcome, noted.at) == ("join", "waiting", received.at)
    assert noted.reason == "Intercom unavailable: Intercom answered 503: Service Unavailable"
    assert (counted.event, counted.count) == ("waiting", len(work.queue.deferred)) and counted.count > 10
    assert counted.reason.startswith(f"Intercom unavailable since {received.at} (Intercom answered ")
    work.apis.intercom_.down = lambda: Deferred("Intercom answered 429", retry_after=60, status=429)
    handle_batch([record(1, json.dumps(JoinMessage(campaign_id="42", rf_user_id="7", person={
        **LEAD, "id": "7", "email": "a@example.com"}).wire()))], work)
    assert [(e.event, e.outcome, e.reason) for e in work.store.history.entries(ref)][-2:] == [
        ("join", "waiting", "Intercom answered 429"),
        ("waiting", "deferred", "Intercom answered 429 (waits in the queue, without using up a try)")]


@pytest.mark.parametrize("status, outage", [(503, "Intercom"), (500, "Intercom"), (429, None), (404, None),
                                            (401, None)])
def test_only_a_5xx_is_an_outage_a_4xx_fails_as_before(status, outage):
    answer = ApiError("Intercom", status, "an answer")
    assert answer.outage == outage and JsonApi.retry_later(answer).outage == outage


def limiters_wait(paused: bool) -> Deferred:
    """What the shared Intercom budget raises to make a call wait: its pause after Intercom answered 429, or
    its spent budget (say, spent by the client's retries during an outage)."""
    gate, _ = limiter()
    if paused:
        gate.acquire()
        gate.throttled(60.0)
    return spend(gate)


@pytest.mark.parametrize("paused, ended", [(True, True), (False, False)])
def test_a_429_ends_the_outage_a_join_waited_for_and_a_spent_budget_does_not(paused, ended):
    # What a user sees: after Intercom answered again (its 429 pausing every call), the next 503 blip would
    # otherwise dead-letter the join at once, counted from the outage that ended; while a budget the outage's
    # retries spent does not restart the outage's count (its waits would start again at 30 s, for ever).
    intercom = FakeIntercom()
    work = FakeWork(FakeApis(intercom, FakeRF()))
    work.store.settings.put("42", SETTINGS, "ws")
    intercom.down = lambda: limiters_wait(paused)
    handle_batch([record(1, join(), **{"bridge-outage-since": work.clock() - 23 * HOUR})], work)
    [later] = work.queue.deferred
    assert (later.outage_since is None) == ended


# --- what the operator sees: the outage's own metric, by vendor ----------------------------------------------
def test_each_outage_wait_is_counted_by_vendor_apart_from_the_other_waits_in_the_batchs_one_metrics_line(capsys):
    """The dashboard's "Vendor outages" widget and the vendor-outage alarm read IntercomUnavailable and
    RFUnavailable; RecordsDeferred still counts every wait (a rate limit's too). One EMF line per batch, as before."""
    from chalicelib.errors import Transient
    from chalicelib.observability import flush, metrics
    from tests.unit.test_deferral import handlers, record as check

    work = FakeWork()
    metrics.clear_metrics()
    outcomes = {"1": ApiError("Intercom", 503, "Service Unavailable"),
                "2": Transient("Referral Factory did not answer").unavailable("Referral Factory"),
                "3": Transient("Referral Factory answered 502").unavailable("Referral Factory"),
                "4": Deferred("shared budget spent", retry_after=40)}
    summary = handle_batch([check(n, str(n)) for n in range(1, 6)], work, handlers=handlers(outcomes))
    assert summary == {"done": 1, "retry": 0, "dead": 0, "waiting": 4}
    counted = {name: sum(m["Value"]) for name, m in metrics.metric_set.items()}
    assert {k: counted.get(k) for k in ("IntercomUnavailable", "RFUnavailable", "RecordsDeferred")} == {
        "IntercomUnavailable": 1, "RFUnavailable": 2, "RecordsDeferred": 4}
    flush()
    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf["IntercomUnavailable"] == [1.0] and emf["RFUnavailable"] == [1.0, 1.0]



@pytest.mark.parametrize("first, then", [("outage", "token"), ("token", "outage")])
def test_a_refused_token_and_an_outage_each_wait_their_own_budget_when_one_follows_the_other(first, then):
    """A join waits out 23 h of one (Intercom's outage, or a workspace's refused token); the other follows (Intercom
    comes back refusing the token, revoked meanwhile; or the workspace is reconnected as Intercom goes down). The
    second is a wait of its own, for up to BRIDGE_OUTAGE_HOURS from its beginning, as README says ("from its first
    refusal"): it was counted from the first one's beginning, so the join was dead-lettered an hour later, its
    letter saying the token was refused since the outage began."""
    from chalicelib.domain.history import iso
    from chalicelib.errors import TokenRefused
    refused = "Intercom answered 401 unauthorized: Access Token Invalid"
    errors = {"outage": lambda: ApiError("Intercom", 503, "Service Unavailable"),
              "token": lambda: TokenRefused(f"{refused} — reconnect", "ws", "private", refused, status=401)}
    intercom = FakeIntercom()
    work = FakeWork(FakeApis(intercom, FakeRF()))
    work.store.settings.put("42", SETTINGS, "ws")
    sqs, start = Sqs(work), work.clock()
    intercom.down = errors[first]
    sqs.send(join(), start)
    sqs.run_until(start + 23 * HOUR)
    began = min(at for at, _ in sqs.due)                # the second one's first try
    intercom.down = errors[then]
    sqs.run_until(start + 30 * HOUR)
    assert work.queue.dead == [] and sqs.due, "dead-lettered within an hour of the second wait's beginning"
    said = [e.reason or "" for e in work.store.history.entries(PersonRef("42", "7")) if e.event == "waiting"][-1]
    assert f"since {iso(began)}" in said, said
