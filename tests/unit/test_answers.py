"""Issue 10's use cases on the store's twin and fakes (fast): what the edge keeps of a refusal, the
container's throttle on "heard", explain's identity closure and masking, backfill's classification
and idempotence, reading dead letters."""
from __future__ import annotations

import json
import re
from typing import Optional

import pytest

from chalicelib.adapters.memory import MemoryStore
from chalicelib.config import Config
from chalicelib.domain.history import Entry
from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from chalicelib.domain.people import email_hash, of_campaign
from chalicelib.domain.qualification import QState
from chalicelib.ports import PeoplePage, ReceivedLetter
from chalicelib.ports.edge import UNKNOWN, RefusalSample
from chalicelib.runtime import Runtime
from chalicelib.services import dead_letters
from chalicelib.services.backfill import BackfillError, backfill
from chalicelib.observability import mask_emails as masked
from chalicelib.services.explain import as_text, explain
from chalicelib.services.ingest import receive_intercom, receive_rf_join
from tests.fakes import FakeClock, FakeEdge, FakeQueue, MemorySecrets, people_page, refused

WS = "ws1"


# --- the edge ---------------------------------------------------------------------------------------
def test_a_join_refused_for_its_secret_keeps_the_person_it_names_as_digests_only():
    """Anyone can send a body naming anyone: without the secret, the edge keeps the campaign (its
    counter) and digests `explain` and `forget` match, never the RF id or the email, masked or hashed."""
    edge = FakeEdge()
    raw = json.dumps({"id": 7, "campaign_id": 42, "email": " Ann@Example.com "}).encode()
    reply = receive_rf_join({"X-Bridge-Secret": "guess"}, raw, edge)
    assert reply.status == 401
    [(campaign, workspace, sample)] = edge.refusals
    assert (campaign, workspace, sample.reason, sample.campaign_id) == ("42", None, "unauthorized", "42")
    assert (sample.rf_user_id, sample.email_hash, sample.email_masked) == (None, None, None)
    assert (sample.rf_user_digest, sample.email_digest) == (edge.digest("rf_user", "7"),
                                                            edge.digest("email", "ann@example.com"))
    assert not {"ann", "Ann", "example", "guess"} & set(re.findall(r"[A-Za-z]+", repr(sample))) and edge.heard == []


def test_a_join_refused_after_its_secret_checked_keeps_its_person_and_digested_email_never_the_secret():
    """The email as the log's keyed digest, as an unauthenticated body's: never its bare sha256, which a list of
    addresses (or any other data set keyed by hashed emails) reverses without knowing the table."""
    edge = FakeEdge()
    raw = json.dumps({"id": 7, "campaign_id": 999, "email": " Ann@Example.com "}).encode()
    assert receive_rf_join({"X-Bridge-Secret": "s3cret"}, raw, edge).status == 404
    [(campaign, workspace, sample)] = edge.refusals
    assert (campaign, workspace, sample.reason, sample.rf_user_id) == ("999", None, "unknown_campaign", "7")
    assert sample.email_digest == edge.digest("email", "ann@example.com") and sample.email_masked == "a***@example.com"
    assert (sample.rf_user_digest, sample.email_hash) == (None, None) and "s3cret" not in repr(sample)
    assert email_hash("ann@example.com") not in repr(sample)


def test_a_body_too_large_or_of_another_type_is_counted_without_being_read():
    edge = FakeEdge(BRIDGE_MAX_BODY_BYTES="10")
    receive_rf_join({"X-Bridge-Secret": "s3cret"}, b'{"id": 7, "campaign_id": 42}', edge)
    receive_rf_join({"Content-Type": "multipart/form-data"}, b"x", edge)
    assert [(c, s.reason, s.rf_user_id) for c, _, s in edge.refusals] == [
        (None, "too_large", None), (None, "unsupported_media_type", None)]


def test_accepted_webhooks_mark_their_campaign_and_workspace_as_heard():
    from chalicelib.services.ingest import signature
    edge = FakeEdge(intercom_secrets={WS: "cs"})
    receive_rf_join({"X-Bridge-Secret": "s3cret"}, b'{"id": 7, "campaign_id": 42}', edge)
    raw = json.dumps({"app_id": WS, "topic": "contact.lead.updated", "id": "n1",
                      "data": {"item": {"id": "c1", "email": "a@b.co"}}}).encode()
    receive_intercom({"X-Hub-Signature": signature("cs", raw)}, raw, edge)
    receive_intercom({"X-Hub-Signature": "sha1=bad"}, raw, edge)
    assert edge.heard == [("campaign:42", "join"), ("workspace:ws1", "notification")]
    [(_, workspace, sample)] = edge.refusals
    assert (workspace, sample.reason, sample.contact_id) == (WS, "unauthorized", None)
    # Unsigned, it names whatever contact its sender likes: kept as digests `explain` and `forget` match
    assert (sample.contact_digest, sample.email_digest) == (edge.digest("contact", "c1"), edge.digest("email", "a@b.co"))


def runtime(clock=None, store=None, **env) -> Runtime:
    clock = clock or FakeClock()
    return Runtime(Config.from_env({"BRIDGE_QUEUE_URL": "q", **env}), clock=clock, sleeper=clock.sleep,
                   store=store or MemoryStore(clock), queue=FakeQueue(), secrets=MemorySecrets())  # type: ignore


def test_the_runtime_writes_heard_at_most_once_a_minute_per_scope_and_refusals_to_known_scopes_only():
    clock = FakeClock()
    rt = runtime(clock)
    writes: list = []
    real = rt.store.edge.heard
    rt.store.edge.heard = lambda scope, what: (writes.append(scope), real(scope, what))  # type: ignore
    for _ in range(50):
        rt.note_heard("campaign:42", "join")
    clock.sleep(61)
    rt.note_heard("campaign:42", "join")
    assert writes == ["campaign:42", "campaign:42"]
    rt.store.settings.put("42", {"campaign_id": "42"}, WS)
    rt.note_refusal(RefusalSample("unauthorized", "t", "m"), campaign_id="42")
    rt.note_refusal(RefusalSample("unauthorized", "t", "m"), campaign_id="no-such")
    rt.note_refusal(RefusalSample("unauthorized", "t", "m"), workspace="not-connected")
    assert refused(rt.store.edge.refusals("campaign:42")) == 1 and refused(rt.store.edge.refusals(UNKNOWN)) == 2


def test_a_failing_log_never_changes_the_answer():
    rt = runtime()
    tried = []

    def broken(*args):
        tried.append(args[0])
        raise RuntimeError("DynamoDB is down")
    rt.store.edge.refused = rt.store.edge.heard = broken  # type: ignore
    rt.note_refusal(RefusalSample("unauthorized", "t", "m"))
    rt.note_heard("campaign:42", "join")
    assert tried == [UNKNOWN, "campaign:42"]              # both writes were tried (and failed): nothing raised


# --- explain ------------------------------------------------------------------------------------------
def linked(store, ref, contact, email, kind="lead"):
    claim = store.links.claim(ref, WS)
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind=kind, email=email, contact_id=contact,
                                         contact_role="lead", qualification=QState.PENDING if kind == "lead" else None),
                       [Entry("contact", "created", f"created for {email}", {"contact_id": contact})])


def test_explain_finds_a_person_in_every_campaign_from_any_identifier_and_masks_emails():
    clock = FakeClock()
    store = MemoryStore(clock)
    for campaign in ("42", "43"):
        store.settings.put(campaign, {"campaign_id": campaign}, WS)
    linked(store, PersonRef("42", "7"), "c1", "ann@example.com")
    clock.sleep(1)
    linked(store, PersonRef("43", "9"), "c2", "ann@example.com", kind="referrer")
    linked(store, PersonRef("42", "8"), "c3", "bob@example.com")
    store.edge.refused("campaign:43", RefusalSample("unauthorized", "2026-01-01T00:00:00.000Z", "wrong secret",
                                                    rf_user_id="9"))
    rt = type("R", (), {"store": store, "clock": clock})()
    trails = [explain(rt, who).view() for who in ("ANN@example.com", "7", "c2", "9")]
    assert all(t["trail"] == trails[0]["trail"] for t in trails)
    assert [(e["campaign_id"], e["event"]) for e in trails[0]["trail"]] == [
        ("43", "webhook_refused"), ("42", "contact"), ("43", "contact")]
    assert {(p["campaign_id"], p["rf_user_id"]) for p in trails[0]["people"]} == {("42", "7"), ("43", "9")}
    assert "ann@example.com" not in json.dumps(trails) and "bob" not in json.dumps(trails)
    # The refusal's fix no longer applies: the person's join was applied since.
    [refused] = [e for e in explain(rt, "9").view()["trail"] if e["event"] == "webhook_refused"]
    assert refused["resolved"] and "fix" not in refused and "(resolved since)" in as_text(explain(rt, "9"))
    nobody = explain(rt, "zed@example.com")
    # A short first line, then each case on its own indented line (it was one line of ~900 characters); `--json`
    # has the first line as its `message` and the cases as its `cases`.
    assert not nobody.found and as_text(nobody) == "\n".join([
        "no record of z***@example.com yet:",
        "  - a webhook about them accepted in the last minutes may still wait in the work queue, or be on its first "
        "try (a join is found by email once a try of it ends; `bridge doctor CAMPAIGN` shows the queue)",
        "  - else the bridge has never seen them, or they were forgotten (`bridge forget`): no join, no contact, no "
        "history and no refused webhook names them here",
        "  - only if they joined before the campaign's settings existed or while webhooks were refused, `bridge "
        "backfill CAMPAIGN` sends them (a backfill would also bring a forgotten person back to Intercom)",
        "  - if their email changed in Intercom, explain finds them by the new one or by their RF user id",
        "  - if they are in Intercom only, check the email or id"])
    view = nobody.view()
    assert view["message"] == "no record of z***@example.com yet" and len(view["cases"]) == 5
    assert [f"  - {case}" for case in view["cases"]] == as_text(nobody).splitlines()[1:]
    assert len(as_text(nobody).splitlines()[0]) < 40            # what an operator looks at first


def test_explain_says_a_failed_join_has_no_contact_yet_never_none():
    store = MemoryStore(FakeClock())
    store.settings.put("42", {"campaign_id": "42"}, WS)
    claim = store.links.claim(PersonRef("42", "7"), WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", reason="Intercom answered 400"),
                       [Entry("join", "failed", "Intercom answered 400")])
    text = as_text(explain(type("R", (), {"store": store, "clock": FakeClock()})(), "7"))
    assert f"no Intercom contact yet in workspace {WS}; failed" in text and "None" not in text


def test_masked_reaches_every_email_in_text_lists_and_dicts():
    assert masked({"a": ["x ann.b@mail.example.org y"], "b": "no email"}) == {
        "a": ["x a***@mail.example.org y"], "b": "no email"}


def test_the_persons_own_email_is_masked_even_where_it_is_not_a_valid_one():
    said = "invalid email: 'Bad@@Example' is not an email address; badge: x"
    assert masked(said, "bad@@example") == "invalid email: 'b***@@example' is not an email address; badge: x"
    assert masked("invalid email: 'x' is not an email address", "x") == \
        "invalid email: '<invalid>' is not an email address"          # only where it stands alone


# --- backfill -----------------------------------------------------------------------------------------
class PeopleRF:
    """RF listing `users`, `per_page` a page: of campaign 42 unless they name another."""

    def __init__(self, users: list[dict], per_page: int = 2):
        self.users, self.per_page, self.pages = [{"campaign_id": 42, **u} for u in users], per_page, 0

    def users_page(self, campaign_id: str, after: Optional[str] = None, per_page: int = 250) -> PeoplePage:
        self.pages += 1
        return people_page([u for u in self.users if of_campaign(u, campaign_id)], after, self.per_page)


class Backfilling:
    def __init__(self, users):
        self.clock = FakeClock()
        self.store, self.queue, self._rf = MemoryStore(self.clock), FakeQueue(), PeopleRF(users)

    def rf(self):
        return self._rf


SETTINGS = {"campaign_id": "42", "workspace": WS,
            "leads": {"action": "create_lead", "fields": [{"from": "email", "to": "email"}]},
            "referrers": {"action": "nothing"}}


def test_backfill_sends_only_the_people_the_bridge_has_not_applied():
    users = [{"id": 1, "email": "r@x.co", "type": "person_referring", "referrer_id": None},
             {"id": 2, "email": "a@x.co", "type": "person_invited", "referrer_id": 1},
             {"id": 3, "email": "b@x.co", "type": "person_invited", "referrer_id": 1},
             {"id": 4, "email": "c@x.co", "type": "person_invited", "referrer_id": 1},
             {"id": "bad id!", "email": "d@x.co"}]
    rt = Backfilling(users)
    rt.store.settings.put("42", SETTINGS, WS)
    linked(rt.store, PersonRef("42", "2"), "c2", "a@x.co")
    failed = rt.store.links.claim(PersonRef("42", "3"), WS)
    rt.store.links.finish(failed, JoinResult(LinkStatus.FAILED, reason="boom"), [])
    seen: list = []
    dry = backfill(rt, "42", progress=lambda read, total, queued: seen.append((read, total, queued)))
    assert dry.view()["outcomes"] == {"nothing to do (the settings' action is nothing)": 1, "already linked": 1,
                                      "failed earlier: would be joined again": 1,
                                      "not in the bridge: would be joined": 1, "unreadable in Referral Factory": 1}
    assert rt.queue.sent == [] and seen == [(2, 5, 0), (4, 5, 2), (5, 5, 2)] and rt._rf.pages == 3
    done = backfill(rt, "42", apply=True)
    assert done.queued == 2 and sorted(m["rf_user_id"] for m in rt.queue.sent) == ["3", "4"]
    assert {m["kind"] for m in rt.queue.sent} == {"rf.join"}


def test_backfill_sends_no_join_for_an_rf_email_holding_a_character_no_address_can():
    """RF's user list is read by the webhook's rule (webhooks.RFEmail): an email with a zero-width space
    is unreadable, as its webhook would be refused, and no join is sent to fail on it."""
    users = [{"id": 2, "email": "a\u200b@x.co", "type": "person_invited", "referrer_id": 1}]
    rt = Backfilling(users)
    rt.store.settings.put("42", SETTINGS, WS)
    done = backfill(rt, "42", apply=True)
    assert done.view()["outcomes"] == {"unreadable in Referral Factory": 1} and rt.queue.sent == []


def test_backfill_says_a_waiting_join_apart_from_a_failed_one_and_sends_it_again():
    """A dry run during an Intercom 429 pause said "failed earlier: would be joined again" for every join
    waiting its turn (LinkStatus.WAITING: its try ended in errors.Deferred). It is said apart; it is still
    sent (its message may have been dead-lettered before a try came: a repeat is harmless if it waits)."""
    users = [{"id": 2, "email": "a@x.co", "type": "person_invited", "referrer_id": 1}]
    rt = Backfilling(users)
    rt.store.settings.put("42", SETTINGS, WS)
    claim = rt.store.links.claim(PersonRef("42", "2"), WS)
    rt.store.links.finish(claim, JoinResult(LinkStatus.WAITING, email="a@x.co",
                                            reason="Intercom answered 429: rate limited"), [])
    assert backfill(rt, "42").view()["outcomes"] == {
        "waiting (in the queue, or dead-lettered before its next try): would be joined again": 1}
    done = backfill(rt, "42", apply=True)
    assert done.view()["outcomes"] == {"waiting (in the queue, or dead-lettered before its next try): joined again": 1}
    assert done.queued == 1 and [m["rf_user_id"] for m in rt.queue.sent] == ["2"]


COUNT = "custom_attributes.referral_count"
COUNTING = {**SETTINGS, "referrers": {"action": "create_user", "fields": [{"from": "email", "to": "email"}]},
            "sync": {"referral_count_attribute": COUNT}}


def _lead(store, user: str, status=LinkStatus.LINKED, counts_for=None):
    claim = store.links.claim(PersonRef("42", user), WS)
    store.links.finish(claim, JoinResult(status, kind="lead", counts_for=counts_for), [])


def test_backfill_counts_the_leads_applied_before_the_count_setting_once_and_asks_for_each_referrers_write():
    users = [{"id": 1, "email": "r@x.co", "type": "person_referring", "referrer_id": None},
             {"id": 2, "email": "a@x.co", "type": "person_invited", "referrer_id": 1},
             {"id": 3, "email": "b@x.co", "type": "person_invited", "referrer_id": 1},
             {"id": 4, "email": "c@x.co", "type": "person_invited", "referrer_id": 9},
             {"id": 5, "email": "d@x.co", "type": "person_invited", "referrer_id": 1},
             {"id": 6, "email": "e@x.co", "type": "person_invited", "referrer_id": None},
             {"id": 7, "email": "f@x.co", "type": "person_invited", "referrer_id": 1}]
    rt = Backfilling(users)
    # (leads ignored still: an ignored lead is counted, not sent again — test_backfill_ignored.py sends them)
    counting = {**COUNTING, "leads": {"action": "nothing"}}
    rt.store.settings.put("42", counting, WS)
    linked(rt.store, PersonRef("42", "1"), "c1", "r@x.co", kind="referrer")
    _lead(rt.store, "2")                                     # applied before the setting: not counted
    _lead(rt.store, "3", LinkStatus.IGNORED)                 # (nothing was done for them, but they joined)
    _lead(rt.store, "4")
    _lead(rt.store, "5", counts_for="1")                     # joined after it: counted by their join
    _lead(rt.store, "6")                                     # no referrer: nobody to count for
    rt.store.links.claim(PersonRef("42", "7"), WS)           # being joined: the join counts them
    dry = backfill(rt, "42")
    assert dry.view()["outcomes"] == {"already applied: would be counted for their referrer": 3,
                                      "already linked": 3, "being joined right now": 1}
    assert (dry.counted, rt.store.links.referrals(PersonRef("42", "1")).n, rt.queue.sent) == (0, 1, [])
    done = backfill(rt, "42", apply=True)
    view = done.view()
    assert view["outcomes"] == {"already applied: counted now for their referrer": 3, "already linked": 3,
                                "being joined right now": 1}
    assert (view["queued"], view["counted"], view["count_writes_queued"]) == (0, 3, 3)
    # after each page (2 people a page), one write per referrer whose count grew in it; a referrer of the
    # page's counted leads whose write this run asked for already is not checked again (page 3: lead 5)
    asked = [(m["rf_user_id"], m["unless_written"]) for m in rt.queue.sent]
    assert asked == [("1", False), ("1", False), ("9", False)]
    assert rt.store.links.referrals(PersonRef("42", "1")).n == 3 and rt.store.links.referrals(PersonRef("42", "9")).n == 1
    assert rt.store.history.entries(PersonRef("42", "2"))[-1].reason.startswith("counted for referrer 1 by `bridge "
                                                                                "backfill 42 --apply`")
    rt.queue.sent.clear()
    again = backfill(rt, "42", apply=True)          # the writes never happened (a failed send, a stopped run):
    assert again.counted == 0                       # nothing counted twice, every unwritten count asked again
    assert sorted((m["rf_user_id"], m["unless_written"]) for m in rt.queue.sent) == [("1", True), ("9", True)]
    assert again.view()["outcomes"] == {"already linked": 5, "already applied: nothing to do by the settings": 1,
                                        "being joined right now": 1}
    for referrer, n in (("1", 3), ("9", 1)):        # the worker wrote them
        rt.store.links.referrals_written(PersonRef("42", referrer), n, COUNT)
    rt.queue.sent.clear()
    assert (backfill(rt, "42", apply=True).counted, rt.queue.sent) == (0, [])    # nothing left to ask
    assert rt.store.links.referrals(PersonRef("42", "1")).n == 3
    # The counts go to another attribute now: Intercom holds none of them there, so each is asked again.
    rt.store.settings.put("42", {**counting, "sync": {"referral_count_attribute": COUNT + "2"}}, WS)
    assert backfill(rt, "42", apply=True).view()["count_writes_queued"] == 2
    assert sorted((m["rf_user_id"], m["unless_written"]) for m in rt.queue.sent) == [("1", True), ("9", True)]


def test_backfill_counts_nobody_in_a_campaign_without_the_count_setting():
    rt = Backfilling([{"id": 2, "email": "a@x.co", "type": "person_invited", "referrer_id": 1}])
    rt.store.settings.put("42", SETTINGS, WS)
    _lead(rt.store, "2")
    assert backfill(rt, "42", apply=True).view()["outcomes"] == {"already linked": 1}
    assert rt.store.links.get(PersonRef("42", "2")).counted_for is None and rt.queue.sent == []


def test_a_backfill_whose_count_writes_cannot_be_queued_says_the_counts_are_kept():
    rt = Backfilling([{"id": 2, "email": "a@x.co", "type": "person_invited", "referrer_id": 1}])
    rt.store.settings.put("42", COUNTING, WS)
    _lead(rt.store, "2")

    def down(messages, delay=0):
        raise RuntimeError("SQS is down")
    rt.queue.send_many = down
    with pytest.raises(BackfillError, match="referrer.s. 1 grew and are kept"):
        backfill(rt, "42", apply=True)
    assert rt.store.links.referrals(PersonRef("42", "1")).n == 1


def test_a_backfill_whose_joins_cannot_be_queued_says_run_it_again_in_one_line(capsys):
    """No referral count grew (a campaign without counts): SQS refusing the page's joins was the raw
    `NotSent` ("unexpected error: NotSent: ..."); it is the backfill's own error, saying to run it again."""
    from chalicelib.ports.queue import NotSent
    from tests.support.cli import run_cli
    rt = Backfilling([{"id": 2, "email": "a@x.co", "type": "person_invited", "referrer_id": 1}])
    rt.store.settings.put("42", SETTINGS, WS)

    def refused(messages, delay=0):
        raise NotSent([(m, "throttled") for m in messages], len(messages))
    rt.queue.send_many = refused
    with pytest.raises(BackfillError, match=r"could not be queued \(SQS refused 1 of 1 message\(s\): throttled\): "
                                            "run backfill again"):
        backfill(rt, "42", apply=True)
    rt.config = Config.from_env({})
    code, out, err = run_cli(rt, capsys, "backfill", "42", "--apply")
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith("bridge: the messages could not be queued (SQS refused") and "NotSent" not in err


# --- dead letters -----------------------------------------------------------------------------------------
def test_a_dead_letter_is_read_with_its_person_masked_and_its_payload_only_on_request():
    m = ReceivedLetter("d1", "h1", json.dumps({"kind": "rf.join", "campaign_id": "42", "rf_user_id": "7",
                                               "person": {"email": "ann@example.com"}}), "Intercom 400", 1)
    letter = dead_letters.read(m)
    assert letter.view() == {"message_id": "d1", "reason": "Intercom 400", "attempts": 1, "kind": "rf.join",
                             "campaign_id": "42", "rf_user_id": "7", "email": "a***@example.com"}
    assert letter.view(show_payload=True)["payload"]["person"] == {"email": "a***@example.com"}    # masked (docs)
    assert letter.view(show_payload=True, raw=True)["payload"]["person"] == {"email": "ann@example.com"}
    moved = dead_letters.read(ReceivedLetter("d2", "h2", "{x", receive_count=11))
    assert moved.reason.startswith("moved by SQS after about 10 receives")
    assert dead_letters.summary([letter, moved])["by_campaign"] == {"42": 1, "(none)": 1}


def test_dlq_show_payload_masks_the_persons_email_also_when_it_is_not_a_valid_address():
    # Intercom refusing an email it cannot read (no dot in its domain, a non-ASCII domain) is what sends a
    # join to the dead letters: `dlq list --show-payload` must not print that email whole (docs/operating.md: masked).
    for email in ("ann.smith@localhost", "ann@exämple.com"):
        m = ReceivedLetter("d1", "h1", json.dumps({"kind": "rf.join", "campaign_id": "42", "rf_user_id": "7",
                                                   "person": {"email": email}}), "Intercom 400")
        view = dead_letters.read(m).view(show_payload=True)
        shown = json.dumps(view, ensure_ascii=False)
        assert email not in shown, shown
        assert view["payload"]["person"]["email"] == f"{email[0]}***@{email.rpartition('@')[2]}"


@pytest.mark.parametrize("stopped,counted,asked", [("counting", 1, [("referral.count", "1", True)]),
                                                   ("reading the counts owed", 2, [("referral.count", "1", False)])])
def test_a_backfill_stopped_mid_page_still_asks_for_the_writes_of_what_it_counted(stopped, counted, asked):
    """Ctrl-C (or DynamoDB failing) after the page's first transaction of counts, or while the campaign's counts
    owed are read once the pages are done: a run stopped anywhere has asked for the write of each count it grew."""
    users = [{"id": 2, "email": "a@x.co", "type": "person_invited", "referrer_id": 1},
             {"id": 3, "email": "b@x.co", "type": "person_invited", "referrer_id": 1}]
    rt = Backfilling(users)
    rt.store.settings.put("42", COUNTING, WS)
    _lead(rt.store, "2")
    _lead(rt.store, "3")
    count_applied_many = rt.store.links.count_applied_many

    def count_then_stop(leads):
        count_applied_many(leads[:1])
        raise KeyboardInterrupt()

    def stop(campaign_id):
        raise KeyboardInterrupt()
    if stopped == "counting":
        rt.store.links.count_applied_many = count_then_stop   # type: ignore
    else:
        rt.store.links.referrals_in = stop                   # type: ignore
    with pytest.raises(KeyboardInterrupt):
        backfill(rt, "42", apply=True)
    count = rt.store.links.referrals(PersonRef("42", "1"))
    assert (count.n if count else 0, [(m["kind"], m["rf_user_id"], m["unless_written"]) for m in rt.queue.sent]) \
        == (counted, asked)


def test_a_backfill_counts_a_page_in_one_write_and_not_a_lead_another_run_counted_meanwhile():
    users = [{"id": u, "email": f"{u}@x.co", "type": "person_invited", "referrer_id": 1} for u in (2, 3, 4)]
    rt = Backfilling(users)
    rt.store.settings.put("42", COUNTING, WS)
    for user in "234":
        _lead(rt.store, user)
    count_applied_many, pages = rt.store.links.count_applied_many, []

    def raced(leads):
        pages.append(len(leads))
        count_applied_many([(PersonRef("42", "3"), "1", [])])       # another run counted 3 meanwhile
        return count_applied_many(leads)
    rt.store.links.count_applied_many = raced   # type: ignore
    done = backfill(rt, "42", apply=True)
    assert pages == [2, 1]                                          # one write a page (2 people a page)
    assert done.view()["outcomes"] == {"already applied: counted now for their referrer": 2, "already linked": 1}
    assert done.counted == 2 and rt.store.links.referrals(PersonRef("42", "1")).n == 3   # each once
    assert [m["rf_user_id"] for m in rt.queue.sent if not m["unless_written"]] == ["1", "1"]


def strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


UNUSUAL = ["zoë@exämple.com", "jos\\u00e9@ex\\u00e4mple.com", '"quoted name"@example.com', "x@localhost"]


@pytest.mark.parametrize("email", UNUSUAL + ["josé@exämple.com"])
def test_explain_and_history_mask_non_ascii_and_unusual_emails_in_text_and_json(capsys, email):
    """The person's own email (as they gave it), and any other address of these forms in a reason, are
    masked a***@domain in `bridge explain` (text and --json) and `bridge history`; the JSON stays JSON."""
    from chalicelib.cli import main
    store = MemoryStore(FakeClock())
    store.settings.put("42", {"campaign_id": "42"}, WS)
    others = [e for e in UNUSUAL if e != email]
    claim = store.links.claim(PersonRef("42", "7"), WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email=email, reason="Intercom answered 400"),
                       [Entry("join", "failed", f"Intercom answered 400: {email} is not valid (nor {', '.join(others)})",
                              {"given": email})])
    rt = type("R", (), {"store": store, "clock": FakeClock()})()
    shown: list[str] = []
    for argv in (["explain", "7"], ["explain", "7", "--json"], ["history", "42", "7"]):
        capsys.readouterr()
        main(argv, rt=rt)  # type: ignore[arg-type]
        out = capsys.readouterr().out
        shown.append(out)
        if "--json" in argv or argv[0] == "history":
            out = "\n".join(strings(json.loads(out)))                     # JSON, each value as read back
        for each in [email, *others]:
            local, _, domain = each.rpartition("@")
            assert each not in out and (len(local) == 1 or local not in out), (each, out)
            assert f"{local[:1]}***@{domain}" in out, (each, out)
    assert json.loads(shown[2])["link"]["email"] == masked(email, email)


def test_backfill_rejoins_a_join_whose_wait_ended_in_the_dead_letter_queue():
    """A join that waited (LinkStatus.WAITING) and then went to the dead-letter queue without its link
    being tried again — its next try's batched read failed every time (DynamoDB throttled), so the worker
    dead-lettered it before the join ran — is in no queue the worker reads: the person's history ends in
    that dead letter. Backfill said "waiting in the queue: joined on its next try" and sent nothing, for
    a join no try will ever come to; before it learned the waiting outcome, it sent it again, as it does
    for a failed join."""
    from tests.unit.scenario import records
    from tests.unit.test_join_use_case import join, world
    from chalicelib.errors import Deferred
    from chalicelib.services.worker import handle_batch
    work = world()
    real = work.apis.rf_.get_user

    def busy(user_id):                              # RF's shared budget is spent: the join waits
        raise Deferred("the shared RF budget is spent", retry_after=5.0)
    work.apis.rf_.get_user = busy                   # type: ignore[method-assign]
    body = join({"id": "7", "campaign_id": "42"})
    assert handle_batch(records(body), work)["waiting"] == 1
    work.apis.rf_.get_user = real                   # type: ignore[method-assign]

    def throttled(refs):
        raise RuntimeError("ProvisionedThroughputExceededException")
    work.store.links.get_many = throttled           # type: ignore[method-assign]
    [last] = records(body)
    last["attributes"]["ApproximateReceiveCount"] = str(work.config.max_attempts)     # its last try
    assert handle_batch([last], work)["dead"] == 1 and len(work.queue.dead) == 1
    del work.store.links.get_many                   # DynamoDB answers again

    rt = Backfilling([{"id": 7, "email": "ann@example.com", "type": "person_invited", "referrer_id": 3}])
    rt.store, rt.clock = work.store, work.clock
    outcomes = backfill(rt, "42").view()["outcomes"]
    assert outcomes == {"waiting (in the queue, or dead-lettered before its next try): would be joined again": 1}
    done = backfill(rt, "42", apply=True)
    assert [m["rf_user_id"] for m in rt.queue.sent] == ["7"], done.view()


def test_backfill_names_whom_rf_lists_unreadably_and_why_in_text_and_json(capsys):
    """`bridge backfill` counted people "unreadable in Referral Factory" without saying who or why: it names
    each (their RF id, else their email, masked) with what in RF's answer it cannot read."""
    import json

    from tests.support.cli import run_cli
    users = [{"id": 2, "email": "ann\u200b@x.co", "type": "person_invited", "referrer_id": 1},
             {"email": "bob@x.co", "type": "person_invited", "referrer_id": 1},
             {"id": 4, "email": "cy@x.co", "type": "person_invited", "referrer_id": 1}]
    rt = Backfilling(users)
    rt.store.settings.put("42", SETTINGS, WS)
    code, out, _ = run_cli(rt, capsys, "backfill", "42")
    assert code == 0 and out.splitlines()[1:] == [
        "       2  unreadable in Referral Factory",
        "          - RF user 2 (a***@x.co): email: holds a character no email address can (an invisible character, "
        "U+200B, at character 4): fix the email in Referral Factory",
        "          - no RF id (b***@x.co): no user id",
        "       1  not in the bridge: would be joined",
        "          - RF user 4 (c***@x.co)"]
    view = json.loads(run_cli(rt, capsys, "backfill", "42", "--json")[1])
    assert view["unreadable"] == [
        {"rf_user_id": "2", "email": "a***@x.co", "reason": "email: holds a character no email address can (an "
                                                            "invisible character, U+200B, at character 4): fix the "
                                                            "email in Referral Factory"},
        {"rf_user_id": None, "email": "b***@x.co", "reason": "no user id"}]
    assert "ann" not in out and "bob" not in out


def test_backfill_names_at_most_20_unreadable_people_and_says_how_many_more_in_text_and_json(capsys):
    """Scenario: RF lists 23 people whose email holds a space and one readable lead. Expected: the count
    23, the first 20 named, then "… and 3 more"; --json has the 20 and `unreadable_more: 3`."""
    from tests.support.cli import run_cli
    users = [{"id": n, "email": f"p{n} @x.co", "type": "person_invited", "referrer_id": 1} for n in range(1, 24)]
    rt = Backfilling(users + [{"id": 99, "email": "ok@x.co", "type": "person_invited", "referrer_id": 1}])
    rt.store.settings.put("42", SETTINGS, WS)
    code, out, _ = run_cli(rt, capsys, "backfill", "42")
    lines = out.splitlines()
    assert code == 0 and lines[1] == "      23  unreadable in Referral Factory", out
    named = [line for line in lines[2:22] if line.startswith("          - RF user ")]
    assert len(named) == 20 and named[0].startswith("          - RF user 1 (p***@x.co): email: ")
    assert lines[22:] == ["          … and 3 more", "       1  not in the bridge: would be joined",
                          "          - RF user 99 (o***@x.co)"], out
    view = json.loads(run_cli(rt, capsys, "backfill", "42", "--json")[1])
    assert view["outcomes"]["unreadable in Referral Factory"] == 23
    assert [p["rf_user_id"] for p in view["unreadable"]] == [str(n) for n in range(1, 21)]
    assert view["unreadable_more"] == 3


def test_a_backfill_with_few_unreadable_people_names_them_all_and_no_more():
    rt = Backfilling([{"id": 2, "email": "a b@x.co", "type": "person_invited", "referrer_id": 1}])
    rt.store.settings.put("42", SETTINGS, WS)
    view = backfill(rt, "42").view()
    assert len(view["unreadable"]) == 1 and view["unreadable_more"] == 0


def test_a_cli_command_the_shared_limiter_defers_says_the_command_may_wait_not_a_worker(capsys):
    """RF answered a worker 429 for 45 s: `bridge backfill` (a CLI, not a worker) says so in one line,
    naming itself as what may wait. The worker's own wording is unchanged."""
    from chalicelib.adapters.ratelimit import SharedLimiter
    from chalicelib.ports.secrets import RF_TOKEN, WORKER
    from tests.support.cli import run_cli

    rt = runtime(BRIDGE_SECRETS_PATH="/p")
    rt.store.settings.put("42", SETTINGS, WS)
    rt.secrets.scoped(WORKER).put(RF_TOKEN, "rf-token")
    # Another container's 429: the pause is in the shared windows, for every caller of the budget.
    SharedLimiter(rt.store.rates, "referral-factory", rt.config.rf_calls_per_minute, 60, block_status=403,
                  clock=rt.clock).throttled(45.0)
    code, out, err = run_cli(rt, capsys, "backfill", "42")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "Referral Factory answered 429: every call waits" in err and "; this command may wait 20.0s more)" in err
    assert "worker" not in err
