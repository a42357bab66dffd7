"""A qualification RF refused (a 4xx) is `failed`, and only its dead letter's replay brought it back. SQS deletes a
dead letter after 14 days without a word: past them nothing could retry it, the reward was lost, and `explain`,
`doctor` and every later webhook still advised the replay, which finds nothing. `bridge backfill CAMPAIGN --apply`
now checks such a lead again, as its letter's replay would (RF asked first: one PUT at most), and the advice names it."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chalicelib.domain.qualification import QState
from chalicelib.errors import Permanent
from chalicelib.services.backfill import backfill
from chalicelib.services.explain import as_text, explain
from chalicelib.services.worker import RetryBatch
from tests.fakes import FakeWork
from tests.unit.doctoring import checks, healthy, look
from tests.unit.scenario import event, joined, link_of, reasons, run, set_value, world
from tests.unit.test_answers import PeopleRF

REFUSED = Permanent("Referral Factory answered 422: campaign paused", status=422)
ANN = {"id": 7, "email": "ann@example.com", "type": "person_invited", "referrer_id": 1}
RECHECK = ("qualification refused by Referral Factory, its dead letter gone (SQS keeps one 14 days): checked again "
           "(Referral Factory asked first)")
DAY = 86400
DEAD_LETTER_DAYS = 14     # SQS's (test_longlived: the template's)


class Backfiller:
    """`bridge backfill` over the worker's fakes: the same store and queue, RF listing Ann."""

    def __init__(self, work: FakeWork):
        self.work, self.store, self.queue, self.clock = work, work.store, work.queue, work.clock
        self._rf = PeopleRF([ANN])

    def rf(self) -> Any:
        return self._rf

    def intercom(self, workspace: str) -> Any:
        return self.work.apis.intercom_

    def attributes(self, workspace: str, naming: Any = ()) -> dict:
        return self.work.apis.intercom_.attributes


def refused(work: FakeWork, days: float) -> dict:
    """Ann met the rule and RF refused her qualification `days` ago: her letter was in the dead-letter queue, which
    SQS empties after DEAD_LETTER_DAYS."""
    _, contact = joined(work)
    work.apis.rf_.answers = [REFUSED]
    run(work, event(set_value(work, contact, "Yes")))
    assert link_of(work).qualification is QState.FAILED and len(work.queue.dead) == 1
    if days > DEAD_LETTER_DAYS:
        work.queue.dead.clear()
    work.clock.now += days * DAY
    return contact


def queued(work: FakeWork) -> list:
    out = list(work.queue.sent)
    work.queue.sent.clear()
    return out


@pytest.mark.parametrize("days, gone", [(13.9, False), (14, True), (400, True)])
def test_a_refused_qualification_s_letter_is_gone_once_sqs_kept_it_its_days(days, gone):
    from chalicelib.domain.judge import letter_gone
    work = world()
    refused(work, 0)
    assert letter_gone(link_of(work), work.clock() + days * DAY) is gone


def test_a_pending_or_qualified_lead_has_no_letter_to_be_gone():
    from chalicelib.domain.judge import letter_gone
    work = world()
    link, contact = joined(work)
    later = work.clock() + 100 * DAY
    assert not letter_gone(link, later)
    run(work, event(set_value(work, contact, "Yes")))
    assert link_of(work).qualification is QState.QUALIFIED and not letter_gone(link_of(work), later)


def test_backfill_checks_again_a_refused_qualification_whose_letter_is_gone_and_rf_is_asked_first():
    """RF paused the campaign, 20 days ago; it runs again. The dry run names Ann; `--apply` queues a check of her,
    marked as a replay; worked, RF is asked, then sent one PUT; a second run finds nothing to do."""
    work = world()
    refused(work, 20)
    rt = Backfiller(work)
    dry = backfill(rt, "42").view()
    assert dry["people"] == {RECHECK.replace("checked again", "would be checked again"):
                             [{"rf_user_id": "7", "email": "a***@example.com"}]} and not work.queue.sent
    done = backfill(rt, "42", apply=True).view()
    assert done["queued"] == 1 and done["people"] == {RECHECK: [{"rf_user_id": "7", "email": "a***@example.com"}]}
    work.apis.rf_.calls.clear()
    run(work, *queued(work))
    assert link_of(work).qualification is QState.QUALIFIED
    assert work.apis.rf_.calls == ["get_user 7", "qualify 7"] and not work.queue.dead
    # (its history names what sent the check: no letter was replayed)
    said = work.store.history.entries(link_of(work).ref)[-1].reason or ""
    assert "bridge backfill 42 --apply" in said and "dlq replay" not in said, said
    again = backfill(rt, "42", apply=True).view()
    assert again["queued"] == 0 and again["outcomes"] == {"already linked": 1} and not work.queue.sent


def test_a_refusal_that_still_holds_comes_back_as_a_dead_letter_with_its_reason_not_a_loop():
    work = world()
    refused(work, 20)
    rt = Backfiller(work)
    backfill(rt, "42", apply=True)
    work.apis.rf_.answers = [REFUSED]
    run(work, *queued(work))
    assert link_of(work).qualification is QState.FAILED
    assert [d["reason"] for d in work.queue.dead] == [REFUSED.reason]
    # Its new letter is there: a run again leaves it to `bridge dlq replay`, as long as SQS keeps it.
    assert backfill(rt, "42", apply=True).view()["outcomes"] == {"already linked": 1} and not work.queue.sent


@pytest.mark.parametrize("days, advice", [
    (10, "replay it once the cause is fixed"),
    (20, "`bridge backfill 42 --apply` checks it again once the cause is fixed (Referral Factory asked first)")])
def test_a_later_webhook_of_the_lead_advises_the_way_back_that_still_exists(days, advice):
    work = world()
    contact = refused(work, days)
    run(work, event(contact, notification="n2", created_at=work.clock()))
    assert advice in reasons(work)[-1], reasons(work)


@pytest.mark.parametrize("days, fix", [
    (13, ", then `bridge dlq replay --reason 'Referral Factory answered 422: campaign paused'`"),
    (15, ", then `bridge backfill 42 --apply` checks the qualification again (Referral Factory asked first) (its dead "
         "letter is gone: SQS keeps one 14 days)")])
def test_explain_advises_the_backfill_once_the_qualification_s_letter_is_gone(days, fix):
    work = world()
    refused(work, days)
    fixes = [line.strip() for line in as_text(explain(work, "ann@example.com")).splitlines() if "fix:" in line]
    assert len(fixes) == 2 and all(fix in f for f in fixes), fixes    # (the failure's, and its letter's)


def test_doctor_warns_of_refused_qualifications_whose_letters_are_gone_with_the_backfill():
    rt = healthy()
    refused(rt.work, 13)
    assert not checks(look(rt)[0], "qualification.refused")
    rt.work.queue.dead.clear()
    rt.work.clock.now += 2 * DAY
    [gone] = checks(look(rt)[0], "qualification.refused")
    assert gone["warn"] and gone["what"].startswith("1 lead whose qualification Referral Factory refused over 14 "
                                                    "days ago (RF user(s) 7)"), gone
    assert "`bridge backfill 42 --apply` checks each again" in gone["fix"], gone


def discarded(work: FakeWork) -> dict:
    """Ann's refusal, its letter discarded by the operator (`bridge dlq discard`: given up on, for good), 20 days
    ago: SQS holds no letter of it either."""
    from chalicelib.services.dead_letters import discard
    contact = refused(work, 0)
    assert discard(work, reason="Referral Factory answered 422")["discarded"] == 1    # type: ignore[arg-type]
    work.clock.now += 20 * DAY
    return contact


def test_backfill_leaves_a_refusal_whose_letter_the_operator_discarded():
    """The operator gave that reward up (`dlq discard`: explain says it resolved, discarded). A backfill run for
    other reasons 14 days later checked it again: the reward paid after all, or, RF refusing still, a new letter to
    discard, and again after each 14 days."""
    work = world()
    discarded(work)
    done = backfill(Backfiller(work), "42", apply=True).view()
    assert done["queued"] == 0 and done["outcomes"] == {"already linked": 1} and not work.queue.sent, done


def test_backfill_leaves_a_refusal_discarded_before_links_kept_the_discard_and_writes_the_discard_on_its_link():
    """A deployment upgraded since: the refusal and its discard are in the history only (no refused_at, no mark).
    Backfill leaves it, and its --apply writes the discard on the link, so that doctor leaves it too."""
    rt = healthy()
    work = rt.work
    discarded(work)
    held = work.store.links.tables.links[link_of(work).ref]
    held.link = dataclasses.replace(held.link, refused_at=None, refusal_discarded=False)
    assert checks(look(rt)[0], "qualification.refused")              # (the history is doctor's to read no more)
    done = backfill(Backfiller(work), "42", apply=True).view()
    assert done["queued"] == 0 and not work.queue.sent, done
    assert link_of(work).refusal_discarded and not checks(look(rt)[0], "qualification.refused")


def test_doctor_does_not_warn_of_a_refusal_whose_letter_the_operator_discarded():
    rt = healthy()
    discarded(rt.work)
    assert not checks(look(rt)[0], "qualification.refused")


def test_a_later_write_of_the_link_does_not_put_off_the_check_of_a_refusal_whose_letter_is_gone():
    """The letter is dated by the refusal (the link's refused_at), not by the link's last write: one written for
    another reason since (a role followed, a merge) put the check off 14 days after that write."""
    work = world()
    refused(work, 10)
    work.store.links.set_contact(link_of(work), [], role="lead")       # written for another reason on day 10
    work.queue.dead.clear()
    work.clock.now += 5 * DAY
    assert backfill(Backfiller(work), "42").view()["people"] == {
        RECHECK.replace("checked again", "would be checked again"): [{"rf_user_id": "7", "email": "a***@example.com"}]}
    assert "`bridge backfill 42 --apply` checks the qualification again" in as_text(explain(work, "ann@example.com"))


def test_a_refusal_whose_letter_was_sent_late_is_dated_by_its_letter():
    """SQS did not take the letter: the next sighting of Ann, 5 days later, sent it. SQS keeps it 14 days from then:
    backfill leaves it to `dlq replay` on day 15 (it checked it again then, while its letter was there)."""
    work = world()
    _, contact = joined(work)
    work.apis.rf_.answers = [REFUSED]
    send = work.queue.dead_letter

    def refuse(*args: Any) -> None:
        work.queue.dead_letter = send                                   # type: ignore[method-assign]
        raise RuntimeError("SQS did not answer")
    work.queue.dead_letter = refuse                                     # type: ignore[method-assign]
    with pytest.raises(RetryBatch):
        run(work, event(set_value(work, contact, "Yes")))
    assert link_of(work).owes_letter and not work.queue.dead
    work.clock.now += 5 * DAY
    run(work, event(contact, notification="n2", created_at=work.clock()))
    assert len(work.queue.dead) == 1 and not link_of(work).owes_letter
    work.clock.now += 10 * DAY
    assert backfill(Backfiller(work), "42").view()["outcomes"] == {"already linked": 1}
    work.clock.now += 5 * DAY
    assert backfill(Backfiller(work), "42").view()["people"]


def test_a_later_webhook_of_a_refusal_whose_letter_the_operator_discarded_advises_nothing_more():
    work = world()
    contact = discarded(work)
    run(work, event(contact, notification="n2", created_at=work.clock()))
    assert "the operator discarded its dead letter" in reasons(work)[-1] and "backfill" not in reasons(work)[-1]


def test_a_discarded_refusal_stays_left_once_its_history_expired():
    """The discard is kept on the link, not only in the person's history, which expires (BRIDGE_HISTORY_DAYS)."""
    work = world()
    discarded(work)
    assert work.store.history.erase(link_of(work).ref)
    assert backfill(Backfiller(work), "42", apply=True).view()["queued"] == 0 and not work.queue.sent


def test_doctor_warns_of_a_refusal_whose_letter_is_gone_and_not_of_the_refusals_the_operator_discarded():
    rt = healthy()
    work = rt.work
    for i in range(10):
        _, contact = joined(work, user=f"1{i:03d}", email=f"p{i}@example.com")
        work.apis.rf_.answers = [REFUSED]
        run(work, event(set_value(work, contact, "Yes"), notification=f"m{i}"))
    from chalicelib.services.dead_letters import discard
    assert discard(work, reason="Referral Factory answered 422")["discarded"] == 10    # type: ignore[arg-type]
    work.queue.dead.clear()
    refused(work, 20)
    [gone] = checks(look(rt)[0], "qualification.refused")
    assert gone["what"].startswith("1 lead whose qualification Referral Factory refused over 14 days ago (RF user(s) "
                                   "7)"), gone


# --- a refused lead deleted in Referral Factory --------------------------------------------------------------------
NOT_FOUND = Permanent("Referral Factory answered 404: user not found", status=404)
DELETED = ("qualification refused by Referral Factory, its dead letter gone (SQS keeps one 14 days), and deleted in "
           "Referral Factory (not listed, 404): marked so, never checked again (`doctor` no longer counts it)")
BOB = {"id": 8, "email": "bob@example.com", "type": "person_invited", "referrer_id": 1}


class DeletingRF(PeopleRF):
    """RF listing `users`; asked for one (GET /users/ID), it answers `answer` (its 404 by default: deleted)."""

    def __init__(self, users: list[dict], answer: Any = NOT_FOUND):
        super().__init__(users)
        self.answer, self.calls = answer, []

    def get_user(self, user_id: str) -> dict:
        self.calls.append(f"get_user {user_id}")
        if isinstance(self.answer, Exception):
            raise self.answer
        return {"id": user_id, "campaign_id": 42, "qualified_at": None}

    def get_campaign(self, campaign_id: str) -> dict:
        return {"id": campaign_id}


def deleted_in_rf(work: FakeWork, answer: Any = NOT_FOUND) -> Backfiller:
    """Ann's refusal is 20 days old, and RF lists Bob alone (linked): Ann was deleted there."""
    refused(work, 20)
    joined(work, user="8", email="bob@example.com")
    rt = Backfiller(work)
    rt._rf = DeletingRF([BOB], answer)
    return rt


def test_backfill_marks_a_refused_lead_deleted_in_rf_once_and_leaves_it_for_good():
    """Ann was deleted in RF: no run could ever check her again. The dry run names her (RF asked: 404) and writes
    nothing; `--apply` marks her link, with why in her history, and queues nothing; a run again asks RF nothing."""
    work = world()
    rt = deleted_in_rf(work)
    dry = backfill(rt, "42").view()
    assert dry["people"] == {DELETED.replace("marked so, never", "would be marked so, then never"):
                             [{"rf_user_id": "7", "email": "a***@example.com"}]}, dry
    assert link_of(work).rf_deleted_at is None and not work.queue.sent and rt._rf.calls == ["get_user 7"]
    done = backfill(rt, "42", apply=True).view()
    assert done["queued"] == 0 and done["people"] == {DELETED: [{"rf_user_id": "7", "email": "a***@example.com"}]}
    assert done["outcomes"] == {"already linked": 1, DELETED: 1} and not work.queue.sent
    assert link_of(work).rf_deleted_at == work.clock() and link_of(work).qualification is QState.FAILED
    assert work.store.history.entries(link_of(work).ref)[-1].outcome == "deleted_in_rf"
    rt._rf.calls.clear()
    again = backfill(rt, "42", apply=True).view()
    assert again["outcomes"] == {"already linked": 1} and rt._rf.calls == [] and not work.queue.sent


def test_doctor_explain_and_a_later_webhook_say_a_refused_lead_deleted_in_rf_is_done_with():
    rt = healthy()
    work = rt.work
    contact = refused(work, 20)
    assert checks(look(rt)[0], "qualification.refused")                 # warned of while it may be checked again
    backfiller = Backfiller(work)
    backfiller._rf = DeletingRF([])
    assert backfill(backfiller, "42", apply=True).view()["outcomes"] == {DELETED: 1}
    assert not checks(look(rt)[0], "qualification.refused")
    text = as_text(explain(work, "ann@example.com"))
    assert "deleted in Referral Factory" in text and "`bridge backfill 42 --apply` checks" not in text, text
    fixes = [line.strip() for line in text.splitlines() if "fix:" in line]
    assert len(fixes) == 2 and all(f.startswith("fix: nothing left to do: deleted in Referral Factory") for f in fixes)
    run(work, event(contact, notification="n2", created_at=work.clock()))
    assert "deleted in Referral Factory" in reasons(work)[-1] and "backfill 42 --apply` checks" not in reasons(work)[-1]


def test_a_refused_lead_rf_did_not_list_but_answers_for_is_checked_again():
    """RF's pages are offsets: a deletion while they are read shifts them, and skips someone. RF answering for Ann,
    she was not deleted: checked again, as if listed."""
    work = world()
    rt = deleted_in_rf(work, answer=None)
    done = backfill(rt, "42", apply=True).view()
    assert done["queued"] == 1 and done["people"] == {RECHECK: [{"rf_user_id": "7", "email": "a***@example.com"}]}
    assert link_of(work).rf_deleted_at is None
    run(work, *queued(work))
    assert link_of(work).qualification is QState.QUALIFIED


def test_the_check_of_an_unlisted_refused_lead_and_the_counts_owed_go_out_in_one_send():
    """The campaign keeps referral counts: Ann counts for referrer 1, whose count was never written (owed), and RF
    did not list her but answers for her (checked again). Both messages are queued at the end of the run, in one
    SendMessageBatch call, not one call each."""
    from tests.unit.scenario import RULE
    from tests.unit.test_referral_count import counting_settings
    work = world()
    rt = deleted_in_rf(work, answer=None)
    rt._rf = DeletingRF([{**BOB, "referrer_id": None}], answer=None)       # Bob counts for nobody: nothing a page
    work.store.settings.put("42", {**counting_settings(), "qualification": RULE}, "ws")
    assert work.store.links.count_applied_many([(link_of(work).ref, "1", [])]) == [True]
    done = backfill(rt, "42", apply=True).view()
    assert (done["queued"], done["count_writes_queued"]) == (1, 1)
    assert sorted(m["kind"] for m in work.queue.sent) == ["intercom.check", "referral.count"]
    assert work.queue.batch_calls == [2]


def test_a_refused_lead_rf_did_not_list_nor_could_be_asked_about_is_left_for_a_next_run():
    work = world()
    rt = deleted_in_rf(work, answer=Permanent("Referral Factory answered 403: IP blocked", status=403))
    done = backfill(rt, "42", apply=True).view()
    [(said, [who])] = [(k, v) for k, v in done["people"].items()]
    assert "could not be asked about it: left as it is (run again)" in said and who["reason"].endswith("IP blocked")
    assert done["queued"] == 0 and link_of(work).rf_deleted_at is None and not work.queue.sent


def test_a_lead_marked_deleted_in_rf_that_rf_lists_again_is_checked_again():
    work = world()
    rt = deleted_in_rf(work)
    backfill(rt, "42", apply=True)
    rt._rf = DeletingRF([ANN, BOB], answer=None)
    done = backfill(rt, "42", apply=True).view()
    assert done["queued"] == 1 and done["people"] == {RECHECK: [{"rf_user_id": "7", "email": "a***@example.com"}]}
    run(work, *queued(work))
    assert link_of(work).qualification is QState.QUALIFIED and link_of(work).rf_deleted_at is None
