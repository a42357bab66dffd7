"""Edge cases found in review: each is something a user would notice (a wrong or missing
qualification, a lost tag, a refused join)."""
from __future__ import annotations

from chalicelib.domain.link import PersonRef
from chalicelib.domain.judge import Sighting

from .conftest import join_body, lead_settings, new_lead, qualifying_settings
from .test_qualification import qualified_ids


def join(bridge, intercom, rf, settings=None, email="ann@example.com"):
    bridge.apply(settings or qualifying_settings())
    lead = new_lead(rf, email=email)
    bridge.post_join(join_body(lead))
    bridge.drain()
    [contact] = intercom.contacts_by_email(email)
    return lead, contact


def test_a_tag_event_does_not_count_as_a_change_of_the_attribute(bridge, intercom, rf):
    settings = qualifying_settings()
    settings["leads"]["duplicates"] = "skip"
    intercom.add_contact("ann@example.com", role="user", custom_attributes={"signed_up": "Yes"})
    lead, contact = join(bridge, intercom, rf, settings)
    tag_event = intercom.webhook_payload("contact.user.tag.created", {
        "type": "contact_tag", "tag": {"type": "tag", "id": "1", "name": "VIP"},
        "contact": {"type": "contact", "id": contact["id"]}})
    bridge.post_intercom(tag_event)
    bridge.notify("contact.user.updated", contact["id"])          # still "Yes": no change happened
    bridge.drain()
    assert rf.qualification_calls == []


def test_reconciliation_recovers_a_qualification_whose_worker_died(bridge, intercom, rf, clock):
    lead, contact = join(bridge, intercom, rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    links = bridge.rt.store.links
    assert links.start_qualifying(links.get(PersonRef("42", str(lead["id"]))))   # ...and the Lambda dies here
    clock.now += 600                                                        # its lease runs out
    bridge.reconcile()
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]


def test_a_failed_qualification_is_not_retried_automatically_only_by_replay(bridge, intercom, rf):
    lead, contact = join(bridge, intercom, rf)
    rf.fail_next("PUT", r"^/users/qualification$", 422, times=10)
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    bridge.notify("contact.lead.updated", contact["id"])            # more webhooks, more reconciliation runs
    bridge.reconcile()
    bridge.drain()
    assert len(rf.qualification_calls) == 1 and len(bridge.dead_letters()) == 1
    rf.clear_faults()
    from chalicelib.services.dead_letters import replay
    replay(bridge.rt)
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]


def test_concurrent_workers_seeing_the_same_change_make_one_rf_call(bridge, intercom, rf):
    """Worker B receives the same change while worker A's RF call is in flight."""
    from chalicelib.config import Config
    from chalicelib.domain.settings import parse_settings
    from chalicelib.runtime import Runtime

    lead, contact = join(bridge, intercom, rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    current = intercom.get(contact["id"])
    a, b = bridge.rt, Runtime(Config.from_env(), clock=bridge.rt.clock, sleeper=bridge.rt.sleeper)
    settings = parse_settings(qualifying_settings())
    real_rf = a.rf()
    outcomes = []

    class InFlight:
        def get_user(self, user_id):                  # the first claim asks RF first
            return real_rf.get_user(user_id)

        def qualify(self, user_id):
            link_b = b.store.links.get(PersonRef("42", str(lead["id"])))
            after = b.deps.qualifier.evaluate(link_b, settings, Sighting(current, "webhook (worker B)"))
            outcomes.append(after.qualification)
            return real_rf.qualify(user_id)

    a.rf = lambda: InFlight()
    link_a = a.store.links.get(PersonRef("42", str(lead["id"])))
    a.deps.qualifier.evaluate(link_a, settings, Sighting(current, "webhook (worker A)"))
    assert qualified_ids(rf) == [lead["id"]] and len(rf.qualification_calls) == 1
    assert outcomes == ["qualifying"]
    history = bridge.history(42, lead["id"])["history"]
    assert any(h["outcome"] == "in_progress_elsewhere" for h in history)


def test_a_join_that_failed_after_creating_the_contact_resumes_it_and_still_tags(bridge, intercom, rf):
    settings = lead_settings(tag="Referred", duplicates="skip")
    bridge.apply(settings)
    lead = new_lead(rf)
    intercom.fail_next("POST", r"^/tags$", 400)                     # fails after the contact exists
    bridge.post_join(join_body(lead))
    bridge.drain()
    from chalicelib.services.dead_letters import replay
    replay(bridge.rt)
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert [t["name"] for t in contact["tags"]["data"]] == ["Referred"]
    outcomes = [h["outcome"] for h in bridge.history(42, lead["id"])["history"]]
    assert "resumed" in outcomes and "skipped_existing" not in outcomes


def test_a_late_archived_event_does_not_undo_a_newer_unarchive(bridge, intercom, rf, clock):
    lead, contact = join(bridge, intercom, rf)
    archived = intercom.webhook_payload("contact.archived", contact["id"], created_at=clock() + 10)
    unarchived = intercom.webhook_payload("contact.unarchive", contact["id"], created_at=clock() + 20)
    bridge.post_intercom(unarchived)
    bridge.drain()
    bridge.post_intercom(archived)                                   # older, delivered later
    bridge.drain()
    assert bridge.history(42, lead["id"])["link"]["contact_state"] is None


def test_the_same_notification_twice_in_one_batch_is_applied_once(bridge, intercom, rf):
    lead, contact = join(bridge, intercom, rf)
    user = intercom.add_contact("ann.work@example.com", role="user")
    intercom.merge(contact["id"], user["id"])
    merged = intercom.webhook_payload("contact.merged", {**intercom.get(user["id"]),
                                                         "merged_from": {"type": "contact", "id": contact["id"]}})
    bridge.post_intercom(merged)
    bridge.post_intercom(merged)
    [outcome] = bridge.drain()
    assert outcome.received == 2 and outcome.ok
    history = bridge.history(42, lead["id"])["history"]
    assert [h["outcome"] for h in history].count("merged") == 1


def test_a_batch_mixing_joins_and_intercom_events_returns_only_the_failing_record(bridge, intercom, rf):
    lead, contact = join(bridge, intercom, rf)
    other = new_lead(rf, email="bob@example.com", first_name="Bob")
    rf.fail_next("PUT", r"^/users/qualification$", 500, times=100)
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.post_join(join_body(other))
    [first] = bridge.drain()                                         # RF's 500s: an outage, waited out
    assert first.received == 2 and first.error is None and first.result.get("waiting") == 1, first
    assert len(intercom.contacts_by_email("bob@example.com")) == 1
    assert bridge.poller.release_delayed() == 1                      # only the qualification comes back
    rf.clear_faults()
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    assert len(intercom.contacts_by_email("bob@example.com")) == 1


def test_joins_for_a_campaign_just_configured_are_accepted(bridge, rf):
    lead = new_lead(rf)
    assert bridge.post_join(join_body(lead)).status_code == 404     # not configured yet
    bridge.apply(lead_settings())
    assert bridge.post_join(join_body(lead)).status_code == 202     # no stale "unknown" answer


def test_one_workspace_cannot_touch_another_workspaces_links(bridge, intercom, rf, other_workspaces):
    lead, contact = join(bridge, intercom, rf)
    from chalicelib.services.connections import connect_workspace
    other = other_workspaces("other-ws", "other-token")
    connect_workspace(bridge.rt, "other-ws", "other-token", client_secret="other-secret", api_base=other.base_url)
    intercom.update_contact(contact["id"], signed_up="Yes")
    forged = intercom.webhook_payload("contact.lead.updated", contact["id"], app_id="other-ws")
    answer = bridge.post_intercom(forged, secret="other-secret")   # validly signed by the other workspace
    assert answer.status_code == 200
    bridge.drain()
    assert rf.qualification_calls == []


def test_a_resumed_join_keeps_its_creation_baseline_and_qualifies_a_lead_who_got_there_meanwhile(
        bridge, intercom, rf):
    settings = qualifying_settings()
    settings["leads"]["tag"] = "Referred"
    bridge.apply(settings)
    lead = new_lead(rf)
    intercom.fail_next("POST", r"^/tags$", 403)                     # the join fails after creating
    bridge.post_join(join_body(lead))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    intercom.update_contact(contact["id"], signed_up="Yes")          # the lead signs up meanwhile
    bridge.notify("contact.lead.updated", contact["id"])            # ...while the link is unfinished
    bridge.drain()
    from chalicelib.services.dead_letters import replay
    replay(bridge.rt)
    bridge.drain()
    person = bridge.history(42, lead["id"])
    assert person["link"]["baseline"] == "No"
    assert qualified_ids(rf) == [lead["id"]]


def test_a_created_contact_deleted_before_the_retry_is_created_again(bridge, intercom, rf):
    bridge.apply(lead_settings(tag="Referred"))
    lead = new_lead(rf)
    intercom.fail_next("POST", r"^/tags$", 403)
    bridge.post_join(join_body(lead))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    intercom.delete(contact["id"])
    from chalicelib.services.dead_letters import replay
    replay(bridge.rt)
    bridge.drain()
    [again] = intercom.contacts_by_email("ann@example.com")
    assert again["id"] != contact["id"]
    assert bridge.history(42, lead["id"])["link"]["contact_id"] == again["id"]


def test_taking_over_a_dead_workers_qualification_does_not_call_rf_twice(bridge, intercom, rf, clock):
    lead, contact = join(bridge, intercom, rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    links = bridge.rt.store.links
    assert links.start_qualifying(links.get(PersonRef("42", str(lead["id"]))))
    bridge.rt.rf().qualify(str(lead["id"]))                          # RF said yes, then the Lambda died
    clock.now += 600
    bridge.reconcile()
    bridge.drain()
    assert len([c for c in rf.qualification_calls if c["status"] == 200]) == 1
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "qualified"


def test_a_deletion_seen_before_the_merge_does_not_stop_reconciliation(bridge, intercom, rf, clock):
    lead, contact = join(bridge, intercom, rf)
    clock.now += 60                                                 # a user made since the person joined
    user = intercom.add_contact("ann.work@example.com", role="user")
    bridge.notify("contact.deleted", contact["id"])                 # Intercom sends no order
    intercom.merge(contact["id"], user["id"])
    merged = intercom.webhook_payload("contact.merged", {**intercom.get(user["id"]),
                                                         "merged_from": {"type": "contact", "id": contact["id"]}})
    bridge.post_intercom(merged)
    bridge.drain()
    assert bridge.history(42, lead["id"])["link"]["contact_state"] is None
    intercom.update_contact(user["id"], signed_up="Yes")             # and its webhook is lost
    bridge.reconcile()
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]


def test_a_lead_who_joined_before_the_rule_is_not_qualified_by_surprise(bridge, intercom, rf):
    lead, contact = join(bridge, intercom, rf, lead_settings())     # no qualification rule yet
    bridge.apply(qualifying_settings())
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    assert rf.qualification_calls == []
    reasons = [h["reason"] for h in bridge.history(42, lead["id"])["history"]]
    assert any("joined before the campaign had a qualification rule" in r for r in reasons if r)


def test_reconciliation_finds_the_contact_by_email_when_intercom_answers_404(bridge, intercom, rf, clock):
    lead, contact = join(bridge, intercom, rf)
    clock.now += 60                                                 # a contact made since the person joined
    replacement = intercom.add_contact("ann@example.com", role="user", custom_attributes={"signed_up": "Yes"})
    intercom.delete(contact["id"])
    bridge.reconcile()
    bridge.drain()
    assert bridge.history(42, lead["id"])["link"]["contact_id"] == replacement["id"]
    assert qualified_ids(rf) == [lead["id"]]
