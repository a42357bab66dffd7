"""`bridge dlq discard`: a dead letter that can never succeed (a join for a user Referral Factory
answers 404 `User not found.`: a replay only dead-letters it again, and doctor stays BAD) is taken
out for good, by reason and/or campaign, only with --yes; the person's history says it was discarded,
so `explain` shows the failure resolved. On the in-memory twins."""
from __future__ import annotations

import json

import pytest

from chalicelib.cli import main
from chalicelib.config import Config
from chalicelib.domain.link import PersonRef
from chalicelib.errors import Permanent
from chalicelib.services import explain
from chalicelib.services.dead_letters import REPLAY_SECONDS, discard
from tests.fakes import FakeWork
from tests.unit.scenario import run
from tests.unit.test_dead_letters_scan import SlowLink, visible_now
from tests.unit.test_join_use_case import join, world

GONE = "Referral Factory answered 404: User not found."


def with_a_dead_join_rf_does_not_know() -> FakeWork:
    """The join of RF user 9 (its webhook named only the id: the worker asks RF, which answers 404) is a
    dead letter; so is another of campaign 42, which a replay can fix (Intercom refused it once)."""
    work = world()
    work.config = Config.from_env({"BRIDGE_MAX_ATTEMPTS": "3", "BRIDGE_QUEUE_URL": "memory://queue",
                                   "BRIDGE_DLQ_URL": "memory://dlq"})
    work.apis.rf_.get_answers = [Permanent(GONE, status=404)]
    assert run(work, join({"id": "9", "campaign_id": "42"}, user="9"))["dead"] == 1
    work.queue.dead_letter(json.dumps(join(user="8")), "Intercom answered 400: bad request", 1, "t")
    assert work.queue.dead_count() == 2
    return work


def cli(work: FakeWork, capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["dlq", *argv], rt=work)                    # type: ignore[arg-type]
    out, err = capsys.readouterr()
    return code, out, err


def trail(work: FakeWork) -> list[dict]:
    return [e for e in explain.explain(work, "9").view()["trail"] if e.get("rf_user_id") == "9"]  # type: ignore[arg-type]


def test_explain_says_to_discard_a_letter_rf_will_never_accept():
    work = with_a_dead_join_rf_does_not_know()
    fixes = [e["fix"] for e in trail(work) if e.get("fix")]
    assert fixes and all('`bridge dlq discard --reason "Referral Factory answered 404: User not found" --campaign 42 --yes`' in f
                         and "a replay would fail the same way" in f for f in fixes)


def test_the_history_records_the_discard_of_a_letter_whose_fix_is_its_discard_the_replay_of_others():
    """A user walk: the history's dead-letter entry said `replay=bridge dlq replay` beside explain's fix "a replay
    would fail the same way — `bridge dlq discard ...`". It records the discard; a letter a replay can fix, the replay."""
    work = with_a_dead_join_rf_does_not_know()
    [entry] = [e for e in trail(work) if e["event"] == "dead_letter"]
    assert entry["details"]["discard"] == "bridge dlq discard" and "replay" not in entry["details"], entry
    work.apis.rf_.get_answers = [Permanent("Referral Factory answered 404: <html>Not Found</html>", status=404)]
    assert run(work, join({"id": "7", "campaign_id": "42"}, user="7"))["dead"] == 1
    [fixable] = [e for e in explain.explain(work, "7").view()["trail"]                   # type: ignore[arg-type]
                 if e["event"] == "dead_letter" and e.get("rf_user_id") == "7"]
    assert fixable["details"]["replay"] == "bridge dlq replay" and "discard" not in fixable["details"], fixable


def test_only_rfs_user_not_found_is_advised_a_discard_a_bare_404_a_fix_and_replay():
    """A wrong RF_BASE_URL makes every call answer 404 (a web page, not RF's "User not found."): those
    letters (qualifications: rewards among them) are fixed and replayed, never advised a discard; the
    fix names the base URL and the token. RF's own answer is advised the discard, by its words."""
    from chalicelib.domain.advice import never_succeeds
    from chalicelib.services.dead_letters import replay_fix
    work = world()
    work.apis.rf_.get_answers = [Permanent("Referral Factory answered 404: <html>Not Found</html>", status=404)]
    assert run(work, join({"id": "9", "campaign_id": "42"}, user="9"))["dead"] == 1
    fixes = [e["fix"] for e in trail(work) if e.get("fix")]
    assert fixes and all("dlq discard" not in f and "check RF_BASE_URL" in f and "the RF token" in f
                         and "`bridge dlq replay --campaign 42`" in f for f in fixes), fixes
    assert not never_succeeds("Referral Factory answered 404: ") and never_succeeds(GONE)
    assert '--reason "Referral Factory answered 404: User not found" --yes' in replay_fix(GONE.lower(), None)
    assert "check RF_BASE_URL" in replay_fix("Referral Factory answered 404: Not Found", None)


def test_discard_needs_a_selector_and_yes(capsys):
    work = with_a_dead_join_rf_does_not_know()
    code, out, err = cli(work, capsys, "discard", "--yes")
    assert code == 2 and out == "" and err.startswith("bridge: discard which dead letters? Give --reason TEXT")
    code, out, err = cli(work, capsys, "discard", "--reason", "", "--yes")           # would match every letter
    assert code == 2 and "discard which dead letters?" in err
    code, out, err = cli(work, capsys, "discard", "--reason", "answered 404")
    assert code == 1 and out == ""
    assert err.strip() == ("bridge: 1 dead letter(s) match: discarding takes them out for good (a replay can no "
                           "longer bring them back) — add --yes to discard them; nothing was discarded")
    assert work.queue.dead_count() == 2 == visible_now(work.queue)                    # all still there, visible


def test_a_discard_without_yes_under_json_answers_json_on_stdout_with_the_problem(capsys):
    """`dlq discard --reason X --json` without --yes printed only the error line on stderr, no JSON: a script read
    nothing on stdout. It answers as every refusal of a check under --json does (docs/operating.md): the answer on
    stdout with its `problems`, stderr empty, exit 1 still; the keys of a discard that discarded nothing."""
    work = with_a_dead_join_rf_does_not_know()
    code, out, err = cli(work, capsys, "discard", "--reason", "answered 404", "--json")
    assert (code, err) == (1, "")
    assert json.loads(out) == {"discarded": 0, "left": 2, "matching": 1, "total": 2, "not_seen": 0,
                               "by_reason": {GONE: 1, "Intercom answered 400: bad request": 1},
                               "problems": ["1 dead letter(s) match: discarding takes them out for good (a replay "
                                            "can no longer bring them back) — add --yes to discard them; nothing was "
                                            "discarded"]}
    assert work.queue.dead_count() == 2 == visible_now(work.queue)


@pytest.mark.parametrize("yes", [[], ["--yes"]], ids=["asked", "with --yes"])
def test_a_discard_nothing_matches_says_so_and_the_reasons_there_are_and_exits_0_as_a_replay_does(capsys, yes):
    """Before: "0 dead letter(s) match ... add --yes to discard them", exit 1, as if there were something to do;
    and with --yes, "0 dead letter(s) discarded (each person's history says so)", naming no reason there is."""
    work = with_a_dead_join_rf_does_not_know()
    code, out, err = cli(work, capsys, "discard", "--reason", "timed out", *yes)
    assert (code, err) == (0, "")
    assert out.strip() == ("no dead letter matches --reason 'timed out': nothing to discard; the 2 there are: "
                           "--reason 'Referral Factory answered 404: User not found.' (1), --reason 'Intercom "
                           "answered 400: bad request' (1) (`bridge dlq list` shows them)")
    code, out, _ = cli(work, capsys, "discard", "--campaign", "7", "--json", *yes)
    # (`discarded`, `left`, `not_seen`: the keys of a discard's answer, which machines read, kept beside the others)
    assert code == 0 and json.loads(out) == {"discarded": 0, "left": 2, "matching": 0, "total": 2, "not_seen": 0,
                                             "by_reason": {GONE: 1, "Intercom answered 400: bad request": 1}}
    assert cli(work, capsys, "replay", "--reason", "timed out")[0] == 0           # as a replay matching nothing
    assert work.queue.dead_count() == 2 == visible_now(work.queue)


def test_discard_refuses_a_blank_reason_as_it_refuses_an_empty_one(capsys):
    """`--reason ''` is refused ("an empty --reason would match every letter"), but `--reason ' '` (a stray
    quoted space, `--reason "$VAR"` with VAR a space) is taken as a selector: every reason holds a space, so
    both letters, the one a replay can fix included, are discarded for good. With --campaign too, a blank
    reason is refused rather than dropped (every letter of the campaign would go)."""
    work = with_a_dead_join_rf_does_not_know()
    code, out, err = cli(work, capsys, "discard", "--reason", " ", "--yes")
    assert code == 2 and "discard which dead letters?" in err, (out, err)
    code, out, err = cli(work, capsys, "discard", "--reason", "  ", "--campaign", "42", "--yes")
    assert code == 2 and "discard which dead letters?" in err and "not blank: a blank one would match every letter" in err
    assert work.queue.dead_count() == 2 == visible_now(work.queue)


def test_replay_refuses_a_blank_reason_rather_than_replaying_every_letter(capsys):
    """`dlq replay --reason "$VAR"` with VAR empty or a space would send back every dead letter, as `--all`
    does, though the operator meant some: refused, naming `--all` for when every letter is meant."""
    work = with_a_dead_join_rf_does_not_know()
    for blank in ("", " "):
        code, out, err = cli(work, capsys, "replay", "--reason", blank)
        assert code == 2 and out == "" and err.startswith("bridge: replay which dead letters? A blank --reason "
                                                          "matches every letter"), (out, err)
        assert "--all" in err and work.queue.dead_count() == 2 == visible_now(work.queue)


def test_discard_takes_the_matching_letters_out_and_the_persons_history_says_so(capsys):
    work = with_a_dead_join_rf_does_not_know()
    code, out, err = cli(work, capsys, "discard", "--reason", "answered 404", "--campaign", "42", "--yes", "--json")
    assert code == 0 and err == ""
    assert json.loads(out) == {"discarded": 1, "left": 1, "not_seen": 0}
    [left] = work.queue.letters.values()
    assert json.loads(left.body)["rf_user_id"] == "8" and visible_now(work.queue) == 1    # the other stays
    last = work.store.history.entries(PersonRef("42", "9"))[-1]
    assert (last.event, last.outcome, last.reason) == ("dead_letter", "discarded",
                                                       f"dead letter discarded by the operator: {GONE}")
    failures = [e for e in trail(work) if e["outcome"] == "failed"]
    assert failures and all(e.get("resolved") and e.get("discarded") and "fix" not in e for e in failures)
    text = explain.as_text(explain.explain(work, "9"))                               # type: ignore[arg-type]
    assert "(resolved since: discarded by the operator)" in text and "fix:" not in text    # (its record stays:
    assert "discard=bridge dlq discard" in text                                          # what its fix was)

    code, out, _ = cli(work, capsys, "discard", "--campaign", "42", "--yes")          # text; the other one now
    assert code == 0 and out.strip() == "1 dead letter(s) discarded (each person's history says so)"
    assert work.queue.dead_count() == 0


def test_a_discard_far_longer_than_its_hide_time_takes_each_letter_out_once():
    """3,000 letters on a slow link (a second a receive): the scan outlasts the time each letter is
    hidden, and each is discarded once, its person's history saying so once (of those the bridge keeps: a
    person whose join failed before it held their link has no history)."""
    work = world()
    queue = work.queue = SlowLink(work.clock)                                      # type: ignore[assignment]
    for i in range(3_000):
        queue.dead_letter(json.dumps(join(user=str(i))), GONE, 1, "t")
    kept = range(0, 3_000, 97)
    for i in kept:
        work.store.links.claim(PersonRef("42", str(i)), "ws")                      # (their joins held their links)
    done = discard(work, reason="answered 404")
    assert done == {"discarded": 3_000, "left": 0, "not_seen": 0, "named_people": 3_000}     # (each names one)
    assert work.clock() > REPLAY_SECONDS and queue.dead_count() == 0
    assert all([e.outcome for e in work.store.history.entries(PersonRef("42", str(i)))] ==
               (["discarded"] if i in kept else []) for i in range(0, 3_000, 13))


def test_letters_sqs_would_not_take_out_stay_and_are_said(capsys):
    work = with_a_dead_join_rf_does_not_know()
    work.queue.refuse_delete = lambda handle: "ReceiptHandleIsInvalid"
    code, out, err = cli(work, capsys, "discard", "--campaign", "42", "--yes")
    assert code == 1 and out.startswith("2 dead letter(s) discarded")
    assert err.strip() == ("bridge: SQS would not take 2 message(s) discarded out of the dead-letter queue "
                           "(ReceiptHandleIsInvalid): they are still dead letters, and `bridge dlq discard` run again "
                           "takes them out")
    assert work.queue.dead_count() == 2 == visible_now(work.queue)
    work.queue.refuse_delete = lambda handle: None
    assert cli(work, capsys, "discard", "--campaign", "42", "--yes")[0] == 0 and work.queue.dead_count() == 0


def test_a_notifications_letter_discarded_is_said_to_the_linked_person_whose_failure_it_holds_only():
    """The letter of an Intercom notification names the workspace and contact, not the person: the entry
    goes to Ann (linked to the contact, her qualification's failure is that letter), and not to another
    person linked to the same contact in campaign 43, whose own failure stays open."""
    from chalicelib.domain.history import Entry
    from chalicelib.domain.link import JoinResult, LinkStatus
    from tests.unit import scenario
    work = scenario.world()
    _, contact = scenario.joined(work)
    other = PersonRef("43", "70")
    claim = work.store.links.claim(other, scenario.WS)
    work.store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="referrer", email="ann@example.com",
                                              contact_id=contact["id"], contact_role="lead"), [])
    work.store.links.note(other, [Entry("dead_letter", "failed", "Intercom answered 400: bad request")])
    work.apis.rf_.answers = [Permanent(GONE, status=404)]
    assert scenario.run(work, scenario.event(scenario.set_value(work, contact, "Yes")))["dead"] == 1
    assert discard(work, reason="Referral Factory answered 404")["discarded"] == 1
    said = [(e.event, e.outcome) for e in work.store.history.entries(PersonRef("42", "7"))]
    assert said[-2:] == [("dead_letter", "failed"), ("dead_letter", "discarded")]
    assert ("dead_letter", "discarded") not in [(e.event, e.outcome) for e in work.store.history.entries(other)]


def test_a_notifications_letter_with_a_long_reason_discarded_is_said_to_its_person():
    """A dead letter keeps the first 1,000 characters of its reason (an SQS message attribute; the queue
    and its twin cut it there), while the person's history keeps the whole reason. A qualification an
    Intercom notification made that failed with a long answer (RF's 422 listing every field it refused,
    an unforeseen exception's text) is discarded, but its person's history was looked up by the letter's
    cut reason, matched no failure, and got no "discarded" entry: `explain` still shows it unresolved."""
    from tests.unit import scenario
    work = scenario.world()
    _, contact = scenario.joined(work)
    long = "Referral Factory answered 422: The given data was invalid.; " + "; ".join(
        f"The meta.{i}.value field must be a string of at most 255 characters." for i in range(30))
    assert len(long) > 1000
    work.apis.rf_.answers = [Permanent(long, status=422)]
    assert scenario.run(work, scenario.event(scenario.set_value(work, contact, "Yes")))["dead"] == 1
    assert scenario.history(work)[-1] == ("dead_letter", "failed")
    assert discard(work, reason="Referral Factory answered 422")["discarded"] == 1
    assert scenario.history(work)[-2:] == [("dead_letter", "failed"), ("dead_letter", "discarded")], \
        scenario.history(work)


def test_explains_header_says_discarded_once_the_persons_dead_letter_is_discarded(capsys):
    """Before the discard the header says failed (with RF's answer); after it, discarded, in text and JSON."""
    work = with_a_dead_join_rf_does_not_know()
    before = explain.explain(work, "9")                                                # type: ignore[arg-type]
    [person] = before.view()["people"]
    assert person["status"] == "failed" and "discarded" not in person
    assert f"; failed — {GONE}" in explain.as_text(before)
    assert cli(work, capsys, "discard", "--reason", "answered 404", "--campaign", "42", "--yes")[0] == 0
    after = explain.explain(work, "9")                                                 # type: ignore[arg-type]
    [person] = after.view()["people"]
    assert person["discarded"] is True and person["status"] == "failed"               # the link itself is unchanged
    header = explain.as_text(after).splitlines()[1]
    assert header.endswith(f"; discarded (its dead letter, by the operator) — it failed: {GONE}"), header
    assert "; failed —" not in header


def test_with_an_rf_token_of_another_account_doctor_says_fix_the_token_and_replay_never_discard():
    """The RF token stored is of another RF account than campaign 42's: RF answers 404 for the campaign, and
    `User not found.` for each of its users, whose joins then wait in the dead-letter queue. Doctor named the
    campaign check's fix, but advised discarding those letters for good ("a replay would fail the same way"):
    valid joins, and qualifications (rewards), lost. Now: fix the token, then replay them."""
    from chalicelib.services.doctor import examine
    from tests.unit.doctoring import checks, healthy
    rt = healthy()
    rt.work.queue.dead_letter(json.dumps(join(user="9")), GONE, 3, "2026-09-21T14:00:00Z")
    rt.work.apis.rf_.campaign_answers = [Permanent("Referral Factory answered 404: Campaign not found.", status=404)]
    view = examine(rt, "42").view()                        # type: ignore[arg-type]
    [campaign], [letters] = checks(view, "rf.campaign"), checks(view, "dead_letters")
    assert "`bridge rf connect`" in campaign["fix"] and "`bridge dlq replay --campaign 42`" in campaign["fix"]
    assert "dlq discard" not in letters["fix"], letters["fix"]
    assert "`bridge rf connect`" in letters["fix"] and "`bridge dlq replay --campaign 42`" in letters["fix"]


def test_explain_names_the_rf_token_check_before_advising_a_discard():
    """`explain` does not ask RF: its advice for RF's `User not found` says first that a token of another
    account answers the same for every user (then: fix the token and replay), before the discard."""
    work = with_a_dead_join_rf_does_not_know()
    fixes = [e["fix"] for e in trail(work) if e.get("fix")]
    assert fixes and all(f.index("`bridge rf connect`") < f.index("dlq replay --campaign 42")
                         < f.index("dlq discard") for f in fixes), fixes
