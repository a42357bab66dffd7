"""Issue: an Intercom attribute reaching its target qualifies the referral in Referral
Factory, exactly once, within seconds — and still when the webhook never comes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import WORKSPACE, qualifying_settings
from .test_join_flow import join_referrer

REAL_PAYLOAD = Path(__file__).resolve().parents[1] / "contracts/intercom/webhooks/contact.user.updated.json"


def qualified_ids(rf):
    return [user_id for user_id, _ in rf.qualification_events]


def test_a_signed_webhook_reaching_the_target_qualifies_once_in_the_same_pass(bridge, intercom, rf, joined):
    lead, contact = joined()
    assert contact["custom_attributes"]["signed_up"] == "No"          # initial_value written on creation
    intercom.update_contact(contact["id"], signed_up="Yes")
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    [outcome] = bridge.drain()
    assert outcome.ok and qualified_ids(rf) == [lead["id"]]
    person = bridge.history(42, lead["id"])
    assert person["link"]["qualification"] == "qualified"
    evaluation = [h for h in person["history"] if h["event"] == "evaluation"][-1]
    assert evaluation["details"] == {"actual": "Yes", "expected": "Yes", "met": True,
                                     "via": "webhook contact.lead.updated", "contact_id": contact["id"]}
    assert person["history"][-1]["outcome"] == "qualified"


def test_repeats_and_older_updates_never_qualify_twice_nor_undo(bridge, intercom, rf, joined, clock):
    lead, contact = joined()
    older = intercom.webhook_payload("contact.lead.updated", contact["id"], created_at=clock() - 60)
    intercom.update_contact(contact["id"], signed_up="Yes")
    newest = intercom.webhook_payload("contact.lead.updated", contact["id"])
    for _ in range(3):
        bridge.post_intercom(newest)
    bridge.drain()
    bridge.post_intercom(older)                                      # "No", delivered late
    bridge.post_intercom({**older, "id": "notif_other"})
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    assert len([c for c in rf.qualification_calls if c["status"] == 200]) == 1
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "qualified"


def test_without_any_webhook_the_reconciliation_qualifies_the_lead(bridge, intercom, rf, joined):
    lead, contact = joined()
    intercom.update_contact(contact["id"], signed_up="yes")          # case differs: still the target
    assert bridge.reconcile() == {"queued": 1, "round_complete": True, "searches": 1, "overdue": 0}
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    bridge.rt.clock.now += bridge.rt.config.reconcile_retry           # the sweep's next round
    assert bridge.reconcile()["queued"] == 0                          # qualified leads leave the index


def test_reconciliation_checks_oldest_first_and_resumes_where_it_stopped(bridge, intercom, rf, joined):
    leads = [joined(email=f"p{i}@example.com")[0] for i in range(3)]
    from chalicelib.services.reconcile import reconcile
    first = reconcile(bridge.rt, limit=2)
    second = reconcile(bridge.rt, limit=2)
    assert [(r["queued"], r["round_complete"]) for r in (first, second)] == [(2, False), (1, True)]
    checked = [json.loads(b)["rf_user_id"] for b in _queued_bodies(bridge) if json.loads(b)["kind"] == "intercom.check"]
    assert checked == [str(lead["id"]) for lead in leads]


def _queued_bodies(bridge):
    sqs = bridge.resources.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=bridge.resources.queue_url, MaxNumberOfMessages=10)
        if not got.get("Messages"):
            return out
        out += [m["Body"] for m in got["Messages"]]


def test_rf_500_then_200_gives_one_qualification(bridge, intercom, rf, joined):
    lead, contact = joined()
    rf.fail_next("PUT", r"^/users/qualification$", 500)
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()                       # a 500 to the PUT may have been applied: never re-sent blindly
    assert [c["status"] for c in rf.qualification_calls] == [500] and qualified_ids(rf) == []
    assert bridge.poller.release_delayed() == 1   # RF's 500 is an outage: waited out, not a try
    bridge.drain()                       # the next try
    assert qualified_ids(rf) == [lead["id"]]
    assert [c["status"] for c in rf.qualification_calls] == [500, 200]


def test_rf_422_dead_letters_with_rfs_message_and_replay_succeeds_once_fixed(bridge, intercom, rf, joined):
    lead, contact = joined()
    rf.fail_next("PUT", r"^/users/qualification$", 422, body={
        "code": 422, "message": "The given data was invalid.",
        "errors": {"id": [{"field": "id", "message": "Campaign is paused"}]}})
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    [dead] = bridge.dead_letters()
    assert dead["reason"] == "Referral Factory answered 422: The given data was invalid.; Campaign is paused"
    person = bridge.history(42, lead["id"])
    assert person["link"]["qualification"] == "failed" and person["link"]["reason"] == dead["reason"]
    assert person["history"][-1]["event"] == "dead_letter"
    from chalicelib.services.dead_letters import replay
    assert replay(bridge.rt)["replayed"] == 1
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "qualified"


BAD = [
    ("tampered body", {"tamper": True}, 401, "unauthorized"),
    ("wrong secret", {"secret": "not-the-secret"}, 401, "unauthorized"),
    ("missing header", {"secret": None}, 401, "unauthorized"),
    ("unknown workspace", {"app_id": "someone-else"}, 401, "unauthorized"),
]


@pytest.mark.parametrize("case,kw,status,error", BAD, ids=[b[0] for b in BAD])
def test_unverifiable_webhooks_are_refused_and_nothing_is_enqueued(bridge, intercom, case, kw, status, error):
    contact = intercom.add_contact("x@example.com")
    payload = intercom.webhook_payload("contact.lead.updated", contact["id"], app_id=kw.get("app_id"))
    raw = json.dumps(payload).encode()
    signature = None
    if kw.get("tamper"):
        from infra.local.sims.webhooks import sign
        signature = sign(raw, "client-secret")
        raw = raw.replace(b"x@example.com", b"y@example.com")
    answer = bridge.post_intercom(raw=raw, secret=kw.get("secret", "client-secret"), signature=signature)
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    assert bridge.queued() == 0


def test_ping_head_and_other_topics_answer_200_without_work(bridge, intercom):
    assert bridge.post_intercom(intercom.webhook_payload("ping", {"type": "ping", "message": "hi"})).status_code == 200
    head = bridge.post_intercom(raw=b"", secret=None, method="HEAD")
    assert head.status_code == 200
    other = bridge.post_intercom(intercom.webhook_payload("conversation.user.created", {"type": "conversation",
                                                                                        "id": "1"}))
    assert other.status_code == 200 and "ignored" in other.json()
    assert bridge.post_intercom(raw=b"{nope").status_code == 400
    assert bridge.queued() == 0


def test_the_real_payload_is_accepted_as_it_is(bridge):
    raw = REAL_PAYLOAD.read_bytes()
    answer = bridge.post_intercom(raw=raw)
    assert answer.status_code == 200 and answer.json()["queued"] is True
    [outcome] = bridge.drain()
    assert outcome.ok, outcome.error


def test_a_lead_who_signs_up_as_a_user_still_qualifies(bridge, intercom, rf, joined):
    lead, contact = joined()
    intercom.update_contact(contact["id"], role="user", signed_up="Yes")
    bridge.notify("contact.lead.signed_up", contact["id"])
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    assert bridge.history(42, lead["id"])["link"]["contact_role"] == "user"


def merged(bridge, intercom, contact, user, webhook: bool) -> None:
    """Intercom merges the lead's contact into `user`: its contact.merged webhook comes, or none does and
    reconciliation follows the 410 of the merged-away contact."""
    intercom.merge(contact["id"], user["id"])
    if webhook:
        bridge.post_intercom(intercom.webhook_payload("contact.merged", {
            **intercom.get(user["id"]), "merged_from": {"type": "contact", "id": contact["id"]}}))
    else:
        bridge.reconcile()
    bridge.drain()


@pytest.mark.parametrize("told", ["merged_webhook", "reconciliation_after_410"])
def test_a_lead_merged_into_a_user_is_followed_and_qualifies(bridge, intercom, rf, joined, clock, told):
    """Ann's lead is merged into a user made since, who signed up: Intercom's contact.merged webhook says so, or none
    comes and reconciliation follows the 410 of the merged-away lead to the canonical contact."""
    lead, contact = joined()
    clock.now += 60
    user = intercom.add_contact("ann.work@example.com", role="user", custom_attributes={"signed_up": "Yes"})
    merged(bridge, intercom, contact, user, told == "merged_webhook")
    assert qualified_ids(rf) == [lead["id"]]
    assert bridge.history(42, lead["id"])["link"]["contact_id"] == user["id"]


@pytest.mark.parametrize("converted", ["signed_up", "merged_into_a_new_user", "merged_webhook_lost"])
def test_a_rule_on_role_qualifies_the_lead_once_intercom_makes_them_a_user(bridge, intercom, rf, joined, clock,
                                                                           converted):
    """"Qualify when the lead becomes a user": Intercom turns Ann's lead into a user (contact.lead.signed_up), or
    makes a new user with her email and merges the lead into it, its webhook told or lost (then reconciliation
    finds the new user among the changed contacts and follows the lead's 410 to it)."""
    lead, contact = joined({**qualifying_settings(), "qualification": {"attribute": "role", "value": "user"}})
    assert bridge.history(42, lead["id"])["link"]["baseline"] == "lead"
    if converted == "signed_up":
        intercom.update_contact(contact["id"], role="user")
        bridge.notify("contact.lead.signed_up", contact["id"])
    else:
        clock.now += 60
        merged(bridge, intercom, contact, intercom.add_contact("ann@example.com", role="user"),
               converted == "merged_into_a_new_user")
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    assert bridge.history(42, lead["id"])["link"]["contact_role"] == "user"


@pytest.mark.parametrize("told", ["merged_webhook", "reconciliation_after_410"])
def test_a_lead_merged_into_a_user_made_before_they_joined_is_not_qualified_on_its_role(bridge, intercom, rf, joined,
                                                                                     clock, capsys, told):
    """Ann was a user already (another address), and her lead is merged into that user: whether it was a user when
    she joined is not known (the merge changed it), so no reward; her history says how to take a baseline, which
    `bridge backfill --apply` takes."""
    from .test_rule_change import HELD, rebaselined
    user = intercom.add_contact("ann.work@example.com", role="user")
    clock.now += 86_400
    lead, contact = joined({**qualifying_settings(), "qualification": {"attribute": "role", "value": "user"}})
    clock.now += 60
    merged(bridge, intercom, contact, user, told == "merged_webhook")
    person = bridge.history(42, lead["id"])
    assert qualified_ids(rf) == [] and person["link"]["contact_id"] == user["id"]
    assert person["link"]["qualification"] == "pending"
    [unknown] = [e for e in person["history"] if e["event"] == "qualification_baseline_unknown"]
    assert f"its link moved to contact {user['id']}, which existed when the lead joined" in unknown["reason"]
    assert "`bridge backfill 42 --apply`" in unknown["reason"]
    rebaselined(bridge, capsys, lead, "user", "role", HELD)      # a user now: backfill names her apart


def joined_on_a_lead_with_a_user_search_does_not_show(bridge, intercom, rf, clock) -> tuple[dict, dict, dict]:
    """`match: email`: Ann (RF) joined on her existing lead A ("No"); user B, with her email, was made before she
    joined and not shown by search then. (Ann, A, B)"""
    from .conftest import join_body, new_lead
    bridge.apply(qualifying_settings(match="email"))
    lead_a = intercom.add_contact("ann@example.com", role="lead", custom_attributes={"signed_up": "No"})
    user_b = intercom.add_contact("ann@example.com", role="user", custom_attributes={"signed_up": "No"},
                                  created_at=clock() - 86_400, searchable=False)
    ann = new_lead(rf)
    bridge.post_join(join_body(ann))
    bridge.drain()
    return ann, lead_a, user_b


def test_a_merged_leads_change_to_the_target_delivered_after_the_merge_qualifies_once(bridge, intercom, rf, clock):
    """`match: email`. Ann joined on her existing lead A ("No"); user B, with her email, made before she joined and
    not shown by search then, survives A's merge (the merge changes B: the link's baseline there is not known, and
    is not A's). A reached "Yes" before the merge; that webhook comes after the merge's (webhooks reorder): judged
    against the baseline Ann had on A, as it would have been in order, it qualifies her once (RF asked first, one
    PUT), whatever repeats of it or other late notifications of A come after, on DynamoDB and the simulators."""
    ann, lead_a, user_b = joined_on_a_lead_with_a_user_search_does_not_show(bridge, intercom, rf, clock)
    assert bridge.history(42, ann["id"])["link"]["contact_id"] == lead_a["id"]
    clock.now += 60
    intercom.update_contact(lead_a["id"], signed_up="Yes")
    late = intercom.webhook_payload("contact.lead.updated", lead_a["id"])       # held back: delivered last
    clock.now += 5
    merged(bridge, intercom, lead_a, user_b, webhook=True)
    assert bridge.history(42, ann["id"])["link"]["contact_id"] == user_b["id"] and qualified_ids(rf) == []
    gets = len([r for r in rf.requests if r["method"] == "GET"])
    bridge.post_intercom(late)
    bridge.drain()
    assert qualified_ids(rf) == [ann["id"]] and len(rf.qualification_calls) == 1
    assert len([r for r in rf.requests if r["method"] == "GET"]) == gets + 1             # asked first
    person = bridge.history(42, ann["id"])
    [met] = [h for h in person["history"] if h["event"] == "evaluation" and h["outcome"] == "met"]
    assert met["details"]["late_of_contact_id"] == lead_a["id"] and person["link"]["qualification"] == "qualified"
    bridge.post_intercom(late)
    bridge.post_intercom({**late, "id": "notif_again"})
    bridge.drain()
    assert qualified_ids(rf) == [ann["id"]] and len(rf.qualification_calls) == 1


@pytest.mark.parametrize("rule", [{"attribute": "role", "value": "user"},
                                  {"attribute": "created_at", "operator": "gte", "value": "2026-01-01"},
                                  {"attribute": "last_contacted_at", "operator": "is_set"}])
def test_apply_and_doctor_accept_a_rule_on_an_attribute_intercom_sets_itself(bridge, intercom, capsys, rule):
    """Not in the workspace's attribute list (created_at, last_contacted_at), nor writable: still watchable."""
    from .test_troubleshooting import bad, doctor
    bridge.apply({**qualifying_settings(), "qualification": rule})
    code, report = doctor(bridge, capsys)
    assert bad(report, "settings") == []
    assert bridge.reconcile()["searches"] == 1
    [outcome] = bridge.drain()
    assert outcome.ok, outcome.error                               # the search of changes is one Intercom accepts


def test_a_contact_that_already_had_the_target_at_join_does_not_qualify(bridge, intercom, rf, joined):
    settings = qualifying_settings()
    settings["leads"]["duplicates"] = "skip"
    intercom.add_contact("ann@example.com", role="user", custom_attributes={"signed_up": "Yes"})
    lead, contact = joined(settings)
    bridge.notify("contact.user.updated", contact["id"])
    bridge.drain()
    assert rf.qualification_calls == []
    person = bridge.history(42, lead["id"])
    assert person["link"]["baseline"] == "Yes"
    assert "already met 'Yes' at the lead's baseline ('Yes': its value when the person joined" in person["history"][-1]["reason"]
    from chalicelib.services.explain import explain
    held = explain(bridge.operator(), str(lead["id"])).view()["trail"][-1]
    assert (held["event"], held["outcome"], held["details"]["baseline"]) == ("evaluation", "not_met", "Yes")
    # what `require_change` asks for: no fix, a hint of the setting that counts a value held at joining
    assert "fix" not in held
    assert "set `qualification.require_change: false`" in held["hint"] and "already had the target" in held["hint"]

    intercom.update_contact(contact["id"], signed_up="No")          # a real change: away, then back
    bridge.notify("contact.user.updated", contact["id"])
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.user.updated", contact["id"])
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]


def test_referrers_never_qualify_and_the_history_says_so(bridge, intercom, rf):
    referrer, contact = join_referrer(bridge, intercom, rf, qualifying_settings())
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.user.updated", contact["id"])
    bridge.drain()
    assert rf.qualification_calls == []
    assert "referrers never qualify" in bridge.history(42, referrer["id"])["history"][-1]["reason"]


def test_an_unlinked_contact_costs_no_api_call(bridge, intercom, rf):
    bridge.apply(qualifying_settings())
    stranger = intercom.add_contact("nobody@example.com", custom_attributes={"signed_up": "Yes"})
    before = len(intercom.requests)
    bridge.notify("contact.lead.updated", stranger["id"])
    [outcome] = bridge.drain()
    assert outcome.ok and len(intercom.requests) == before and rf.qualification_calls == []


def test_match_email_qualifies_through_a_duplicate_contact_and_names_it(bridge, intercom, rf, joined):
    lead, contact = joined(qualifying_settings(match="email"))
    duplicate = intercom.add_contact("ann@example.com", role="user", custom_attributes={"signed_up": "No"},
                                     searchable=False)
    intercom.update_contact(duplicate["id"], signed_up="Yes")
    bridge.notify("contact.user.updated", duplicate["id"])
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    evaluation = [h for h in bridge.history(42, lead["id"])["history"] if h["event"] == "evaluation"][-1]
    assert evaluation["details"]["duplicate_contact_id"] == duplicate["id"]


def test_match_email_follows_the_email_the_lead_changed_to_in_intercom(bridge, intercom, rf, joined):
    """Ann's contact's email changes: a contact that has her old address now (someone else) never qualifies her;
    a duplicate with her new one does."""
    lead, contact = joined(qualifying_settings(match="email"))
    intercom.update_contact(contact["id"], email="ann@work.example")
    bridge.notify("contact.email.updated", contact["id"])
    bridge.drain()
    stranger = intercom.add_contact("ann@example.com", role="user", custom_attributes={"signed_up": "Yes"})
    bridge.notify("contact.user.created", stranger["id"])
    bridge.drain()
    assert rf.qualification_calls == []
    duplicate = intercom.add_contact("ann@work.example", role="user", custom_attributes={"signed_up": "Yes"})
    bridge.notify("contact.user.created", duplicate["id"])
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    evaluation = [h for h in bridge.history(42, lead["id"])["history"] if h["event"] == "evaluation"][-1]
    assert evaluation["details"]["duplicate_contact_id"] == duplicate["id"]


def test_with_match_contact_a_duplicate_does_not_qualify(bridge, intercom, rf, joined):
    lead, contact = joined()
    duplicate = intercom.add_contact("ann@example.com", role="user", searchable=False)
    intercom.update_contact(duplicate["id"], signed_up="Yes")
    bridge.notify("contact.user.updated", duplicate["id"])
    bridge.drain()
    assert rf.qualification_calls == []


def test_explain_on_the_duplicate_contact_names_the_lead_it_shares_the_email_of(bridge, intercom, rf, joined, capsys):
    """Walkthrough 3, problem 2: the id a user copies from the record they edited in Intercom."""
    from tests.support.cli import run_cli
    lead, contact = joined()
    duplicate = intercom.add_contact("ann@example.com", role="user", searchable=False)
    intercom.update_contact(duplicate["id"], signed_up="Yes")
    bridge.notify("contact.user.updated", duplicate["id"])
    bridge.drain()
    code, out, _ = run_cli(bridge.operator(), capsys, "explain", duplicate["id"], "--json")
    [dup] = json.loads(out)["duplicate_of"]
    assert code == 0 and (dup["rf_user_id"], dup["linked_contact_id"], dup["counts"], dup["match"]) == (
        str(lead["id"]), contact["id"], False, "contact")
    code, text, _ = run_cli(bridge.operator(), capsys, "explain", duplicate["id"])
    assert f"it shares the email of lead RF user {lead['id']} of campaign 42 (linked to contact {contact['id']}); " \
           "its changes do not count for them" in text and "set `qualification.match: email`" in text
    # (its event and the contact it names, never the store's key `duplicate_contact#<id>`; no "(x1)")
    [noted] = [line for line in text.splitlines() if "duplicate_contact: not_counted" in line]
    assert noted.endswith(f"set `match: email` to count it  contact_id={duplicate['id']}") and "#" + duplicate["id"] \
        not in text and "(x1)" not in text, text


def test_deleted_contact_is_marked_and_recorded(bridge, intercom, rf, joined):
    lead, contact = joined()
    bridge.notify("contact.deleted", contact["id"])
    bridge.drain()
    person = bridge.history(42, lead["id"])
    assert person["link"]["contact_state"] == "deleted"
    assert person["history"][-1]["outcome"] == "deleted"


def test_the_qualifying_claim_is_taken_by_one_worker_only(bridge, intercom, rf, joined):
    lead, contact = joined()
    from chalicelib.domain.link import Claim, PersonRef
    links = bridge.rt.store.links
    first, second = (links.get(PersonRef("42", str(lead["id"]))) for _ in range(2))
    claim = links.start_qualifying(first)
    refused = links.start_qualifying(second)
    assert isinstance(claim, Claim) and not isinstance(refused, Claim)
    assert refused.qualification == "qualifying"


def test_the_scheduled_lambda_runs_the_reconciliation(bridge, intercom, rf, joined):
    import app as app_module
    from infra.local.scheduler import Scheduler, chalice_job

    lead, contact = joined()
    intercom.update_contact(contact["id"], signed_up="Yes")
    schedule = Scheduler([("reconcile", 900, chalice_job(app_module.reconcile, "reconcile"))])
    assert schedule.run_now("reconcile") == {"queued": 1, "round_complete": True, "searches": 1, "overdue": 0}
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
