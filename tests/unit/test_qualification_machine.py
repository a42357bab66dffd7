"""The qualification state machine and judge(): pure, no store, no API."""
from __future__ import annotations

import dataclasses

import pytest

from chalicelib.domain.link import LeftContact, Link, LinkStatus
from chalicelib.domain.judge import Action, Sighting, judge, takes_baseline
from chalicelib.domain.rules import key
from chalicelib.domain.qualification import QState, ask_rf_first, claimable, open_states
from chalicelib.domain.settings import Qualification

RULE = Qualification(attribute="custom_attributes.signed_up", value="Yes")
LEAD = Link("42", "7", "ws", LinkStatus.LINKED, kind="lead", contact_id="c1", baseline="No",
            qualification=QState.PENDING, joined_at="2026-11-25T10:00:00.000Z")


def seen(value, **kw) -> Sighting:
    return Sighting({"id": "c1", "custom_attributes": {"signed_up": value}}, "webhook contact.lead.updated", **kw)


def verdict(link=LEAD, rule=RULE, sighting=None):
    return judge(link, rule, sighting or seen("Yes"), lambda attribute: "string")


def test_a_replay_and_only_a_replay_may_retry_a_failed_qualification():
    assert QState.FAILED not in open_states(replay=False) and QState.FAILED in open_states(replay=True)
    assert claimable(replay=False) == {QState.PENDING, QState.UNCONFIRMED}
    assert claimable(replay=True) == {QState.PENDING, QState.UNCONFIRMED, QState.FAILED}


def test_rf_is_asked_first_on_a_first_claim_and_when_an_earlier_try_may_have_reached_it():
    assert ask_rf_first(QState.UNCONFIRMED) and ask_rf_first(QState.QUALIFYING)      # answer lost; worker died
    # RF said no and no PUT went out since (the budget held it back): its answer holds; not after a death
    assert not ask_rf_first(QState.UNCONFIRMED, rf_said_no=True) and ask_rf_first(QState.QUALIFYING, rf_said_no=True)
    assert not ask_rf_first(None)
    # A link's first claim asks too: RF may hold the lead qualified already (qualified before the
    # bridge and backfilled; forgotten by the bridge after its PUT, and joining again); and a replay of
    # a FAILED one (RF refused it; the owner may have qualified the lead by hand since)
    assert ask_rf_first(QState.PENDING) and ask_rf_first(QState.FAILED)


def test_the_target_value_on_a_pending_lead_qualifies_with_its_evaluation():
    v = verdict()
    assert v.action is Action.QUALIFY and v.entry.outcome == "met"
    assert v.entry.details == {"actual": "Yes", "expected": "Yes", "met": True,
                               "via": "webhook contact.lead.updated", "contact_id": "c1"}


def test_a_value_short_of_the_target_after_joining_arms_the_link():
    v = verdict(sighting=seen("No", when=LEAD_JOINED + 60))
    assert v.action is Action.ARM and v.entry.outcome == "not_met"


LEAD_JOINED = 1_795_600_800.0      # 2026-11-25T10:00:00Z


def test_an_event_from_before_the_join_does_not_arm():
    assert verdict(sighting=seen("No", when=LEAD_JOINED - 60)).action is Action.NOTE


def test_an_armed_link_is_not_armed_again():
    assert verdict(dataclasses.replace(LEAD, armed=True), sighting=seen("No")).action is Action.NOTE


def test_require_change_holds_back_a_lead_that_met_the_rule_when_they_joined_until_armed():
    already = dataclasses.replace(LEAD, baseline="Yes")
    held = verdict(already)
    assert held.action is Action.NOTE and "require_change is true" in held.entry.reason
    assert verdict(dataclasses.replace(already, armed=True)).action is Action.QUALIFY
    no_change = Qualification(attribute=RULE.attribute, value="Yes", require_change=False)
    assert verdict(already, no_change).action is Action.QUALIFY


@pytest.mark.parametrize("state", [QState.QUALIFIED, QState.FAILED])
def test_a_settled_qualification_is_counted_as_a_repeat(state):
    v = verdict(dataclasses.replace(LEAD, qualification=state))
    assert v.action is Action.NOTE and v.entry is None and v.repeat.event == f"qualification_{state.value}"


def test_a_replay_judges_a_failed_qualification_again():
    failed = dataclasses.replace(LEAD, qualification=QState.FAILED)
    assert verdict(failed, sighting=seen("Yes", replay=True)).action is Action.QUALIFY


def test_a_lead_who_joined_before_the_rule_is_never_qualified_by_surprise():
    v = verdict(dataclasses.replace(LEAD, qualification=None))
    assert v.action is Action.NOTE and v.repeat.event == "qualification_untracked"
    assert "`bridge backfill 42 --apply` takes its value now as its baseline" in v.repeat.reason     # the fix
    assert takes_baseline(dataclasses.replace(LEAD, qualification=None), RULE)


PLAN = Qualification(attribute="custom_attributes.plan", value="pro")
# Ann joined under the signed_up rule (baseline "No"); the rule now reads plan, and her contact was "pro" all along
RE_RULED = dataclasses.replace(LEAD, baseline_of=RULE.attribute)


def on_plan(value, **kw) -> Sighting:
    return Sighting({"id": "c1", "custom_attributes": {"plan": value}}, "webhook contact.lead.updated", **kw)


def test_a_baseline_of_another_attribute_never_qualifies_by_surprise_and_names_the_fix():
    v = verdict(RE_RULED, PLAN, on_plan("pro"))
    assert v.action is Action.NOTE and v.entry is None and v.repeat.event == "qualification_baseline_unknown"
    assert "one of custom_attributes.signed_up, not of custom_attributes.plan" in v.repeat.reason
    assert "`bridge backfill 42 --apply`" in v.repeat.reason
    assert takes_baseline(RE_RULED, PLAN) and not takes_baseline(RE_RULED, RULE)
    assert not takes_baseline(dataclasses.replace(RE_RULED, qualification=QState.QUALIFIED), PLAN)
    # without require_change the baseline does not matter: the target qualifies
    anyway = Qualification(attribute=PLAN.attribute, value="pro", require_change=False)
    assert verdict(RE_RULED, anyway, on_plan("pro")).action is Action.QUALIFY


def test_a_link_stored_before_baselines_named_their_attribute_belongs_to_the_current_rule():
    assert LEAD.baseline_of is None and not takes_baseline(LEAD, PLAN)
    assert verdict(LEAD, PLAN, on_plan("pro")).action is Action.QUALIFY          # as the bridge always judged it


def test_a_new_target_on_the_same_attribute_keeps_the_baseline_but_not_an_arming_under_the_old_one():
    enterprise = Qualification(attribute=PLAN.attribute, value="enterprise")
    joined_free = dataclasses.replace(LEAD, baseline="free", baseline_of=PLAN.attribute)
    assert verdict(joined_free, enterprise, on_plan("enterprise")).action is Action.QUALIFY     # a real change
    # "enterprise" missed the old target ("pro"), so it armed the link then; it was her value at join time
    armed = dataclasses.replace(joined_free, baseline="enterprise", armed=True, armed_by=key(PLAN))
    held = verdict(armed, enterprise, on_plan("enterprise"))
    assert held.action is Action.NOTE and "require_change is true" in held.entry.reason
    assert verdict(armed, enterprise, on_plan("free")).action is Action.ARM          # armed anew, under this rule
    assert verdict(dataclasses.replace(armed, armed_by=key(enterprise)), enterprise,
                   on_plan("enterprise")).action is Action.QUALIFY


def test_a_referrer_meeting_the_rule_is_noted_but_never_qualified():
    referrer = dataclasses.replace(LEAD, kind="referrer", qualification=None)
    v = verdict(referrer)
    assert v.action is Action.NOTE and v.entry.outcome == "not_qualified" and "referrers never qualify" in v.entry.reason
    assert verdict(referrer, sighting=seen("No")).action is Action.IGNORE


def test_nothing_to_judge_is_ignored_without_asking_for_the_attribute_type():
    asked = []
    stub = Sighting({"id": "c1", "type": "contact"}, "webhook contact.user.tag.created")
    for link, rule, sighting in ((LEAD, None, seen("Yes")), (dataclasses.replace(LEAD, status=LinkStatus.FAILED),
                                                                RULE, seen("Yes")), (LEAD, RULE, stub)):
        assert judge(link, rule, sighting, asked.append).action is Action.IGNORE
    assert asked == []


def test_a_duplicate_contacts_value_qualifies_and_says_so_but_never_arms():
    v = verdict(sighting=seen("Yes", duplicate="c2"))
    assert v.action is Action.QUALIFY and v.entry.details["duplicate_contact_id"] == "c2"
    assert "on duplicate contact c2" in v.entry.reason
    assert verdict(sighting=seen("No", duplicate="c2")).action is Action.NOTE


def test_the_attribute_type_decides_how_a_value_compares():
    rule = Qualification(attribute="custom_attributes.score", value=10, operator="gte")
    link = dataclasses.replace(LEAD, baseline=None)
    contact = Sighting({"id": "c1", "custom_attributes": {"score": "12.5"}}, "reconciliation")
    assert judge(link, rule, contact, lambda attribute: "float").action is Action.QUALIFY


def test_judge_takes_a_link_armed_since_a_time_as_not_armed_for_a_target_value_older_than_that():
    """Link.armed_at: a target value from an event older than the value that armed the link was no change to the
    target (judge.armed_for); of the same second or newer, or of no known time, it was. An older value missing the
    target arms it again (the store writes its time, earlier). Armed before the bridge recorded since when (None):
    armed since always."""
    T = 1796000000.0                  # (after LEAD joined)
    at_target = dataclasses.replace(LEAD, baseline="Yes", armed=True, armed_by=key(RULE), armed_at=T)
    held_back = verdict(at_target, sighting=seen("Yes", when=T - 1))
    assert held_back.action is Action.NOTE and held_back.entry.outcome == "not_met"
    assert held_back.entry.details["require_change"] is True
    for when in (T, T + 1, None):
        assert verdict(at_target, sighting=seen("Yes", when=when)).action is Action.QUALIFY
    assert verdict(at_target, sighting=seen("No", when=T - 1)).action is Action.ARM
    assert verdict(at_target, sighting=seen("No", when=T + 1)).action is Action.NOTE
    legacy = dataclasses.replace(at_target, armed_at=None)
    assert verdict(legacy, sighting=seen("Yes", when=T - 1)).action is Action.QUALIFY
    # a baseline off the target qualifies whatever the armed state: the mirror case
    assert verdict(dataclasses.replace(at_target, baseline="No"), sighting=seen("Yes", when=T - 1)).action \
        is Action.QUALIFY


def test_judge_holds_back_an_older_target_value_and_releases_it_on_a_change_away_no_later_than_it():
    """Link.held_at: a target value held back by armed_at is recorded (the newer of two: an older one writes nothing
    more than its note); a value missing the target that arms the link since earlier than it releases it, under the
    same rule only, and only while the qualification waits. A newer one does not (the two-event false case stays
    closed), nor one of its second (their order is not known: never made a qualification), whose arm drops it."""
    T = 1796000000.0
    armed = dataclasses.replace(LEAD, baseline="Yes", armed=True, armed_by=key(RULE), armed_at=T)
    held = verdict(armed, sighting=seen("Yes", when=T - 10))
    assert (held.action, held.held_at, held.held_by, held.entry.details["held_back"]) == (
        Action.NOTE, T - 10, key(RULE), True)
    older = verdict(dataclasses.replace(armed, held_at=T - 5), sighting=seen("Yes", when=T - 10))
    assert (older.action, older.held_at, older.entry.details["held_back"]) == (Action.NOTE, None, True)
    assert verdict(dataclasses.replace(armed, held_at=T - 15), sighting=seen("Yes", when=T - 10)).held_at == T - 10
    assert verdict(armed, sighting=seen("Yes", when=T - 10, current=True, read_after_link=True)).action \
        is Action.QUALIFY
    holding = dataclasses.replace(armed, held_at=T - 10)
    for when, releases, drops in ((T - 11, True, False), (T - 20, True, False), (T - 10, False, True),
                                  (T - 9, False, False)):
        arms = verdict(holding, sighting=seen("No", when=when))
        assert (arms.action, arms.releases, arms.drops_held) == (Action.ARM, releases, drops), when
    assert not verdict(dataclasses.replace(holding, armed_by="another rule"), sighting=seen("No", when=T - 20)).releases
    assert not verdict(dataclasses.replace(holding, qualification=QState.UNCONFIRMED),
                       sighting=seen("No", when=T - 20)).releases
    assert verdict(holding, sighting=seen("No", when=T + 1)).action is Action.NOTE


def test_judge_holds_a_target_value_seen_unarmed_and_releases_it_on_an_older_change_away_under_its_rule_only():
    """A value at the target, unchanged from the baseline, seen while the link is not armed (a "No" at t1, a "Yes" at
    t2, delivered "Yes" first) is held too (Link.held_at, under the rule: held_by), not marked held back (nothing armed
    the link); a value missing the target from an earlier second arms the link and releases it. Not one of the same
    second (in order, "Yes" then "No" of one second are no change to the target), nor a newer one, nor under another
    rule (settings replaced it since), nor once the qualification is decided. A hold under another rule is replaced."""
    T = 1796000000.0
    unarmed = dataclasses.replace(LEAD, baseline="Yes")
    held = verdict(unarmed, sighting=seen("Yes", when=T))
    assert (held.action, held.held_at, held.held_by, "held_back" in held.entry.details) == (
        Action.NOTE, T, key(RULE), False)
    assert verdict(unarmed, sighting=seen("Yes", when=None)).held_at is None
    holding = dataclasses.replace(unarmed, held_at=T, held_by=key(RULE))
    for when, releases, drops in ((T - 1, True, False), (T, False, True), (T + 1, False, False)):
        arms = verdict(holding, sighting=seen("No", when=when))      # (the same second's arm drops it: keeps_held)
        assert (arms.action, arms.releases, arms.drops_held) == (Action.ARM, releases, drops), when
    assert not verdict(dataclasses.replace(holding, held_by="another rule"), sighting=seen("No", when=T - 1)).releases
    assert not verdict(dataclasses.replace(holding, qualification=QState.UNCONFIRMED),
                       sighting=seen("No", when=T - 1)).releases
    other = verdict(dataclasses.replace(holding, held_at=T + 5, held_by="another rule"), sighting=seen("Yes", when=T))
    assert (other.held_at, other.held_by) == (T, key(RULE))
    # armed since later than the hold (a newer "No" delivered since): the hold is kept, and an older "No" releases it
    later = dataclasses.replace(holding, armed=True, armed_by=key(RULE), armed_at=T + 10)
    assert verdict(later, sighting=seen("No", when=T - 1)).releases
    assert verdict(later, sighting=seen("No", when=T + 5)).action is Action.ARM
    assert not verdict(later, sighting=seen("No", when=T + 5)).releases


def test_judge_neither_arms_nor_releases_on_a_change_away_from_before_the_links_last_move():
    """The link moved to contact c2 at T (Link.moved_at: what it left records when), and holds a value at the target
    seen on it since: a value missing the target from an event before T (a change on c2 before the link was on it,
    delivered late) is no change after the baseline held now: noted (it says why), not arming the link (armed, a
    later sighting at the target would qualify her), releasing nothing, and the hold kept (a change away of c2 after
    T, delivered later, still releases it); a value at the target before T neither qualifies her nor is held. One of
    T's second arms and releases (qualifies, is held); so does c2's value as it is now
    (Sighting.current: its value since, at the move too). The view of the link on c1 (LeftContact.held) keeps no
    move from c1 or later, so c1's late values before T are judged as on c1."""
    T = 1796000000.0
    moved = dataclasses.replace(LEAD, contact_id="c2", baseline="Yes", held_at=T + 5, held_by=key(RULE),
                                left_contacts=frozenset({"c1"}), left_baselines=(LeftContact("c1", "No", moved_at=T),))
    assert moved.moved_at == T
    before = verdict(moved, sighting=seen("No", when=T - 1))
    assert (before.action, before.releases, before.drops_held, before.held_at) == (Action.NOTE, False, False, None)
    assert before.entry.details["before_move"] == T and "neither qualifies nor arms the link" in before.entry.reason
    # nor qualifies her on a value at the target (her baseline there "No"), nor holds one (her baseline "Yes")
    met = verdict(dataclasses.replace(moved, baseline="No"), sighting=seen("Yes", when=T - 1))
    assert (met.action, met.entry.outcome, met.entry.details["before_move"]) == (Action.NOTE, "not_met", T)
    assert verdict(dataclasses.replace(moved, baseline="No"), sighting=seen("Yes", when=T)).action is Action.QUALIFY
    assert verdict(dataclasses.replace(moved, held_at=None), sighting=seen("Yes", when=T - 1)).held_at is None
    assert verdict(dataclasses.replace(moved, held_at=None), sighting=seen("Yes", when=T)).held_at == T
    for when in (T, T + 1):
        after = verdict(moved, sighting=seen("No", when=when))
        assert (after.action, after.releases, after.drops_held) == (Action.ARM, True, False)
    now = verdict(moved, sighting=seen("No", when=T - 1, current=True))
    assert now.action is Action.ARM and "before_move" not in now.entry.details
    assert verdict(dataclasses.replace(moved, held_at=None), sighting=seen("No", when=T - 1)).action is Action.NOTE
    assert moved.left_baselines[0].held(moved).moved_at is None
    assert verdict(moved.left_baselines[0].held(moved), sighting=seen("No", when=T - 1)).action is Action.ARM


def test_judge_takes_a_value_from_before_backfill_took_her_baseline_as_one_from_before_a_move():
    """`bridge backfill --apply` took her baseline at T (Link.baseline_at): her value then, after every change before
    it. A value from an event before T, delivered after the take, is no change after it, as one from before a move
    (judge.before_view): at the target it neither qualifies her nor is held; missing it, it neither arms the link nor
    releases a value held since (a "No" and a "Yes" before the take, delivered after it, would have qualified her).
    One of T's second or later is judged as always, as is her contact as it is now. The bound is the later of the take
    and the last move (Link.viewed_since); a link that recorded neither (taken or moved before the bridge did) is
    judged as then. The view of the link on a contact it left keeps a take made there (older than the move from it),
    not a later one."""
    T = 1796000000.0
    taken = dataclasses.replace(LEAD, baseline="Yes", baseline_at=T, held_at=T + 5, held_by=key(RULE))
    assert (taken.viewed_since, taken.moved_at) == (T, None)
    before = verdict(taken, sighting=seen("No", when=T - 1))
    assert (before.action, before.releases, before.drops_held, before.held_at) == (Action.NOTE, False, False, None)
    assert before.entry.details["before_baseline_taken"] == T and "took the link's baseline" in before.entry.reason
    no_yet = dataclasses.replace(taken, baseline="No", held_at=None)
    met = verdict(no_yet, sighting=seen("Yes", when=T - 1))
    assert (met.action, met.entry.outcome) == (Action.NOTE, "not_met")
    assert verdict(dataclasses.replace(taken, held_at=None), sighting=seen("Yes", when=T - 1)).held_at is None
    for when in (T, T + 1):
        after = verdict(taken, sighting=seen("No", when=when))
        assert (after.action, after.releases) == (Action.ARM, True)
        assert verdict(no_yet, sighting=seen("Yes", when=when)).action is Action.QUALIFY
    assert verdict(no_yet, sighting=seen("Yes", when=T - 1, current=True)).action is Action.QUALIFY
    # as before the bridge recorded the take: judged
    assert verdict(dataclasses.replace(taken, baseline_at=None), sighting=seen("No", when=T - 1)).releases
    # the later of a move and the take bounds what is hers
    moved = dataclasses.replace(taken, left_contacts=frozenset({"c0"}),
                                left_baselines=(LeftContact("c0", "No", moved_at=T + 2),))
    assert moved.viewed_since == T + 2 and verdict(moved, sighting=seen("No", when=T + 1)).action is Action.NOTE
    assert "moved to this contact" in verdict(moved, sighting=seen("No", when=T + 1)).entry.reason
    earlier = dataclasses.replace(taken, left_contacts=frozenset({"c0"}), last_moved_at=T - 10,
                                  left_baselines=(LeftContact("c0", "No", moved_at=T - 10),))
    assert earlier.viewed_since == T and verdict(earlier, sighting=seen("No", when=T - 5)).action is Action.NOTE
    # on the contact it left: a take there before the move from it bounds it; one after it (here) does not (only her
    # join, days before, does: Link.joined_since)
    assert moved.left_baselines[0].held(moved).viewed_since == T
    assert earlier.left_baselines[0].held(earlier).viewed_since == earlier.joined_since < T - 10


def test_judge_takes_a_value_of_her_own_contact_from_before_she_joined_as_one_from_before_her_view():
    """Her link's view of the contact the join found begins at her join (Link.joined_since: the second of joined_at):
    a notification of an earlier second, delivered after the link exists, came before it in order, and the join's read
    (her baseline) followed it. At the target it neither qualifies her nor is held; missing it, it neither arms the
    link nor releases a value held since ("No" at -30, "Yes" at -20 read as her baseline, the join's own "Yes" at +5
    held: the late "No" would have qualified her). The second she joined in, and later, are judged as always, as is
    her contact as it is now; a link with no joined_at is judged as before. The later of her join and a move or a take
    bounds her view."""
    joined = LEAD_JOINED + 0.4
    lead = dataclasses.replace(LEAD, joined_at="2026-11-25T10:00:00.400Z")
    assert (lead.joined_since, lead.viewed_since, lead.moved_at, lead.baseline_at) == (LEAD_JOINED, LEAD_JOINED,
                                                                                      None, None)
    early = verdict(lead, sighting=seen("Yes", when=LEAD_JOINED - 30))
    assert (early.action, early.entry.outcome, early.held_at) == (Action.NOTE, "not_met", None)
    assert early.entry.details["before_joined"] == lead.joined_at and "from before she joined" in early.entry.reason
    assert verdict(lead, sighting=seen("No", when=LEAD_JOINED - 30)).action is Action.NOTE
    held = dataclasses.replace(lead, baseline="Yes", held_at=LEAD_JOINED + 5, held_by=key(RULE))
    late_no = verdict(held, sighting=seen("No", when=LEAD_JOINED - 30))
    assert (late_no.action, late_no.releases) == (Action.NOTE, False)
    for when in (LEAD_JOINED, joined, LEAD_JOINED + 1):       # her join's second, and later: judged
        assert verdict(lead, sighting=seen("Yes", when=when)).action is Action.QUALIFY
        assert verdict(held, sighting=seen("No", when=when)).releases is (when < held.held_at)
    assert verdict(lead, sighting=seen("Yes", when=LEAD_JOINED - 30, current=True)).action is Action.QUALIFY
    unrecorded = dataclasses.replace(lead, joined_at=None)
    assert (unrecorded.joined_since, unrecorded.viewed_since) == (None, None)
    assert verdict(unrecorded, sighting=seen("Yes", when=LEAD_JOINED - 30)).action is Action.QUALIFY
    assert verdict(dataclasses.replace(held, joined_at=None), sighting=seen("No", when=LEAD_JOINED - 30)).releases
    taken = dataclasses.replace(lead, baseline_at=LEAD_JOINED + 100)
    assert taken.viewed_since == LEAD_JOINED + 100 and "took the link's baseline" in \
        verdict(taken, sighting=seen("Yes", when=LEAD_JOINED + 50)).entry.reason
    moved = dataclasses.replace(lead, last_moved_at=LEAD_JOINED - 100)     # (a move dated before her join: hers since)
    assert moved.viewed_since == LEAD_JOINED and verdict(moved, sighting=seen("Yes", when=LEAD_JOINED - 30)
                                                        ).entry.details["before_joined"] == lead.joined_at


def test_a_move_recording_nothing_it_left_bounds_what_is_hers_by_its_time():
    """The duplicate check's move leaving her lead in Intercom or its merge keeping her baseline, before 2026-11-28,
    records no LeftContact, only its time (Link.last_moved_at): a value of the contact it moved to from before it is
    none of hers (judge.before_view), as after a merge."""
    T = 1796000000.0
    moved = dataclasses.replace(LEAD, baseline="Yes", contact_id="c2", last_moved_at=T, held_at=T + 5,
                                held_by=key(RULE), armed=True, armed_by=key(RULE), armed_at=T + 10)
    assert moved.moved_at == T and moved.left_baselines == ()
    before = verdict(moved, sighting=seen("No", when=T - 1))
    assert (before.action, before.releases, before.entry.details["before_move"]) == (Action.NOTE, False, T)
    assert verdict(moved, sighting=seen("No", when=T + 1)).releases


def test_judge_qualifies_a_link_recording_a_release_not_followed_by_her_qualification():
    """Armed since no later than the value held back (Link.held_at >= armed_at: only a releasing arm makes it so), her
    qualification still pending (the claim failed after the arm was written): any sighting qualifies her. Not a hold
    older than armed_at, under another rule, or once the qualification is decided."""
    T = 1796000000.0
    owed = dataclasses.replace(LEAD, baseline="Yes", armed=True, armed_by=key(RULE), armed_at=T - 10, held_at=T - 5)
    assert verdict(owed, sighting=seen("No", when=T - 10)).action is Action.QUALIFY
    assert verdict(dataclasses.replace(owed, held_at=T - 10), sighting=seen("No", when=T)).action is Action.QUALIFY
    assert verdict(dataclasses.replace(owed, held_at=T - 11), sighting=seen("No", when=T)).action is Action.NOTE
    assert verdict(dataclasses.replace(owed, armed_by="another rule"), sighting=seen("No", when=T)).action \
        is not Action.QUALIFY
    assert verdict(dataclasses.replace(owed, qualification=QState.QUALIFIED), sighting=seen("No", when=T)).action \
        is Action.NOTE
