"""The referral count written back beside the link (product.md §4): its checks, who counts for whom,
and its write-back on the store's twin and fake APIs (services/referral_count.py)."""
from __future__ import annotations

import contextlib
import json
from typing import Optional

import pytest

from chalicelib.domain.link import PersonRef
from chalicelib.domain.settings import SettingsError, parse_settings
from chalicelib.domain.sync import check_sync, counted_referrer
from chalicelib.errors import Transient
from chalicelib.messages import JoinMessage, ReferralCountMessage
from chalicelib.services import sync
from chalicelib.services.referral_count import on_count
from chalicelib.services.worker import RetryBatch
from tests.fakes import FakeApis, FakeIntercom, FakeRF, FakeWork
from tests.support.killed import Killed
from tests.unit.scenario import RULE, joined, run, settings

WS = "ws"
LINK, COUNT = "custom_attributes.referral_link", "custom_attributes.referral_count"
ATTRIBUTES = {LINK: {"data_type": "string"}, COUNT: {"data_type": "integer"}, "name": {"data_type": "string"},
              "email": {"data_type": "string"}}
RITA = PersonRef("42", "100")


def counting_settings(**block) -> dict:
    return {**settings(rule=None), "sync": {"source": "users", "fields": [{"from": "email", "to": "email"},
                                                                          {"from": "name", "to": "first_name"}],
                                            "referral_link_attribute": LINK, "referral_count_attribute": COUNT,
                                            **block}}


# --- the pure decisions ---------------------------------------------------------------------------
@pytest.mark.parametrize("attribute,problem", [
    (None, "sync.referral_count_attribute: custom_attributes.referral_count does not exist in workspace ws — "
           "create it as a Number (integer) attribute in Intercom (Settings > Data > People) or fix the name"),
    ({"data_type": "string"}, "sync.referral_count_attribute: custom_attributes.referral_count is of type string, "
                              "not an integer attribute — a referral count is a whole number: create a Number "
                              "(integer) attribute and name it here"),
    ({"data_type": "integer", "archived": True}, "sync.referral_count_attribute: custom_attributes.referral_count "
                                                 "is archived or read-only in Intercom — unarchive it or name a "
                                                 "writable integer attribute"),
    ({"data_type": "integer", "api_writable": False}, "sync.referral_count_attribute: "
                                                      "custom_attributes.referral_count is archived or read-only in "
                                                      "Intercom — unarchive it or name a writable integer attribute"),
    ({"data_type": "integer"}, None),
])
def test_the_count_attribute_is_checked_as_the_link_attribute_is(attribute, problem):
    attributes = {k: v for k, v in ATTRIBUTES.items() if k != COUNT}
    if attribute is not None:
        attributes[COUNT] = attribute
    problems = check_sync(parse_settings(counting_settings()), attributes, None)
    assert problems == ([problem] if problem else [])


def test_one_attribute_cannot_hold_both_the_link_and_the_count():
    with pytest.raises(SettingsError) as refused:
        parse_settings(counting_settings(referral_count_attribute=LINK))
    assert refused.value.problems == [
        "sync: referral_count_attribute: custom_attributes.referral_link is also the referral_link_attribute — a "
        "count and a link cannot share one attribute: name an integer attribute for the count"]


def test_a_lead_counts_for_its_referrer_only_where_the_campaign_keeps_counts():
    counting, plain = parse_settings(counting_settings()), parse_settings(settings(rule=None))
    assert counted_referrer(counting, {"type": "lead", "referrer_id": 100}) == "100"
    assert counted_referrer(counting, {"type": "referrer"}) is None
    assert counted_referrer(counting, {"type": "lead", "referrer_id": None}) is None
    assert counted_referrer(plain, {"type": "lead", "referrer_id": "100"}) is None


# --- joins count, the count is written ----------------------------------------------------------
def world(queue: bool = False) -> FakeWork:
    """Campaign 42 keeps referral counts in ws; RF knows Rita (user 100). `queue`: the worker has its queue
    (BRIDGE_QUEUE_URL), as `bridge forget` needs to ask for a lowered count to be written."""
    rf = FakeRF({"100": {"id": 100, "email": "rita@example.com", "first_name": "Rita"}})
    config = {"BRIDGE_QUEUE_URL": "memory://queue"} if queue else {}
    work = FakeWork(FakeApis(FakeIntercom(dict(ATTRIBUTES)), rf), **config)
    work.store.settings.put("42", counting_settings(), WS)
    return work


def lead_join(user: str, referrer: str = "100") -> dict:
    person = {"id": user, "campaign_id": "42", "email": f"lead{user}@example.com", "first_name": f"L{user}",
              "type": "lead", "referrer_id": referrer}
    return JoinMessage(campaign_id="42", rf_user_id=user, person=person).wire()


def sent(work: FakeWork, kind: str = "referral.count") -> list[dict]:
    out = [m for m in work.queue.sent if isinstance(m, dict) and m.get("kind") == kind]
    work.queue.sent[:] = [m for m in work.queue.sent if m not in out]
    return out


def rita_to_enrol(work: FakeWork) -> dict:
    """Rita's contact in Intercom (a user, named), whom RF makes user 100 (RITA) with her link when sync enrols her."""
    rita = work.apis.intercom_.add("rita@example.com", role="user")
    rita["name"] = "Rita"
    work.apis.rf_.create_user = lambda body: {**body, "id": 100, "url": "https://rf.example/r/rita"}  # type: ignore
    return rita


def test_two_leads_each_delivered_twice_out_of_order_make_a_count_of_2_on_the_referrers_contact():
    work = world()
    _, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")       # linked by her join
    run(work, lead_join("2"), lead_join("1"))
    run(work, lead_join("1"))
    run(work, lead_join("2"))
    assert work.store.links.referrals(RITA).n == 2
    messages = sent(work)
    assert [(m["rf_user_id"], m["unless_written"]) for m in messages] == [("100", False), ("100", True),
                                                                          ("100", True)]
    run(work, *messages)
    assert rita["custom_attributes"]["referral_count"] == 2
    assert work.apis.intercom_.calls.count("update") == 1       # the repeats' checks found it written
    [written] = [e for e in work.store.history.entries(RITA) if e.event == "referral_count"]
    assert (written.outcome, written.reason) == ("written", f"referral count: 2 written to {COUNT}")


def test_a_campaign_without_the_setting_counts_nothing_and_sends_nothing():
    work = world()
    work.store.settings.put("42", settings(rule=None), WS)
    run(work, lead_join("1"), lead_join("2"))
    assert work.store.links.referrals(RITA) is None and sent(work) == []


def test_a_count_whose_referrer_has_no_known_contact_is_kept_and_written_when_sync_enrols_them():
    work = world()
    run(work, lead_join("1"), lead_join("2"))
    assert run(work, *sent(work)) == {"done": 1, "retry": 0, "dead": 0}
    assert work.apis.intercom_.calls.count("update") == 0                  # nobody to write to yet: kept
    rita = rita_to_enrol(work)
    sync.start(work.deps, "42")
    run(work, *sent(work, "sync.page"))
    run(work, *sent(work))
    assert rita["custom_attributes"] == {"referral_link": "https://rf.example/r/rita", "referral_count": 2}


def test_a_failed_write_is_in_the_referrers_history_with_intercoms_message_and_the_retry_writes_the_count():
    work = world()
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"))
    [message] = sent(work)
    work.apis.intercom_.fail["update"] = Transient("Intercom answered 503: service_unavailable")
    with pytest.raises(RetryBatch):
        run(work, message)
    assert work.store.links.referrals(RITA).n == 1 and work.store.links.referrals(RITA).written is None
    run(work, message)                                                      # SQS delivers it again
    assert [(e.outcome, e.reason) for e in work.store.history.entries(RITA) if e.event == "referral_count"] == [
        ("failed", f"referral count: 1 could not be written to {COUNT}: Intercom answered 503: service_unavailable"),
        ("written", f"referral count: 1 written to {COUNT}")]


class Reordering(FakeIntercom):
    """Intercom where the first PUT of a count reaches it only after a second worker's whole write
    (the two PUTs reorder): `between` runs when the first PUT is on its way."""

    def __init__(self, attributes: dict):
        super().__init__(attributes)
        self.between = None

    def update_contact(self, contact_id: str, body: dict) -> dict:
        if self.between is not None:
            between, self.between = self.between, None
            between()                     # the other worker: its lead counted, its PUT applied first
        return super().update_contact(contact_id, body)


def test_two_workers_writing_one_count_at_once_leave_intercom_with_the_latest_count():
    intercom = Reordering(dict(ATTRIBUTES))
    work = FakeWork(FakeApis(intercom, FakeRF()))
    work.store.settings.put("42", counting_settings(), WS)
    _, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"))
    first = ReferralCountMessage.model_validate(sent(work)[0])

    def second_worker() -> None:
        run(work, lead_join("2"))                      # count 2, and its own message, worked at once
        run(work, *sent(work))
        assert rita["custom_attributes"]["referral_count"] == 2
    intercom.between = second_worker
    assert on_count(first, work.deps) == "written"     # its PUT of 1 lands after the 2: it reads 2, writes 2
    assert rita["custom_attributes"]["referral_count"] == 2
    assert [json.loads(json.dumps(e.details))["count"] for e in work.store.history.entries(RITA)
            if e.event == "referral_count"] == [2]             # one entry, the latest write


def test_a_lead_whose_webhook_leaves_out_its_referrer_counts_for_the_one_rf_names():
    work = world()
    work.apis.rf_.users["5"] = {"id": 5, "email": "lead5@example.com", "first_name": "L5", "referrer_id": 100}
    thin = {"id": "5", "campaign_id": "42", "email": "lead5@example.com", "first_name": "L5", "type": "lead"}
    run(work, JoinMessage(campaign_id="42", rf_user_id="5", person=thin).wire())
    assert work.apis.rf_.calls == ["get_user 5"]
    assert work.store.links.referrals(RITA).n == 1


def test_the_count_goes_to_the_contact_the_referrers_link_has_now_not_the_one_sync_first_saw():
    work = world()
    link, _ = joined(work, "100", "rita@example.com", kind="referrer", role="lead")
    work.store.links.referrer_contact(RITA, link.contact_id, link.workspace)            # what sync enrolled
    user = work.apis.intercom_.add("rita@example.com", role="user")       # the lead merged into this user
    work.store.links.move(link, user["id"], [])
    run(work, lead_join("1"))
    run(work, *sent(work))
    assert user["custom_attributes"]["referral_count"] == 1


def test_a_sync_page_asks_for_the_count_at_once_so_a_worker_that_dies_after_the_ledger_write_still_asked():
    work = world()
    run(work, lead_join("1"))
    sent(work)
    rita = rita_to_enrol(work)
    sync.start(work.deps, "42")
    [page] = sent(work, "sync.page")

    intend = work.store.sync.intend

    def recorded_then_killed(campaign_id, entries):
        written = intend(campaign_id, entries)
        if any(e.count_known for e in entries):   # the ledger now says the count knows her contact
            raise Killed()
        return written
    work.store.sync.intend = recorded_then_killed     # type: ignore
    with pytest.raises(Killed):
        run(work, page)
    [asked] = sent(work)
    assert asked["rf_user_id"] == "100"


def test_a_referrer_whose_link_write_intercom_refused_still_gets_the_count_of_her_leads():
    """Her leads joined before sync enrolled her (their count kept, nobody to write it to). Sync enrols her; Intercom
    refuses the write of her link (another attribute than the count's). She counts as enrolled, and the count
    learns her contact all the same: her count is written, though her link is not."""
    from chalicelib.errors import Permanent

    work = world()
    run(work, lead_join("1"), lead_join("2"))
    run(work, *sent(work))
    rita = rita_to_enrol(work)
    work.apis.intercom_.fail["update"] = Permanent("Intercom answered 400: referral_link is read-only", status=400)
    sync.start(work.deps, "42")
    run(work, *sent(work, "sync.page"))
    assert work.store.sync.run("42").counts == {"enrolled_writeback_failed": 1}
    run(work, *sent(work))
    assert rita["custom_attributes"].get("referral_count") == 2


def test_a_forgotten_lead_whose_join_comes_again_counts_once_and_intercom_is_corrected_after_the_forget():
    from chalicelib.services.privacy import forget
    work = world(queue=True)
    _, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"), lead_join("2"))
    run(work, *sent(work))
    assert rita["custom_attributes"]["referral_count"] == 2
    assert forget(work, "lead1@example.com")["referral_counts_rewritten"] == 1
    assert work.store.links.referrals(RITA).n == 1
    run(work, *sent(work))                                 # the forget asked for the count to be written
    assert rita["custom_attributes"]["referral_count"] == 1
    run(work, lead_join("1"))                              # RF sends her join again (or backfill --apply)
    run(work, *sent(work))
    assert work.store.links.referrals(RITA).n == 2 and rita["custom_attributes"]["referral_count"] == 2
    forget(work, "lead1@example.com")
    forget(work, "lead2@example.com")
    run(work, *sent(work))                                 # no lead left: Intercom is told 0
    assert rita["custom_attributes"]["referral_count"] == 0


def test_a_lead_counted_a_minute_before_a_forgotten_referrer_came_back_is_not_taken_off_her_new_count():
    """Rita was forgotten (her count erased); her first new lead joins a minute after lead 1 counted.
    Forgetting lead 1 leaves her new count alone; forgetting the new lead takes it off."""
    from chalicelib.services.privacy import forget
    work = world(queue=True)
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"))
    forget(work, "rita@example.com")
    work.clock.now += 60
    run(work, lead_join("2"))                              # her count begins again
    assert forget(work, "lead1@example.com")["referral_counts_rewritten"] == 0
    assert work.store.links.referrals(RITA).n == 1
    assert forget(work, "lead2@example.com")["referral_counts_rewritten"] == 1
    assert work.store.links.referrals(RITA).n == 0


def test_forget_without_the_queue_says_the_lowered_count_is_not_written_yet():
    from chalicelib.services.privacy import forget
    from chalicelib.ports.store import COUNT_ASK_GRACE
    from chalicelib.services.reconcile import reconcile
    work = world()
    _, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"))
    run(work, *sent(work))
    assert forget(work, "lead1@example.com")["referral_counts_rewritten"] == (
        "1, not yet written to Intercom: BRIDGE_QUEUE_URL is not set (reconciliation's next run writes it)")
    assert work.store.links.referrals(RITA).n == 0 and sent(work) == []
    work.clock.now += COUNT_ASK_GRACE + 1                 # (the deployed stack's reconciliation has its queue)
    reconcile(work)
    run(work, *sent(work))
    assert rita["custom_attributes"]["referral_count"] == 0


def test_a_failed_ask_for_the_count_fails_only_the_joins_that_asked_and_a_resumed_lead_is_still_judged():
    from chalicelib.domain.link import LinkStatus
    from tests.unit.scenario import RULE
    work = world()
    work.store.settings.put("42", {**counting_settings(), "qualification": RULE}, WS)
    work.apis.intercom_.attributes["custom_attributes.signed_up"] = {"data_type": "string"}
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    work.store.links.claim(PersonRef("42", "7"), WS)                   # a dead worker's claim and its contact,
    ann = work.apis.intercom_.add("lead7@example.com", signed_up="No", rf_person="42#7")
    ann["custom_attributes"]["signed_up"] = "Yes"                      # who signed up meanwhile
    work.clock.now += work.store.links.lease + 1
    send_many = refuse_counts(work)
    with pytest.raises(RetryBatch):
        run(work, lead_join("7"), lead_join("1"), lead_join("9", referrer=None))
    assert work.queue.deleted == ["rh2"]                 # the lead who counts for nobody is done
    assert work.apis.rf_.qualified == ["7"]              # the resumed lead was judged (before the ask failed)
    assert {work.store.links.get(PersonRef("42", u)).status for u in "719"} == {LinkStatus.LINKED}
    assert work.store.links.referrals(RITA).n == 2
    work.queue.send_many = send_many                                    # type: ignore
    run(work, lead_join("7"), lead_join("1"))                           # tried again: repeats, which ask again
    run(work, *sent(work))
    assert work.apis.intercom_.contacts[link_contact(work, "100")]["custom_attributes"]["referral_count"] == 2


def test_a_lead_with_a_kept_count_whose_join_could_not_ask_for_it_asks_when_her_join_comes_again():
    """Bo (8) joined naming Ann (7) as his referrer before her own join: her count (1) is kept. Her join links her
    as a lead (a lead with no count, as Bo, asks nothing for himself); SQS refuses its ask, so her join is tried
    again: a repeat, which asks again, and her contact gets the count."""
    work = world()
    run(work, lead_join("8", referrer="7"))
    asked = sent(work)
    assert [m["rf_user_id"] for m in asked] == ["7"]                  # Bo, with no count, asks nothing for himself
    run(work, *asked)                                                 # kept: no contact of Ann's known yet
    send_many = refuse_counts(work)
    with pytest.raises(RetryBatch):
        run(work, lead_join("7"))
    work.queue.send_many = send_many                                    # type: ignore
    run(work, lead_join("7"))
    asked = sent(work)
    assert sorted((m["rf_user_id"], m["unless_written"]) for m in asked) == [("100", True), ("7", True)]
    run(work, *asked)
    assert work.apis.intercom_.contacts[link_contact(work, "7")]["custom_attributes"]["referral_count"] == 1


def link_contact(work: FakeWork, user: str) -> str:
    return str(work.store.links.get(PersonRef("42", user)).contact_id)


def refuse_counts(work: FakeWork):
    """SQS refuses the sends of referral.count messages: the queue's own send_many, to put back."""
    send_many = work.queue.send_many

    def refused(messages, delay=0):
        if any(m.get("kind") == "referral.count" for m in messages):
            raise RuntimeError("SQS refused 1 message(s)")
        send_many(messages, delay)
    work.queue.send_many = refused                                      # type: ignore
    return send_many


def test_a_referrers_own_join_whose_ask_failed_asks_again_when_it_comes_again():
    work = world()
    run(work, lead_join("1"))
    run(work, *sent(work))                                              # kept: no contact known for her
    rita = {"id": "100", "campaign_id": "42", "email": "rita@example.com", "first_name": "Rita", "type": "referrer"}
    send_many = refuse_counts(work)
    with pytest.raises(RetryBatch):
        run(work, JoinMessage(campaign_id="42", rf_user_id="100", person=rita).wire())
    work.queue.send_many = send_many                                    # type: ignore
    run(work, JoinMessage(campaign_id="42", rf_user_id="100", person=rita).wire())    # a repeat: asks again
    [asked] = sent(work)
    assert (asked["rf_user_id"], asked["unless_written"]) == ("100", True)
    run(work, asked)
    assert work.apis.intercom_.contacts[link_contact(work, "100")]["custom_attributes"]["referral_count"] == 1


def test_a_referrers_history_keeps_one_entry_for_the_latest_write_however_many_and_each_failure():
    work = world()
    _, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")
    for user in range(1, 21):
        run(work, lead_join(str(user)))
        if user == 10:
            work.apis.intercom_.fail["update"] = Transient("Intercom answered 503: service_unavailable")
            with pytest.raises(RetryBatch):
                run(work, *sent(work))
        run(work, *sent(work))
    assert rita["custom_attributes"]["referral_count"] == 20
    assert [(e.outcome, e.reason) for e in work.store.history.entries(RITA) if e.event == "referral_count"] == [
        ("failed", f"referral count: 10 could not be written to {COUNT}: Intercom answered 503: service_unavailable"),
        ("written", f"referral count: 20 written to {COUNT}")]


def test_the_referrers_own_join_names_the_contact_it_linked_so_a_read_that_misses_her_link_still_writes():
    work = world()
    run(work, lead_join("1"))                                    # counted and kept: no contact known yet
    run(work, *sent(work))
    rita = {"id": "100", "campaign_id": "42", "email": "rita@example.com", "first_name": "Rita", "type": "referrer"}
    run(work, JoinMessage(campaign_id="42", rf_user_id="100", person=rita).wire())
    [asked] = sent(work)
    [contact] = [c for c in work.apis.intercom_.contacts.values() if c.get("email") == "rita@example.com"]
    assert asked["contact_id"] == contact["id"]
    read = work.store.links.get_many
    work.store.links.get_many = lambda refs: {r: l for r, l in read(refs).items() if r != RITA}  # type: ignore  # stale
    run(work, asked)
    assert contact["custom_attributes"]["referral_count"] == 1


def test_counts_without_sync_and_without_referrer_contacts_are_refused_as_never_written():
    document = {**settings(rule=None), "referrers": {"action": "nothing"},
                "sync": {"referral_count_attribute": COUNT}}
    with pytest.raises(SettingsError) as refused:
        parse_settings(document)
    assert refused.value.problems[0].startswith("sync.referral_count_attribute: the counts would be kept but never "
                                                "written")                # its key, as other problems name theirs
    assert "set referrers.action to create_user or create_lead" in refused.value.problems[0]
    assert parse_settings({**document, "referrers": {"action": "create_user", "fields": [
        {"from": "email", "to": "email"}]}}).sync.counts_only


def test_a_referrer_sync_enrolled_before_the_count_was_kept_gets_it_at_the_next_run_in_one_send():
    work = world()
    plain = counting_settings()
    del plain["sync"]["referral_count_attribute"]
    work.store.settings.put("42", plain, WS)
    rita = rita_to_enrol(work)
    sync.start(work.deps, "42")
    run(work, *sent(work, "sync.page"))                          # enrolled, her link written back
    work.store.settings.put("42", counting_settings(), WS)      # then the campaign keeps counts
    run(work, lead_join("1"), lead_join("2"))
    run(work, *sent(work))
    assert "referral_count" not in rita["custom_attributes"]   # kept: the count does not know her contact
    sends = []
    send_many = work.queue.send_many
    work.queue.send_many = lambda messages, delay=0: (sends.append(messages), send_many(messages, delay))  # type: ignore
    sync.start(work.deps, "42")
    run(work, *sent(work, "sync.page"))                          # the full run sees her again
    assert [len(m) for m in sends if any(x.get("kind") == "referral.count" for x in m)] == [1]
    run(work, *sent(work))
    assert rita["custom_attributes"]["referral_count"] == 2


def test_a_parked_count_replayed_after_its_referrer_was_forgotten_and_the_count_turned_off_writes_no_history():
    """The replayed write was in the work queue when `bridge forget` erased Rita, and the count was then
    taken out of the settings: the bridge keeps nothing about her, so the replay notes nothing either
    (as a replayed duplicate check of someone forgotten)."""
    from chalicelib.errors import Permanent
    from chalicelib.services.privacy import forget
    work = world(queue=True)
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"))
    [count] = sent(work)
    work.apis.intercom_.fail["update"] = Permanent("Intercom answered 400 parameter_invalid")
    assert run(work, count)["dead"] == 1
    forget(work, "rita@example.com")
    assert work.store.history.entries(RITA) == []
    document = counting_settings()
    del document["sync"]["referral_count_attribute"]
    work.store.settings.put("42", document, WS)
    assert run(work, {**count, "replayed_from": "dead-1"})["done"] == 1
    assert work.store.history.entries(RITA) == []


def apply(work: FakeWork, document: dict) -> list[str]:
    """`bridge settings apply --offline` on the worker's store: the answer's warnings (tests.unit.moves imports
    this module, so it is imported here)."""
    from tests.unit import moves
    return moves.apply(work, document)


BACKFILL = "run `bridge backfill 42 --apply` to write each referrer's count to it now"


def test_switching_the_count_to_another_attribute_says_to_backfill_once_people_joined():
    work = world()
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    assert apply(work, counting_settings(referral_count_attribute=COUNT + "2")) == [
        f"referral counts now go to {COUNT}2 (not {COUNT}): {BACKFILL} ({COUNT} keeps its last value)"]


def test_turning_the_count_on_again_after_a_dropped_write_says_to_backfill_as_a_switch_does():
    """The walkthrough: a count write dead-lettered, the count taken out of the settings, the replay
    wrote nothing ("off"), the count put back: Intercom shows the old count until a backfill."""
    from chalicelib.errors import Permanent
    work = world()
    _, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"))
    run(work, *sent(work))
    run(work, lead_join("2"))
    [count] = sent(work)
    work.apis.intercom_.fail["update"] = Permanent("Intercom answered 400 parameter_invalid")
    assert run(work, count)["dead"] == 1
    off = counting_settings()
    del off["sync"]["referral_count_attribute"]
    assert apply(work, off) == []
    assert run(work, {**count, "replayed_from": "dead-1"})["done"] == 1
    assert apply(work, counting_settings()) == [
        f"referral counts are turned on, to {COUNT}: {BACKFILL} (until then it shows the count last written, if "
        "any, and leads applied while counts were off are not counted)"]
    assert (rita["custom_attributes"]["referral_count"], work.store.links.referrals(RITA).n) == (1, 2)
    assert apply(work, counting_settings()) == []                       # on already: nothing new to say


def test_a_campaign_applied_anew_with_the_count_says_to_backfill_only_when_the_store_has_its_people():
    work = world()
    work.store.settings.delete("42")
    assert apply(work, counting_settings()) == []                        # nobody joined: nothing to write
    work.store.settings.delete("42")
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    [warning] = apply(work, counting_settings())
    assert BACKFILL in warning


def test_applying_the_count_over_stored_settings_that_no_longer_parse_says_it_cannot_tell_whether_it_was_on():
    """Settings stored by an older bridge that this one cannot read: whether counts went to the
    attribute before is unknown, so the warning says so instead of claiming they were off."""
    work = world()
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    work.store.settings.put("42", {"campaign_id": "42", "workspace": WS, "no_such_key": True}, WS)
    assert apply(work, counting_settings()) == [
        f"the stored settings no longer parse, so whether referral counts already went to {COUNT} is not known: if "
        "they were off or went elsewhere, " + BACKFILL + " (it counts only leads not counted yet, and writes only "
        "the counts Intercom does not hold)"]


# --- the count backfill owed: kept with the settings, reported by doctor, paid by a completed backfill ---------
class Operating:
    """`bridge backfill` and `bridge doctor` on the worker's store; RF lists `users`, one a page."""

    def __init__(self, work: FakeWork, users: list[dict], fail_page: int = 0):
        from tests.unit.test_answers import PeopleRF
        self.config, self.store, self.clock, self.queue = work.config, work.store, work.clock, work.queue
        self._rf, self.fail_page = PeopleRF(users, per_page=1), fail_page

    def rf(self):
        return self

    def users_page(self, campaign_id: str, after: Optional[str] = None, per_page: int = 250):
        if self._rf.pages + 1 == self.fail_page:
            raise Transient("Referral Factory answered 503: unavailable")
        return self._rf.users_page(campaign_id, after, per_page)

    def intercom(self, workspace: str):
        raise AssertionError("the workspace is not connected: doctor does not call Intercom")


RITA_IN_RF = {"id": 100, "email": "rita@example.com", "type": "person_referring", "referrer_id": None}


def doctor(work: FakeWork) -> tuple[list[str], str]:
    """`bridge doctor 42`: its count-backfill findings (what, why and fix), and its text."""
    from chalicelib.services.doctor import as_text, examine
    report = examine(Operating(work, []), "42", dlq=False)     # type: ignore[arg-type]
    return [f"{f.what} | {f.fix}" for f in report.findings if f.check == "referral_count.backfill" and not f.ok], \
        as_text(report)


def counts_off() -> dict:
    document = counting_settings()
    del document["sync"]["referral_count_attribute"]
    return document


def test_counts_turned_on_where_people_joined_are_reported_by_doctor_until_a_backfill_apply_completes():
    from chalicelib.domain.history import iso
    from chalicelib.services.backfill import backfill
    work = world()
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    apply(work, counts_off())
    assert doctor(work)[0] == []
    since = iso(work.clock())
    [warning] = apply(work, counting_settings())
    assert BACKFILL in warning
    owed = [f"Intercom's referral counts in {COUNT} may be stale since {since}: `bridge settings apply` turned the "
            "counts on or moved them there then, and no `bridge backfill 42 --apply` has completed since | "
            "`bridge backfill 42 --apply`"]
    findings, text = doctor(work)
    assert findings == owed and "fix: `bridge backfill 42 --apply`" in text
    work.clock.now += 60
    assert apply(work, counting_settings()) == [] and doctor(work)[0] == owed     # applied again: still owed, since then
    rt = Operating(work, [RITA_IN_RF])
    assert backfill(rt, "42").view()["dry_run"] and doctor(work)[0] == owed        # a dry run pays nothing
    backfill(rt, "42", apply=True)
    assert doctor(work)[0] == []
    assert apply(work, counting_settings()) == [] and doctor(work)[0] == []       # nothing owed: nothing said


def test_a_backfill_that_fails_part_way_leaves_the_count_backfill_owed():
    from chalicelib.services.backfill import BackfillError, backfill
    work = world()
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    apply(work, counting_settings(referral_count_attribute=COUNT + "2"))
    lead = {"id": 1, "email": "lead1@example.com", "type": "person_invited", "referrer_id": 100}
    with pytest.raises(BackfillError, match="page 2"):
        backfill(Operating(work, [RITA_IN_RF, lead], fail_page=2), "42", apply=True)     # page 1 done, page 2 fails
    [finding] = doctor(work)[0]
    assert finding.startswith(f"Intercom's referral counts in {COUNT}2 may be stale since ")
    backfill(Operating(work, [RITA_IN_RF, lead]), "42", apply=True)
    assert doctor(work)[0] == []


def test_each_warning_to_backfill_is_kept_as_owed_and_counts_turned_off_owe_none():
    def owed() -> Optional[str]:
        stored = work.store.settings.get("42")
        return stored.count_backfill.attribute if stored and stored.count_backfill else None
    work = world()
    # Moved where nobody joined yet: no count was written anywhere, nothing to backfill.
    assert apply(work, counting_settings(referral_count_attribute=COUNT + "2")) == [] and owed() is None
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    assert apply(work, counting_settings()) and owed() == COUNT                                            # moved
    assert apply(work, counts_off()) == [] and owed() is None                                              # off
    work.store.settings.put("42", {"campaign_id": "42", "workspace": WS, "no_such_key": True}, WS)
    assert apply(work, counting_settings()) and owed() == COUNT                           # stored ones unreadable
    assert apply(work, counting_settings(referral_count_attribute=COUNT + "2")) and owed() == COUNT + "2"
    fresh = world()
    fresh.store.settings.delete("42")
    assert apply(fresh, counting_settings()) == [] and fresh.store.settings.get("42").count_backfill is None


@pytest.mark.parametrize("put_fails", [False, True])
def test_a_referrer_forgotten_while_her_count_is_written_gets_no_history_back(put_fails):
    """`bridge forget` erases Rita (her link, count and history) while a worker's PUT of her count is on its way
    (and Intercom answers it, or fails it): the worker writes nothing about her afterwards (docs/operating.md, Erasure:
    nothing that recognises her is kept)."""
    from chalicelib.services.privacy import forget
    intercom = Reordering(dict(ATTRIBUTES))
    work = FakeWork(FakeApis(intercom, FakeRF()), BRIDGE_QUEUE_URL="memory://queue")
    work.store.settings.put("42", counting_settings(), WS)
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"))
    [message] = sent(work)
    def forgotten() -> None:
        forget(work, "rita@example.com")
        if put_fails:
            intercom.fail["update"] = Transient("Intercom answered 503: service_unavailable")
    intercom.between = forgotten
    with pytest.raises(RetryBatch) if put_fails else contextlib.nullcontext():
        run(work, message)
    assert work.store.history.entries(RITA) == []           # (nor the worker's note of the failed try)
    assert work.store.links.referrals(RITA) is None


def test_a_referrer_whose_contact_was_deleted_in_intercom_keeps_her_count_and_no_lead_of_hers_is_dead_lettered():
    """Rita's contact was deleted in Intercom (its webhook marked her link). Each lead joining for her after asked
    for a PUT Intercom answers 404: a dead letter per lead, for ever, however often replayed. Her count is kept
    (as for a referrer whose contact is not known), and her history says why."""
    from chalicelib.domain.history import Entry
    from chalicelib.domain.link import ContactState
    work = world()
    link, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")
    work.store.links.set_contact(link, [Entry("contact", "deleted", "deleted")], state=ContactState.DELETED)
    del work.apis.intercom_.contacts[rita["id"]]
    puts_answer_gone(work.apis.intercom_)
    run(work, lead_join("1"))
    assert run(work, *sent(work)) == {"done": 1, "retry": 0, "dead": 0}
    assert work.store.links.referrals(RITA).n == 1
    [kept] = [e for e in work.store.history.entries(RITA) if e.event == "referral_count"]
    assert kept.outcome == "not_written" and f"contact {rita['id']} was deleted in Intercom" in kept.reason


def puts_answer_gone(intercom: FakeIntercom) -> None:
    """Intercom's PUT of a contact it no longer has: 410 for one merged away, 404 for one deleted."""
    from chalicelib.errors import Permanent
    put = intercom.update_contact

    def put_or_gone(contact_id: str, body: dict) -> dict:
        if contact_id in intercom.merged:
            raise Permanent("Intercom answered 410: contact_merged", status=410)
        if contact_id not in intercom.contacts:
            raise Permanent("Intercom answered 404: not_found", status=404)
        return put(contact_id, body)
    intercom.update_contact = put_or_gone                                # type: ignore[method-assign]


@pytest.mark.parametrize("gone", ["merged", "merged, said 404", "deleted"])
def test_a_referrer_whose_contact_is_gone_without_its_webhook_is_followed_not_dead_lettered_lead_after_lead(gone):
    """Intercom merged Rita's contact into another (or deleted it), and its webhook never came. The PUT of her
    count answers 410 (404): her link follows the merge (to the contact with her email, on a 404), as a lead's
    does, and the count is written to the survivor; a deleted contact is marked so, and her count kept. No lead
    of hers is dead-lettered."""
    work = world()
    link, rita = joined(work, "100", "rita@example.com", kind="referrer", role="lead")
    survivor = work.apis.intercom_.add("rita@example.com" if gone != "deleted" else "other@example.com", role="user")
    work.apis.intercom_.merge(rita["id"], survivor["id"])
    if gone != "merged":
        del work.apis.intercom_.merged[rita["id"]]
    puts_answer_gone(work.apis.intercom_)
    for lead in ("1", "2"):
        run(work, lead_join(lead))
        assert run(work, *sent(work)) == {"done": 1, "retry": 0, "dead": 0}
    if gone != "deleted":
        assert work.store.links.get(RITA).contact_id == survivor["id"]
        assert survivor["custom_attributes"]["referral_count"] == 2
    else:
        assert work.store.links.get(RITA).contact_state == "deleted" and work.store.links.referrals(RITA).n == 2


def test_a_lead_who_refers_others_followed_by_her_counts_write_is_judged_as_after_any_merge():
    """Rita joined as a lead (signed_up "No", require_change) and refers others. Intercom merged her contact into
    an older user of hers holding "Yes", and its webhook was lost: the PUT of her count answers 410 and her link
    follows the merge. What that user held when she joined is not known (a merge changes it), so the check of her
    afterwards does not take its "Yes" for her change, as it would not had the check followed the merge itself."""
    from tests.unit.scenario import check, made
    work = world()
    work.store.settings.put("42", {**counting_settings(), "qualification": RULE}, WS)
    work.apis.intercom_.attributes[RULE["attribute"]] = {"data_type": "string"}
    _, rita = joined(work, "100", "rita@example.com", kind="lead", role="lead")
    survivor = made(work, work.apis.intercom_.add("rita@example.com", role="user", signed_up="Yes"),
                    before_the_join=True)
    work.apis.intercom_.merge(rita["id"], survivor["id"])
    puts_answer_gone(work.apis.intercom_)
    run(work, lead_join("1"))
    assert run(work, *sent(work)) == {"done": 1, "retry": 0, "dead": 0}
    assert survivor["custom_attributes"]["referral_count"] == 1
    run(work, check("100"))
    assert work.store.links.get(RITA).contact_id == survivor["id"] and work.apis.rf_.qualified == []


def test_a_sync_enrolled_referrer_whose_contact_was_merged_without_its_webhook_gets_her_count_on_the_survivor():
    """Sync enrolled Rita's contact (no join of hers linked one); Intercom merged it into another and its webhook
    was lost, so sync's ledger never followed it. The PUT of her count answers 410: the count follows the merge
    (one read) and is written to the survivor, lead after lead, none dead-lettered."""
    work = world()
    rita = work.apis.intercom_.add("rita@example.com", role="lead")
    work.store.links.referrer_contact(RITA, rita["id"], WS)
    survivor = work.apis.intercom_.add("rita@example.com", role="user")
    work.apis.intercom_.merge(rita["id"], survivor["id"])
    puts_answer_gone(work.apis.intercom_)
    for lead in ("1", "2"):
        run(work, lead_join(lead))
        assert run(work, *sent(work)) == {"done": 1, "retry": 0, "dead": 0}
    assert survivor["custom_attributes"]["referral_count"] == 2
    assert work.store.links.referrals(RITA).contact_id == survivor["id"]


@pytest.mark.parametrize("other_contact", [False, True])
def test_a_sync_enrolled_referrer_whose_contact_was_deleted_keeps_her_count_until_sync_enrols_her_again(other_contact):
    """Sync enrolled Rita's contact (no join of hers linked one); Intercom deleted it, and has no other contact with
    her email. Each lead of hers asked for a PUT Intercom answers 404: a dead letter per lead that no replay could
    fix. Her count is kept, her history says why once, and nothing more is sent to fail; once she has a contact
    again (re-created, and enrolled by sync), the next lead writes her count there. (Another contact with her email
    already: the count follows it at once.)"""
    work = world()
    rita = rita_to_enrol(work)
    sync.start(work.deps, "42")
    run(work, *sent(work, "sync.page"))                                  # enrolled: the count knows her contact
    assert work.store.links.referrals(RITA).contact_id == rita["id"]
    del work.apis.intercom_.contacts[rita["id"]]
    other = work.apis.intercom_.add("rita@example.com", role="user") if other_contact else None
    puts_answer_gone(work.apis.intercom_)
    puts, put = [], work.apis.intercom_.update_contact
    work.apis.intercom_.update_contact = lambda c, body: (puts.append(c), put(c, body))[1]  # type: ignore
    for lead in ("1", "2", "3"):
        run(work, lead_join(lead))
        assert run(work, *sent(work)) == {"done": 1, "retry": 0, "dead": 0}
    if other is not None:
        assert other["custom_attributes"]["referral_count"] == 3
        assert work.store.links.referrals(RITA).contact_id == other["id"]
        return
    assert work.store.links.referrals(RITA).n == 3
    assert puts == [rita["id"]]                                          # the first lead's PUT found it gone
    [kept] = [e for e in work.store.history.entries(RITA) if e.event == "referral_count"]
    assert kept.outcome == "not_written" and f"contact {rita['id']} (enrolled by contact sync) was deleted" in kept.reason
    again = work.apis.intercom_.add("rita@example.com", role="user")     # re-created in Intercom
    again["name"] = "Rita"
    sync.start(work.deps, "42")
    run(work, *sent(work, "sync.page"))
    run(work, lead_join("4"))
    run(work, *sent(work))
    assert again["custom_attributes"]["referral_count"] == 4
