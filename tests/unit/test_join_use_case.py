"""Use case: a person joined. Through the worker's registry, on the store's twin and fake APIs."""
from __future__ import annotations

from chalicelib.domain.link import LinkStatus, PersonRef
from chalicelib.domain.qualification import QState
from chalicelib.errors import Permanent
from chalicelib.messages import JoinMessage
from tests.fakes import FakeApis, FakeIntercom, FakeRF, FakeWork
from tests.unit.scenario import history, link_of, run

SETTINGS = {
    "campaign_id": "42", "workspace": "ws",
    "leads": {"action": "create_lead", "duplicates": "update", "tag": "Referred",
              "fields": [{"from": "email", "to": "email"}, {"from": "first_name", "to": "name"},
                         {"from": "referrer_name", "to": "custom_attributes.referred_by"},
                         {"from": "campaign_name", "to": "custom_attributes.campaign"}]},
    "referrers": {"action": "nothing"},
    "qualification": {"attribute": "custom_attributes.signed_up", "value": "Yes", "initial_value": "No"},
}
LEAD = {"id": "7", "campaign_id": "42", "email": "Ann@Example.com", "first_name": "Ann", "type": "lead",
        "referrer_id": "3"}
RF_USERS = {"7": {**LEAD, "code": "c7"}, "3": {"id": 3, "first_name": "Rita", "email": "rita@example.com"}}


def world(settings=SETTINGS) -> FakeWork:
    work = FakeWork(FakeApis(FakeIntercom(), FakeRF(dict(RF_USERS))))
    work.store.settings.put("42", settings, "ws")
    return work


def join(person=LEAD, user="7", replayed_from=None) -> dict:
    return JoinMessage(campaign_id="42", rf_user_id=user, person=person, replayed_from=replayed_from).wire()


def test_a_new_lead_is_created_with_referrer_and_campaign_fields_and_the_initial_value():
    work = world()
    assert run(work, join()) == {"done": 1, "retry": 0, "dead": 0}
    [contact] = work.apis.intercom_.contacts.values()
    assert contact["role"] == "lead" and contact["email"] == "ann@example.com"
    assert contact["custom_attributes"] == {"referred_by": "Rita", "campaign": "Friends of Acme", "signed_up": "No"}
    link = link_of(work)
    assert (link.status, link.baseline, link.qualification, link.email) == (
        LinkStatus.LINKED, "No", QState.PENDING, "ann@example.com")
    assert work.apis.intercom_.tags == [(contact["id"], "Referred")]
    received = work.store.history.entries(PersonRef("42", "7"))[0]
    assert received.details == {"type": "lead", "fetched_from_referral_factory": ["referrer"]}
    assert history(work)[1:] == [("contact", "created"), ("tag", "tagged")]


def test_the_same_join_again_is_a_counted_repeat_and_changes_nothing():
    work = world()
    run(work, join())
    run(work, join(), join())
    assert work.apis.intercom_.calls.count("create") == 1
    assert [e.count for e in work.store.history.entries(PersonRef("42", "7")) if e.event == "join"] == [2]


def test_an_existing_user_found_by_409_is_updated_but_keeps_its_value_as_the_baseline():
    work = world()
    existing = work.apis.intercom_.add("ann@example.com", role="user", searchable=False, signed_up="Yes")
    run(work, join())
    link = link_of(work)
    assert existing["custom_attributes"]["signed_up"] == "Yes" and existing["custom_attributes"]["referred_by"] == "Rita"
    assert (link.contact_id, link.baseline) == (existing["id"], "Yes")
    assert "409 conflict" in work.store.history.entries(link.ref)[1].reason


def test_a_try_that_failed_after_creating_the_contact_resumes_it_with_its_recorded_baseline():
    work = world()
    work.apis.intercom_.fail["tag"] = Permanent("Intercom answered 400: tag refused")
    assert run(work, join())["dead"] == 1
    failed = link_of(work)
    assert failed.status is LinkStatus.FAILED and failed.baseline == "No" and failed.email == "ann@example.com"
    [contact] = work.apis.intercom_.contacts.values()
    contact["custom_attributes"]["signed_up"] = "Yes"                     # the lead signed up meanwhile
    run(work, join(replayed_from="dead-1"))
    link = link_of(work)
    assert link.status is LinkStatus.LINKED and link.contact_id == contact["id"] and link.baseline == "No"
    assert work.apis.intercom_.calls.count("create") == 1
    assert ("contact", "resumed") in history(work)
    assert work.apis.rf_.qualified == ["7"]           # the webhooks it missed: judged when it resumed


def test_a_vanished_contact_from_an_earlier_try_is_created_again():
    work = world()
    work.apis.intercom_.fail["tag"] = Permanent("Intercom answered 400: tag refused")
    run(work, join())
    work.apis.intercom_.contacts.clear()
    run(work, join(replayed_from="dead-1"))
    assert link_of(work).contact_id in work.apis.intercom_.contacts
    assert ("contact", "vanished") in history(work)


def test_action_nothing_is_recorded_as_ignored_with_the_reason():
    work = world()
    run(work, join({**LEAD, "type": "referrer", "referrer_id": None}))
    link = link_of(work)
    assert link.status is LinkStatus.IGNORED and "referrers.action is nothing" in link.reason
    assert work.apis.intercom_.calls == []


def test_a_join_without_settings_or_type_fails_alone_with_a_clear_reason():
    work = world()
    other = JoinMessage(campaign_id="99", rf_user_id="1", person={"id": "1", "campaign_id": "99"}).wire()
    no_type = join({"id": "8", "campaign_id": "42", "email": "x@example.com"}, user="8")
    work.apis.rf_.users["8"] = {"id": "8", "email": "x@example.com"}
    assert run(work, other, no_type, join()) == {"done": 1, "retry": 0, "dead": 2}
    assert [d["reason"] for d in work.queue.dead] == [
        "campaign 99 has no settings — apply them with `bridge settings apply`",
        "Referral Factory did not say whether this person is a lead or a referrer"]
    assert link_of(work, "8").status is LinkStatus.FAILED


def test_a_join_held_by_another_worker_waits_for_its_lease_without_using_a_try():
    work = world()
    work.store.links.claim(PersonRef("42", "7"), "ws", lease=120)
    work.clock.now += 20
    assert run(work, join()) == {"done": 0, "retry": 0, "dead": 0, "waiting": 1}
    [later] = work.queue.deferred
    assert (later.tries, later.waits) == (0, 1) and 100 <= later.delay <= 103      # until the lease ends
    assert work.apis.intercom_.calls == [] and work.queue.dead == []
    assert history(work)[-1] == ("waiting", "deferred")
