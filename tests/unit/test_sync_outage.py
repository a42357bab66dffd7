"""A contact sync's page waits out a vendor's outage as any record does (domain/outage.py): no try used up, `sync
status` and doctor saying it waits for the vendor, `--watch` going on; past BRIDGE_OUTAGE_HOURS the page is
dead-lettered with the outage's reason. RF's lost answer to a create is still looked up, never created twice."""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Optional

import pytest

from chalicelib import cli as cli_module
from chalicelib.adapters.ratelimit import CircuitOpen
from chalicelib.errors import ApiError, Deferred, Transient, Uncertain
from chalicelib.services import sync
from chalicelib.services.worker import RetryBatch, handle_batch
from tests.fakes import FakeWork
from tests.support.cli import run_cli
from tests.support.sqs import Sqs
from tests.unit.test_outage_faults import record
from tests.unit.test_sync import LINK, doctor_says, world

HOUR = 3600.0
CONTACTS = 5


def rf_goes_down(monkeypatch, budget: Optional[float] = None) -> tuple[FakeWork, Sqs]:
    """A sync of CONTACTS contacts (2 a page) started; RF creates the first page's first referrer but its answer
    is lost (a 502 to the POST), and from then on RF answers 503 to every call, until the test brings it back."""
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    work = world(CONTACTS)
    if budget is not None:
        work.config = replace(work.config, outage_hours=budget)
    rf = work.apis.rf_
    real = rf.create_user

    def applied_then_lost(body: dict) -> dict:
        real(body)
        rf.down = lambda: ApiError("Referral Factory", 503, "Service Unavailable")
        rf.create_user = real
        raise Uncertain("Referral Factory answered 502: Bad Gateway (to POST /users, which may have been applied: it is "
                        "not sent again without looking first)").unavailable("Referral Factory")
    rf.create_user = applied_then_lost
    sync.start(work.deps, "42")
    sqs = Sqs(work)
    for message in work.queue.sent:
        sqs.send(message, work.clock.now)
    return work, sqs


def status_text(work: FakeWork, capsys) -> list[str]:
    return run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1].splitlines()


def enrolled_once_each(work: FakeWork) -> None:
    created = [u["email"] for u in work.apis.rf_.created]
    assert sorted(created) == [f"p{i}@example.com" for i in range(CONTACTS)]          # one RF user each
    run = work.store.sync.run("42")
    assert (run.status, run.counts) == ("done", {"enrolled": CONTACTS})
    assert {c["custom_attributes"].get(LINK.split(".")[1]) for c in work.apis.intercom_.contacts.values()} == \
        {u["url"] for u in work.apis.rf_.created}


def test_a_sync_waits_out_a_three_hour_rf_outage_and_enrols_each_referrer_once(monkeypatch, capsys):
    work, sqs = rf_goes_down(monkeypatch)
    start = work.clock.now
    sqs.run_until(start + HOUR)

    found = sync.status(work.deps, "42")
    error = found["page_error"]
    assert (found["status"], error["page"], error["state"], error["outage"], error["tries"]) == \
        ("running", 1, "waiting", "Referral Factory", 0)
    assert error["reason"] == ("waiting for Referral Factory (unavailable since 2026-09-21T14:13:20.000Z; the bridge "
                               "waits up to 24 h, BRIDGE_OUTAGE_HOURS): Referral Factory answered 503: Service "
                               "Unavailable") and found["eta_seconds"] is None
    assert status_text(work, capsys)[1].startswith(
        "  page 1 is waiting for Referral Factory (unavailable since 2026-09-21T14:13:20.000Z; the bridge waits up to "
        "24 h, BRIDGE_OUTAGE_HOURS): Referral Factory answered 503")
    text, finding = doctor_says(work)
    assert finding["warn"] and text.splitlines()[1:] == [
        "  warn [sync] sync run 1 (full, users) running: nothing yet; " + status_text(work, capsys)[1].strip(),
        "        why: the page waits for Referral Factory without using up a try, and goes on by itself once Referral "
        "Factory answers; past BRIDGE_OUTAGE_HOURS it waits in the dead-letter queue and the run stops there",
        "        fix: nothing to do; `bridge sync status 42 --watch` follows it"]

    def refresh(seconds: float) -> None:     # 10 minutes of the queue between two refreshes; RF is back after 3 h
        if work.clock.now >= start + 3 * HOUR:
            work.apis.rf_.down = None
        assert work.clock.now < start + 6 * HOUR, "the run did not end once RF answered again"
        until = work.clock.now + 600
        sqs.run_until(until)
        work.clock.now = until
    monkeypatch.setattr(cli_module, "_pause", refresh)
    code, out, _ = run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42", "--watch", "--json")
    shown = [s for s in map(json.loads, out.splitlines()) if "level" not in s and "_aws" not in s]
    assert code == 0 and shown[-1]["status"] == "done"                  # the watch went on while the page waited
    assert {(s["page_error"] or {}).get("state") for s in shown} == {"waiting", None}

    enrolled_once_each(work)
    assert work.queue.dead == [] and {d.tries for d in work.queue.deferred} == {0}      # no try used up
    assert work.apis.rf_.calls.count("create_user p0@example.com") == 2   # the lost answer's: looked up, not made again


def test_past_the_outage_budget_the_page_is_dead_lettered_saying_rf_was_unavailable_and_a_replay_completes_the_run(
        monkeypatch, capsys):
    work, sqs = rf_goes_down(monkeypatch, budget=2)
    start = work.clock.now
    sqs.run_until(start + 3 * HOUR)

    [letter] = work.queue.dead
    assert letter["reason"].startswith("Referral Factory unavailable for 2 h (BRIDGE_OUTAGE_HOURS): Referral Factory "
                                       "answered 503") and letter["attempts"] == 1
    error = sync.status(work.deps, "42")["page_error"]
    assert (error["state"], error["outage"]) == ("failed", "Referral Factory")
    line = status_text(work, capsys)[1]
    assert line.startswith("  page 1 failed: Referral Factory unavailable for 2 h (since 2026-09-21T14:13:20.000Z): "
                           "Referral Factory answered 503") and line.endswith(
        "— it waits in the dead-letter queue: once Referral Factory answers again, `bridge dlq replay --campaign 42` "
        "resumes the run "
        "where it stopped")
    text, finding = doctor_says(work)
    assert not finding["ok"] and text.splitlines()[1].startswith(
        "  BAD [sync] sync run 1 (full, users) stalled: page 1 failed: Referral Factory unavailable for 2 h")
    assert text.splitlines()[3] == ("        fix: once Referral Factory answers again, `bridge dlq replay --campaign 42` "
                                    "resumes the run where it stopped")
    monkeypatch.setattr(cli_module, "_pause", lambda seconds: None)
    assert run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42", "--watch")[0] == 1

    work.apis.rf_.down = None                 # RF answers again: `bridge dlq replay` sends the page back
    sqs.send(letter["body"], work.clock.now)
    sqs.run_until(work.clock.now + HOUR)
    enrolled_once_each(work)


# --- a page's outage, contact by contact ---------------------------------------------------------------------
def first_page(work: FakeWork, **attributes: float) -> dict:
    """The run's first page as the worker receives it (its first receive), with the worker's message attributes."""
    sync.start(work.deps, "42")
    [body] = work.queue.sent
    return record(1, body if isinstance(body, str) else json.dumps(body), **attributes)


def enrolments_raise(work: FakeWork, *answers: Exception) -> None:
    """RF's answers to the contacts' enrolments (POST /users), in page order; the last one again and again."""
    answers_ = list(answers)

    def create_user(body: dict) -> dict:
        raise answers_.pop(0) if len(answers_) > 1 else answers_[0]
    work.apis.rf_.create_user = create_user


def test_a_page_dead_lettered_after_rf_answered_503_to_its_contacts_says_rf_answered_503(monkeypatch):
    # What a user sees: RF answers 503 to every enrolment of a sync's contacts for longer than BRIDGE_OUTAGE_HOURS;
    # the page's dead letter (dlq list, doctor, sync status) says "Referral Factory did not answer (timeouts or
    # refused connections)": the operator looks for a network problem, while RF answered 503 all along.
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work = world(2)
    work.config = replace(work.config, outage_hours=1)
    enrolments_raise(work, ApiError("Referral Factory", 503, "Service Unavailable"))
    sync.start(work.deps, "42")
    sqs = Sqs(work)
    sqs.send(work.queue.sent[0], work.clock.now)
    sqs.run_until(work.clock.now + 2 * HOUR)
    [letter] = work.queue.dead
    assert letter["reason"].startswith("Referral Factory unavailable for 1 h (BRIDGE_OUTAGE_HOURS): Referral Factory "
                                       "answered 503"), letter["reason"]


def test_a_429_to_a_pages_contact_ends_the_outage_the_pages_copy_carried():
    # What a user sees: after a 23-hour RF outage RF answers again (a 429 pauses the sync's page); the page's next
    # copy still counts the outage from 23 hours ago, so the next 503 blip an hour later dead-letters the page
    # ("Referral Factory unavailable for 24 h") and the run stops, though RF was up. A join's copy forgets it.
    work = world(1)
    enrolments_raise(work, Deferred("Referral Factory answered 429: Too Many Requests", retry_after=30, status=429))
    handle_batch([first_page(work, **{"bridge-outage-since": work.clock() - 23 * HOUR})], work)
    [later] = work.queue.deferred
    assert later.outage_since is None


def test_past_the_budget_a_pages_503_once_rf_answers_again_is_a_try_shown_retrying_not_failed():
    # What a user sees: RF answers again after a 24-hour outage the page waited through; its next 503 stopped the
    # run at once ("page 1 failed: Referral Factory unavailable for 24 h"), though RF had answered for an hour (the last answer minutes ago).
    work = world(1)
    work.apis.answers["Referral Factory"] = work.clock() - 300
    enrolments_raise(work, ApiError("Referral Factory", 503, "Service Unavailable"))
    with pytest.raises(RetryBatch):
        handle_batch([first_page(work, **{"bridge-outage-since": work.clock() - 24 * HOUR})], work)
    error = sync.status(work.deps, "42")["page_error"]
    assert error["state"] == "retrying" and error["reason"].endswith(": Referral Factory answered 503: Service Unavailable")
    assert work.queue.dead == []


def test_a_page_waits_as_long_as_rf_asked_for_any_of_its_contacts(monkeypatch):
    # What a user sees: RF in announced maintenance answers 503 "Retry-After: 600" to one contact's enrolment while
    # another's call got no answer; the page comes back in about 30 s and calls RF again, against RF's word (a
    # join's wait honours the Retry-After: README "a `Retry-After` on a 5xx is honoured").
    monkeypatch.setattr(sync, "THREADS", 1)          # the contacts in page order: the one without a Retry-After first
    work = world(2)
    enrolments_raise(work, Transient("Referral Factory unreachable after retries (ConnectTimeout)"
                                     ).unavailable("Referral Factory"),
                     ApiError("Referral Factory", 503, "Service Unavailable", retry_after=600))
    handle_batch([first_page(work)], work)
    [later] = work.queue.deferred
    assert later.delay >= 600


def test_a_page_whose_contacts_met_an_outage_and_a_429_waits_without_using_up_a_try(monkeypatch):
    # What a user sees: during an RF outage one contact's enrolment got a 503 and the next a 429 (RF throttling
    # as it comes back); both are waits, but the page is counted a failed try (`sync status`: "retrying page 1"),
    # and five such pages dead-letter it "gave up after 5 tries" long before BRIDGE_OUTAGE_HOURS.
    monkeypatch.setattr(sync, "THREADS", 1)
    work = world(2)
    enrolments_raise(work, ApiError("Referral Factory", 503, "Service Unavailable"),
                     Deferred("Referral Factory answered 429: Too Many Requests", retry_after=30, status=429))
    try:
        summary = handle_batch([first_page(work)], work)
    except RetryBatch as retried:
        pytest.fail(f"the page was counted a failed try: {retried}")
    assert summary.get("waiting") == 1 and sync.status(work.deps, "42")["page_error"]["state"] == "waiting"


def test_a_page_waiting_for_rfs_block_of_the_ip_for_an_hour_is_said_waiting_not_dead_lettered(monkeypatch):
    """RF blocked the bridge's IP (the limiter's open circuit: the work waits in the queue, rechecked every 5 minutes
    here) for an hour during a sync: doctor said "BAD [sync] ... has not moved for 55 min ...; why: its page failed
    and waits in the dead-letter queue; fix: `bridge dlq list`, ... `bridge dlq replay --campaign 42`", where the
    page waited in the work queue (`sync status`: waiting, no try used) and a replay finds nothing. Once its waits
    stop being said (nothing tried it for over 30 minutes), it is a stall again."""
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work = world(CONTACTS)
    sync.start(work.deps, "42")
    work.apis.rf_.down = lambda: CircuitOpen(
        "Referral Factory answered 403 (since 2026-09-21T14:13:20.000Z): Referral Factory has probably blocked this IP "
        "for going over its rate limit. No call goes to it until later, when one call checks again; the work waits "
        "in the queue", retry_after=300)
    sqs = Sqs(work)
    for message in work.queue.sent:
        sqs.send(message, work.clock.now)
    sqs.run_until(work.clock.now + HOUR)
    assert work.queue.dead == [] and sync.status(work.deps, "42")["page_error"]["state"] == "waiting"
    text, finding = doctor_says(work)
    assert (finding["ok"], finding["warn"]) == (True, True), text
    assert finding["why"] == ("the page waits in the work queue without using up a try (a rate limit, or Referral "
                              "Factory's block of the bridge's IP: [rf.campaign] says so), and goes on by itself when "
                              "the wait ends") and "dlq" not in finding["fix"], text
    work.clock.now += HOUR                                  # its message is lost: nothing tries the page any more
    text, finding = doctor_says(work)
    assert not finding["ok"] and "has not moved for" in finding["what"], text


def test_a_page_intercom_refuses_the_workspaces_token_for_waits_for_the_reconnect_then_goes_on(monkeypatch, capsys):
    """The workspace's admin uninstalls the app mid-run: the page waits (no try used, `sync status` saying for what),
    as for an outage, and once the workspace is reconnected the run goes on by itself, no replay."""
    from chalicelib.errors import TokenRefused, refused_token
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work = world(CONTACTS)
    work.apis.intercom_.down = lambda: TokenRefused(
        f"Intercom answered 401 unauthorized: Access Token Invalid — {refused_token('ws')} (invalid or revoked): "
        "reconnect the workspace, then replay", "ws", "oauth", "Intercom answered 401 unauthorized: Access Token "
        "Invalid", status=401)
    sync.start(work.deps, "42")
    sqs = Sqs(work)
    for message in work.queue.sent:
        sqs.send(message, work.clock.now)
    start = work.clock.now
    sqs.run_until(start + HOUR)
    error = sync.status(work.deps, "42")["page_error"]
    assert (error["state"], error["tries"]) == ("waiting", 0) and "outage" not in error
    assert error["reason"].startswith(f"{refused_token('ws')} since ") and "to be replaced" in error["reason"]
    assert work.queue.dead == []

    work.apis.intercom_.down = None          # reconnected
    sqs.run_until(work.clock.now + HOUR)
    assert work.store.sync.run("42").status == "done" and work.queue.dead == []
    assert {d.tries for d in work.queue.deferred} == {0}


def intercom_refusing_the_token(monkeypatch, seconds: float, budget: Optional[float] = None) -> FakeWork:
    """A run whose every page Intercom refuses the workspace's token for (revoked), worked for `seconds` (with a
    BRIDGE_OUTAGE_HOURS of `budget`, when given)."""
    from chalicelib.errors import TokenRefused, refused_reason
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work = world(CONTACTS)
    if budget is not None:
        work.config = replace(work.config, outage_hours=budget)
    answer = "Intercom answered 401 unauthorized: Access Token Invalid"
    work.apis.intercom_.down = lambda: TokenRefused(refused_reason(answer, "ws"), "ws", "oauth", answer, status=401)
    sync.start(work.deps, "42")
    sqs = Sqs(work)
    for message in work.queue.sent:
        sqs.send(message, work.clock.now)
    sqs.run_until(work.clock.now + seconds)
    return work


def test_a_page_waiting_for_the_reconnect_says_the_reconnect_in_sync_status_and_doctor_not_nothing_to_do(
        monkeypatch, capsys):
    """A page waiting for the workspace's refused token to be replaced: `sync status` said what it waits for, not
    how to end the wait, and doctor's [sync] said "the page waits ... (a rate limit, or Referral Factory's block of
    the bridge's IP) ... fix: nothing to do": it waits for the operator. Both say the reconnect, and no replay."""
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    work = intercom_refusing_the_token(monkeypatch, HOUR)
    assert sync.status(work.deps, "42")["page_error"]["state"] == "waiting" and work.queue.dead == []
    reconnect = ("`bridge workspace connect ws` (it asks for the new token) or, for the public app's token, a new OAuth "
                 "link for the workspace's admin, who authorizes the app again: `bridge workspace oauth-link "
                 "--workspace ws`")
    line = run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1].splitlines()[1]
    assert line.startswith("  page 1 waits: Intercom refuses workspace ws's token since ")
    assert line.endswith(f" — {reconnect}; the page then goes on by itself, with no replay"), line
    text, finding = doctor_says(work)
    assert (finding["ok"], finding["warn"]) == (True, True), text
    assert finding["why"] == ("the page waits for workspace ws's token to be replaced, without using up a try, and "
                              "goes on by itself once it is; past BRIDGE_OUTAGE_HOURS it waits in the dead-letter "
                              "queue and the run stops there"), text
    assert finding["fix"] == f"{reconnect}; what waits for it then goes on by itself, with no replay", text


def test_a_page_dead_lettered_past_the_wait_for_the_reconnect_gets_doctors_reconnect_then_the_replay_by_reason(
        monkeypatch, capsys):
    """A page that waited BRIDGE_OUTAGE_HOURS for the workspace's refused token is dead-lettered: `sync status` says
    the reconnect, then the replay by the letters' reason (`Intercom refuses workspace ws's token`, which reaches
    the notifications' letters too), while doctor's [sync] said "fix the cause, then `bridge dlq replay --campaign
    42`". Doctor gives the fix `sync status` gives."""
    from chalicelib.domain.sync import refused_fix
    work = intercom_refusing_the_token(monkeypatch, 3 * HOUR, budget=2)
    [letter] = work.queue.dead
    error = sync.status(work.deps, "42")["page_error"]
    assert error["state"] == "failed"
    text, finding = doctor_says(work)
    assert not finding["ok"] and finding["what"].startswith("sync run 1 (full, users) stalled: page 1 failed: "), text
    assert finding["fix"] == refused_fix(error["reason"]), text
    assert finding["fix"].startswith("Intercom refuses workspace ws's token: ") and finding["fix"].endswith(
        ", then `bridge dlq replay --reason \"Intercom refuses workspace ws's token\"` resumes the run where it "
        "stopped"), text


def test_a_write_back_intercom_refuses_the_workspaces_token_for_waits_for_the_reconnect_then_writes_the_link(
        monkeypatch, capsys):
    """The workspace's token is revoked between a page's search and its first link write: the write's 401 was
    recorded (link not written, "a later run writes the link") and the page went on, asking RF to enrol the others
    while no link could be written. It now waits for the reconnect as a refused search does: no try used, nothing
    dead-lettered, the page's other contacts not tried (no call on the shared budget), `sync status` and doctor
    saying the reconnect; once reconnected the page goes on, each contact enrolled once and each link written."""
    from chalicelib.errors import TokenRefused, refused_reason
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    monkeypatch.setattr(sync, "THREADS", 1)          # the contacts in turn: the second is not tried after the 401
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    work = world(CONTACTS)
    intercom = work.apis.intercom_
    answer = "Intercom answered 401 unauthorized: Access Token Invalid"
    revoked = lambda: TokenRefused(refused_reason(answer, "ws"), "ws", "oauth", answer, status=401)  # noqa: E731
    real = intercom.update_contact

    def revoked_now(contact_id: str, body: dict) -> dict:
        intercom.calls.append("update")
        intercom.down = revoked                      # every call of the workspace is refused from now on
        intercom.update_contact = real
        raise revoked()
    intercom.update_contact = revoked_now
    sync.start(work.deps, "42")
    sqs = Sqs(work)
    for message in work.queue.sent:
        sqs.send(message, work.clock.now)
    sqs.run_until(work.clock.now + HOUR)
    error = sync.status(work.deps, "42")["page_error"]
    assert (error["page"], error["state"], error["tries"]) == (1, "waiting", 0) and work.queue.dead == []
    assert error["reason"].startswith("Intercom refuses workspace ws's token since ") and "outage" not in error
    assert len(work.apis.rf_.created) == 1 and intercom.calls.count("update") == 1
    [line] = [x for x in status_text(work, capsys) if "page 1" in x]
    assert line.endswith("; the page then goes on by itself, with no replay"), line
    text, finding = doctor_says(work)
    assert (finding["ok"], finding["warn"]) == (True, True), text
    assert finding["fix"].endswith("; what waits for it then goes on by itself, with no replay"), text

    intercom.down = None                             # reconnected
    sqs.run_until(work.clock.now + HOUR)
    assert work.queue.dead == [] and {d.tries for d in work.queue.deferred} == {0}
    enrolled_once_each(work)
    assert sync.report(work.deps, "42")["link_not_written"]["count"] == 0
