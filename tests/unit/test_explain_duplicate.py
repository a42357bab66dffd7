"""`bridge explain <contact id>` on a duplicate contact (another Intercom contact with the email of a
linked lead: the record an Intercom user edited): it names the lead and the contact they are linked
to, and whether its changes count (`qualification.match`), with what the lead's history says of it.
A lead left behind by a workspace move has no duplicate that counts. On the store's twin and fake APIs; a
contact of another workspace reveals nothing."""
from __future__ import annotations

import json

from chalicelib.domain.link import PersonRef
from chalicelib.domain.qualification import QState
from chalicelib.services.explain import as_text, explain
from tests.fakes import FakeIntercom
from tests.unit.moves import apply
from tests.unit.scenario import RULE, WS, event, joined, run, set_value, settings, world


def duplicate_changed(match: str = "contact"):
    work = world(settings({**RULE, "match": match}))
    work.store.connections.register_workspace(WS)
    _, linked = joined(work, email="twin@example.com")
    twin = work.apis.intercom_.add("twin@example.com", signed_up="No")        # the duplicate a user edits
    run(work, event(set_value(work, twin, "Yes"), notification="n-dup"))
    return work, linked, twin


def ask(work, contact_id: str, intercom=None):
    return explain(work, contact_id, intercom=intercom or (lambda workspace: work.apis.intercom_))


def test_explain_on_a_duplicate_under_match_contact_names_the_lead_says_it_does_not_count_and_how_to_fix():
    work, linked, twin = duplicate_changed("contact")
    found = ask(work, twin["id"])
    view = found.view()
    assert found.found and view["people"] == []
    [dup] = view["duplicate_of"]
    assert dup == {"contact_id": twin["id"], "workspace": WS, "email": "t***@example.com", "campaign_id": "42",
                   "rf_user_id": "7", "kind": "lead", "linked_contact_id": linked["id"], "match": "contact",
                   "counts": False,
                   "why": "campaign 42 qualifies its leads on their linked contact only (qualification.match: contact)",
                   "hint": "to count changes on contacts that share the lead's email, set `qualification.match: "
                           "email` in the settings (then `bridge settings apply`), or merge the contacts in "
                           "Intercom"}
    # what the lead's history already says of it
    [said] = view["trail"]
    assert said["outcome"] == "not_counted" and f"attribute changed on contact {twin['id']}" in said["reason"]
    text = as_text(found)
    assert (f"  Intercom contact {twin['id']} (t***@example.com, workspace {WS}) is linked to nobody: it shares the "
            f"email of lead RF user 7 of campaign 42 (linked to contact {linked['id']}); its changes do not count "
            "for them — campaign 42 qualifies its leads on their linked contact only (qualification.match: "
            "contact)") in text
    assert "    hint: to count changes on contacts that share the lead's email, set `qualification.match: email`" in text
    assert "no link: no join of theirs was applied" not in text and "twin@example.com" not in json.dumps(view)


def test_explain_on_a_duplicate_under_match_email_says_its_changes_count():
    work, linked, twin = duplicate_changed("email")
    [dup] = ask(work, twin["id"]).view()["duplicate_of"]
    assert (dup["counts"], dup["match"], dup["linked_contact_id"]) == (True, "email", linked["id"])
    assert "hint" not in dup
    assert "its changes count for them — campaign 42 qualifies its leads on any contact with their email " \
           "(qualification.match: email)" in as_text(ask(work, twin["id"]))


def test_a_contact_of_another_workspace_with_the_same_email_reveals_nothing():
    work, _, _ = duplicate_changed("contact")
    work.store.connections.register_workspace("other")
    elsewhere = FakeIntercom()
    stranger = elsewhere.add("twin@example.com")
    stranger["id"] = "x9"
    elsewhere.contacts = {"x9": stranger}
    found = ask(work, "x9", lambda workspace: elsewhere if workspace == "other" else work.apis.intercom_)
    assert not found.found and "duplicate_of" not in found.view()


def test_a_contact_id_that_could_not_name_a_path_is_never_sent_to_intercom():
    work, _, _ = duplicate_changed("contact")
    asked: list = []
    ask(work, "../admins", lambda workspace: asked.append(workspace))
    assert asked == []


def test_a_duplicate_of_a_lead_left_behind_by_a_workspace_move_is_not_said_to_count():
    """Scenario: campaign 42 linked lead 7 (pending) to a contact in workspace ws; a duplicate contact with her
    email exists in ws (its change did not count under match: contact). The operator applies settings with
    `qualification.match: email` that also move campaign 42 to ws-b (`--move-workspace`, warned that the
    people of ws no longer qualify). Then the support team asks `bridge explain <duplicate id>`.
    Expected: explain says the duplicate's changes do not count for lead 7 (nothing of ws qualifies campaign 42
    any more: Qualifier.moved_away), as docs/setup.md's move section says.
    Before: `_duplicate` looks only at `qualification.match` and says "its changes count for them" — advice that
    sends the support team waiting for a qualification that can never come."""
    work, _, twin = duplicate_changed("contact")
    apply(work, {**settings({**RULE, "match": "email"}), "workspace": "ws-b"}, move=True)
    assert work.store.settings.get("42").workspace == "ws-b"
    assert work.store.links.get(PersonRef("42", "7")).qualification is QState.PENDING
    [dup] = ask(work, twin["id"]).view()["duplicate_of"]
    assert dup["counts"] is False, dup
    assert "now connected to ws-b" in dup["why"] and "no longer count" in dup["why"], dup
    assert "hint" not in dup, "no setting to change brings a moved-away lead's contact back into counting"


def test_a_duplicate_explain_could_not_ask_intercom_about_says_so_not_only_no_record():
    """The FAQ's `bridge explain <contact id>` on a duplicate, while Intercom is away (5xx, or limiting): it said
    "no record of <id> yet ... if they are in Intercom only, check the email or id", as of a contact nobody knows,
    sending the operator to check an id that was right."""
    from chalicelib.errors import ApiError

    work, _, twin = duplicate_changed("contact")

    class Away(FakeIntercom):
        def get_contact(self, contact_id: str) -> dict:
            raise ApiError("Intercom", 503, "Service Unavailable", code="service_unavailable")
    found = ask(work, twin["id"], intercom=lambda workspace: Away())
    assert not found.found
    said = found.view()["message"]
    assert said.startswith(f"Intercom could not be asked about contact {twin['id']} (workspace {WS}): Intercom "
                           "answered 503 service_unavailable: Service Unavailable — run `bridge explain` again once "
                           "it answers. no record of "), said
    # --json: `message` as it was, and the parts apart (`unasked`); the text: a short first line, the reason after
    why = "Intercom answered 503 service_unavailable: Service Unavailable"
    assert found.view()["unasked"] == {"contact_id": twin["id"], "workspace": WS, "reason": why}
    lines = as_text(found).splitlines()
    first = f"Intercom could not be asked about contact {twin['id']} (workspace {WS}); no record of it yet:"
    assert lines[:2] == [first, f"  - {why} — run `bridge explain` again once it answers"], lines
    assert lines[2:] == [f"  - {case}" for case in found.view()["cases"]]


def test_a_duplicate_explain_could_not_ask_because_the_bridges_own_budget_is_spent_does_not_wait_for_intercom():
    """The same, while the bridge's own shared Intercom budget is spent (its workers use it): Intercom was not called,
    and is not what to wait for ("once it answers"); the reason names the budget, and a minute is enough."""
    from chalicelib.errors import BudgetSpent
    from tests.support.budget import limiter, spend

    work, _, twin = duplicate_changed("contact")
    gate, _ = limiter(waiter="bridge explain")

    class Spent(FakeIntercom):
        def get_contact(self, contact_id: str) -> dict:
            gate.acquire()
            return super().get_contact(contact_id)
    assert isinstance(spend(gate), BudgetSpent)     # (the workers took the slice's slots)
    found = ask(work, twin["id"], intercom=lambda workspace: Spent())
    said = found.view()["message"]
    assert as_text(found).splitlines()[1].endswith(" — run `bridge explain` again in a minute")
    assert said.startswith(f"Intercom could not be asked about contact {twin['id']} (workspace {WS}): the bridge's own "
                           "shared Intercom budget (5 calls per 60s) is spent for now: Intercom was not called (the "
                           "next slot is "), said
    assert "bridge explain may wait 0.0s more) — run `bridge explain` again in a minute. no record of " in said, said


def test_explain_on_a_contact_intercom_merged_away_finds_the_person_its_link_followed_to_the_survivor():
    """The lead's contact c1 was merged into a user: the link followed it (its history says "contact c1 was merged
    into c2"), and `bridge explain c1` said "no record of c1 yet" — the id the operator had, and the trail names.
    Intercom's 410 names the survivor: explain finds the person by it."""
    work = world()
    work.store.connections.register_workspace(WS)
    _, contact = joined(work)
    user = work.apis.intercom_.add("ann.work@example.com", role="user", signed_up="No")
    work.apis.intercom_.merge(contact["id"], user["id"])
    run(work, event(user, "contact.merged", merged_from={"type": "contact", "id": contact["id"]}))
    found = ask(work, contact["id"])
    view = found.view()
    assert found.found and [(p["rf_user_id"], p["contact_id"]) for p in view["people"]] == [("7", user["id"])], view
    assert [e["reason"] for e in view["trail"] if e["event"] == "contact" and e["outcome"] == "merged"] == [
        f"contact {contact['id']} was merged into {user['id']}; the link follows it"], view["trail"]
    assert as_text(found).startswith(f"{contact['id']}:\n  campaign 42, RF user 7 (lead, "), as_text(found)
