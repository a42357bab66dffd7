"""Contact sync's use cases on the store's twin and fake APIs (services/sync.py)."""
from __future__ import annotations

import json
from contextlib import nullcontext
from types import SimpleNamespace

import pytest

from chalicelib.errors import Deferred, Permanent, Transient, Uncertain
from chalicelib.messages import ContactMessage
from chalicelib.ports import Refused
from chalicelib.services import sync
from chalicelib.services.worker import RetryBatch, handle_batch
from tests.fakes import FakeWork
from tests.support.killed import Killed
from tests.unit.scenario import settings

WS = "ws"
LINK = "custom_attributes.referral_link"


def sync_settings(**block) -> dict:
    return {**settings(rule=None), "sync": {"source": "users", "fields": [{"from": "email", "to": "email"},
                                                                          {"from": "name", "to": "first_name"}],
                                            "referral_link_attribute": LINK, **block}}


def world(n: int = 5, **block) -> FakeWork:
    work = FakeWork()
    work.store.settings.put("42", sync_settings(**block), WS)
    work.apis.intercom_.attributes = {LINK: {"data_type": "string"}, "name": {"data_type": "string"},
                                      "email": {"data_type": "string"}}
    for i in range(n):
        contact = work.apis.intercom_.add(f"p{i}@example.com", role="user")
        contact["name"] = f"P{i}"
    return work


def drain(work: FakeWork, limit: int = 100) -> list[dict]:
    """Work every sent message (a page's next page too), as the event source would."""
    done = []
    while work.queue.sent and limit:
        limit -= 1
        body = work.queue.sent.pop(0)
        raw = {"messageId": f"m{limit}", "body": body if isinstance(body, str) else json.dumps(body),
               "receiptHandle": f"r{limit}", "attributes": {"ApproximateReceiveCount": "1"}}
        done.append(handle_batch([raw], work))
    return done


def deps(work: FakeWork):
    return work.deps


def next_send_fails(work: FakeWork, failure: BaseException) -> None:
    """The queue's next send raises `failure` (SQS refused it, or Ctrl-C), the sends after it work."""
    real = work.queue.send

    def fails(message):
        work.queue.send = real
        raise failure
    work.queue.send = fails


def a_run_whose_create_answer_is_lost(work: FakeWork) -> dict | str:
    """A run started, whose page's try RF applies the create of, its answer lost: the page failed and waits for its
    retry (its message, which the caller sends again)."""
    rf = work.apis.rf_
    real = rf.create_user

    def lost_after_applying(body):
        rf.create_user = real
        real(body)
        raise Uncertain("Referral Factory POST /users: no answer")    # RF made the user; the answer never came
    rf.create_user = lost_after_applying
    sync.start(deps(work), "42")
    page = work.queue.sent[0]
    with pytest.raises(RetryBatch):
        drain(work)
    return page


def test_a_run_enrols_every_contact_writes_links_back_and_a_second_run_creates_nothing(monkeypatch):
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work = world(5)
    sync.start(deps(work), "42")
    drain(work)
    rf, intercom = work.apis.rf_, work.apis.intercom_
    assert len(rf.created) == 5
    assert {c["custom_attributes"]["referral_link"] for c in intercom.contacts.values()} == \
        {u["url"] for u in rf.created}
    run = work.store.sync.run("42")
    assert (run.status, run.counts, run.total, run.page) == ("done", {"enrolled": 5}, 5, 3)
    user = rf.created[0]
    [note] = work.store.history.entries(__import__("chalicelib.domain.link", fromlist=["PersonRef"])
                                        .PersonRef("42", str(user["id"])))
    assert note.reason == "enrolled by sync run 1 from users"

    calls = len(rf.calls)
    sync.start(deps(work), "42")
    drain(work)
    assert len(rf.calls) == calls and len(rf.created) == 5     # no create
    assert work.store.sync.run("42").counts == {"already_enrolled": 5}


def test_skips_are_recorded_with_their_reason_and_reported():
    work = world(2)
    intercom = work.apis.intercom_
    intercom.add("no-name@example.com", role="user")                       # no name
    bad = intercom.add("not-an-email", role="user")
    bad["name"] = "Bad"
    taken = intercom.add("taken@example.com", role="user")
    taken["name"] = "Taken"
    work.apis.rf_.created.append({"email": "taken@example.com", "campaign_id": 42, "id": 1, "url": "u"})
    sync.start(deps(work), "42")
    drain(work)
    run = work.store.sync.run("42")
    assert run.counts == {"enrolled": 2, "missing_field": 1, "invalid_email": 1, "already_in_campaign": 1}
    got = sync.report(deps(work), "42")
    assert got["skipped"]["missing_field"]["examples"][0]["detail"] == \
        "missing required field: first_name (from name)"
    assert got["skipped"]["already_in_campaign"]["reason"] == "already in the campaign"


def test_checks_first_stop_the_run_before_anything_is_created():
    work = world(3, source="segment", segment_id="s-missing")
    work.apis.intercom_.segment_list = [{"id": f"s{i}", "name": f"Segment {i}"} for i in range(160)]
    work.apis.intercom_.attributes[LINK] = {"data_type": "integer"}
    with pytest.raises(sync.SyncStopped) as stopped:
        sync.start(deps(work), "42")
    [segment, link] = stopped.value.problems
    assert segment.startswith("sync.segment_id: segment s-missing does not exist in workspace ws (160 segments")
    assert link.startswith(f"sync.referral_link_attribute: {LINK} is of type integer, not a text attribute")
    assert work.apis.rf_.created == [] and work.queue.sent == []


@pytest.mark.parametrize("dry_run", [["--dry-run"], []])
def test_a_run_that_cannot_start_answers_json_under_json_naming_its_problems(capsys, dry_run):
    from types import SimpleNamespace

    from tests.support.cli import run_cli
    work = world(3, source="segment", segment_id="s-missing")
    rt = SimpleNamespace(deps=work.deps)
    code, out, err = run_cli(rt, capsys, "sync", "start", "42", *dry_run, "--json")
    answer = json.loads(out)
    assert (code, err) == (1, "")
    assert answer["campaign_id"] == "42" and answer["can_start"] is False and answer["dry_run"] is bool(dry_run)
    [problem] = answer["problems"]
    assert problem.startswith("sync.segment_id: segment s-missing does not exist")
    code, out, err = run_cli(rt, capsys, "sync", "start", "42", *dry_run)          # for people: on stderr
    assert (code, out) == (1, "") and err.splitlines() == ["sync cannot start:", f"  - {problem}"]
    assert work.apis.rf_.created == [] and work.queue.sent == []


def test_a_create_whose_answer_was_lost_is_found_not_made_twice():
    work = world(3)
    work.apis.rf_.create_answers = [Uncertain("Referral Factory POST /users: no answer")]
    real = work.apis.rf_.create_user

    def lost_after_applying(body):
        if work.apis.rf_.create_answers:
            work.apis.rf_.create_answers.pop()
            real(body)                                   # RF made the user; the answer never came
            raise Uncertain("Referral Factory POST /users: no answer")
        return real(body)
    work.apis.rf_.create_user = lost_after_applying
    sync.start(deps(work), "42")
    page = work.queue.sent[0]
    with pytest.raises(Exception, match="records will be retried"):
        drain(work)                                      # the page fails once: its record comes back
    assert work.store.sync.run("42").status == "running"
    work.queue.sent.append(page)
    drain(work)
    assert len(work.apis.rf_.created) == 3               # no duplicate
    assert work.store.sync.run("42").counts == {"enrolled": 3}
    assert all(c["custom_attributes"].get("referral_link") for c in work.apis.intercom_.contacts.values())


def test_a_page_asks_the_ledger_who_has_an_email_only_for_a_contact_whose_create_answer_a_try_before_lost(
        monkeypatch):
    """DynamoDB answers that question by reading the campaign's whole ledger (no index finds an entry by email:
    adapters/dynamo/sync.py says why), so no ordinary contact of a page asks it: only one whose create RF refused
    after a try of ours may have made her user (its answer lost), once, as does the ledger-wide question of forget."""
    work = world(5)
    asked: list[str] = []
    real = work.store.sync.with_email
    monkeypatch.setattr(work.store.sync, "with_email", lambda campaign, email: asked.append(email) or real(campaign,
                                                                                                          email))
    page = a_run_whose_create_answer_is_lost(work)
    lost = work.apis.rf_.created[0]                      # (the first create's answer; the four others came)
    assert (asked, len(work.apis.rf_.created)) == ([], 5)     # the page's first try: 5 contacts, no question
    work.queue.sent.append(page)
    drain(work)
    assert asked == [lost["email"]]                      # its retry: the one whose user RF had made
    assert (work.store.sync.run("42").counts, len(work.apis.rf_.created)) == ({"enrolled": 5}, 5)
    sync.start(deps(work), "42")
    drain(work)
    assert asked == [lost["email"]] and work.store.sync.run("42").status == "done"     # a second run: none


def after_a_first_run_a_new_contact_notified():
    """An ongoing sync after its first run, and Intercom's notification of a contact created since."""
    work = world(1, mode="ongoing")
    sync.start(deps(work), "42")
    drain(work)
    new = work.apis.intercom_.add("new@example.com", role="user")
    new["name"] = "New"
    return work, ContactMessage(workspace=WS, topic="contact.user.created", notification_id="notif_1", item=new)


def test_ongoing_sync_keeps_a_days_catch_up_runs_for_days_not_for_ever_and_status_still_shows_the_full_run(
        monkeypatch, capsys):
    """A deployment a year old: every scheduled catch-up (each 15 minutes) kept the run before it for ever, ~96 items
    a day per campaign. Past catch-up runs expire PAST_RUN_DAYS after; the latest full run is kept, and `sync status`
    still shows it beside a catch-up after a pause longer than that; `--run` of an expired run says so in one line."""
    import chalicelib.cli as cli_module
    from chalicelib.ports.store import PAST_RUN_DAYS
    from tests.support.cli import run_cli

    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)
    work, _ = after_a_first_run_a_new_contact_notified()
    for _ in range(98):
        work.clock.now += 900
        sync.catch_up(deps(work), WS)
        drain(work)
    assert [(n, work.store.sync.run("42", n).kind) for n in (1, 2, 50, 97, 98, 99)] == [
        (1, "full"), (2, "catch-up"), (50, "catch-up"), (97, "full"), (98, "catch-up"), (99, "catch-up")]
    work.clock.now += PAST_RUN_DAYS * 86400                         # no run since (ongoing sync paused)
    assert [n for n in range(1, 100) if work.store.sync.run("42", n)] == [97, 99]
    found = sync.status(deps(work), "42")
    assert (found["run"], found["full_run"]["run"]) == (99, 97)
    code, _, err = run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42", "--run", "50")
    assert (code, err) == (1, f"bridge: campaign 42's sync run 50 is no longer kept (a past catch-up run, or a full "
                              f"run a newer one replaced, expires {PAST_RUN_DAYS} days after) — `bridge sync status "
                              "42` shows its latest\n")


def test_explain_of_a_contact_ongoing_sync_enrolled_by_webhook_says_by_webhook_in_its_trail_and_heading():
    """`enrolled_by_sync` said run 0 (by webhook) while the trail's entry said run 1 (the latest run, which
    did not enrol them): both now say the ledger's run, 0, by webhook."""
    from chalicelib.services.explain import as_text, explain
    work, note = after_a_first_run_a_new_contact_notified()
    work.store.connections.register_workspace(WS)
    sync.on_contact(note, deps(work))
    found = explain(work, "new@example.com")
    view, text = found.view(), as_text(found)
    [enrolled] = view["enrolled_by_sync"]
    [entry] = [e for e in view["trail"] if e["event"] == "sync"]
    assert enrolled["run"] == entry["details"]["run"] == 0
    assert "enrolled by ongoing contact sync (by webhook)" in text
    [line] = [t for t in text.splitlines() if "sync: enrolled" in t]
    assert "by webhook" in line and "run=" not in line, line


def test_ongoing_mode_enrols_a_new_contact_once_by_webhook_and_catch_up():
    work, note = after_a_first_run_a_new_contact_notified()
    sync.on_contact(note, deps(work))
    sync.on_contact(note, deps(work))                   # a repeat
    work.clock.now += 900
    sync.catch_up(deps(work), WS)                        # the schedule's catch-up sees it again
    drain(work)
    assert [u["email"] for u in work.apis.rf_.created] == ["p0@example.com", "new@example.com"]
    catch = work.store.sync.run("42")
    assert (catch.number, catch.kind, catch.status) == (2, "catch-up", "done")



def test_a_date_reaches_rf_in_one_form_from_a_run_s_search_and_from_a_notification():
    """A run reads contacts from Intercom's search (dates in UNIX seconds), a notification carries the webhook's
    contact (ISO-8601 text): RF was sent 1692125375 by the one and 2023-08-15T18:49:35.016+00:00 by the other."""
    fields = [{"from": "email", "to": "email"}, {"from": "name", "to": "first_name"},
              {"from": "signed_up_at", "to": "meta.member_since"}]
    work = world(1, mode="ongoing", fields=fields)
    work.apis.intercom_.attributes["signed_up_at"] = {"data_type": "date"}
    next(iter(work.apis.intercom_.contacts.values()))["signed_up_at"] = 1692125375
    sync.start(deps(work), "42")
    drain(work)
    new = work.apis.intercom_.add("new@example.com", role="user")
    sync.on_contact(ContactMessage(workspace=WS, topic="contact.user.created", notification_id="notif_1",
                                   item={**new, "name": "New", "signed_up_at": "2023-08-15T18:49:35.016+00:00"}),
                    deps(work))
    since = [{"field": "member_since", "value": "2023-08-15T18:49:35Z"}]
    assert [u["meta"] for u in work.apis.rf_.created] == [since, since]


def test_a_catch_up_whose_first_page_was_never_queued_is_sent_by_the_next_schedule_not_stuck_running():
    """The schedule started a catch-up run, then the queue refused its first page: the run said running for good and
    no later schedule started one again (ongoing mode stopped). The next schedule sends that page."""
    work, _ = after_a_first_run_a_new_contact_notified()
    work.clock.now += 900
    next_send_fails(work, RuntimeError("SQS: ServiceUnavailable"))
    with pytest.raises(RuntimeError):
        sync.catch_up(deps(work), WS)
    work.clock.now += 900
    assert [run.number for run in sync.catch_up(deps(work), WS)] == [2]
    drain(work)
    caught = work.store.sync.run("42")
    assert (caught.number, caught.kind, caught.status) == (2, "catch-up", "done")


def test_a_redelivered_contact_webhook_is_counted_once_in_status(monkeypatch, capsys):
    """Intercom (or the queue) delivers the same notification twice: `sync status`'s "by webhook since" counts
    the contact once (not "+1 enrolled, 1 already"), and the repeat asks RF nothing."""
    from types import SimpleNamespace

    import chalicelib.cli as cli_module
    from tests.support.cli import run_cli

    monkeypatch.setattr(cli_module, "_text", lambda args: True)
    work, note = after_a_first_run_a_new_contact_notified()
    sync.on_contact(note, deps(work))
    calls = list(work.apis.rf_.calls)
    sync.on_contact(note, deps(work))                                  # the same notification again
    assert work.apis.rf_.calls == calls
    assert sync.status(deps(work), "42")["by_webhook"] == {"enrolled": 1}
    assert run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1].endswith(
        " · by webhook since: +1 enrolled\n")


def test_forget_erases_a_synced_person_from_the_ledger_and_their_history():
    from chalicelib.domain.link import PersonRef
    from chalicelib.services.privacy import forget
    work = world(2)
    sync.start(deps(work), "42")
    drain(work)
    user = next(u for u in work.apis.rf_.created if u["email"] == "p1@example.com")
    assert work.store.history.entries(PersonRef("42", str(user["id"])))
    [entry] = [e for e in work.store.sync.ledger("42") if e.email == "p1@example.com"]
    done = forget(work, "P1@example.com")
    assert (done["sync_ledger_entries"], done["history_entries"]) == (1, 1)
    # what the operator erases in Intercom too: the contact in the campaign's workspace
    assert done["people"] == [{"campaign_id": "42", "rf_user_id": str(user["id"]), "workspace": WS,
                               "contact_id": entry.contact_id}]
    assert [e.email for e in work.store.sync.ledger("42")] == ["p0@example.com"]
    assert work.store.history.entries(PersonRef("42", str(user["id"]))) == []


def test_forget_erases_the_ledger_entry_of_a_skipped_contact_whose_intercom_email_has_spaces_around_it():
    """Sync skips a contact (no name) whose email Intercom holds as " Bob@Example.com ": its ledger entry kept the
    spaces, so `bridge forget bob@example.com` (which compares trimmed, lowercased emails) left the email behind."""
    from chalicelib.services.privacy import forget
    work = world(0)
    work.apis.intercom_.add(" Bob@Example.com ", role="user")
    sync.start(deps(work), "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"missing_field": 1}
    assert forget(work, "bob@example.com")["sync_ledger_entries"] == 1
    assert list(work.store.sync.ledger("42")) == []


def test_forget_names_no_workspace_for_a_synced_person_of_a_campaign_that_moved_workspaces():
    from chalicelib.services.privacy import forget
    work = world(1)
    sync.start(deps(work), "42")
    drain(work)
    work.store.settings.put("42", {**sync_settings(), "workspace": "ws2"}, "ws2")   # which one held the contact?
    [person] = forget(work, "p0@example.com")["people"]
    assert "workspace" not in person and person["contact_id"]


def test_forget_erases_a_synced_referrers_referral_count():
    from chalicelib.domain.link import PersonRef
    from chalicelib.services.privacy import forget
    work = world(1)
    sync.start(deps(work), "42")
    drain(work)
    [user] = work.apis.rf_.created
    referrer = PersonRef("42", str(user["id"]))
    work.store.links.referrer_contact(referrer, "c1", "ws")      # the count kept for her (no link of her own)
    forget(work, user["email"])
    assert work.store.links.referrals(referrer) is None


def test_after_a_crash_someone_who_joined_rf_by_themselves_before_is_still_already_in_the_campaign():
    from chalicelib.domain.history import iso
    from chalicelib.ports.store import LedgerEntry
    work = world(2)
    c0, c1 = list(work.apis.intercom_.contacts.values())
    work.apis.rf_.created.append({"email": "p0@example.com", "campaign_id": 42, "id": 1, "url": "u0",
                                  "signed_up_at": iso(work.clock() - 86400)})       # joined yesterday
    work.apis.rf_.created.append({"email": "p1@example.com", "campaign_id": 42, "id": 2, "url": "u1",
                                  "signed_up_at": iso(work.clock() + 1)})           # our crashed try made them
    run = work.store.sync.start("42", "full", "users", work.clock())
    work.store.sync.intend("42", [LedgerEntry(c["id"], "creating", email=c["email"], run=1, at=iso(work.clock()))
                                  for c in (c0, c1)])
    from chalicelib.messages import SyncPageMessage
    work.queue.sent.append(SyncPageMessage(campaign_id="42", run=run.number, page=0).wire())
    drain(work)
    got = work.store.sync.entries("42", [c0["id"], c1["id"]])
    assert (got[c0["id"]].outcome, got[c1["id"]].outcome, got[c1["id"]].rf_user_id) == (
        "already_in_campaign", "enrolled", "2")


def test_a_failed_look_up_in_rf_is_retried_with_the_page_not_taken_for_someone_not_ours():
    """An earlier try created both contacts' RF users, its answers lost. The retry looks them up in RF's list of
    people, and that list fails once (503 after the retries): the contact whose look-up came next was taken for
    "not found" (the walk, ended by the failure, answered nothing more) and skipped as already in the campaign
    for good — her RF user never linked back. Her look-up fails as the first did: the page's next try enrols both."""
    from chalicelib.domain.history import iso
    from chalicelib.messages import SyncPageMessage
    from chalicelib.ports.store import LedgerEntry
    work = world(2)
    contacts = list(work.apis.intercom_.contacts.values())
    rf = work.apis.rf_
    for i, c in enumerate(contacts):                                    # our interrupted try made them
        rf.created.append({"email": c["email"], "campaign_id": 42, "id": 7 + i, "url": f"u{i}",
                           "signed_up_at": iso(work.clock() + 1)})
    run = work.store.sync.start("42", "full", "users", work.clock())
    work.store.sync.intend("42", [LedgerEntry(c["id"], "creating", email=c["email"], run=1, at=iso(work.clock()))
                                  for c in contacts])
    listed, failed = rf.users_page, []

    def fails_once(*args, **kw):
        if not failed:
            failed.append(True)
            raise Transient("Referral Factory answered 503: Service Unavailable", status=503)
        return listed(*args, **kw)
    rf.users_page = fails_once
    page = SyncPageMessage(campaign_id="42", run=run.number, page=0).wire()
    work.queue.sent.append(page)
    with pytest.raises(RetryBatch):
        drain(work)
    ids = [c["id"] for c in contacts]
    assert {e.outcome for e in work.store.sync.entries("42", ids).values()} == {"creating"}
    work.queue.sent.append(page)                                        # the page's retry
    drain(work)
    assert work.store.sync.run("42").counts == {"enrolled": 2}
    assert [c["custom_attributes"].get("referral_link") for c in contacts] == ["u0", "u1"]


def start_refused(work) -> str:
    """`bridge sync start 42` refused: its one line."""
    with pytest.raises(sync.SyncStopped) as stopped:
        sync.start(deps(work), "42")
    [why] = stopped.value.problems
    return why


def test_a_second_start_while_a_run_is_running_says_where_to_look():
    """Before any page is done, the run says when it started: it said "last progress at" its start time, a
    progress it never made."""
    from chalicelib.domain.history import iso
    work = world(1)
    started = sync.start(deps(work), "42").started_at
    work.clock.now += 90
    work.store.sync.claim_page("42", 1, 0, "a worker", work.clock())               # page 0 is worked
    why = start_refused(work)
    assert why.startswith(f"sync run 1 of campaign 42 is still running (started at {iso(started)}) — see ")
    assert why.endswith("`bridge dlq list`, then `bridge dlq replay` resumes it where it stopped; a page that can "
                        "never succeed: `bridge dlq discard --reason <its reason> --yes` ends the run")


@pytest.mark.parametrize("interrupted", [KeyboardInterrupt(), RuntimeError("SQS: ServiceUnavailable")])
def test_a_run_whose_first_page_was_never_queued_is_sent_again_by_the_next_start_not_stuck_running(interrupted):
    """`bridge sync start` wrote the run, then its send of the first page failed (Ctrl-C, SQS refused it). Nothing
    else ever sends that page: the run said running for good, every later `sync start` refused ("still running ... its
    page waits in the dead-letter queue", where nothing was), and ongoing mode's catch-ups never started again. A
    start seconds later says the run has not begun yet; doctor, half an hour on, says so and names the fix; a start
    a minute or more after the run began sends its first page."""
    work = world(2)
    next_send_fails(work, interrupted)
    with pytest.raises(type(interrupted)):
        sync.start(deps(work), "42")
    why = start_refused(work)
    assert why.startswith("sync run 1 of campaign 42 has not begun yet (started at ")
    assert why.endswith("if it has not begun a minute after it started, `bridge sync start 42` sends its first page "
                        "again")
    work.clock.now += 31 * 60
    assert doctor_says(work)[0].splitlines() == [
        "campaign 42: 1 problem(s)",
        "  BAD [sync] sync run 1 (full, users) has not begun in 31 min: no worker took its first page",
        "        why: its first page's message was never sent (the command that started the run was interrupted, or "
        "the queue refused it): the run does not go on by itself",
        "        fix: `bridge sync start 42` sends it again"]
    assert sync.start(deps(work), "42").number == 1
    drain(work)
    assert len(work.apis.rf_.created) == 2 and work.store.sync.run("42").status == "done"


def test_the_campaign_s_user_limit_stops_the_run_naming_the_fix():
    work = world(1)
    work.apis.rf_.create_answers = [Refused(422, "The campaign has reached its user limit.",
                                            {"campaign_id": "The campaign has reached its user limit."})]
    sync.start(deps(work), "42")
    drain(work)
    run = work.store.sync.run("42")
    assert (run.status, run.counts) == ("stopped", {"user_limit": 1})
    assert run.message == ("campaign user limit reached: The campaign has reached its user limit. — raise the "
                           "campaign's user limit in Referral Factory, then run `bridge sync start` again")


def test_a_retried_create_rf_refuses_as_over_the_user_limit_still_finds_the_user_the_try_before_created():
    """The try before created the contact's RF user (its answer lost), and that user was the campaign's last: the
    retry's create is refused as over the user limit, not as a taken email. The user is still looked up: the
    contact is enrolled with it, its link written, and the run stops at the limit. (The skip it was recorded as
    replaced the `creating` entry, and every later run took RF's user as someone already in the campaign: the
    link was never written.)"""
    from chalicelib.domain.history import iso
    from chalicelib.messages import SyncPageMessage
    from chalicelib.ports.store import LedgerEntry
    work = world(1)
    [contact] = work.apis.intercom_.contacts.values()
    rf = work.apis.rf_
    rf.created.append({"email": contact["email"], "campaign_id": 42, "id": 7, "url": "u7",
                       "signed_up_at": iso(work.clock() + 1)})                 # our interrupted try made them
    run = work.store.sync.start("42", "full", "users", work.clock())
    work.store.sync.intend("42", [LedgerEntry(contact["id"], "creating", email=contact["email"], run=1,
                                              at=iso(work.clock()))])
    rf.create_answers = [Refused(422, "The campaign has reached its user limit.",
                                 {"campaign_id": "The campaign has reached its user limit."})]
    work.queue.sent.append(SyncPageMessage(campaign_id="42", run=run.number, page=0).wire())
    drain(work)
    stopped = work.store.sync.run("42")
    assert (stopped.status, stopped.counts) == ("stopped", {"enrolled": 1})
    entry = work.store.sync.entries("42", [contact["id"]])[contact["id"]]
    assert (entry.outcome, entry.rf_user_id) == ("enrolled", "7")
    assert contact["custom_attributes"]["referral_link"] == "u7"


def test_settings_that_keep_only_counts_stop_a_run_under_way_at_its_next_page(monkeypatch):
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work = world(5)
    sync.start(deps(work), "42")
    [first] = work.queue.sent
    work.queue.sent.clear()
    handle_batch([{"messageId": "m1", "body": json.dumps(first), "receiptHandle": "r1",
                   "attributes": {"ApproximateReceiveCount": "1"}}], work)          # page 0: 2 enrolled
    assert len(work.apis.rf_.created) == 2
    work.apis.intercom_.attributes["custom_attributes.referral_count"] = {"data_type": "integer"}
    work.store.settings.put("42", {**settings(rule=None), "referrers": {"action": "create_user", "fields": [
        {"from": "email", "to": "email"}]}, "sync": {"referral_count_attribute": "custom_attributes.referral_count"}},
        WS)
    drain(work)
    assert len(work.apis.rf_.created) == 2                                          # nobody more
    run = work.store.sync.run("42")
    assert run.status == "stopped" and "this block only keeps referral counts" in run.message


def test_a_source_changed_while_a_run_is_under_way_stops_it_at_its_next_page_not_resumed_in_the_new_source(
        monkeypatch):
    """Settings applied mid-run name another source (users, now leads). The run's next page searched the new source
    from the old one's cursor (a place in the order of creation): the leads before it were never read, and the run
    said done, of users. It stops there instead, naming the fix: a new run reads the new source from its start."""
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work = world(3)
    for i in range(4):
        work.apis.intercom_.add(f"lead{i}@example.com", role="lead")["name"] = f"Lead{i}"
    sync.start(deps(work), "42")
    drain(work, limit=1)                                                            # page 0: 2 users of 3
    assert len(work.apis.rf_.created) == 2
    work.store.settings.put("42", sync_settings(source="leads"), WS)
    drain(work)
    assert len(work.apis.rf_.created) == 2                                          # no lead skipped over
    run = work.store.sync.run("42")
    assert (run.status, run.source) == ("stopped", "users")
    assert run.message == ("sync.source: the settings applied since this run started read leads, not users — "
                           "run `bridge sync start 42` to sync leads from the start")
    sync.start(deps(work), "42")
    drain(work)
    assert [u["email"] for u in work.apis.rf_.created[2:]] == [f"lead{i}@example.com" for i in range(4)]


def test_a_campaign_moved_to_another_workspace_while_a_run_is_under_way_stops_the_run_at_its_next_page(monkeypatch):
    """The campaign is applied naming another workspace mid-run: the run's next page searched the new workspace with
    the old one's cursor, enrolling the new workspace's contacts after that place in a run of the old one's. It stops
    there instead, naming the fix."""
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work = world(3)
    sync.start(deps(work), "42")
    drain(work, limit=1)                                                            # page 0: 2 contacts of 3
    work.store.settings.put("42", {**sync_settings(), "workspace": "ws2"}, "ws2")
    drain(work)
    assert len(work.apis.rf_.created) == 2
    run = work.store.sync.run("42")
    assert run.status == "stopped"
    assert run.message == ("workspace: campaign 42 was applied naming workspace ws2 since this run started in ws — "
                           "run `bridge sync start 42` to sync ws2's contacts from the start")


COUNTS_ONLY = {**settings(rule=None), "sync": {"referral_count_attribute": "custom_attributes.referral_count"}}


@pytest.mark.parametrize("change, said", [
    (lambda store: store.put("42", COUNTS_ONLY, WS),
     "campaign 42 runs no contact sync: its sync block only keeps referral counts "
     "(docs/how-it-works.md, Referral counts) — add fields and referral_link_attribute to sync contacts"),
    (lambda store: store.delete("42"),
     "campaign 42 runs no contact sync now: campaign 42 has no settings — apply them first, with a `sync` block "
     "(`bridge settings apply <file>`)"),
    (lambda store: store.put("42", settings(rule=None), WS),
     "campaign 42 runs no contact sync now: campaign 42's settings have no sync block — add one and apply them"),
], ids=["settings keep only counts", "settings deleted", "sync block removed"])
def test_status_and_report_say_no_contact_sync_and_why_and_still_show_the_past_runs(monkeypatch, capsys, change,
                                                                                  said):
    """docs/how-it-works.md (Referral counts): `sync status` and `sync report` say "no contact sync", as doctor
    does, when the settings keep only counts, or are gone, or lost their sync block; the past runs are shown under it.
    Each reads the stored settings once (a report read them twice)."""
    import chalicelib.cli as cli_module
    from tests.support.cli import run_cli
    work = world(2)
    sync.start(deps(work), "42")
    drain(work)
    change(work.store.settings)
    rt = SimpleNamespace(deps=work.deps)
    reads = []
    get = work.store.settings.get
    monkeypatch.setattr(work.store.settings, "get", lambda campaign_id: reads.append(campaign_id) or get(campaign_id))
    for command in ("status", "report"):
        reads.clear()
        answer = json.loads(run_cli(rt, capsys, "sync", command, "42", "--json")[1])
        assert answer["no_contact_sync"] == said and reads == ["42"], (command, reads)
        with monkeypatch.context() as text:
            text.setattr(cli_module, "_text", lambda args: True)
            code, out, _ = run_cli(rt, capsys, "sync", command, "42")
        lines = out.splitlines()
        assert code == 0 and lines[0] == f"{said}. Its past runs:" and lines[1].startswith("run 1 (full, users) done")


def test_a_referrer_enrolled_before_rf_made_their_link_gets_it_written_once_rf_has_it(monkeypatch, capsys):
    """Each run asks RF again for the user it had no link for (one call), and writes it once RF has one:
    counted as a link written later, not as a second enrolment (the run's counts, `sync status` in text
    and JSON, the dry run before it, and the person's history, which says enrolled once)."""
    from types import SimpleNamespace

    import chalicelib.cli as cli_module
    from chalicelib.domain.link import PersonRef
    from tests.support.cli import run_cli

    work = enrolled_without_link()                              # RF answered before making the link
    rf, intercom = work.apis.rf_, work.apis.intercom_
    [user], [contact] = rf.created, intercom.contacts.values()
    assert work.store.sync.run("42").counts == {"enrolled_no_link": 1}
    assert "referral_link" not in contact["custom_attributes"]
    rf.users[str(user["id"])] = {"id": user["id"], "url": None}
    sync.start(deps(work), "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"no_link_yet": 1} and "update" not in intercom.calls
    found = sync.status(deps(work), "42")                       # enrolled by run 1: already, still without a link
    assert (found["enrolled"], found["already_enrolled"], found["still_without_link"], found["skipped"]) == (0, 1, 1, 0)

    dry = sync.dry_run(deps(work), "42")
    assert (dry["already_enrolled"], dry["still_without_link"], dry["skipped"]) == (1, 1, {})

    rf.users[str(user["id"])]["url"] = user["url"] = "https://rf.example/r/late"     # (RF's people list says it too)
    dry = sync.dry_run(deps(work), "42")
    assert (dry["would_enrol"], dry["would_link"], dry["already_enrolled"], dry["skipped"]) == (0, 1, 0, {})
    asked = rf.calls.count(f"get_user {user['id']}")
    sync.start(deps(work), "42")
    drain(work)
    assert rf.calls.count(f"get_user {user['id']}") == asked + 1 and intercom.calls.count("update") == 1
    assert contact["custom_attributes"]["referral_link"] == "https://rf.example/r/late"
    assert work.store.sync.run("42").counts == {"linked": 1}
    found = sync.status(deps(work), "42")
    assert (found["enrolled"], found["already_enrolled"], found["linked"], found["skipped"]) == (0, 0, 1, 0)
    monkeypatch.setattr(cli_module, "_text", lambda args: True)
    assert run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1].endswith(
        " · enrolled 0, already 0, link written later 1, skipped 0\n")
    history = [e.outcome for e in work.store.history.entries(PersonRef("42", str(user["id"])))]
    assert history == ["enrolled", "link_written"]
    sync.start(deps(work), "42")
    drain(work)
    assert rf.calls.count(f"get_user {user['id']}") == asked + 1 and intercom.calls.count("update") == 1
    assert work.store.sync.run("42").counts == {"already_enrolled": 1} and len(rf.created) == 1


def test_a_referrer_whose_link_write_failed_is_counted_as_a_link_written_later_by_the_run_that_writes_it():
    """Intercom refused the write-back when run 1 enrolled them: run 2 writes it (no RF call) and counts a link
    written later, not a second enrolment; run 3 finds them done."""
    from chalicelib.domain.link import PersonRef
    from chalicelib.errors import Permanent

    work = world(1)
    work.apis.intercom_.fail["update"] = Permanent("Intercom answered 400: attribute is read-only", status=400)
    sync.start(deps(work), "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"enrolled_writeback_failed": 1}
    for expected in ({"linked": 1}, {"already_enrolled": 1}):
        sync.start(deps(work), "42")
        drain(work)
        assert work.store.sync.run("42").counts == expected
    [user] = work.apis.rf_.created
    assert work.apis.intercom_.calls.count("update") == 2 and len(work.apis.rf_.calls) == 1     # RF: the one create
    [*_, note] = work.store.history.entries(PersonRef("42", str(user["id"])))
    assert (note.outcome, note.reason.split(": ")[-1]) == ("link_written", "the write before had failed")


@pytest.mark.parametrize("ledger", ["says where", "written before it said where", "their join enrolled them"])
def test_referrers_enrolled_before_the_link_attribute_changed_get_their_link_written_to_the_new_one(ledger):
    """The operator names another `referral_link_attribute`. The referrers earlier runs enrolled were counted
    already enrolled by every later run and their link never reached the new attribute. The next run writes it
    there (no RF call: the ledger keeps the link), counted as a link written later (as the dry run says), and the
    run after finds them done. An entry from before the ledger said where it wrote is judged by the contact's value;
    one whose own join enrolled them stays theirs (explain does not say sync enrolled them)."""
    from dataclasses import replace

    from chalicelib.domain.link import PersonRef
    from chalicelib.services.explain import explain
    work = world(2)
    work.store.connections.register_workspace(WS)
    sync.start(deps(work), "42")
    drain(work)
    changed = {"says where": {}, "written before it said where": {"link_attribute": None},
               "their join enrolled them": {"outcome": "already_enrolled", "adopted": True}}[ledger]
    assert len(work.store.sync.rewrite("42", [replace(e, **changed) for e in work.store.sync.ledger("42")])) == 2
    intercom, rf = work.apis.intercom_, work.apis.rf_
    intercom.attributes["custom_attributes.rf_link"] = {"data_type": "string"}
    work.store.settings.put("42", sync_settings(referral_link_attribute="custom_attributes.rf_link"), WS)
    asked = len(rf.calls)
    assert sync.dry_run(deps(work), "42")["would_link"] == 2
    for expected in ({"linked": 2}, {"already_enrolled": 2}):
        sync.start(deps(work), "42")
        drain(work)
        assert work.store.sync.run("42").counts == expected
    assert {c["custom_attributes"].get("rf_link") for c in intercom.contacts.values()} == {u["url"] for u in rf.created}
    assert rf.calls[asked:] == ["users_page first"] and intercom.calls.count("update") == 4   # RF: the dry run's
    [*_, note] = work.store.history.entries(PersonRef("42", str(rf.created[0]["id"])))
    assert note.reason.startswith("referral link written to custom_attributes.rf_link by sync run 2 from users: ")
    adopted = ledger == "their join enrolled them"
    assert {e.outcome for e in work.store.sync.ledger("42")} == {"already_enrolled" if adopted else "enrolled"}
    assert ("enrolled_by_sync" in explain(work, "p0@example.com").view()) is not adopted


def test_a_referrer_whose_link_write_failed_is_counted_enrolled_with_the_link_said_apart_not_skipped(monkeypatch,
                                                                                                      capsys):
    """RF enrolled her; only Intercom refused her link: the run says "enrolled 1 (1 link not written)", not
    "skipped 1" (read as not enrolled) — its counts, `sync status` (text, JSON), `sync report` (apart from the
    skips, with Intercom's message), "by webhook since"; a run whose write fails again says already."""
    from types import SimpleNamespace

    import chalicelib.cli as cli_module
    from chalicelib.errors import Permanent
    from tests.support.cli import run_cli

    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)
    work = world(1, mode="ongoing")
    rt = SimpleNamespace(deps=work.deps)
    refused = Permanent("Intercom answered 400: attribute is read-only", status=400)
    work.apis.intercom_.fail["update"] = refused
    sync.start(deps(work), "42")
    drain(work)
    found = sync.status(deps(work), "42")
    assert (found["enrolled"], found["enrolled_link_not_written"], found["skipped"]) == (1, 1, 0)
    assert run_cli(rt, capsys, "sync", "status", "42")[1].endswith(
        " · enrolled 1 (1 link not written), already 0, skipped 0\n")
    report = json.loads(run_cli(rt, capsys, "sync", "report", "42", "--json")[1])
    assert (report["skipped"], report["link_not_written"]["count"]) == ({}, 1)
    assert report["link_not_written"]["examples"][0]["detail"] == f"write-back failed: {refused.reason}"
    text = run_cli(rt, capsys, "sync", "report", "42")[1]
    assert "no contact was skipped\n" in text and "referral link not written to Intercom (all runs" in text
    new = work.apis.intercom_.add("new@example.com", role="user")
    new["name"] = "New"
    work.apis.intercom_.fail["update"] = refused
    sync.on_contact(ContactMessage(workspace=WS, topic="contact.user.created", item=new), deps(work))
    assert run_cli(rt, capsys, "sync", "status", "42")[1].endswith(
        " · by webhook since: +1 enrolled (1 link not written)\n")
    work.apis.intercom_.fail["update"] = refused                        # run 2: one of the two fails again
    sync.start(deps(work), "42")
    drain(work)
    assert run_cli(rt, capsys, "sync", "status", "42")[1].endswith(
        " · enrolled 0, already 1 (1 link still not written), link written later 1, skipped 0\n")


def test_only_a_join_received_after_a_deleted_in_rf_skip_says_rf_restored_the_referrer():
    from chalicelib.domain.sync import restored

    skipped = "2026-11-26T10:00:00.000Z"
    assert restored("2026-11-26T10:00:05.000Z", skipped)
    assert not restored("2026-11-26T09:59:00.000Z", skipped)      # the join before it: the deletion came after
    assert not restored(None, skipped) and not restored("2026-11-26T10:00:05.000Z", None)


def enrolled_without_link(n: int = 1) -> FakeWork:
    """`n` contacts enrolled by a run to which RF answered without a referral link."""
    work = world(n)
    real = work.apis.rf_.create_user

    def without_link(body: dict) -> dict:
        user = real(body)
        user["url"] = None                          # RF has none: its people list says so too
        return dict(user)
    work.apis.rf_.create_user = without_link
    sync.start(work.deps, "42")
    drain(work)
    return work


def test_referrers_enrolled_before_rf_made_their_link_are_counted_enrolled_not_skipped(monkeypatch, capsys):
    """The walkthrough: the dry run said "would_enrol 3", RF got 3 new referrers (one without a link yet), and
    the run said "enrolled 2, skipped 2" (a user reads skipped as not enrolled). They are enrolled, the missing
    link said apart: in the run's counts, `sync status` (text, JSON), "by webhook since", `sync report`, doctor."""
    from types import SimpleNamespace

    import chalicelib.cli as cli_module
    from chalicelib.domain.settings import parse_settings
    from chalicelib.services.doctor import Report, _sync
    from tests.support.cli import run_cli

    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)
    work = world(4, mode="ongoing")
    work.apis.intercom_.contacts[next(iter(work.apis.intercom_.contacts))]["email"] = "not an email"
    rt = SimpleNamespace(deps=work.deps)
    real = work.apis.rf_.create_user

    def without_link(body: dict) -> dict:                       # RF makes no link for p1 (nor, later, for new)
        user = real(body)
        if body["email"] in ("p1@example.com", "new@example.com"):
            user["url"] = None
        return dict(user)
    work.apis.rf_.create_user = without_link
    assert sync.dry_run(deps(work), "42")["would_enrol"] == 3
    sync.start(deps(work), "42")
    drain(work)
    assert len(work.apis.rf_.created) == 3
    found = sync.status(deps(work), "42")
    assert (found["enrolled"], found["enrolled_without_link"], found["already_enrolled"], found["skipped"]) == \
        (3, 1, 0, 1)
    assert run_cli(rt, capsys, "sync", "status", "42")[1].endswith(
        " · enrolled 3 (1 without a link yet), already 0, skipped 1\n")
    new = work.apis.intercom_.add("new@example.com", role="user")
    new["name"] = "New"
    sync.on_contact(ContactMessage(workspace=WS, topic="contact.user.created", item=new), deps(work))
    assert run_cli(rt, capsys, "sync", "status", "42")[1].endswith(
        " · by webhook since: +1 enrolled (1 without a link yet)\n")
    report = json.loads(run_cli(rt, capsys, "sync", "report", "42", "--json")[1])
    assert (list(report["skipped"]), report["without_link"]["count"]) == (["invalid_email"], 2)
    text = run_cli(rt, capsys, "sync", "report", "42")[1]
    assert "enrolled without a referral link yet (all runs; each run asks Referral Factory again): 2\n" in text
    assert "no referral link yet:" not in text.split("skipped contacts (all runs), by reason:")[1].split(
        "enrolled without")[0]
    report = Report("42")
    _sync(SimpleNamespace(store=work.store, clock=work.clock), report, parse_settings(sync_settings(mode="ongoing")))
    assert report.findings[0].what.startswith("sync run 1 (full, users) done: enrolled 3 (1 without a link yet), "
                                              "already 0, skipped 1; ")
    assert report.findings[0].what.endswith("see `bridge sync report 42` for the 1 skipped, with their reasons")


def test_rf_refusing_a_referrers_link_with_a_message_that_quotes_404_fails_the_page_not_as_a_deleted_user():
    """Only RF's status says it does not know a user: a 422 whose text holds "404" is RF's refusal
    (the page fails with it), not "no link yet" asked again every run."""
    from chalicelib.errors import Permanent

    work = enrolled_without_link()
    rf = work.apis.rf_
    assert work.store.sync.run("42").counts == {"enrolled_no_link": 1}

    def refused(user_id: str) -> dict:
        raise Permanent("Referral Factory answered 422: user 404 of campaign 404 is not valid", status=422)
    rf.get_user = refused
    sync.start(work.deps, "42")
    with pytest.raises(RetryBatch, match="Referral Factory answered 422"):         # the page fails, with RF's reason
        drain(work)
    [entry] = work.store.sync.entries("42", list(work.apis.intercom_.contacts)).values()
    assert entry.outcome == "no_link_yet" and "422" not in (entry.reason or "")    # not recorded as a deleted user


def test_a_referrer_deleted_in_rf_is_skipped_for_good_and_rf_is_not_asked_again():
    """RF's 404 for a referrer sync enrolled (and had no link for) is final: the ledger, `sync report`
    and their history say they are no longer in RF; later runs (full or dry) ask RF nothing for them
    and never enrol the contact again."""
    from chalicelib.domain.link import PersonRef
    from chalicelib.errors import Permanent

    work = enrolled_without_link()
    rf = work.apis.rf_
    [user] = rf.created
    rf.get_answers = [Permanent(f"Referral Factory answered 404: no user {user['id']}", status=404)]
    sync.start(work.deps, "42")
    checked = rf.campaign_calls
    drain(work)
    assert work.store.sync.run("42").counts == {"not_in_rf": 1}
    assert rf.campaign_calls == checked + 2          # the run's checks, then (a 404 on the page) RF still knows
                                                     # the campaign with this token: asked once
    report = sync.report(work.deps, "42")
    [example] = report["skipped"]["not_in_rf"]["examples"]
    assert report["skipped"]["not_in_rf"]["reason"] == "no longer in Referral Factory (deleted there)"
    assert example["detail"].startswith(f"no longer in Referral Factory: user {user['id']} was deleted there")
    assert report["enrolled_in_all"] == 0
    [*_, note] = work.store.history.entries(PersonRef("42", str(user["id"])))
    assert note.outcome == "not_in_rf" and "does not enrol this contact again" in note.reason

    calls = list(rf.calls)
    sync.start(work.deps, "42")
    checked = rf.campaign_calls
    drain(work)
    assert rf.calls == calls and len(rf.created) == 1                # no get_user, no create
    assert rf.campaign_calls == checked + 1                          # the run's checks; no 404: no other check
    assert work.store.sync.run("42").counts == {"not_in_rf": 1}
    dry = sync.dry_run(work.deps, "42")
    assert (dry["would_enrol"], dry["skipped"]["not_in_rf"]["count"]) == (0, 1)


def test_status_counts_a_runs_own_contacts_at_its_own_rate_and_webhook_enrolments_apart(monkeypatch, capsys):
    """`sync status` after ongoing mode enrolled a new contact by webhook: the run's progress is its own
    pages' (6/6, not 7/6), the rate is over its own time (not shown for a run of a few seconds), and
    the webhook's enrolment is shown apart."""
    from types import SimpleNamespace

    import chalicelib.cli as cli_module
    from tests.support.cli import run_cli

    monkeypatch.setattr(cli_module, "_text", lambda args: True)
    work = world(6, mode="ongoing")
    rt = SimpleNamespace(deps=work.deps)
    sync.start(work.deps, "42")
    drain(work)                                          # a run of no time at all: no rate, rather than a wild one
    assert sync.status(work.deps, "42")["rate_per_minute"] is None
    assert run_cli(rt, capsys, "sync", "status", "42")[1] == (
        "run 1 (full, users) done: [##############################] 6/6 100% · enrolled 6, already 0, skipped 0\n")

    work.clock.now += 86400
    real = work.apis.rf_.create_user

    def slow(body):                                     # each create takes RF 3 s
        work.clock.now += 3
        return real(body)
    work.apis.rf_.create_user = slow
    for i in range(6, 12):
        work.apis.intercom_.add(f"p{i}@example.com", role="user")["name"] = f"P{i}"
    sync.start(work.deps, "42")
    drain(work)                                         # 6 enrolled, 6 already, in 18 s: 40 contacts a minute
    new = work.apis.intercom_.add("new@example.com", role="user")
    new["name"] = "New"
    work.clock.now += 3600                              # an hour later, a webhook enrols a new contact
    sync.on_contact(ContactMessage(workspace=WS, topic="contact.user.created", item=new), work.deps)
    found = sync.status(work.deps, "42")
    assert (found["done"], found["total"], found["rate_per_minute"]) == (12, 12, 40.0)
    assert (found["by_webhook"], found["last_progress_at"]) == ({"enrolled": 1}, found["finished_at"])
    assert run_cli(rt, capsys, "sync", "status", "42")[1] == (
        "run 2 (full, users) done: [##############################] 12/12 100% · 40 contacts/min · enrolled 6, "
        "already 6, skipped 0 · by webhook since: +1 enrolled\n")
    assert run_cli(rt, capsys, "sync", "report", "42")[1].splitlines()[0] == (
        "run 2 (full, users) done: enrolled 6, already enrolled 6, skipped 0 · by webhook since: +1 enrolled")


def test_status_keeps_the_run_the_operator_started_in_sight_when_a_catch_up_follows_it(monkeypatch, capsys):
    """Ongoing mode: `bridge sync start` began run 1, the schedule's catch-up run 2 began seconds later.
    `sync status` (text and JSON) and `sync report` show run 2 and, below it, run 1's counts; `--run 1`
    shows run 1 alone."""
    from types import SimpleNamespace

    import chalicelib.cli as cli_module
    from tests.support.cli import run_cli

    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)
    work = world(3, mode="ongoing")
    rt = SimpleNamespace(deps=work.deps)
    sync.start(work.deps, "42")
    drain(work)
    work.clock.now += 2
    [catch] = sync.catch_up(work.deps, WS)
    drain(work)
    assert (catch.number, catch.kind) == (2, "catch-up")
    full = ("run 1 (full, users) done: [##############################] 3/3 100% · enrolled 3, already 0, "
            "skipped 0")
    lines = run_cli(rt, capsys, "sync", "status", "42")[1].splitlines()
    assert lines[0].startswith("run 2 (catch-up, users) done:") and lines[1:] == [f"latest full run: {full}"]
    found = json.loads(run_cli(rt, capsys, "sync", "status", "42", "--json")[1])
    assert (found["run"], found["full_run"]["run"], found["full_run"]["enrolled"]) == (2, 1, 3)
    assert run_cli(rt, capsys, "sync", "report", "42")[1].splitlines()[1] == f"latest full run: {full}"
    assert run_cli(rt, capsys, "sync", "status", "42", "--run", "1")[1] == full + "\n"
    code, _, err = run_cli(rt, capsys, "sync", "status", "42", "--run", "7")
    assert (code, err) == (1, "bridge: campaign 42 has no sync run 7 — `bridge sync status 42` shows its latest\n")


def test_a_404_for_a_user_while_rf_does_not_know_the_campaign_either_marks_nobody_deleted():
    """RF answers 404 for referrers sync enrolled, and for the campaign too (an outage's page, a token of
    another RF account): no one is taken as deleted in RF; the page fails with RF's reason (retried),
    having asked about the campaign once. Once RF knows the campaign again, its 404s are deletions."""
    from chalicelib.errors import Permanent

    work = enrolled_without_link(2)
    rf = work.apis.rf_
    assert work.store.sync.run("42").counts == {"enrolled_no_link": 2}
    gone = [Permanent(f"Referral Factory answered 404: no user {u['id']}", status=404) for u in rf.created]
    rf.get_answers = list(gone)
    sync.start(work.deps, "42")
    rf.campaign_answers = [None, Permanent("Referral Factory answered 404: Not Found", status=404)]   # the
    # first page's checks find the campaign; asked again after the users' 404s, RF does not know it
    checked, page = rf.campaign_calls, list(work.queue.sent)
    with pytest.raises(RetryBatch, match="does not know campaign 42 either"):
        drain(work)
    assert rf.campaign_calls == checked + 2                           # once for the page, not once a user
    entries = work.store.sync.entries("42", list(work.apis.intercom_.contacts)).values()
    assert sorted(e.outcome for e in entries) == ["no_link_yet", "no_link_yet"]
    assert "not_in_rf" not in work.store.sync.run("42").counts

    rf.get_answers = list(gone)                                       # the page's retry: RF knows the campaign
    work.queue.sent.extend(page)
    drain(work)
    assert rf.campaign_calls == checked + 4
    assert work.store.sync.run("42").counts == {"not_in_rf": 2}


def test_the_dry_run_says_not_in_rf_for_a_referrer_without_a_link_whom_rf_no_longer_has_as_the_run_will():
    """A referrer enrolled without a link whom the owner then deleted in RF: the dry run reads RF's people (she
    is not among them), so it says what the run then does — not in RF — not "no referral link yet"."""
    from chalicelib.errors import Permanent

    work = enrolled_without_link()
    rf = work.apis.rf_
    [user] = rf.created
    rf.created.remove(user)                                     # deleted in RF: no longer in its people
    rf.users.pop(str(user["id"]), None)
    dry = sync.dry_run(deps(work), "42")
    rf.get_answers = [Permanent(f"Referral Factory answered 404: no user {user['id']}", status=404)]
    sync.start(deps(work), "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"not_in_rf": 1}
    assert {k: v["count"] for k, v in dry["skipped"].items()} == {"not_in_rf": 1}


@pytest.mark.parametrize("dies_at, counted", [("lookup.first_seen", {"already_enrolled": 1}),
                                               ("sync.add_counts", {})],
                         ids=["after its work, before its mark", "after its mark, before its count"])
def test_a_worker_dying_while_it_marks_a_contact_webhook_never_counts_the_contact_twice(dies_at, counted):
    """The worker that enrolled a notified contact dies before its count is added, and the notification is
    delivered again: before the mark, the redelivery works the contact again, finds it enrolled and counts it
    already enrolled (+1 already); after the mark, it is a repeat and counts nothing (docs/how-it-works.md, Ongoing
    mode)."""
    work, note = after_a_first_run_a_new_contact_notified()
    part, name = dies_at.split(".")
    repository = getattr(work.store, part)
    real = getattr(repository, name)

    def dies(*args):
        setattr(repository, name, real)            # (the worker after it lives)
        raise Killed()
    setattr(repository, name, dies)
    with pytest.raises(Killed):
        sync.on_contact(note, deps(work))
    sync.on_contact(note, deps(work))                                  # delivered again
    assert [u["email"] for u in work.apis.rf_.created].count("new@example.com") == 1
    assert sync.status(deps(work), "42")["by_webhook"] == counted


def test_a_contact_webhook_delivered_twice_at_once_is_counted_once_in_by_webhook_since():
    """Intercom (or SQS, its visibility timeout over) hands the same notification to two workers at once:
    the second reads no mark (the first writes it only once its contact is worked); only the worker whose mark
    is written adds its counts."""
    work, note = after_a_first_run_a_new_contact_notified()
    rf = work.apis.rf_
    real = rf.create_user
    calls = []

    def create_while_the_other_worker_runs(body: dict) -> dict:
        user = real(body)
        if not calls:                                # the second worker runs while the first waits on RF's answer
            calls.append(1)
            sync.on_contact(note, deps(work))
        return user
    rf.create_user = create_while_the_other_worker_runs
    sync.on_contact(note, deps(work))
    assert [u["email"] for u in rf.created].count("new@example.com") == 1   # one RF user (the second found hers)
    assert sync.status(deps(work), "42")["by_webhook"] == {"enrolled": 1}


@pytest.mark.parametrize("query", [lambda user, contact: "p0@example.com", lambda user, contact: contact["id"],
                                   lambda user, contact: str(user["id"])], ids=["email", "contact id", "RF id"])
def test_explain_of_a_referrer_enrolled_by_sync_says_so_not_that_no_join_was_applied(query):
    """`bridge explain` began with "no link: no join of theirs was applied" right above "referral link
    written to …": for a person contact sync enrolled, it says what is true, whichever of their ids is asked
    about (by RF id it said "no link" and had no enrolled_by_sync)."""
    from chalicelib.services.explain import as_text, explain
    work = world(1)
    work.store.connections.register_workspace(WS)
    sync.start(deps(work), "42")
    drain(work)
    [user], [contact] = work.apis.rf_.created, work.apis.intercom_.contacts.values()
    found = explain(work, query(user, contact))
    text = as_text(found)
    assert "no join of theirs" not in text
    assert text.splitlines()[1] == (f"  campaign 42, RF user {user['id']}: enrolled by contact sync (run 1) from "
                                    f"Intercom contact {contact['id']}, not by a join")
    assert found.view()["enrolled_by_sync"] == [{"campaign_id": "42", "rf_user_id": str(user["id"]),
                                                 "contact_id": contact["id"], "run": 1}]
    assert found.view()["trail"] == explain(work, "p0@example.com").view()["trail"]


def test_explain_of_a_skipped_contact_names_its_campaign_not_an_unknown_rf_user():
    """A contact sync skipped has no RF user: its trail line read "42#?  sync: skipped ..."."""
    from chalicelib.services.explain import as_text, explain
    work = world(0)
    work.store.connections.register_workspace(WS)
    bad = work.apis.intercom_.add("not-an-email", role="user")
    bad["name"] = "Bad"
    sync.start(deps(work), "42")
    drain(work)
    [line] = [t for t in as_text(explain(work, bad["id"])).splitlines() if "sync: skipped" in t]
    assert "  42             sync: skipped — skipped by sync run 1: invalid email" in line


def test_a_contact_a_webhook_enrolled_while_the_run_was_running_is_not_enrolled_again_by_the_run(monkeypatch):
    """Ongoing mode: during the operator's first run, Intercom notifies a new contact and the webhook enrols it
    (counted in "by webhook since"). When the run's later page meets that contact, the run counts it already
    enrolled: not enrolled a second time (status would say 4 enrolled + 1 by webhook for 4 people)."""
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    for url in ("https://rf.example/r/x", None):         # RF made the webhook's referrer a link, or none yet
        work = world(3, mode="ongoing")
        if url is None:
            real = work.apis.rf_.create_user

            def without_link(body: dict, real=real) -> dict:
                user = real(body)
                if body["email"] == "new@example.com":
                    user["url"] = None
                return dict(user)
            work.apis.rf_.create_user = without_link
        sync.start(deps(work), "42")
        new = work.apis.intercom_.add("new@example.com", role="user")
        new["name"] = "New"
        sync.on_contact(ContactMessage(workspace=WS, topic="contact.user.created", item=new), deps(work))
        drain(work)
        assert len(work.apis.rf_.created) == 4
        found = sync.status(deps(work), "42")
        assert (found["enrolled"], found["already_enrolled"], found["done"]) == (3, 1, 4), url
        assert sum(found["by_webhook"].values()) == 1


def test_explain_does_not_say_contact_sync_enrolled_a_referrer_it_found_enrolled_by_their_join():
    """Sync's ledger says already_enrolled for a contact whose own join made them the bridge's referrer (sync
    adopted them, RF created nothing): explain must not list them as enrolled by contact sync."""
    from dataclasses import replace

    from chalicelib.services.explain import as_text, explain
    work = world(1)
    work.store.connections.register_workspace(WS)
    sync.start(deps(work), "42")
    drain(work)
    [contact] = work.apis.intercom_.contacts.values()
    entry = work.store.sync.entries("42", [contact["id"]])[contact["id"]]
    # as sync records an adopted join
    assert work.store.sync.rewrite("42", [replace(entry, outcome="already_enrolled")]) == {contact["id"]}
    found = explain(work, "p0@example.com")
    assert "enrolled_by_sync" not in found.view()
    assert "enrolled by contact sync" not in as_text(found)


def test_explain_still_says_contact_sync_enrolled_a_referrer_whose_join_webhook_came_after():
    """RF's join webhook fires for the users sync creates too: the join links the referrer sync enrolled.
    explain still says sync enrolled them (a join of their own that came after does not undo that)."""
    from chalicelib.messages import JoinMessage
    from chalicelib.services.explain import explain
    from tests.unit.scenario import run
    work = world(1)
    work.store.connections.register_workspace(WS)
    sync.start(deps(work), "42")
    drain(work)
    [user], [contact] = work.apis.rf_.created, work.apis.intercom_.contacts.values()
    person = {"id": str(user["id"]), "campaign_id": "42", "email": "p0@example.com", "type": "referrer"}
    assert run(work, JoinMessage(campaign_id="42", rf_user_id=str(user["id"]), person=person).wire())["done"] == 1
    found = explain(work, "p0@example.com")
    assert found.people and found.view()["enrolled_by_sync"] == [
        {"campaign_id": "42", "rf_user_id": str(user["id"]), "contact_id": contact["id"], "run": 1}]


@pytest.mark.parametrize("url", [None, "https://rf.example/r/rita"])
def test_a_referrer_her_own_join_enrolled_is_already_enrolled_on_the_retry_of_a_page_that_failed(url):
    """Rita's own join enrolled her; the page's first try adopts her (RF has no link for her yet, or Intercom
    refuses the write of her link) and fails on another contact (RF busy). The retry still counts her as
    already enrolled, not as enrolled by the run: the run enrolled one person, not two."""
    from chalicelib.domain.history import Entry
    from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
    from chalicelib.errors import Permanent, Transient

    work = world(2)
    rita, _ = work.apis.intercom_.contacts.values()
    claim = work.store.links.claim(PersonRef("42", "7"), WS)          # her join linked her contact
    work.store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="referrer", email=rita["email"],
                                              contact_id=rita["id"], contact_role="user"),
                            [Entry("join_received", "received")])
    work.apis.rf_.users["7"] = {"id": "7", "url": url}
    work.apis.rf_.create_answers = [Transient("Referral Factory answered 503")]       # the other contact's create
    if url:
        work.apis.intercom_.fail["update"] = Permanent("Intercom answered 400: attribute is read-only", status=400)
    sync.start(deps(work), "42")
    page = list(work.queue.sent)
    with pytest.raises(RetryBatch):
        drain(work)
    assert work.store.sync.entries("42", [rita["id"]])[rita["id"]].outcome == \
        ("writeback_failed" if url else "no_link_yet")
    work.queue.sent.extend(page)                                      # the page's retry
    drain(work)
    assert len(work.apis.rf_.created) == 1
    found = sync.status(deps(work), "42")
    assert (found["status"], found["enrolled"], found["already_enrolled"], found["skipped"]) == ("done", 1, 1, 0)
    assert found["still_without_link"] == (0 if url else 1)
    assert work.apis.intercom_.contacts[rita["id"]]["custom_attributes"].get("referral_link") == url


def test_backfill_says_the_referrers_contact_sync_enrolled_and_not_linked_yet_were_enrolled_by_it_and_joins_them():
    """Sync's referrers whose join (RF sends one for the users sync creates) has not reached the bridge have
    no link of a join, only their ledger entry: backfill does not call them "not in the bridge", and sends
    their join (as RF's webhook would: it links them), as for the person the bridge never saw."""
    from types import SimpleNamespace

    from chalicelib.services.backfill import backfill

    work = world(2)
    sync.start(deps(work), "42")
    drain(work)
    rf = work.apis.rf_
    rf.created.append({"id": 6000, "email": "zoe@example.com", "campaign_id": 42, "type": "person_referring"})
    rt = SimpleNamespace(store=work.store, queue=work.queue, clock=work.clock, rf=lambda: rf)
    dry = backfill(rt, "42")
    assert dry.view()["outcomes"] == {"enrolled by contact sync, not linked yet: would be joined": 2,
                                      "not in the bridge: would be joined": 1}
    assert not work.queue.sent
    done = backfill(rt, "42", apply=True)
    assert done.queued == 3 and sorted(m["rf_user_id"] for m in work.queue.sent) == \
        sorted([*(str(u["id"]) for u in rf.created[:2]), "6000"])


REFUSED = "Intercom answered 400: attribute is read-only"


def refused_write_back(n: int = 1) -> FakeWork:
    """`n` contacts enrolled by run 1, whose link Intercom refused to write."""
    work = world(n)
    work.apis.intercom_.fail["update"] = Permanent(REFUSED, status=400)
    sync.start(work.deps, "42")
    drain(work)
    return work


@pytest.mark.parametrize("case", ["writeback_failed", "no_link_yet", "adopted"])
def test_a_full_run_that_still_cannot_write_a_referrers_link_saw_them_in_the_source(case):
    """Run 1 enrolled her (or adopted her: her own join enrolled her) without writing her link (Intercom refused
    it, or RF had none yet); full run 2 finds her in the source and still cannot write it. `sync report` does not
    list her as having left the source since run 2 ("A full run marks who it saw"): she is still there, and run 2
    counted her (already enrolled)."""
    from chalicelib.domain.history import Entry
    from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef

    if case == "writeback_failed":
        work = refused_write_back()
    elif case == "adopted":
        work = world(1)
        [rita] = work.apis.intercom_.contacts.values()
        claim = work.store.links.claim(PersonRef("42", "7"), WS)          # her join linked her contact
        work.store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="referrer", email=rita["email"],
                                                  contact_id=rita["id"], contact_role="user"),
                                [Entry("join_received", "received")])
        work.apis.rf_.users["7"] = {"id": "7", "url": "https://rf.example/r/rita"}
        work.apis.intercom_.fail["update"] = Permanent(REFUSED, status=400)
        sync.start(work.deps, "42")
        drain(work)
        assert work.store.sync.run("42").counts == {"writeback_failed": 1}
    else:
        work = enrolled_without_link()
    if case != "no_link_yet":
        work.apis.intercom_.fail["update"] = Permanent(REFUSED, status=400)
    sync.start(work.deps, "42")
    drain(work)
    found = sync.report(work.deps, "42")
    assert found["run"]["already_enrolled"] == 1 and found["run"]["status"] == "done"
    assert found["left"]["count"] == 0, found["left"]


def test_doctor_points_to_sync_report_for_referrers_whose_link_intercom_refused():
    """A refused write-back counts as enrolled ("enrolled 1 (1 link not written)"), not as a skip, yet it repeats
    each run until the operator fixes it: doctor flags it, and names where Intercom's reason is read."""
    from chalicelib.domain.settings import parse_settings
    from chalicelib.services.doctor import Report, _sync

    work = refused_write_back()
    report = Report("42")
    _sync(SimpleNamespace(store=work.store, clock=work.clock), report, parse_settings(sync_settings()))
    [finding] = report.findings
    assert not finding.ok and "enrolled 1 (1 link not written)" in finding.what
    assert "bridge sync report 42" in " ".join((finding.what, finding.why, finding.fix)), finding


def test_explain_names_the_run_that_enrolled_a_referrer_not_the_later_run_that_wrote_her_link():
    """Run 1 enrolled her (its status says "enrolled 1 (1 link not written)", her history "enrolled by sync run 1")
    and run 2 wrote the link Intercom had refused (a link written later, not an enrolment). `explain` must still
    say run 1 enrolled her, not run 2."""
    from chalicelib.services.explain import as_text, explain

    work = refused_write_back()
    work.store.connections.register_workspace("ws")
    sync.start(work.deps, "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"linked": 1}
    [user], [contact] = work.apis.rf_.created, work.apis.intercom_.contacts.values()
    found = explain(work, "p0@example.com")
    assert found.view()["enrolled_by_sync"] == [{"campaign_id": "42", "rf_user_id": str(user["id"]),
                                                 "contact_id": contact["id"], "run": 1}]
    assert "enrolled by contact sync (run 1)" in as_text(found)


def test_the_retry_of_a_page_that_wrote_a_late_link_still_counts_it_as_a_link_written_later():
    """Run 2 writes the link Intercom refused in run 1, and its page fails on another contact (RF busy). The
    retry counts her link as written later (as the first try did), not as already enrolled: the ledger still
    names run 1 as the run that enrolled her."""
    from chalicelib.errors import Transient

    work = refused_write_back()
    work.apis.intercom_.add("new@example.com", role="user")["name"] = "New"
    work.apis.rf_.create_answers = [Transient("Referral Factory answered 503")]       # the new contact's create
    sync.start(work.deps, "42")
    page = list(work.queue.sent)
    with pytest.raises(RetryBatch):
        drain(work)
    work.queue.sent.extend(page)                                      # the page's retry
    drain(work)
    assert work.store.sync.run("42").counts == {"linked": 1, "enrolled": 1}


def test_a_contact_skipped_before_whose_create_answer_is_lost_is_found_on_the_retry_not_skipped():
    """Run 1 skipped her (no name); the operator fills it in. Run 2 creates her in RF, but the answer is lost and the
    page fails. Its retry finds her in RF (the ledger's `intend` wrote `creating` over the skip), not skipped as
    "already in the campaign" — RF's 422 taken for someone else's user: enrolled in RF, her link never written."""
    work = world(0)
    her = work.apis.intercom_.add("her@example.com", role="user")
    sync.start(work.deps, "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"missing_field": 1}
    her["name"] = "Her"
    page = a_run_whose_create_answer_is_lost(work)
    work.queue.sent.append(page)
    drain(work)
    assert len(work.apis.rf_.created) == 1
    assert work.store.sync.run("42").counts == {"enrolled": 1}
    assert her["custom_attributes"].get("referral_link") == work.apis.rf_.created[0]["url"]


def test_status_watch_piped_prints_one_json_line_a_refresh_until_the_run_ends(monkeypatch, capsys):
    """`sync status --watch` piped (not a terminal): it watched nothing, printing one object and exiting
    while the run went on. Now one JSON object a line each refresh, the last once the run has ended."""
    from tests.support.cli import run_cli
    work = world(3)
    sync.start(deps(work), "42")
    refreshes: list[float] = []

    def sleep(seconds: float) -> None:          # the 2 s between refreshes: the worker works the run meanwhile
        refreshes.append(seconds)
        drain(work)
    monkeypatch.setattr("chalicelib.cli._pause", sleep)     # (not time.sleep: other tests' threads call it)
    code, out, _ = run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42", "--watch")
    # (the worker the test runs between refreshes logs to stdout too: its lines are not the CLI's)
    shown = [s for s in map(json.loads, out.splitlines()) if "level" not in s and "_aws" not in s]
    assert code == 0 and refreshes == [2]
    assert [s["status"] for s in shown] == ["running", "done"] and shown[-1]["done"] == 3


THROTTLED = "DynamoDB throttled the request"


def throttled() -> Exception:
    """A failure the queue retries that is no vendor's outage (an outage is waited out: test_sync_outage.py)."""
    from chalicelib.errors import Transient
    return Transient(THROTTLED)


def a_run_whose_second_page_fails(monkeypatch, *answers: Exception):
    """A run of 3 pages (2 contacts each) whose second page's search answers `answers` in turn, then works."""
    from chalicelib import cli as cli_module
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    work = world(5)
    intercom, left = work.apis.intercom_, list(answers)
    real = intercom.search_page

    def flaky(query, starting_after=None, per_page=150):
        if starting_after and left:
            raise left.pop(0)
        return real(query, starting_after, per_page)
    intercom.search_page = flaky
    sync.start(work.deps, "42")
    return work, SimpleNamespace(deps=work.deps)


def retry_page(work: FakeWork) -> None:
    """The queue gives the failed page back (its record was not deleted) a minute later."""
    work.clock.now += 60
    with pytest.raises(RetryBatch):
        drain(work)


def test_status_shows_why_a_page_the_queue_retries_fails_until_it_succeeds(monkeypatch, capsys):
    """An operator watching a sync whose page failed saw counts not moving and no reason: `sync status` (text,
    JSON) and `sync report` now say which page fails, why, how often and when last; the page working clears it.
    (A vendor's outage is waited out instead: test_sync_outage.py.)"""
    from tests.support.cli import run_cli
    busy = throttled()
    work, rt = a_run_whose_second_page_fails(monkeypatch, busy, busy)
    with pytest.raises(RetryBatch):
        drain(work)                          # page 1 works, page 2 fails: its record comes back later
    assert (work.store.sync.run("42").page, work.queue.dead) == (1, [])
    work.queue.sent.append(json.dumps({"kind": "sync.page", "campaign_id": "42", "run": 1, "page": 1, "cursor": "2"}))
    retry_page(work)
    assert run_cli(rt, capsys, "sync", "status", "42")[1] == (
        "run 1 (full, users) running: [############..................] 2/5 40% · 2 contacts/min · ETA 1m30s · enrolled "
        "2, already 0, skipped 0\n  retrying page 2: DynamoDB throttled the request (2 tries, last 14:14:20)\n")
    found = json.loads(run_cli(rt, capsys, "sync", "status", "42", "--json")[1])
    assert found["page_error"] == {"page": 2, "state": "retrying", "reason": THROTTLED, "tries": 2,
                                   "at": "2026-09-21T14:14:20.000Z"}
    assert "  retrying page 2: DynamoDB throttled the request (2 tries, last 14:14:20)" in \
        run_cli(rt, capsys, "sync", "report", "42")[1].splitlines()

    work.queue.sent.append(json.dumps({"kind": "sync.page", "campaign_id": "42", "run": 1, "page": 1, "cursor": "2"}))
    drain(work)                              # the page works now: the run goes on and ends, its error gone
    assert sync.status(work.deps, "42")["page_error"] is None
    assert run_cli(rt, capsys, "sync", "status", "42")[1] == (
        "run 1 (full, users) done: [##############################] 5/5 100% · 5 contacts/min · enrolled 5, already 0, "
        "skipped 0\n")


def test_status_says_a_page_refused_for_good_waits_in_the_dead_letter_queue_without_the_email_it_quotes(
        monkeypatch, capsys):
    from tests.support.cli import run_cli
    refused = Permanent("Intercom answered 400: invalid query value ann.lee@example.com", status=400)
    work, rt = a_run_whose_second_page_fails(monkeypatch, refused)
    drain(work)                              # page 2 is dead-lettered at once: retrying would not help
    assert len(work.queue.dead) == 1
    out = run_cli(rt, capsys, "sync", "status", "42")[1]
    assert out.splitlines()[1] == (
        "  page 2 failed: Intercom answered 400: invalid query value a***@example.com (1 try, last 14:13:20) — it "
        "waits in the dead-letter queue: fix the cause, then `bridge dlq replay --campaign 42` resumes the run "
        "where it stopped")
    assert "ann.lee" not in json.dumps(sync.status(work.deps, "42")) + out


PAGE_2 = {"kind": "sync.page", "campaign_id": "42", "run": 1, "page": 1, "cursor": "2"}


def test_a_page_the_worker_gave_up_on_is_not_shown_as_retrying(monkeypatch, capsys):
    """Scenario: page 2 of a sync run fails on every try (throttled; a vendor's outage is waited out instead).
    On its last try (BRIDGE_MAX_ATTEMPTS) the worker gives up and sends it to the dead-letter queue ("gave up after 3
    tries: ..."): nothing retries it any more, and the run stays "running" at page 2 until someone
    replays the letter.
    Expected: `sync status` says the page failed and waits in the dead-letter queue (as it does for a page
    refused for good: "page 2 failed: ... — it waits in the dead-letter queue: ... `bridge dlq replay`"),
    not "retrying page 2", which tells the operator to wait for a retry that never comes. Before, the page
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


def test_a_watched_status_shows_the_page_error_on_its_line_and_wipes_it_once_the_page_works(monkeypatch, capsys):
    import re

    from tests.support.cli import run_cli
    work, rt = a_run_whose_second_page_fails(monkeypatch, throttled())
    monkeypatch.setenv("COLUMNS", "200")      # a terminal wider than the line (a narrower one: tests/cli/test_progress)
    with pytest.raises(RetryBatch):
        drain(work)

    def sleep(seconds: float) -> None:        # the queue gives the page back between two refreshes: it works
        work.queue.sent.append(json.dumps({"kind": "sync.page", "campaign_id": "42", "run": 1, "page": 1,
                                           "cursor": "2"}))
        drain(work)
    monkeypatch.setattr("chalicelib.cli._pause", sleep)
    out = run_cli(rt, capsys, "sync", "status", "42", "--watch")[1]
    out = re.sub(r'\{"(level|_aws)".*\n', "", out)   # the worker's log and metrics lines: not the CLI's
    watched = ("\rrun 1 (full, users) running: [############..................] 2/5 40% · enrolled 2, already 0, "
               "skipped 0 · retrying page 2: DynamoDB throttled the request (1 try, last 14:13:20)")
    assert out == watched + "\r" + " " * (len(watched) - 1) + "\r" + (
        "run 1 (full, users) done: [##############################] 5/5 100% · enrolled 5, already 0, skipped 0\n")


ANSWER_503 = "Referral Factory answered 503: Service Unavailable"
ANSWER_429 = ("Referral Factory answered 429: every call waits until 2026-09-21T14:20:00.000Z (the next slot is "
              "400.0s away; this worker may wait 20.0s more)")


@pytest.mark.parametrize("refusal, answer, line", [
    (lambda: Transient(ANSWER_503, status=503).unavailable("Referral Factory"), ANSWER_503,
     "  page 1 is waiting for Referral Factory (unavailable since 2026-09-21T14:13:20.000Z; the bridge waits up to "
     "24 h, BRIDGE_OUTAGE_HOURS): 2 contact(s) of the page met Referral Factory's outage: Referral Factory… (last 14:13:20)"),
    (lambda: Deferred(ANSWER_429, retry_after=400, status=429), ANSWER_429,
     f"  page 1 waits: {ANSWER_429} (last 14:13:20)"),
], ids=["outage", "rate-limit pause"])
def test_a_waiting_page_s_json_keeps_the_vendor_s_answer_and_its_line_says_the_wait_once(monkeypatch, capsys,
                                                                                         refusal, answer, line):
    """An operator read "...5 contact(s) of the page met Referral Factory's outage: Referral Factory a..." under
    --json (RF's answer cut off), and "page 1 waits: sync page waits: ..." on the text line. --json keeps the whole
    reason; the line says the wait once, cut (when it must be) after a whole word."""
    from chalicelib import cli as cli_module
    from tests.support.cli import run_cli
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    work = world(2)
    work.apis.rf_.create_answers = [refusal(), refusal()]
    sync.start(work.deps, "42")
    drain(work, limit=1)
    shown = json.loads(run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42", "--json")[1])
    assert shown["page_error"]["reason"].endswith(answer)
    assert run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1].splitlines()[1] == line


def test_a_page_a_worker_holds_again_after_its_wait_is_said_worked_not_waiting(monkeypatch, capsys):
    """`sync status` said "page 1 waits" for minutes while a worker was creating its users: a page that waited (a
    rate-limit pause) and that a worker holds again is worked, the wait it had said apart."""
    from chalicelib import cli as cli_module
    from tests.support.cli import run_cli
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    work = world(2)
    work.apis.rf_.create_answers = [Deferred(ANSWER_429, retry_after=400, status=429)] * 2
    sync.start(work.deps, "42")
    drain(work, limit=1)
    work.clock.now += 400
    assert work.store.sync.claim_page("42", 1, 0, "another worker", work.clock.now)[1]      # it works the page now
    assert sync.status(work.deps, "42")["page_error"]["state"] == "working"
    assert run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1].splitlines()[1] == (
        f"  page 1 is worked again; it waited: {ANSWER_429} (last 14:13:20)")


def test_a_page_s_tries_count_its_own_failures_only_and_a_wait_uses_up_none():
    """What `sync status` says of a page: its failed tries (not an earlier page's, nor its waits for a rate
    budget), on one line of at most PAGE_ERROR_KEPT characters."""
    from chalicelib.domain.sync import PAGE_ERROR_KEPT, describe_page_error, page_error
    first = page_error(None, 2, "Intercom answered 503: busy", "retrying", 10.0)
    again = page_error(first, 2, "Intercom answered 502:\n  Bad Gateway", "retrying", 70.0)
    waits = page_error(again, 2, "Referral Factory answered 429: slow down", "waiting", 90.0)
    other = page_error(waits, 3, "x" * 5000, "retrying", 95.0)
    assert [e.tries for e in (first, again, waits, other)] == [1, 2, 2, 1]
    assert again.reason == "Intercom answered 502: Bad Gateway" and len(other.reason) == PAGE_ERROR_KEPT
    assert describe_page_error({"page": 3, "state": "waiting", "reason": waits.reason, "tries": 2,
                                "at": "2026-09-21T14:13:20.000Z"}, "42") == \
        "page 3 waits: Referral Factory answered 429: slow down (2 tries, last 14:13:20)"


@pytest.mark.parametrize("change, said", [
    (lambda store: None, "campaign 42 has never been synced — run `bridge sync start 42`"),
    (lambda store: store.put("42", COUNTS_ONLY, WS),
     "campaign 42 runs no contact sync: its sync block only keeps referral counts "
     "(docs/how-it-works.md, Referral counts) — add fields and referral_link_attribute to sync contacts"),
    (lambda store: store.delete("42"),
     "campaign 42 has no settings — apply them first, with a `sync` block (`bridge settings apply <file>`)"),
    (lambda store: store.put("42", settings(rule=None), WS),
     "campaign 42's settings have no sync block — add one and apply them"),
], ids=["never synced", "settings keep only counts", "settings deleted", "sync block removed"])
def test_status_and_report_of_a_campaign_never_synced_say_why_in_one_line_and_exit_1(capsys, change, said):
    """No run to show: the service says why (services/sync.shown_runs), the CLI prints it as one line."""
    from tests.support.cli import run_cli
    work = world(2)
    change(work.store.settings)
    with pytest.raises(sync.SyncStopped) as stopped:
        sync.shown_runs(work.deps, "42", sync.status(work.deps, "42"))
    assert stopped.value.problems == [said]
    for command in ("status", "report"):
        for json_flag in ((), ("--json",)):
            assert run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", command, "42", *json_flag) == (
                1, "", f"bridge: {said}\n")


def page_two_again(work: FakeWork, tries: int) -> list:
    """The queue gives the failed page 2 back a minute later, for its `tries`-th receive (the worker's last try at
    config.max_attempts: a failure then dead-letters it)."""
    work.clock.now += 60
    body = json.dumps({"kind": "sync.page", "campaign_id": "42", "run": 1, "page": 1, "cursor": "2"})
    raw = {"messageId": f"again{tries}", "body": body, "receiptHandle": f"again{tries}",
           "attributes": {"ApproximateReceiveCount": str(tries)}}
    return handle_batch([raw], work)


def doctor_says(work: FakeWork, **block) -> tuple[str, dict]:
    """`bridge doctor 42`'s sync finding (of the settings with `block` in their sync block now): its text lines,
    and its --json finding."""
    from chalicelib.domain.settings import parse_settings
    from chalicelib.services.doctor import Report, _sync, as_text
    report = Report("42")
    _sync(SimpleNamespace(store=work.store, clock=work.clock), report, parse_settings(sync_settings(**block)))
    [finding] = report.view()["findings"]
    return as_text(report), finding


def test_doctor_says_what_the_sync_block_writes_now_not_that_the_last_run_wrote_there():
    """After settings naming another attribute were applied (offline: unchecked), doctor said run 1 "writes back
    ... to" the new attribute, which run 1 never wrote to."""
    work = world(2)
    sync.start(deps(work), "42")
    drain(work)
    assert doctor_says(work, referral_link_attribute="custom_attributes.referral_count")[0].splitlines()[1] == (
        "  ok  [sync] sync run 1 (full, users) done: enrolled 2, already 0, skipped 0; the sync block now writes back "
        "each referrer's referral link to custom_attributes.referral_count")


def test_doctor_warns_while_a_sync_page_is_retried_and_says_the_run_stalled_once_it_is_dead_lettered(monkeypatch):
    """Walkthrough F6.a: doctor said `ok [sync] sync run 5 (full, users) running: nothing yet` while the run's
    page was retried, and still once it was dead-lettered (docs/operating.md: doctor says a sync "stalled on a page
    in the dead-letter queue"). Now a warning naming the page and why while the queue retries it, and a problem
    (exit 1) naming the failed page, its reason and `bridge dlq replay` once it waits in the dead-letter queue."""
    busy = throttled()
    work, _ = a_run_whose_second_page_fails(monkeypatch, busy, busy)
    with pytest.raises(RetryBatch):
        drain(work)                          # page 1 works, page 2 fails: the queue retries it
    text, finding = doctor_says(work)
    assert text.splitlines() == [
        "campaign 42: no problems found, 1 warning(s)",
        "  warn [sync] sync run 1 (full, users) running: enrolled 2, already 0, skipped 0; retrying page 2: DynamoDB "
        "throttled the request (1 try, last 14:13:20)",
        "        why: the queue retries the page by itself; after its last try it waits in the dead-letter queue and "
        "the run stops there",
        "        fix: if it keeps failing, fix the cause; `bridge sync status 42 --watch` follows it"]
    assert (finding["ok"], finding["warn"]) == (True, True)

    page_two_again(work, work.config.max_attempts)            # its last try fails too: dead-lettered
    assert len(work.queue.dead) == 1
    text, finding = doctor_says(work)
    assert text.splitlines() == [
        "campaign 42: 1 problem(s)",
        "  BAD [sync] sync run 1 (full, users) stalled: page 2 failed: DynamoDB throttled the request "
        "(2 tries, last 14:14:20); enrolled 2, already 0, skipped 0 so far",
        "        why: the page waits in the dead-letter queue: the run does not go on by itself",
        "        fix: fix the cause, then `bridge dlq replay --campaign 42` resumes the run where it stopped"]
    assert (finding["ok"], finding["warn"]) == (False, False)


def test_a_watch_ends_with_exit_1_and_the_page_s_error_once_the_page_waits_in_the_dead_letter_queue(
        monkeypatch, capsys):
    """Walkthrough F6.b: `sync status 42 --watch` printed ~300 JSON lines in 10 minutes until killed, once the run's
    page was dead-lettered (the run stays `running`): a script waiting for the end hung. Now the watch ends there,
    as it does when the run ends, with the page's error line (text) or its last object (JSON lines), exit 1."""
    import re

    from tests.support.cli import run_cli
    busy = throttled()
    monkeypatch.setenv("COLUMNS", "200")      # a terminal wider than the line (a narrower one: tests/cli/test_progress)
    for flags in ((), ("--json",)):
        work, rt = a_run_whose_second_page_fails(monkeypatch, busy, busy)
        with pytest.raises(RetryBatch):
            drain(work)                      # page 2 fails: the queue retries it

        def sleep(seconds: float, work: FakeWork = work) -> None:     # meanwhile its last try fails: dead-lettered
            if work.queue.dead:
                raise AssertionError("the watch went on with the page in the dead-letter queue")
            page_two_again(work, work.config.max_attempts)
        monkeypatch.setattr("chalicelib.cli._pause", sleep)
        code, out, _ = run_cli(rt, capsys, "sync", "status", "42", "--watch", *flags)
        out = re.sub(r'\{"(level|_aws)".*\n', "", out)     # the worker's log and metrics lines: not the CLI's
        assert code == 1 and len(work.queue.dead) == 1
        if flags:
            assert [(s["status"], s["page_error"]["state"]) for s in map(json.loads, out.splitlines())] == \
                [("running", "retrying"), ("running", "failed")]
            continue
        watched = ("\rrun 1 (full, users) running: [############..................] 2/5 40% · enrolled 2, already 0, "
                   "skipped 0 · retrying page 2: DynamoDB throttled the request (1 try, last 14:13:20)")
        assert out == watched + "\r" + " " * len(watched[1:]) + "\r" + (
            "run 1 (full, users) running: [############..................] 2/5 40% · 2 contacts/min · "
            "enrolled 2, already 0, skipped 0\n"
            "  page 2 failed: DynamoDB throttled the request (2 tries, last 14:14:20) — it waits in the "
            "dead-letter queue: fix the cause, then `bridge dlq replay --campaign 42` resumes the run where it "
            "stopped\n")


@pytest.mark.parametrize("flags", [(), ("--json",)], ids=["text", "json lines"])
def test_a_watch_of_a_run_its_checks_stopped_ends_with_exit_1_and_the_reason_last(monkeypatch, capsys, flags):
    """`sync status --watch` ended with exit 0 when the worker's checks stopped the run (its attribute deleted
    after `sync start`): a script took a run that enrolled nobody for a success. A stopped run is a failure, as a
    page waiting in the dead-letter queue is: exit 1, its last line (or object) saying why."""
    from chalicelib import cli as cli_module
    from tests.support.cli import run_cli
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    work = world(3)
    sync.start(work.deps, "42")
    del work.apis.intercom_.attributes[LINK]      # deleted in Intercom before the worker's own checks

    def sleep(seconds: float) -> None:
        if work.store.sync.run("42").status != "running":
            raise AssertionError("the watch went on after the run stopped")
        drain(work)
    monkeypatch.setattr("chalicelib.cli._pause", sleep)
    code, out, _ = run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42", "--watch", *flags)
    lines = [line for line in out.splitlines() if not line.startswith(('{"level"', '{"_aws"'))]
    assert code == 1 and work.store.sync.run("42").status == "stopped"
    last = json.loads(lines[-1])["message"] if flags else lines[-1]
    assert "referral_link_attribute" in last and "does not exist" in last, last


def test_a_dead_lettered_page_a_worker_holds_again_after_a_replay_says_retrying_not_failed(monkeypatch, capsys):
    """Once `bridge dlq replay` sent the page back and a worker works it, `sync status` no longer says it waits in
    the dead-letter queue (nor does doctor, nor does a watch end there): it is retried."""
    from tests.support.cli import run_cli
    work, rt = a_run_whose_second_page_fails(monkeypatch, Permanent("Intercom answered 400: bad query", status=400))
    drain(work)                              # dead-lettered at once
    assert sync.status(work.deps, "42")["page_error"]["state"] == "failed"
    assert not doctor_says(work)[1]["ok"]
    work.store.sync.claim_page("42", 1, 1, "replayed", work.clock())      # the replayed page, being worked
    assert run_cli(rt, capsys, "sync", "status", "42")[1].splitlines()[1] == \
        "  retrying page 2: Intercom answered 400: bad query (1 try, last 14:13:20)"
    assert doctor_says(work)[1]["warn"]


def test_the_rate_counts_the_time_the_run_worked_not_the_time_its_page_waited_in_the_dead_letter_queue(
        monkeypatch, capsys):
    """Walkthrough F6.d: after a page sat 10 minutes in the dead-letter queue and was replayed, `sync status` said
    `1 contacts/min`: over the run's whole life, the wait included (and "contacts" for one). Now the rate is over the
    time the run worked, the wait said apart; while the page waits, the rate stays as it was and no ETA is given."""
    from tests.support.cli import run_cli
    work, rt = a_run_whose_second_page_fails(monkeypatch, Permanent("Intercom answered 400: bad query", status=400))
    work.clock.now += 30
    drain(work)                              # page 1 took 30 s; page 2 is refused: dead-lettered
    work.clock.now += 600                    # 10 minutes later
    assert run_cli(rt, capsys, "sync", "status", "42")[1].splitlines()[0] == (
        "run 1 (full, users) running: [############..................] 2/5 40% · 4 contacts/min · paused 10m00s in "
        "the dead-letter queue · enrolled 2, already 0, skipped 0")
    [letter] = work.queue.dead
    work.queue.sent.append(letter["body"])                      # `bridge dlq replay` sends it back
    drain(work)
    assert run_cli(rt, capsys, "sync", "status", "42")[1] == (
        "run 1 (full, users) done: [##############################] 5/5 100% · 10 contacts/min · paused 10m00s in the "
        "dead-letter queue · enrolled 5, already 0, skipped 0\n")
    found = json.loads(run_cli(rt, capsys, "sync", "status", "42", "--json")[1])
    assert (found["rate_per_minute"], found["paused_seconds"]) == (10.0, 600)

    work = world(1)                          # one contact in a minute: "1 contact/min"
    sync.start(work.deps, "42")
    work.clock.now += 60
    drain(work)
    assert " · 1 contact/min · " in run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1]


def test_a_replayed_page_whose_try_is_interrupted_counts_its_dead_letter_wait_once(monkeypatch, capsys):
    """A try that ends in no Exception (an interrupt) records no error: the page's dead-letter error stays, and the
    next try measures the wait from it again. The interrupted try had already added that wait to the run's paused
    time, so `sync status` said the page waited twice as long as it did (and the rate, over too little working
    time, went missing). The wait is counted once, as after a worker killed mid-try."""
    from tests.support.cli import run_cli
    work, rt = a_run_whose_second_page_fails(monkeypatch, Permanent("Intercom answered 400: bad query", status=400),
                                             KeyboardInterrupt())
    work.clock.now += 30
    drain(work)                              # page 1 took 30 s; page 2 is refused: dead-lettered
    work.clock.now += 600                    # 10 minutes in the dead-letter queue, then `bridge dlq replay`
    [letter] = work.queue.dead
    work.queue.sent.append(letter["body"])
    with pytest.raises(KeyboardInterrupt):
        drain(work)
    assert " · paused 10m00s in the dead-letter queue · " in run_cli(rt, capsys, "sync", "status", "42")[1]
    work.clock.now += 60                     # the queue gives the interrupted record back
    work.queue.sent.append(letter["body"])
    drain(work)
    assert run_cli(rt, capsys, "sync", "status", "42")[1] == (
        "run 1 (full, users) done: [##############################] 5/5 100% · 10 contacts/min · paused 11m00s in the "
        "dead-letter queue · enrolled 5, already 0, skipped 0\n")


@pytest.mark.parametrize("refused", [(), ("B",), ("A", "B")], ids=["at-once", "B-retried", "both-retried"])
def test_a_contact_sharing_another_contacts_email_is_skipped_not_given_her_rf_user_when_its_page_is_retried(
        monkeypatch, refused):
    """Two contacts of the source share one email. A throttled run retried their page: A's create made the RF user,
    then B's create got RF's 422 (email taken), and B's `creating` entry of a try before had the user looked up by
    email and taken as her own interrupted create — B enrolled to A's RF user (a qualification of B's would reward
    it), enrolled counted twice for one create. Now B is the duplicate-email skip, as when no try failed. B-retried:
    RF's 429 to B's create (A's made the user); both-retried: both creates failed, then A's and B's in one try."""
    from chalicelib.errors import Deferred, Transient

    monkeypatch.setattr(sync, "THREADS", 1)              # A's create goes first, as the page lists them
    work = world(0)
    a, b = (work.apis.intercom_.add("dup@example.com", role="user") for _ in "AB")
    a["name"], b["name"] = "A", "B"
    real, failed = work.apis.rf_.create_user, set()

    def fails_once(body):
        name = body["first_name"]
        if name in refused and name not in failed:
            failed.add(name)
            raise Deferred("Referral Factory answered 429: Too Many Requests", retry_after=1, status=429) \
                if len(refused) == 1 else Transient("Referral Factory answered 502: Bad Gateway")
        return real(body)
    work.apis.rf_.create_user = fails_once
    sync.start(work.deps, "42")
    page = work.queue.sent[0]
    while True:
        with pytest.raises(RetryBatch) if refused == ("A", "B") and len(failed) < 2 else nullcontext():
            drain(work)
        if work.store.sync.run("42").status != "running":
            break
        work.queue.sent.append(page)                     # the queue gives the page back
    [user] = work.apis.rf_.created
    assert work.store.sync.run("42").counts == {"enrolled": 1, "already_in_campaign": 1}
    entries = work.store.sync.entries("42", [str(a["id"]), str(b["id"])])
    mine, theirs = entries[str(a["id"])], entries[str(b["id"])]
    assert (mine.outcome, mine.rf_user_id) == ("enrolled", str(user["id"]))
    assert (theirs.outcome, theirs.rf_user_id) == ("already_in_campaign", None)
    assert theirs.reason == "already in the campaign (Referral Factory has this email)"
    assert "referral_link" not in b["custom_attributes"]
    assert not any("interrupted" in str(r) for r in work.store.history.entries(sync.PersonRef("42", str(user["id"]))))


def test_the_dry_run_keeps_an_earlier_runs_skip_as_already_in_the_campaign_as_the_run_does():
    """Run 1 skipped a contact whose email RF had (someone who joined by themselves); that person was deleted in RF
    since. The run keeps the skip (it asks RF nothing for the contact): the dry run said it would enrol her."""
    work = world(0)
    work.apis.intercom_.add("taken@example.com", role="user")["name"] = "Taken"
    work.apis.rf_.created.append({"email": "taken@example.com", "campaign_id": 42, "id": 1, "url": "u"})
    sync.start(deps(work), "42")
    drain(work)
    work.apis.rf_.created.clear()                                       # deleted in RF
    dry = sync.dry_run(deps(work), "42")
    sync.start(deps(work), "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"already_in_campaign": 1}
    assert (dry["would_enrol"], dry["skipped"]["already_in_campaign"]["count"]) == (0, 1)


def test_the_dry_run_says_a_contact_whose_create_answer_was_lost_would_be_enrolled_as_the_run_then_does():
    """A page's try created her RF user, its answer lost; the page waits for its retry. The dry run said she was
    already in the campaign (RF has her email), where the run finds the user that try made and enrols her."""
    work = world(1)
    rf = work.apis.rf_
    page = a_run_whose_create_answer_is_lost(work)
    dry = sync.dry_run(deps(work), "42")
    work.queue.sent.append(page)
    drain(work)
    assert work.store.sync.run("42").counts == {"enrolled": 1} and len(rf.created) == 1
    assert (dry["would_enrol"], dry["skipped"]) == (1, {})


def test_the_dry_run_says_a_contact_whose_email_another_contact_of_the_source_has_is_a_duplicate_of_it():
    """The dry run said "already in the campaign (Referral Factory has this email)" of a contact whose email only
    another contact of the source had (RF had none of them): now it names that contact, the one enrolled with it.
    A real match in RF keeps RF's words."""
    work = world(2)
    p0 = next(c for c in work.apis.intercom_.contacts.values() if c["email"] == "p0@example.com")
    dup = work.apis.intercom_.add("P0@Example.COM", role="user")
    dup["name"] = "Dup"
    rf_has = work.apis.intercom_.add("rf@example.com", role="user")
    rf_has["name"] = "Known"
    work.apis.rf_.created.append({"email": "rf@example.com", "campaign_id": 42, "id": 1, "url": "https://rf/r/1"})
    dry = sync.dry_run(work.deps, "42")
    assert dry["would_enrol"] == 2
    skipped = dry["skipped"]["already_in_campaign"]
    assert skipped["count"] == 2
    details = {e["contact_id"]: e["detail"] for e in skipped["examples"]}
    assert details == {
        str(dup["id"]): f"already in the campaign: contact {p0['id']} of the source has the same email and "
                        "would be enrolled with it (the first of them; Referral Factory takes an email once)",
        str(rf_has["id"]): "already in the campaign (Referral Factory has this email)"}


@pytest.mark.parametrize("killed_between", [False, True])
def test_a_contact_whose_email_changed_after_a_lost_create_answer_is_enrolled_with_the_user_rf_made_not_a_second(
        killed_between):
    """A page's try creates her RF user, the answer is lost; before the page's retry her email changes in Intercom.
    The retry asked RF to create a user with the new email: RF made a second referrer for one contact (two links,
    one never written anywhere). It looks up the user the try before may have made, by the email it had then, and
    enrols her with it — also after a try in between that died once it had written its own `creating` entry."""
    work = world(1)
    [her] = work.apis.intercom_.contacts.values()
    rf = work.apis.rf_
    page = a_run_whose_create_answer_is_lost(work)
    her["email"] = "Her.New@example.com"
    if killed_between:                       # the next try dies after its `creating` entry, before asking RF
        listed = rf.users_page

        def killed_once(*args, **kw):
            rf.users_page = listed
            raise Killed()
        rf.users_page = killed_once
        with pytest.raises(Killed):
            sync.on_page(sync.SyncPageMessage.model_validate(json.loads(page) if isinstance(page, str) else page),
                         deps(work))
    work.queue.sent.append(page)
    drain(work)
    [user] = rf.created
    entry = work.store.sync.entries("42", [her["id"]])[her["id"]]
    assert (entry.outcome, entry.rf_user_id, entry.email) == ("enrolled", str(user["id"]), "her.new@example.com")
    assert her["custom_attributes"]["referral_link"] == user["url"]
    assert work.store.sync.run("42").counts == {"enrolled": 1}


def test_a_contact_a_run_enrols_while_her_webhook_is_worked_is_counted_once():
    """A run's page creates a contact's RF user while her `contact.user.created` notification reaches another
    worker: it reads the page's `creating` entry, and RF refuses its create (taken). It took that user for one a try
    of its own before had made, and counted her enrolled too: `sync status` said one person enrolled twice (by the
    run, and by webhook). Whichever records her first, the other counts her already enrolled."""
    work, note = after_a_first_run_a_new_contact_notified()
    rf = work.apis.rf_
    real = rf.create_user

    def the_webhook_meanwhile(body):
        user = real(body)
        if body["email"] == "new@example.com":
            rf.create_user = real
            sync.on_contact(note, deps(work))         # the other worker, while this page's answer comes back
        return user
    rf.create_user = the_webhook_meanwhile
    sync.start(deps(work), "42")
    drain(work)
    [user] = [u for u in rf.created if u["email"] == "new@example.com"]
    from chalicelib.domain.sync import run_counts
    shown = sync.status(deps(work), "42")
    assert shown["enrolled"] + run_counts(shown["by_webhook"])["enrolled"] == 1, shown
    [entry] = work.store.sync.entries("42", [str(note.item.id)]).values()
    assert (entry.outcome, entry.rf_user_id) == ("enrolled", str(user["id"]))


@pytest.mark.parametrize("meanwhile, creates", [("create", 2), ("create, the last place", 2), ("intend", 1)],
                         ids=["while its create waited", "while its create waited, taking the campaign's last place",
                              "between its ledger read and its creating entry"])
def test_a_contact_another_worker_enrolled_meanwhile_stays_enrolled_not_skipped(meanwhile, creates):
    """Intercom (or SQS) hands one contact's notification to two workers at once: both read no ledger entry and
    both mean to create. The other worker creates the RF user, writes the link back and records the contact
    enrolled while this one's create waits (the shared budget paces it: RF then answers it 422), or before this
    one has even written its `creating` entry. Either way the user is the other worker's, not someone already in
    the campaign: the ledger keeps the contact enrolled with that user (a skip over it lost the user, so the
    referrer's count never learnt their contact, nor `sync report` whether they left), and a worker that had not
    asked RF yet does not ask it at all. When the other's user was the campaign's last place, RF answers this
    create that the campaign is full: the same."""
    work, note = after_a_first_run_a_new_contact_notified()
    rf = work.apis.rf_
    target, name = (rf, "create_user") if meanwhile.startswith("create") else (work.store.sync, "intend")
    real = getattr(target, name)
    held = []

    def the_other_worker_first(*args):
        if not held:                                 # this worker waits here; the other runs it all
            held.append(1)
            sync.on_contact(note, deps(work))
            if meanwhile.endswith("last place"):
                rf.create_answers = [Refused(422, "The campaign has reached its user limit.",
                                             {"campaign_id": "The campaign has reached its user limit."})]
        return real(*args)
    setattr(target, name, the_other_worker_first)
    sync.on_contact(note, deps(work))
    [user] = [u for u in rf.created if u["email"] == "new@example.com"]
    [entry] = work.store.sync.entries("42", [str(note.item.id)]).values()
    assert (entry.outcome, entry.rf_user_id) == ("enrolled", str(user["id"]))
    assert sync.status(deps(work), "42")["by_webhook"] == {"enrolled": 1}
    assert rf.calls.count("create_user new@example.com") == creates


def test_discarding_the_dead_letter_of_a_page_that_can_never_succeed_stops_its_run_and_the_next_start_works(
        monkeypatch, capsys):
    """A page Intercom refuses for good (a cursor it answers 400 to) can never succeed: replaying its dead letter
    failed again, and discarding it left the run running, so `sync start` refused for ever ("still running … dlq
    replay") and ongoing mode's catch-ups stopped. The discard of a `sync.page` letter now stops its run, saying why
    (`sync status`), and the next start begins a new run."""
    from chalicelib.config import Config
    from tests.support.cli import run_cli
    work, _ = a_run_whose_second_page_fails(monkeypatch, Permanent("Intercom answered 400: invalid starting_after",
                                                                   status=400))
    drain(work)                              # page 2 goes to the dead-letter queue
    work.clock.now += 3600
    with pytest.raises(sync.SyncStopped, match="still running"):
        sync.start(work.deps, "42")
    rt = SimpleNamespace(config=Config.from_env({"BRIDGE_DLQ_URL": "https://sqs/dlq"}), queue=work.queue,
                         clock=work.clock, store=work.store, deps=work.deps)
    code, out, _ = run_cli(rt, capsys, "dlq", "discard", "--campaign", "42", "--yes")
    # (a sync page names no person: no person's history says it was discarded; its run's status does)
    assert code == 0 and out == ("1 dead letter(s) discarded (they named no person); sync run 1 of campaign "
                                 "42 stopped at the discarded page (`bridge sync start 42` starts a new run)\n")
    assert run_cli(rt, capsys, "sync", "status", "42")[1].splitlines() == [
        "run 1 (full, users) stopped: [############..................] 2/5 40% · paused 60m00s in the dead-letter "
        "queue · enrolled 2, already 0, skipped 0",
        "  stopped: its page 2 could not be worked and its dead letter was discarded (it failed: Intercom answered "
        "400: invalid starting_after) — `bridge sync start 42` starts a new run"]
    assert sync.start(work.deps, "42").number == 2


@pytest.mark.parametrize("answer", [
    Deferred("Intercom answered 429: Too Many Requests", retry_after=10, status=429),
    Transient("Intercom did not answer: read timed out").unavailable("Intercom")], ids=["429", "outage"])
def test_a_link_write_intercom_put_off_after_rf_created_the_user_is_retried_without_asking_rf_again(answer):
    """RF created the user, then Intercom answered 429 (or was out) on the link write: the contact stayed `creating`,
    and the retry paid one more RF create (422, already taken) and a walk of the campaign's people to find the user.
    The ledger now records the RF user before the failure goes back to the queue: the retry only writes the link."""
    work = world(1)
    rf, intercom = work.apis.rf_, work.apis.intercom_
    intercom.fail["update"] = answer
    sync.start(work.deps, "42")
    page = work.queue.sent[0]
    assert drain(work) == [{"done": 0, "retry": 0, "dead": 0, "waiting": 1}]       # the page waits
    assert rf.calls == ["create_user p0@example.com"]
    work.queue.sent.append(page)                                  # the queue gives the page back
    drain(work)
    assert rf.calls == ["create_user p0@example.com"] and len(rf.created) == 1        # RF not asked again
    [contact] = intercom.contacts.values()
    assert contact["custom_attributes"]["referral_link"] == rf.created[0]["url"]
    assert work.store.sync.run("42").counts == {"enrolled": 1}
    assert sync.report(work.deps, "42")["link_not_written"]["count"] == 0
    from chalicelib.domain.link import PersonRef
    assert [e.outcome for e in work.store.history.entries(PersonRef("42", str(rf.created[0]["id"])))] == \
        ["enrolled", "link_written"]


def test_report_after_the_campaign_moved_workspace_says_whom_it_enrolled_from_the_old_one_not_that_they_left(
        monkeypatch, capsys):
    """After the campaign was applied naming another workspace, the next full run reads the new workspace's contacts:
    `sync report` listed every referrer enrolled from the old one as having left the source. Their entries record
    their workspace: they are said enrolled from it (the campaign moved), on one line, apart from who left."""
    from chalicelib import cli as cli_module
    from tests.support.cli import run_cli
    work = world(2)
    sync.start(work.deps, "42")
    drain(work)                                              # p0, p1 enrolled from ws
    work.store.settings.put("42", {**sync_settings(), "workspace": "ws2"}, "ws2")
    intercom = work.apis.intercom_
    intercom.contacts.clear()                                # ws2's contacts: one, who then leaves its source
    gone = intercom.add("q0@example.com", role="user")
    gone["name"] = "Q0"
    sync.start(work.deps, "42")
    drain(work)
    intercom.contacts.clear()
    sync.start(work.deps, "42")
    drain(work)
    found = sync.report(work.deps, "42")
    assert (found["left"]["count"], [e["contact_id"] for e in found["left"]["examples"]]) == (1, [gone["id"]])
    assert found["moved"] == {"count": 2, "workspaces": ["ws"], "moved_to": "ws2", "note": (
        "in Referral Factory still: enrolled from a workspace the campaign has moved from, their contacts are not read "
        "by its runs now")}
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    lines = run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "report", "42")[1].splitlines()
    assert lines[-3:] == [
        "left the source since full run 3: 1 (in Referral Factory still (the bridge removes nobody): no longer in the "
        "source)",
        f"    - contact {gone['id']} q***@example.com (RF user 5002)",
        "enrolled from workspace ws (the campaign moved to ws2): 2 (in Referral Factory still: enrolled from a "
        "workspace the campaign has moved from, their contacts are not read by its runs now)"]


def test_a_run_whose_first_page_was_sent_again_counts_its_rate_and_eta_from_the_resend(monkeypatch, capsys):
    """The first page of a run sat unsent for half an hour (the start's send failed) until `sync start` sent it again:
    `sync status` counted that half hour as the run's working time, so its rate was a fraction of the real one and its
    ETA hours too long. The run's time now counts from the resend."""
    from chalicelib import cli as cli_module
    from tests.support.cli import run_cli
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    work = world(5)
    next_send_fails(work, RuntimeError("SQS: ServiceUnavailable"))
    with pytest.raises(RuntimeError):
        sync.start(work.deps, "42")
    work.clock.now += 30 * 60                                  # unsent for half an hour
    assert sync.start(work.deps, "42").number == 1             # sent again
    work.clock.now += 30
    drain(work, limit=1)                                       # its first page: 2 contacts in 30 s
    assert run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1].splitlines()[0] == (
        "run 1 (full, users) running: [############..................] 2/5 40% · 4 contacts/min · ETA 0m45s · "
        "enrolled 2, already 0, skipped 0")


def test_a_contact_intercom_merged_into_another_hands_its_ledger_entry_to_the_survivor():
    """A lead contact sync enrolled was merged by Intercom into a user with her email: the next full run skipped the
    user as already in the campaign (RF has the email), her link was never written to the user, and `sync report`
    listed the lead as having left the source. Intercom's merge notification now hands the lead's entry (her RF
    user) to the survivor: the run counts her already enrolled and writes her link there, asking RF nothing."""
    from chalicelib.domain.link import PersonRef
    work = world(0, source="all")
    intercom, rf = work.apis.intercom_, work.apis.rf_
    lead = intercom.add("ann@example.com", role="lead")
    lead["name"] = "Ann"
    sync.start(work.deps, "42")
    drain(work)
    user = intercom.add("ann@example.com", role="user", referral_link="https://old.example/r/ann")   # kept by the merge
    user["name"] = "Ann"
    intercom.merge(lead["id"], user["id"])
    sync.on_contact(ContactMessage(workspace=WS, topic="contact.merged", notification_id="n1",
                                   item={**user, "merged_from": {"id": lead["id"]}}), work.deps)
    calls = len(rf.calls)
    sync.start(work.deps, "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"already_enrolled": 1} and len(rf.calls) == calls
    assert user["custom_attributes"]["referral_link"] == rf.created[0]["url"]
    found = sync.report(work.deps, "42")
    assert (found["left"]["count"], found["enrolled_in_all"]) == (0, 1)
    assert [e.outcome for e in work.store.history.entries(PersonRef("42", str(rf.created[0]["id"])))] == \
        ["enrolled", "contact_merged"]


def test_a_webhook_whose_link_write_intercom_put_off_counts_the_contact_enrolled_when_delivered_again():
    """Ongoing mode: RF created the notified contact's user, then Intercom answered 429 on the link write; the
    notification is delivered again. The ledger kept her RF user, so the redelivery only writes the link — and it
    enrolled her, so `sync status`'s by webhook says +1 enrolled, as when the first try had gone through (not
    "+1 linked": the late link of someone enrolled earlier)."""
    work, note = after_a_first_run_a_new_contact_notified()
    work.apis.intercom_.fail["update"] = Deferred("Intercom answered 429: Too Many Requests", retry_after=10,
                                                  status=429)
    with pytest.raises(Deferred):
        sync.on_contact(note, deps(work))
    sync.on_contact(note, deps(work))                                  # delivered again
    assert [u["email"] for u in work.apis.rf_.created].count("new@example.com") == 1
    assert sync.status(deps(work), "42")["by_webhook"] == {"enrolled": 1}


def test_a_contact_skipped_as_taken_keeps_the_enrolment_another_worker_records_right_after_the_check():
    """RF refuses a page's create of the notified contact (her webhook's worker created her user), the page asks the
    ledger whether another worker enrolled her (not yet), and that worker records her enrolled right then (or a
    merge hands her a merged contact's entry). The page's skip was written over it: her RF user was lost from the
    ledger, and later runs skipped her as already in the campaign, her link never written by them. The skip is
    written only where the ledger names no RF user: she stays enrolled, counted already enrolled by the run."""
    from chalicelib.ports.store import LedgerEntry
    work, note = after_a_first_run_a_new_contact_notified()
    cid, store = str(note.item.id), work.store.sync
    work.apis.rf_.created.append({"email": "new@example.com", "id": 99, "url": "u", "campaign_id": "42"})
    real = store.entries

    def then_the_other_worker_records_her(campaign_id, ids, consistent=False):
        found = real(campaign_id, ids, consistent=consistent)
        if ids == [cid]:                                    # the page's question, after RF's refusal
            store.entries = real                            # type: ignore[method-assign]
            store.intend("42", [LedgerEntry(cid, "enrolled", email="new@example.com", rf_user_id="99", url="u")])
        return found
    store.entries = then_the_other_worker_records_her       # type: ignore[method-assign]
    sync.start(work.deps, "42")
    drain(work)
    assert store.entries("42", [cid])[cid].rf_user_id == "99"
    assert store.run("42").counts == {"already_enrolled": 2}


def test_a_run_whose_first_page_was_never_sent_and_whose_source_changed_since_is_not_done_under_the_old_one():
    """`bridge sync start` wrote run 1 (users), its first page never sent; the operator then applied settings reading
    all contacts, and ran `sync start` again, which sent run 1's first page. That page read all contacts from the
    start while the run said users (its later pages stop as the source changed; a run of one page ended done
    under the old source, as if users were synced). The first page stops it too, saying to start again."""
    work = world(2)
    next_send_fails(work, RuntimeError("SQS: ServiceUnavailable"))
    with pytest.raises(RuntimeError):
        sync.start(deps(work), "42")
    work.store.settings.put("42", sync_settings(source="all"), WS)
    work.clock.now += 31 * 60
    assert sync.start(deps(work), "42").number == 1                 # its first page sent again
    drain(work)
    first = work.store.sync.run("42", 1)
    assert (first.status, first.message.split(":")[0]) == ("stopped", "sync.source"), first
    assert work.apis.rf_.created == []
    second = sync.start(deps(work), "42")
    drain(work)
    assert (second.number, second.source, work.store.sync.run("42").status) == (2, "all contacts", "done")


@pytest.mark.parametrize("answer, said", [
    (lambda: Transient("Intercom answered 503: Service Unavailable", status=503).unavailable("Intercom"),
     "page 2 is waiting for Intercom (unavailable since 2026-09-21T14:13:20.000Z; the bridge waits up to 24 h, "
     "BRIDGE_OUTAGE_HOURS): Intercom answered 503: Service Unavailable (last 14:13:20)"),
    (throttled, "retrying page 2: DynamoDB throttled the request (1 try, last 14:13:20)"),
    (lambda: Permanent("Intercom answered 400: invalid starting_after", status=400),
     "page 2 failed: Intercom answered 400: invalid starting_after (1 try, last 14:13:20) — it waits in the "
     "dead-letter queue: fix the cause, then `bridge dlq replay --campaign 42` resumes the run where it stopped"),
], ids=["outage", "retrying", "dead-lettered"])
def test_a_second_start_while_the_run_s_page_fails_says_what_the_page_waits_for(monkeypatch, answer, said):
    """An operator ran `bridge sync start 42` twice during an Intercom outage: the second was refused with "if it no
    longer moves, its page failed and waits in the dead-letter queue: `bridge dlq list`, then `bridge dlq replay`",
    but the page waited out the outage and the dead-letter queue was empty. The refusal now says what the run's page
    does, as `sync status` does (waiting for a vendor, retrying, or failed and in the dead-letter queue)."""
    work, _ = a_run_whose_second_page_fails(monkeypatch, answer())
    try:
        drain(work)                            # page 1 works; page 2 fails its first try (or waits)
    except RetryBatch:
        pass
    why = start_refused(work)
    assert why.startswith("sync run 1 of campaign 42 is still running (last progress at ")
    assert said in why, why
    assert ("dead-letter queue" in why) == ("failed" in said)
    assert why.endswith("`bridge dlq discard --reason <its reason> --yes` ends the run" if "failed" in said
                        else "see `bridge sync status 42`")


@pytest.mark.parametrize("dry", [False, True], ids=["start", "dry run"])
def test_a_start_rf_refuses_the_token_for_says_to_connect_rf_and_start_again_not_to_replay_dead_letters(dry):
    """`bridge sync start 42` with an RF token RF refuses said "... the RF token is invalid: run `bridge rf connect`,
    then replay the dead-letter queue" (the worker's advice for the work that failed): the start queued nothing, so
    the dead-letter queue held nothing to replay. It now says to start again once RF is connected."""
    work = world(1)
    work.apis.rf_.campaign_answers = [Permanent(
        "Referral Factory answered 401: Unauthenticated. — the RF token is invalid: run `bridge rf connect`, then "
        "replay the dead-letter queue", status=401, message="Unauthenticated.")]
    with pytest.raises(sync.SyncStopped) as stopped:
        sync.dry_run(work.deps, "42") if dry else sync.start(work.deps, "42")
    assert stopped.value.problems == [
        "Referral Factory answered 401: Unauthenticated. — Referral Factory refuses the RF token the bridge has stored "
        "(revoked or replaced in RF): `bridge rf connect` (it asks for the new token), then "
        f"`bridge sync start 42{' --dry-run' if dry else ''}` again"]
    assert work.queue.sent == [] and work.store.sync.run("42") is None


def test_a_start_intercom_refuses_the_workspace_s_token_for_says_how_to_reconnect_and_start_again():
    """`bridge sync start 42` while Intercom refused the workspace's token said "reconnect the workspace, then `bridge
    dlq replay --reason ...`": the start queued nothing to replay. It now names the reconnect that fits whose token
    it is, and the start to run again."""
    from chalicelib.errors import TokenRefused
    work = world(1)

    def refused():
        raise TokenRefused("Intercom answered 401 unauthorized: Access Token Invalid — Intercom refuses workspace "
                           f"{WS}'s token (invalid or revoked): reconnect the workspace, then `bridge dlq replay "
                           "--reason ...`", WS, "private", "Intercom answered 401 unauthorized: Access Token Invalid",
                           status=401)
    work.apis.intercom_.data_attributes = refused
    why = start_refused(work)
    assert why == (f"Intercom refuses workspace {WS}'s token (Intercom answered 401 unauthorized: Access Token "
                   f"Invalid) — reconnect it: `bridge workspace connect {WS}` (it asks for the new token), then "
                   "`bridge sync start 42` again")
    assert work.queue.sent == [] and work.store.sync.run("42") is None


def test_a_link_intercom_refused_the_workspace_s_token_for_says_the_reconnect_the_page_waits_for(monkeypatch):
    """A run whose write-back Intercom refused with 401 (the workspace's token revoked): `sync report` (and the
    contact's history) said "reconnect the workspace, then `bridge dlq replay --reason ...`", but no dead letter was
    made. The page now waits for the reconnect (test_sync_outage), the contact enrolled meanwhile kept with her RF
    user: her entry names the reconnect that fits and that the sync then writes the link."""
    from chalicelib.errors import TokenRefused, refused_reason
    monkeypatch.setattr(sync, "THREADS", 1)          # the contacts in turn: the second is not tried after the 401
    answer = "Intercom answered 401 unauthorized: Access Token Invalid"
    work = world(2)

    def refused(contact_id, body):
        raise TokenRefused(refused_reason(answer, WS), WS, "private", answer, status=401)
    work.apis.intercom_.update_contact = refused
    sync.start(work.deps, "42")
    drain(work)
    found = sync.report(work.deps, "42")
    assert found["link_not_written"]["count"] == 1 and work.queue.dead == [] and len(work.apis.rf_.created) == 1
    said = (f"write-back failed: {answer} — Intercom refuses workspace {WS}'s token (invalid or revoked): reconnect "
            f"it: `bridge workspace connect {WS}` (it asks for the new token); the sync waits for it, then writes the "
            "link")
    assert [ex["detail"] for ex in found["link_not_written"]["examples"]] == [said]
    assert found["run"]["page_error"]["state"] == "waiting"
    from chalicelib.services.explain import as_text, explain
    text = as_text(explain(work, "p0@example.com"))
    assert said.split(" — ", 1)[1] in text, text


@pytest.mark.parametrize("reason, fix", [
    ("Intercom answered 401 unauthorized: Access Token Invalid — Intercom refuses workspace ws's token (invalid or "
     "revoked): reconnect the workspace, then `bridge dlq replay --reason \"Intercom refuses workspace ws's token\"`",
     "Intercom refuses workspace ws's token: `bridge workspace connect ws` (it asks for the new token) or, for the "
     "public app's token, a new OAuth link for the workspace's admin, who authorizes the app again: `bridge "
     "workspace oauth-link --workspace ws`, then `bridge dlq replay --reason \"Intercom refuses workspace ws's "
     "token\"` resumes the run where it stopped"),
    ("gave up after 3 tries: 2 contact(s) of the page failed, first: Referral Factory answered 401: Unauthenticated. "
     "— the RF token is invalid: run `bridge rf connect`, then replay the dead-letter queue",
     "Referral Factory refuses the RF token the bridge has stored (revoked or replaced in RF): `bridge rf connect` (it "
     "asks for the new token), then `bridge dlq replay --reason 'Referral Factory answered 401'` brings back the work "
     "that failed meanwhile (it is valid: do not discard it); the replay resumes the run where it stopped"),
], ids=["intercom", "rf"])
def test_a_page_dead_lettered_for_a_refused_token_says_the_reconnect_and_the_replay_by_its_reason_once(reason, fix):
    """`sync status` of a page dead-lettered after Intercom refused the workspace's token said "... reconnect the
    workspace, then `bridge dlq replay --reason "Intercom refuses…" — ...: fix the cause, then `bridge dlq replay`
    resumes the run": the reason's own replay cut mid-quote, then a replay of every letter (the other workspaces'
    and campaigns' too). The refusal's line says the answer, then the one fix doctor gives: the reconnect, then the
    replay by the letters' reason (RF's: `bridge rf connect`, then the replay by RF's 401)."""
    from chalicelib.domain.sync import describe_page_error
    error = {"page": 1, "state": "failed", "reason": reason, "tries": 1, "at": "2026-09-21T14:13:20.000Z"}
    answer = reason.split(" — ")[0]
    assert describe_page_error(error, "42") == \
        f"page 1 failed: {answer} (1 try, last 14:13:20) — it waits in the dead-letter queue: {fix}"
    assert describe_page_error(error, "42", advice=False) == f"page 1 failed: {answer} (1 try, last 14:13:20)"


def rf_refused(message: str = "Unauthenticated.") -> Permanent:
    """RF's refusal of the stored token, as its client raises it (adapters/referral_factory.py)."""
    from chalicelib.domain.advice import rf_token_reason
    return Permanent(rf_token_reason(f"Referral Factory answered 401: {message}"), status=401, message=message)


def test_a_page_rf_refused_the_token_for_every_contact_of_is_dead_lettered_at_once_with_the_fix(monkeypatch, capsys):
    """RF refusing the bridge's token for every contact of a page: the page was retried, 3 tries (about 24 minutes),
    before its dead letter, while a refused token is not transient (it fails until `bridge rf connect`). The page
    goes to the dead-letter queue at its first try, its reason the answer then the reconnect and the replay by RF's
    refusal; `sync status`, `sync report` and doctor say it failed with that fix (not a discard, not "fix the
    cause")."""
    from tests.support.cli import run_cli
    from chalicelib import cli as cli_module
    from chalicelib.domain.advice import rf_token_fix
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    monkeypatch.setattr(sync, "THREADS", 1)           # the contacts in turn: the second is not tried after the 401
    work = world(2)
    work.apis.rf_.create_answers = [rf_refused(), rf_refused()]
    sync.start(work.deps, "42")
    drain(work)                                                  # no RetryBatch: nothing comes back to be retried
    answer = "Referral Factory answered 401: Unauthenticated."
    failed = "1 contact(s) of the page failed, its 1 other(s) not tried (they share the token)"
    assert [(d["reason"], d["attempts"]) for d in work.queue.dead] == [
        (f"{failed}: {answer} — {rf_token_fix()}", 1)]
    line = (f"page 1 failed: {failed}: {answer} (1 try, last 14:13:20) — it waits in the "
            f"dead-letter queue: {rf_token_fix()}; the replay resumes the run where it stopped")
    assert run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1].splitlines()[1] == f"  {line}"
    assert f"  {line}" in run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "report", "42")[1].splitlines()
    text, finding = doctor_says(work)
    assert (finding["ok"], finding["what"], finding["fix"]) == (
        False, f"sync run 1 (full, users) stalled: page 1 failed: {failed}: {answer} (1 try, "
               "last 14:13:20); nothing yet so far", f"{rf_token_fix()}; the replay resumes the run where it stopped")


def test_a_page_retried_after_rf_refused_the_token_says_to_connect_rf_not_to_replay_letters_not_made_yet(monkeypatch,
                                                                                                        capsys):
    """RF refusing the bridge's token for a contact of a page while another met a transient failure: the page is
    retried (its tries), and `sync status` said "retrying page 1: ... run `bridge rf connect`, then replay the
    dead-letter queue" while the queue held no letter of it. It says to connect RF, and that the page's next try
    then goes on."""
    from tests.support.cli import run_cli
    from chalicelib import cli as cli_module
    monkeypatch.setattr(cli_module, "_text", lambda args: not args.json)          # a terminal
    monkeypatch.setattr(sync, "THREADS", 1)      # the contacts in turn: the 401 second (after it, none is tried)
    work = world(2)
    work.apis.rf_.create_answers = [Transient("Referral Factory POST /users: connection reset"), rf_refused()]
    sync.start(work.deps, "42")
    with pytest.raises(RetryBatch):
        drain(work)
    assert work.queue.dead == []
    assert run_cli(SimpleNamespace(deps=work.deps), capsys, "sync", "status", "42")[1].splitlines()[1] == (
        "  retrying page 1: 2 contact(s) of the page failed, among them: Referral Factory answered 401: "
        "Unauthenticated. "
        "(1 try, last 14:13:20) — Referral Factory refuses the RF token the bridge has stored (revoked or replaced "
        "in RF): `bridge rf connect` (it asks for the new token); the page's next try then goes on")


@pytest.mark.parametrize("threads", [1, sync.THREADS])
def test_a_page_rf_refuses_the_token_for_asks_rf_for_no_other_contact_after_the_refusal(monkeypatch, threads):
    """A page of 150 contacts whose first create RF refused with its 401 went on asking RF for every other contact:
    up to 150 refused calls, each spending the shared RF budget (RF blocks an IP for repeated excess), for one
    token they all share. After the first refusal no contact of the page is tried: only those already in flight
    beside it (at most THREADS) call RF. The page is dead-lettered at once, as a page RF refused every contact of,
    saying how many were not tried."""
    from chalicelib.domain.advice import rf_token_fix
    from chalicelib.domain.sync import PER_PAGE
    monkeypatch.setattr(sync, "THREADS", threads)
    work = world(PER_PAGE)
    work.apis.rf_.create_answers = [rf_refused() for _ in range(PER_PAGE)]
    sync.start(work.deps, "42")
    drain(work)                                                  # no RetryBatch: straight to the dead-letter queue
    asked = sum(call.startswith("create_user ") for call in work.apis.rf_.calls)
    assert 1 <= asked <= threads, asked                           # (those in flight when RF refused the first)
    assert [(d["reason"], d["attempts"]) for d in work.queue.dead] == [
        (f"{asked} contact(s) of the page failed, its {PER_PAGE - asked} other(s) not tried (they share the token): "
         f"Referral Factory answered 401: Unauthenticated. — {rf_token_fix()}", 1)]
    assert sync.status(work.deps, "42")["page_error"]["state"] == "failed"


def test_a_second_start_while_the_page_is_dead_lettered_for_a_refused_token_does_not_offer_its_discard(monkeypatch):
    """`bridge sync start 42` while the run's page waits in the dead-letter queue after RF refused the token said the
    fix (`bridge rf connect`, then the replay: "it is valid: do not discard it"), then "a page that can never
    succeed: `bridge dlq discard ...` ends the run": the page succeeds once the token is replaced. Only the fix."""
    work, rt = a_run_whose_second_page_fails(monkeypatch, Permanent(
        "Referral Factory answered 401: Unauthenticated. — the RF token is invalid: run `bridge rf connect`, then "
        "replay the dead-letter queue", status=401, message="Unauthenticated."))
    drain(work)
    assert len(work.queue.dead) == 1 and sync.status(work.deps, "42")["page_error"]["state"] == "failed"
    with pytest.raises(sync.SyncStopped) as stopped:
        sync.start(work.deps, "42")
    said = str(stopped.value)
    assert "bridge rf connect" in said and "dlq discard" not in said, said
    assert said.endswith("the replay resumes the run where it stopped"), said


def test_a_run_the_cli_started_and_a_worker_finished_at_once_never_shows_its_start_after_its_finish():
    """`sync start` stamped the run's start by the CLI's estimate of AWS's time, which may run up to half its span
    (~0.4 s in a walk) ahead of the workers' clocks (AWS's): a worker finishing the run at once wrote a finish before
    the start, and `sync status` showed them so. The start is stamped no later than AWS's time may be
    (AwsClock.earliest), as `dlq replay`'s note is."""
    from dataclasses import replace
    from email.utils import formatdate

    from chalicelib.adapters.aws_clock import AwsClock
    from tests.fakes import FakeClock
    work = world(2)
    work.clock.now = true = int(work.clock.now) + 60.1       # AWS's time, early in its second
    cli = AwsClock(FakeClock(now=true + 5.0))                # the operator's computer, 5 s ahead
    sent = cli.local()
    cli.answered(sent, sent + 0.1, formatdate(int(true), usegmt=True))
    assert cli() - true > 0.3                                # its estimate: ahead, as in a walk
    sync.start(replace(work.deps, clock=cli), "42")
    work.clock.now = true + 0.1                              # a worker takes the page at once and finishes the run
    drain(work)
    run = work.store.sync.run("42")
    assert (run.status, run.done) == ("done", 2)
    assert run.started_at <= run.finished_at, (run.started_at, run.finished_at)
    shown = sync.status(replace(work.deps, clock=cli), "42")
    assert shown["started_at"] <= shown["finished_at"], shown
