"""A campaign's qualification rule changed, or added, while leads wait: a lead whose value at join time
belongs to another rule (or to none) is never qualified by surprise, `settings apply` says how many and
what to run, and `bridge backfill --apply` takes each one's value now as its baseline: from then on a
real change qualifies, once."""
from __future__ import annotations

import json

import pytest

from tests.support.cli import run_cli

from .conftest import join_body, lead_settings, new_lead, qualifying_settings
from .test_qualification import qualified_ids

PRO = {"attribute": "custom_attributes.plan", "value": "pro"}
BACKFILL = "`bridge backfill 42 --apply`"


def cli(bridge, capsys, *argv) -> dict:
    code, out, _ = run_cli(bridge.operator(), capsys, *argv, "--json")
    assert code == 0 or argv[0] == "doctor", out          # (doctor's exit code says whether it found a problem)
    return json.loads(out)


def told(bridge, intercom, contact_id, **attributes) -> None:
    """The contact changes in Intercom, and its webhook comes."""
    if attributes:
        intercom.update_contact(contact_id, **attributes)
    assert bridge.notify("contact.lead.updated", contact_id).status_code == 200
    bridge.drain()


def repeats(bridge, lead) -> dict[str, str]:
    return {e["event"]: e["reason"] for e in bridge.history(42, lead["id"])["history"] if e.get("count")}


TAKEN = "baseline not known under the qualification rule: its value now taken as its baseline"
# ... one at the target when read, under require_change: maybe a reward owed, which only the operator can tell
HELD = ("baseline not known under the qualification rule: already at the target now, taken as its baseline — qualified "
        "only after a change away and back: check in Intercom whether they reached it after joining, and qualify them "
        "in Referral Factory if so")


def rebaselined(bridge, capsys, lead, value, attribute, said=TAKEN) -> None:
    """The dry run names the lead, the apply takes the contact's value now as its baseline (`said` so), once."""
    dry = cli(bridge, capsys, "backfill", "42")
    would = "baseline not known under the qualification rule: its value now would be taken as its baseline"
    assert [p["rf_user_id"] for p in dry["people"][would]] == [str(lead["id"])]
    taken = cli(bridge, capsys, "backfill", "42", "--apply")["outcomes"]
    assert {k: n for k, n in taken.items() if k.startswith("baseline")} == {said: 1}
    link = bridge.history(42, lead["id"])["link"]
    assert (link["qualification"], link["baseline"], link["baseline_of"]) == ("pending", value, attribute)
    assert said not in cli(bridge, capsys, "backfill", "42", "--apply")["outcomes"]
    bridge.drain()                              # (the referrer's join, missing, that backfill sent)


def test_a_lead_already_at_the_new_rules_target_is_not_qualified_by_a_rule_change(bridge, intercom, rf, capsys,
                                                                                 joined):
    intercom.define_attribute("plan", "string")
    lead, contact = joined()                                    # signed_up "No" at join
    intercom.update_contact(contact["id"], plan="pro")          # ... and on plan "pro" all along
    said = bridge.apply({**lead_settings(), "qualification": PRO})["warnings"]
    assert [w for w in said if BACKFILL in w] == [
        "1 linked lead joined before the qualification rule on custom_attributes.plan (under no rule, or a rule on "
        "another attribute), or moved since to an older contact: their value then is not known, so they are not "
        "qualified automatically — `bridge "
        f"backfill 42` (a dry run) lists them, then {BACKFILL} takes each one's value now as their baseline (one "
        "already at the target then qualifies only once its value changes away and back: require_change)"]
    told(bridge, intercom, contact["id"])
    assert qualified_ids(rf) == []
    assert BACKFILL in repeats(bridge, lead)["qualification_baseline_unknown"]
    doctor = cli(bridge, capsys, "doctor", "42")
    [finding] = [f for f in doctor["findings"] if f["check"] == "qualification.baselines"]
    assert finding["what"].startswith("1 linked lead") and BACKFILL in finding["fix"]

    rebaselined(bridge, capsys, lead, "pro", PRO["attribute"], HELD)
    told(bridge, intercom, contact["id"])                       # still "pro": no change since the baseline
    assert qualified_ids(rf) == []
    told(bridge, intercom, contact["id"], plan="free")
    told(bridge, intercom, contact["id"], plan="pro")           # a real change
    told(bridge, intercom, contact["id"])
    assert qualified_ids(rf) == [lead["id"]]
    assert not [f for f in cli(bridge, capsys, "doctor", "42")["findings"] if f["check"] == "qualification.baselines"]


def test_a_lead_linked_before_the_campaign_had_a_rule_is_taken_in_by_backfill_and_qualifies_on_a_change(
        bridge, intercom, rf, capsys):
    bridge.apply(lead_settings())                               # no qualification rule yet
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert bridge.history(42, lead["id"])["link"]["qualification"] is None
    said = bridge.apply(qualifying_settings())["warnings"]
    assert any(w.startswith("1 linked lead joined before the qualification rule on custom_attributes.signed_up ")
               and BACKFILL in w for w in said)
    told(bridge, intercom, contact["id"], signed_up="Yes")
    assert qualified_ids(rf) == [] and BACKFILL in repeats(bridge, lead)["qualification_untracked"]

    rebaselined(bridge, capsys, lead, "Yes", "custom_attributes.signed_up", HELD)
    told(bridge, intercom, contact["id"], signed_up="No")
    intercom.update_contact(contact["id"], signed_up="Yes")     # its webhook lost: the sweep finds it
    bridge.reconcile()
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]


def test_a_change_away_and_back_from_before_backfill_took_her_baseline_delivered_after_it_does_not_qualify_her(
        bridge, intercom, rf, capsys, clock):
    """Linked before the campaign had a rule; she goes "No", then "Yes", before `bridge backfill --apply` takes "Yes"
    as her baseline; then "No" (t3). Those two notifications, delayed, come after the take, after t3's: in order
    nothing after the take is a change to the target. The take records when (Link.baseline_at): t1 and t1b are from
    before it, no change (on main, t3 armed the link, t1b was held, and t1 released it: qualified)."""
    bridge.apply(lead_settings())                               # no qualification rule yet
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    bridge.apply(qualifying_settings())
    late = []
    for value in ("No", "Yes"):
        clock.now += 10
        intercom.update_contact(contact["id"], signed_up=value)
        late.append(intercom.webhook_payload("contact.lead.updated", contact["id"]))     # (delivered later)
    clock.now += 10
    rebaselined(bridge, capsys, lead, "Yes", "custom_attributes.signed_up", HELD)
    clock.now += 10
    told(bridge, intercom, contact["id"], signed_up="No")
    for payload in reversed(late):
        bridge.post_intercom(payload)
        bridge.drain()
    assert qualified_ids(rf) == [] and bridge.history(42, lead["id"])["link"]["qualification"] == "pending"
    clock.now += 10
    told(bridge, intercom, contact["id"], signed_up="Yes")       # a real change, after the take
    assert qualified_ids(rf) == [lead["id"]]


def test_a_lead_without_a_value_is_said_empty_at_backfill_and_qualifies_when_it_reaches_the_target(
        bridge, intercom, rf, capsys):
    bridge.apply(lead_settings())                               # no rule: the contact gets no signed_up
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    bridge.apply(qualifying_settings())
    rebaselined(bridge, capsys, lead, None, "custom_attributes.signed_up")
    [taken] = [e for e in bridge.history(42, lead["id"])["history"] if e["outcome"] == "baseline_taken"]
    assert "it is empty now, taken as its baseline" in taken["reason"]       # not Python's None
    told(bridge, intercom, contact["id"], signed_up="Yes")
    assert qualified_ids(rf) == [lead["id"]]


@pytest.mark.parametrize("as_json", [False, True])
def test_backfill_names_apart_the_leads_already_at_the_target_whose_reward_it_cannot_tell(
        bridge, intercom, rf, capsys, as_json):
    """Under require_change, a lead at the target when backfill reads it is never qualified by itself: it may
    have reached it after joining (a reward owed), so the operator is told who, to check."""
    bridge.apply(lead_settings())                               # no rule yet
    referrer = rf.add_user(42, "ref@example.com", "Rita")
    ann, bob = (rf.add_user(42, f"{n.lower()}@example.com", n, referrer_id=referrer["id"]) for n in ("Ann", "Bob"))
    for lead in (ann, bob):
        bridge.post_join(join_body(lead))
    bridge.drain()
    for email, value in (("ann@example.com", "Yes"), ("bob@example.com", "No")):   # Ann at the target: since when?
        [contact] = intercom.contacts_by_email(email)
        intercom.update_contact(contact["id"], signed_up=value)
    bridge.apply(qualifying_settings())

    code, out, _ = run_cli(bridge.operator(), capsys, "backfill", "42", "--apply", *(["--json"] if as_json else []))
    assert code == 0, out
    if as_json:
        done = json.loads(out)
        assert (done["outcomes"][HELD], done["outcomes"][TAKEN]) == (1, 1)
        assert done["people"][HELD] == [{"rf_user_id": str(ann["id"]), "email": "a***@example.com"}]
        assert done["people"][TAKEN] == [{"rf_user_id": str(bob["id"]), "email": "b***@example.com"}]
    else:
        assert f"     1  {HELD}\n          - RF user {ann['id']} (a***@example.com)\n" in out
        assert f"     1  {TAKEN}\n          - RF user {bob['id']} (b***@example.com)\n" in out
    said = {lead["id"]: [e["reason"] for e in bridge.history(42, lead["id"])["history"]
                         if e["outcome"] == "baseline_taken"] for lead in (ann, bob)}
    assert "it is 'Yes' now, already at the target, taken as its baseline: qualified only after a change away and " \
           "back (require_change) — check in Intercom whether it reached the target after joining" in said[ann["id"]][0]
    assert "it is 'No' now, taken as its baseline: the lead waits for qualification from now on" in said[bob["id"]][0]
