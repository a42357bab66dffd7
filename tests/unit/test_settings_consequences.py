"""What `bridge settings apply` says a change means for the people already seen (in-memory twins): joins
ignored under action nothing that a backfill now sends, a rule no lead can meet, people linked in the
workspace a campaign moves back to."""
from __future__ import annotations

import pytest

from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from chalicelib.services.admin import PEOPLE_COUNTED
from tests.unit.scenario import WS, joined, settings, world
from tests.unit.moves import apply

BACKFILL = "`bridge backfill 42` (a dry run) lists them, then `bridge backfill 42 --apply` sends them"
LOOK_BACK = ("campaign 42's new rule may qualify leads whose contacts already meet it: the next reconciliation's "
             "search of changed contacts looks back to the oldest pending lead, once")
RULE = {"attribute": "custom_attributes.signed_up", "value": "Yes"}


def ignored(work, user: str, kind: str) -> None:
    claim = work.store.links.claim(PersonRef("42", user), WS)
    work.store.links.finish(claim, JoinResult(LinkStatus.IGNORED, kind=kind, reason="the action is nothing"), [])


def test_an_action_turned_from_nothing_to_creating_says_how_many_joins_a_backfill_now_sends():
    work = world(settings(rule=None, action="nothing"))
    for user, kind in (("1", "lead"), ("2", "lead"), ("3", "referrer")):
        ignored(work, user, kind)
    assert apply(work, settings(rule=None, action="nothing")) == []               # nothing changed
    assert apply(work, settings(rule=None)) == [f"2 people's joins were ignored under leads.action nothing: {BACKFILL}"]
    assert apply(work, settings(rule=None)) == []                                 # said when the action changes
    quiet = {**settings(rule=None), "referrers": {"action": "nothing"}}
    assert apply(work, quiet) == []
    assert apply(work, settings(rule=None)) == [f"1 person's join was ignored under referrers.action nothing: "
                                                f"{BACKFILL}"]


def test_a_read_of_ignored_joins_stops_at_its_bound_and_says_or_more():
    work = world(settings(rule=None, action="nothing"))
    for user in range(PEOPLE_COUNTED + 5):
        ignored(work, str(user), "lead")
    assert apply(work, settings(rule=None)) == [f"100 or more people's joins were ignored under leads.action "
                                                f"nothing: {BACKFILL}"]


def test_a_qualification_rule_under_leads_action_nothing_is_said_to_qualify_nobody():
    work = world()
    assert apply(work, settings(action="nothing")) == [
        "leads.action is nothing, so no lead is linked to a contact and the qualification rule "
        "(custom_attributes.signed_up) can never qualify anyone: set leads.action to create_lead or create_user to "
        "qualify leads"]
    assert apply(work, settings()) == [] and apply(work, settings(rule=None, action="nothing")) == []


@pytest.mark.parametrize("was,rule,looks_back", [
    (RULE, {**RULE, "value": "Premium"}, True),                  # another target
    (RULE, {**RULE, "operator": "contains", "value": "Ye"}, True),
    ({**RULE, "case_sensitive": True}, RULE, True),
    (RULE, {**RULE, "require_change": False}, True),              # a value at the baseline now counts
    (RULE, {**RULE, "match": "email"}, True),                     # a duplicate's value now counts
    (RULE, {**RULE, "initial_value": "No"}, False),               # written on creation only
    ({**RULE, "require_change": False}, RULE, False),
    ({**RULE, "match": "email"}, RULE, False),
    (None, RULE, False),                   # leads linked before any rule are not qualified automatically
])
def test_a_rule_that_may_meet_values_already_reached_makes_the_next_search_look_back_once(was, rule, looks_back):
    work = world(settings(rule=was))
    assert (LOOK_BACK in apply(work, settings(rule=rule))) is looks_back
    assert (work.store.cursor.get("changes#ws#back") is not None) is looks_back


def test_a_campaign_moved_back_to_the_workspace_its_people_are_linked_in_says_they_count_again():
    work = world()
    for user, email in (("7", "ann@example.com"), ("8", "bob@example.com")):
        joined(work, user, email)
    apply(work, {**settings(), "workspace": "ws-b"}, move=True)
    assert apply(work, settings()) == ["campaign 42 moved back to workspace ws: its 2 linked people of ws count "
                                       "again (changes to their contacts can qualify them)"]
    assert apply(work, settings()) == []


def test_a_rule_added_on_another_attribute_or_newly_requiring_a_change_says_how_many_leads_backfill_takes_in():
    work = world(settings(rule=None))
    joined(work, "7", pending=False)                                            # linked before any rule
    joined(work, "8", "bob@example.com", baseline_of="custom_attributes.signed_up")     # under a signed_up rule
    take = ("`bridge backfill 42` (a dry run) lists them, then `bridge backfill 42 --apply` takes each one's value "
            "now as their baseline")
    change = " (one already at the target then qualifies only once its value changes away and back: require_change)"

    def said(n: int, attribute: str) -> str:
        return (f"{n} linked lead{'s' if n > 1 else ''} joined before the qualification rule on {attribute} (under "
                "no rule, or a rule on another attribute), or moved since to an older contact: their value then is "
                "not known, so they are not qualified automatically — " + take)
    assert apply(work, settings()) == [said(1, "custom_attributes.signed_up") + change]
    assert apply(work, settings()) == []                                        # said when the rule changes
    plan = {"attribute": "custom_attributes.plan", "value": "pro"}
    # without require_change a baseline does not matter: only the lead linked before any rule is held
    assert apply(work, settings(rule={**plan, "require_change": False})) == [said(1, "custom_attributes.plan"),
                                                                             LOOK_BACK]
    assert apply(work, settings(rule=plan)) == [said(2, "custom_attributes.plan") + change]
    # a new target on the same attribute: the values at join time are still what they were
    assert apply(work, settings(rule={**plan, "value": "enterprise"})) == [LOOK_BACK]
