"""judge(): what a contact's value, seen in an event, means for a link under the campaign's rule —
ignore it, note it, arm the link, or qualify the referral. Pure: no I/O (the attribute's type is
asked through a function, only when a value is judged)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Callable, Mapping, Optional

from . import rules
from .history import Entry, Recorded, Repeat, epoch, iso
from .link import MOVED_UNKNOWN, LeftContact, Link, LinkStatus
from .mapping import attribute_value, has_attribute
from .qualification import QState, open_states
from .settings import CampaignSettings, Qualification


class Action(StrEnum):
    IGNORE = "ignore"      # nothing to judge (no rule, not linked, the event carries no value)
    NOTE = "note"          # record the entry (or count the repeat), nothing else
    ARM = "arm"            # a non-target value after joining: a later return to the target counts
    QUALIFY = "qualify"    # the rule is met: record the entry and qualify the referral
    # The qualification failed and its dead letter may not exist (the worker stopped between the two, or the send
    # failed): fail again, with its reason, so that this record is the letter (Link.owes_letter).
    FAIL = "fail"


@dataclass(frozen=True)
class Sighting:
    """A view of the contact: from a webhook, a reconciliation check or search, or a resumed join."""

    contact: Mapping[str, Any]
    via: str
    when: Optional[float] = None          # the event's time (None: now, or unknown)
    duplicate: Optional[str] = None       # the id of another contact with the lead's email
    replay: bool = False
    current: bool = False                 # the contact as it is now (read, or found by search), not an event
    # The contact read from Intercom after the link was read (a check's read, a notification's too large to queue):
    # newer than whatever armed the link (that was applied before), so Link.armed_at holds none of its values back
    # (armed_for), whatever its updated_at.
    read_after_link: bool = False


@dataclass(frozen=True)
class Verdict:
    action: Action
    entry: Optional[Entry] = None
    repeat: Optional[Repeat] = None
    # NOTE: a value meeting the target held back as no change (unchanged: the link not armed for it, by Link.armed_at,
    # armed_for, or not armed at all), of this event time: Link.held_at becomes the newer of the two, under the rule
    # `held_by` (LinkRepository.hold_back)
    held_at: Optional[float] = None
    held_by: Optional[str] = None
    # ARM: arming the link since the time of this value releases the value Link.held_at held back: she qualifies
    releases: bool = False
    # ARM: the value held (Link.held_at) is no older than this value and not released by it (keeps_held): the arm
    # drops it
    drops_held: bool = False
    # ARM of a join not finished (_held): a value meeting the target of this event time, a change to the target after
    # her baseline, is kept for the join's finish: held (Link.held_at, the newer of the two) in the same write as the
    # arm, since `since` (Link.armed_at: an earlier arm's, or this value's), no later than it: the link reads as
    # released (judge.released), and the finish's sighting qualifies her (claimed, RF asked first, once)
    keeps: Optional[float] = None
    since: Optional[float] = None


IGNORE = Verdict(Action.IGNORE)
SETTLED = {
    QState.QUALIFIED: "already qualified: later changes to the contact are ignored",
    QState.FAILED: "qualifying failed earlier (see the dead-letter queue): replay it once the cause is fixed",
}
DEAD_LETTER_DAYS = 14    # how long SQS keeps a dead letter (infra/template.yaml: its longest), then deletes it unsaid


def letter_gone(link: Link, now: float, listed: bool = False) -> bool:
    """A linked lead whose qualification RF refused (FAILED: only a replay reopens it) longer ago than SQS keeps
    a dead letter: its letter is gone, and no `bridge dlq replay` can reach it. The refusal is dated by its letter
    (Link.refused_at; a replay failing again renews it); a link refused before the bridge recorded that, by its last
    write (a later one, e.g. the contact followed to a merge, only dates it later). A check of the lead sent as a
    replay (`bridge backfill CAMPAIGN --apply`) finishes it, RF asked first (finishes_on_replay). Not a refusal
    whose letter the operator discarded (Link.refusal_discarded: given up on for good), nor, unless Referral Factory
    `listed` the lead since, one whose lead backfill found deleted there (Link.rf_deleted_at: nothing left to check)."""
    refused = link.refused_at if link.refused_at is not None else epoch(link.updated_at) if link.updated_at else 0.0
    return (link.qualification is QState.FAILED and link.is_lead and link.status is LinkStatus.LINKED
            and not link.refusal_discarded and (listed or link.rf_deleted_at is None)
            and refused <= now - DEAD_LETTER_DAYS * 86400)


#: The kinds of a qualification's dead letters (messages.CheckMessage's and ContactMessage's).
QUALIFYING_LETTERS = ("intercom.contact", "intercom.check")


def letter_discarded(entries: list[Recorded]) -> bool:
    """Was the person's last qualification dead letter discarded by the operator (`bridge dlq discard`), as the note
    `discard` wrote in their history says? (For a refusal recorded before links kept the discard,
    Link.refusal_discarded: backfill.)"""
    letters = [e for e in sorted(entries, key=lambda e: e.at) if e.event == "dead_letter"
               and str((e.details or {}).get("kind")) in QUALIFYING_LETTERS]
    return bool(letters) and letters[-1].outcome == "discarded"


def rf_deleted(link: Link) -> bool:
    """A refused lead `bridge backfill --apply` found deleted in Referral Factory (a claim since, QUALIFYING, keeps
    the mark until the qualification ends again: not this)."""
    return link.rf_deleted_at is not None and link.qualification is QState.FAILED


def failed_repeat(link: Link, now: Optional[float]) -> Repeat:
    """What a later sighting of a lead whose qualification failed notes (once, its repeats counted): the replay
    while its letter may be there, `bridge backfill --apply` once it is gone (`now`: the sighting's time), nothing
    to do once the operator discarded it."""
    if link.refusal_discarded:
        return Repeat("qualification_failed_discarded", DISCARDED_REFUSAL)
    if rf_deleted(link):
        return Repeat("qualification_failed_rf_deleted", RF_DELETED_REFUSAL)
    if now is None or not letter_gone(link, now):
        return Repeat(f"qualification_{QState.FAILED.value}", SETTLED[QState.FAILED])
    return Repeat("qualification_failed_letter_gone", (
        f"qualifying failed earlier, and its dead letter is gone (SQS keeps one {DEAD_LETTER_DAYS} days): "
        f"`bridge backfill {link.campaign_id} --apply` checks it again once the cause is fixed (Referral Factory "
        "asked first)"))


#: A refused lead `bridge backfill --apply` found deleted in Referral Factory (Link.rf_deleted_at).
RF_DELETED_REFUSAL = ("qualifying failed earlier, its dead letter is gone, and the lead was deleted in Referral Factory "
                      "(`bridge backfill --apply` found it no longer listed, and RF answered 404 for it): nothing is "
                      "left to qualify, so it is never checked again (`bridge forget` erases what the bridge keeps "
                      "of it)")


DISCARDED_REFUSAL = ("qualifying failed earlier, and the operator discarded its dead letter (`bridge dlq discard`): "
                     "given up on")


#: A replay of a qualification RF refused: the rule was met then, and the decision sticks (RF is asked first).
REPLAYED_FAILED = ("the rule was met and Referral Factory refused the qualification: its replay finishes it, whatever "
                   "the contact or the settings' rule say now (Referral Factory asked first)")


def finishes_on_replay(link: Link, replay: bool) -> bool:
    """A replay reaching a linked lead whose qualification RF refused (REPLAYED_FAILED): it is finished, whatever the
    contact or the settings' rule say now."""
    return replay and link.qualification is QState.FAILED and link.is_lead and link.status is LinkStatus.LINKED


def elsewhere(link: Link, settings: Optional[CampaignSettings]) -> Optional[Repeat]:
    """Why `link` is not judged under the campaign's settings: it was linked in another workspace
    than the one the campaign is connected to now (its settings were applied naming another). Its
    contact is another team's: what changes there never qualifies the campaign. None: it is judged."""
    if settings is None or link.workspace == settings.workspace:
        return None
    return Repeat(f"workspace_moved#{settings.workspace}", (
        f"not qualified: linked in workspace {link.workspace}; campaign {link.campaign_id} is now connected to "
        f"{settings.workspace} (its settings were applied naming it), so changes to this contact no longer count"))


def baseline_known(link: Link, rule: Qualification) -> bool:
    """Is the link's baseline the lead's value of the rule's attribute when they joined? Not for a lead
    linked before the campaign had a rule (no qualification state), nor for one whose baseline is a value
    of another attribute (the rule changed since), or of none (MOVED_UNKNOWN: join.moved_baseline). A rule
    whose target changed on the same attribute keeps it (the value then is what it was; only `armed` depends
    on the target: armed_under). A link stored before the bridge recorded `baseline_of` is taken as the
    current rule's, as the bridge always took it: settings that change the rule record it on them first."""
    return link.qualification is not None and link.baseline_of in (None, rule.attribute)


def takes_baseline(link: Link, rule: Qualification) -> bool:
    """A linked lead whose value now `bridge backfill --apply` takes as their baseline under `rule`, as
    `settings apply` and doctor count them (backfill.unknown_baselines): one never tracked (linked before any
    rule), or, while require_change holds (without it the baseline does not matter: they qualify), one
    waiting for qualification whose baseline is not known."""
    waiting = link.qualification is None or (rule.require_change and link.qualification is QState.PENDING)
    return link.is_lead and link.status is LinkStatus.LINKED and waiting and not baseline_known(link, rule)


def armed_under(link: Link, rule: Qualification) -> bool:
    """A value missing this rule's target was seen after joining (one that missed another rule's target
    may meet this one's). Armed before the bridge recorded under which rule: taken as the current rule's
    (settings that change the rule record it first: Link.armed_unrecorded)."""
    return link.armed and link.armed_by in (None, rules.key(rule))


def armed_for(link: Link, rule: Qualification, when: Optional[float]) -> bool:
    """Armed under `rule` (armed_under) for a value seen at `when` (Intercom's clock): not for one from an event
    older than the value that armed it (Link.armed_at), delivered after it: in order, that value came before the
    change away from the target, so it was no change to the target (a lead who joined with the target, kept it, then
    left it, is not qualified by the older event's target value coming last). A value of the same second counts
    (their order is not known: in order, it would). An unknown time (either) counts, as it always did."""
    return armed_under(link, rule) and (when is None or link.armed_at is None or when >= link.armed_at)


def held_back(link: Link, rule: Qualification, when: Optional[float]) -> bool:
    """Armed under `rule`, but not for a value of `when` (armed_for): one seen then would be judged unarmed."""
    return armed_under(link, rule) and not armed_for(link, rule, when)


def holds_back(link: Link, rule: Qualification, type_of: Callable[[str], str], value: Any, when: Optional[float]
               ) -> bool:
    """A value `value` seen at `when` that judge holds back (Link.held_at): at the target, the lead's known baseline at
    it too under require_change (unchanged), and older than what armed the link (held_back). A lead whose baseline
    misses the target qualifies on it whatever the order: not held back. (`type_of` asked only when it may be.)"""
    if not (held_back(link, rule, when) and rule.require_change and baseline_known(link, rule)):
        return False
    data_type = type_of(rule.attribute)
    return rules.matches(rule, data_type, value) and rules.matches(rule, data_type, link.baseline)


def _value_time(seen: Sighting) -> Optional[float]:
    """The time armed_for compares the value seen by: its event's, or none for a contact read after the link was
    (Sighting.read_after_link). armed_at is a notification's time, which Intercom sets after the change it tells: a
    return to the target made between that change and its notification is older by that clock, though newer in
    fact, and a read made after the arm shows the contact as it is since. (Reconciliation's search keeps its time:
    it ran before the link was read, and may show a value from before the change that armed the link; one at the
    target it holds back is read again, changes._judge.)"""
    return None if seen.read_after_link else seen.when


def untracked(link: Link) -> Repeat:
    return Repeat("qualification_untracked", "this lead joined before the campaign had a qualification rule, so "
                  f"its value at join time is unknown: it is not qualified automatically — {_backfill(link)}")


def unknown_baseline(link: Link, rule: Qualification) -> Repeat:
    why = (f"its link moved to contact {link.contact_id}, which existed when the lead joined and changed since, so its "
           f"{rule.attribute} then is not known" if link.baseline_of == MOVED_UNKNOWN else
           f"this lead's baseline (its value when it joined, or when `bridge backfill --apply` took it) is one of "
           f"{link.baseline_of}, not of {rule.attribute} (the qualification rule changed since)")
    return Repeat("qualification_baseline_unknown", f"{why}, and require_change is true: it is not qualified "
                  f"automatically — {_backfill(link)}")


def _backfill(link: Link) -> str:
    return (f"`bridge backfill {link.campaign_id} --apply` takes its value now as its baseline, and it waits for "
            "qualification from then on")


def judge(link: Link, rule: Optional[Qualification], seen: Sighting,
          type_of: Callable[[str], str]) -> Verdict:
    """What `seen` means for `link` under `rule`. `type_of(attribute)`: the attribute's Intercom data
    type (asked only when a value is judged)."""
    if finishes_on_replay(link, seen.replay):
        return Verdict(Action.QUALIFY, Entry("evaluation", "met", REPLAYED_FAILED, {"via": seen.via}))
    if rule is None or not has_attribute(dict(seen.contact), rule.attribute):
        return IGNORE
    if link.status != "linked":
        return _held(link, rule, seen, type_of)
    state = link.qualification
    if link.owes_letter and not seen.replay:
        return Verdict(Action.FAIL)
    if link.is_lead and state is None:
        return Verdict(Action.NOTE, repeat=untracked(link))
    if state is QState.FAILED and not seen.replay:
        return Verdict(Action.NOTE, repeat=failed_repeat(link, seen.when))
    if state is not None and state not in open_states(seen.replay):
        return Verdict(Action.NOTE, repeat=Repeat(f"qualification_{state.value}", SETTLED[state]))
    known = baseline_known(link, rule)
    if link.is_lead and rule.require_change and not known:
        return Verdict(Action.NOTE, repeat=unknown_baseline(link, rule))
    data_type = type_of(rule.attribute)
    value = attribute_value(dict(seen.contact), rule.attribute)
    armed = armed_for(link, rule, _value_time(seen))
    result = rules.evaluate(rule, data_type, value, link.baseline if known else None, armed)
    details = {**result.as_details(), "via": seen.via, "contact_id": seen.contact.get("id")}
    reason = result.reason
    if seen.duplicate:
        details["duplicate_contact_id"] = seen.duplicate
        reason += f" (on duplicate contact {seen.duplicate} with the same email)"
    if not link.is_lead:
        if not result.met:
            return IGNORE
        return Verdict(Action.NOTE, Entry("evaluation", "not_qualified", details=details,
                                          reason=f"{reason}, but this person is a referrer: referrers never qualify"))
    entry = Entry("evaluation", "met" if result.met else "not_met", reason, details)
    early = before_view(link, seen)
    prior = before_joined(link, seen)
    if result.met and not early and not prior:
        return Verdict(Action.QUALIFY, entry)
    if released(link, rule):
        return Verdict(Action.QUALIFY, Entry("evaluation", "met", (
            f"the value at the target of the event at {iso(link.held_at or 0.0)} was a change to the target after her "
            f"baseline: held back and released by the change away the link is armed since "
            f"({iso(link.armed_at or 0.0)}), or kept while her join was not finished (seen then), and her "
            "qualification was not finished then: it is now"), {**details, "released_held_at": link.held_at}))
    if early:
        return Verdict(Action.NOTE, _before_view(link, reason, details))
    if prior:
        return Verdict(Action.NOTE, Entry("evaluation", "not_met", (
            f"{reason}: of an event from before {_joined(link, 'her contact')}, when it was no duplicate's value of "
            f"hers (in order it came before her link {'held her contact' if link.read_later else 'existed'}, and "
            "nothing judged it): not a change (it neither qualifies nor arms the link)"),
            {**details, **_joined_details(link)}))
    when = _value_time(seen)
    if result.unchanged and when is not None:
        return _hold(link, rule, when, entry, details)
    if _arms(link, armed, rule, data_type, value, seen):
        frees = releases(link, rule, when)
        # (kept or not by the time the arm records, seen.when: a read's value has none, its arm the contact's updated_at)
        return Verdict(Action.ARM, entry, releases=frees,
                       drops_held=not frees and not keeps_held(link, rule, seen.when))
    return Verdict(Action.NOTE, entry)


def _hold(link: Link, rule: Qualification, when: float, entry: Entry, details: dict) -> Verdict:
    """A value at the target seen at `when`, no change from the lead's baseline at it (Evaluation.unchanged: the
    link not armed for it): noted, and held (Link.held_at, under the rule), for a value missing the target from an
    event no later than it, delivered after, makes it a change in order (releases). Held by the link not armed yet
    too (a "No", a newer "Yes", delivered "Yes" first). A hold no newer than the one the link has under the rule
    writes nothing more than the note."""
    by = rules.key(rule)
    kept = link.held_under(by)
    back = armed_under(link, rule)
    reason = (f"{entry.reason}: held back, as of an event older than the change away from the target that armed the "
              "link (delivered after it); a change away no later than it, delivered later, makes it one" if back else
              f"{entry.reason}: held, should a change away from the target older than it be delivered later (that "
              "makes it one)")
    noted = Entry(entry.event, entry.outcome, reason, {**details, "held_back": True} if back else details)
    if kept is not None and kept >= when:
        return Verdict(Action.NOTE, noted)
    return Verdict(Action.NOTE, noted, held_at=when if kept is None else max(kept, when), held_by=by)


def releases(link: Link, rule: Qualification, when: Optional[float]) -> bool:
    """A value missing the target at `when` arms the link since then (`armed_for` it was not, or it was not armed): a
    value meeting the target held under the same rule (Link.held_under), of a later second, was then a change to the
    target in order (a "No", a newer "Yes", a newer "No", delivered newest first; or a "No" and a newer "Yes",
    delivered "Yes" first). Not one of the same second: their order is not known, and in order a "Yes" then a "No"
    of one second are no change to the target (the "Yes" is held, the "No" arms: releasing it then would qualify
    her, and so would a "No" of that second delivered after a newer one). A tie is left as its delivery order makes
    it (armed_for: a "No" delivered before a "Yes" of its second still arms for it), never made a qualification by a
    release. (Before 2026-11-28, an armed link's hold was released by a value of its second too.) Nor a value from
    before the link's view of its contact began (Link.viewed_since, as before_view): a change on the contact it moved
    to, made before it did, or one made before `bridge backfill --apply` took her baseline, or before she joined, is
    none after the baseline the link holds now (taken then, or kept), in order not judged as hers."""
    held = link.held_under(rules.key(rule))
    if held is None or when is None or link.qualification is not QState.PENDING:
        return False
    since = link.viewed_since
    return when < held and (since is None or when >= since)


def carried(link: Link, left: LeftContact, rule: Qualification, when: Optional[float]) -> Optional[Verdict]:
    """A value missing the target at `when` arms what the link held on `left`, a contact it left (a late notification:
    LinkRepository.arm_left): does it arm the link itself too, since `when`? Yes when the move that left it kept her
    baseline (LeftContact.kept), and with it the armed state: in order the link was armed on that contact, and went on
    armed on the one it moved to. Only for the link's last move with nothing taken since (Link.viewed_since is that
    move's time: a later move or take set the armed state anew; a take dated by the move's second is not known to be
    older than it: not carried), on the baseline it held there, waiting, and not armed for the value already
    (armed_for). Then a value at the target held on the contact it holds (Link.held_under: the
    move's own sighting, or one after it), of a later second, was a change to the target in order: released (as
    releases, whose bound by the view's start does not apply: the change away was hers, on her contact then). The
    verdict (ARM, `releases`, `drops_held` as keeps_held), or None: the link is not armed."""
    if not (left.kept and when is not None and left.moved_at is not None and link.viewed_since == left.moved_at
            and (link.baseline_at is None or link.baseline_at < left.moved_at) and left.before_move(when)
            and (link.baseline, link.baseline_of) == (left.baseline, left.baseline_of)
            and link.is_lead and link.qualification is QState.PENDING and not armed_for(link, rule, when)):
        return None
    held = link.held_under(rules.key(rule))
    frees = held is not None and when < held
    return Verdict(Action.ARM, releases=frees, drops_held=not frees and not keeps_held(link, rule, when))


def keeps_held(link: Link, rule: Qualification, when: Optional[float]) -> bool:
    """Does an arm since `when` that does not release the value held (releases) keep it? Not one it does not release
    though it arms since no later than it (of the same second, or from before the link's view began): kept, the link
    would read as armed since no later than the value held, as after a release (released), and qualify her on any
    later sighting, which in order nothing did. (Dropped, a change away delivered later does not release it: a
    miss, of same-second values only.) `when`: the time the arm records (Link.armed_at: Sighting.when), not the
    value's (_value_time): a contact read after the link was arms since its updated_at, which may be no later than a
    value held by its notification's time (Intercom dates a notification after the change it tells)."""
    held = link.held_under(rules.key(rule))
    return when is None or held is None or when > held


def released(link: Link, rule: Qualification) -> bool:
    """The link records a release (Verdict.releases) not followed by her qualification: armed under `rule` since no
    later than the value held under it (Link.held_under; a hold on an armed link is always older than armed_at, one on
    a link not armed yet is followed by an arm since later, and only an arm that releases it makes it no later). The
    arm was written, then the claim failed (the table throttled, the worker stopped): any later sighting of her
    contact (the retry, a check) qualifies her then, whatever her value. Or a join not finished kept a change to the
    target seen while it waited (_held: Verdict.keeps, held with an arm since no later than it): the join's finish
    (its resumed sighting of the contact) qualifies her, whatever her value then."""
    held = link.held_under(rules.key(rule))
    return (armed_under(link, rule) and held is not None and link.armed_at is not None
            and held >= link.armed_at and link.qualification is QState.PENDING)


def _held(link: Link, rule: Qualification, seen: Sighting, type_of: Callable[[str], str]) -> Verdict:
    """A lead's join not finished yet that found their contact and held its baseline (Link.contact_found): a value
    missing the target seen on it after they joined arms the link, as it would once linked (the join's next try
    resumes with that baseline, and judges the contact's value then). A value meeting the target that is a change
    after that baseline (it would qualify her, were she linked) is kept for the join's finish (_kept): her contact may
    go back before the finish reads it (a "No" baseline, "Yes" at t + 10, "No" since t + 20, read by the retry at
    t + 100). Nothing else is judged before the link is."""
    if not (link.contact_found and link.is_lead and rule.require_change and link.baseline_of == rule.attribute):
        return IGNORE
    data_type = type_of(rule.attribute)
    value = attribute_value(dict(seen.contact), rule.attribute)
    armed = armed_for(link, rule, _value_time(seen))
    if rules.matches(rule, data_type, value):
        return _kept(link, rule, seen, rules.evaluate(rule, data_type, value, link.baseline, armed))
    if not _arms(link, armed, rule, data_type, value, seen):
        return IGNORE
    result = rules.evaluate(rule, data_type, value, link.baseline, False)
    return Verdict(Action.ARM, Entry("evaluation", "not_met", f"{result.reason} (seen while the join was not finished: "
                                     "a change after joining, so a return to the target counts)",
                                     {**result.as_details(), "via": seen.via, "contact_id": seen.contact.get("id")}))


@dataclass(frozen=True)
class Kept:
    """A change to the target a join not finished kept for its finish (_kept), as a try of it read the link: the
    value's event time (Link.held_at), the arm's (Link.armed_at, no later), and the contact it was seen on."""

    held_at: float
    armed_at: float
    contact_id: Optional[str]


def kept_for_join(link: Link, rule: Qualification) -> Optional[Kept]:
    """What a lead's join not finished kept for its finish under `rule` (_kept: held, with an arm since no later, under
    the rule's key: a rule replaced since keeps none), or None. Only _kept leaves a link not linked so."""
    held = link.held_under(rules.key(rule))
    if link.status is LinkStatus.LINKED or not link.is_lead or held is None or not armed_under(link, rule) \
            or link.armed_at is None or held < link.armed_at:
        return None
    return Kept(held, link.armed_at, link.contact_id)


def kept_left(link: Link, rule: Qualification, verdict: Verdict) -> Optional[float]:
    """A late notification of a contact the link left (a merge's notification moved her waiting link), judged against
    what the link held there (LeftContact.held), kept a change to the target for her join's finish (Verdict.keeps:
    _kept, on her contact then, after her baseline there): it is hers whichever contact she is on, so the link itself
    keeps it (held, LinkRepository.arm's `hold`), as a move carries one kept before it (Link.keeps_for_join). The time
    its arm takes on the link: the verdict's (no later than the value) or the link's own arm under the rule when
    earlier (an arm narrows none). None: nothing kept (or the link linked since: judged there as any value)."""
    if verdict.keeps is None or verdict.since is None or link.status is LinkStatus.LINKED or not link.is_lead:
        return None
    own = link.armed_at if armed_under(link, rule) else None
    return own if own is not None and own < verdict.since else verdict.since


def _kept(link: Link, rule: Qualification, seen: Sighting, result: rules.Evaluation) -> Verdict:
    """A value meeting the target seen on the contact a join not finished holds (_held): kept for the join's finish
    when it is a change to the target after her baseline, as the link would judge it once linked (met: her baseline
    misses the target, or the link is armed for it, armed_for), of her contact itself (not a duplicate's, nor another
    contact's), of a known time no earlier than the link's view of the contact (before_view: the second she joined
    in, or that the try that found it and read her baseline there began in, Link.joined_since; not a search's copy
    from before it, searched_before_view). Kept: held (Link.held_at, under the rule) with an arm since no later than
    it (an earlier arm's time, or its own), in one write (Verdict.keeps): the link reads as released (judge.released),
    and the join's finish, which judges the contact as it is then, qualifies her (the normal path: claimed, RF asked
    first when a call may have reached it, once). Kept already (held no older, armed no later): noted only. Any other
    value is not judged (IGNORE, as before): no change (her baseline at the target, not armed for it), or no time
    (the finish reads the contact)."""
    when, since = seen.when, link.viewed_since
    if not (result.met and when is not None and since is not None and not seen.duplicate
            and str(seen.contact.get("id")) == str(link.contact_id) and not before_view(link, seen)
            and not searched_before_view(link, seen)):
        return IGNORE
    by = rules.key(rule)
    armed_at = link.armed_at if armed_under(link, rule) and link.armed_at is not None and link.armed_at <= when \
        else when
    held = link.held_under(by)
    entry = Entry("evaluation", "met", (
        f"{result.reason} (seen while her join was not finished: a change to the target after her baseline "
        f"({link.baseline!r}), of the event at {iso(when)}; kept for the join's finish, which qualifies her, whatever "
        "her value then)"), {**result.as_details(), "via": seen.via, "contact_id": seen.contact.get("id"),
                             "kept_for_join": when})
    if held is not None and held >= when and armed_at == link.armed_at:
        return Verdict(Action.NOTE, entry)
    return Verdict(Action.ARM, entry, keeps=when, since=armed_at)


def before_view(link: Link, seen: Sighting) -> bool:
    """`seen` is a notification of the contact the link holds, of an event older than the link's view of it began
    (Link.viewed_since): its last move to it (Link.moved_at: the contact was not hers then, a merge's survivor before
    the merge, or the older contact the duplicate check moved her link to), the time `bridge backfill --apply` took
    its baseline there (Link.baseline_at: a value older than the one taken, which followed every change before), or,
    on the contact her join found, her join (Link.joined_since: an earlier second than hers, or than the try's that
    read her baseline there, a retry's when her first try found nothing; that read followed it). Its value is no
    change after the baseline the link holds there (taken at the join, the move or by backfill, or kept: the move's
    own sighting judged the value it had then), whatever it was: judge
    neither qualifies nor arms on it (nor holds it). In order it was not judged as hers (a notification of a survivor
    delivered before the merge is not counted, contact_events._not_counted; one delivered before the take was judged
    against no baseline; one delivered before her join found no link). A value of that
    second is not (as releases). Not the contact as it is now (Sighting.current: its value then is its value since),
    nor one of a duplicate (another contact), nor on a link that recorded neither (moved and taken before the bridge
    recorded their times: judged as then). A move a check made (the merge's webhook lost), the duplicate check's, and
    a take are dated by the bridge's clock, later than the change they follow: a change of the contact between the
    two, delivered after, is not judged either (the move's or the take's read judged, or took, its value then)."""
    since = link.viewed_since
    return (since is not None and seen.when is not None and seen.when < since and not seen.current
            and not seen.duplicate)


def before_joined(link: Link, seen: Sighting) -> bool:
    """`seen` is a duplicate's value (another contact with her email, `match: email`: Sighting.duplicate) of an event
    from before the lead joined (Link.joined_since: the second of her join's first claim, or of the later try's that
    found her contact and read her baseline there, Link.found_at), delivered after her link exists: in order it came
    before, when no link judged it (a join not finished judges no duplicate's value), and was no duplicate's value of
    hers. Judge neither qualifies, arms nor holds on it. The event's
    time is the notification's (Sighting.when: Intercom's, whole seconds); the join's, the bridge's clock, is taken to
    its second: a value of the second she joined in may have been made after the join, and in order delivered after it
    and judged, so only an earlier second is before it (as join.moved_baseline takes a contact made in that second as
    made after). Not the contact as it is now (Sighting.current: a search's or a read's, its value since then its value
    now, as before_view)."""
    joined = link.joined_since
    return (seen.duplicate is not None and not seen.current and seen.when is not None and joined is not None
            and seen.when < joined)


def searched_before_view(link: Link, seen: Sighting) -> bool:
    """`seen` is a search's copy of the contact the link holds (Sighting.current, not read after the link was:
    changes._judge), updated before the link's view of it began (Link.viewed_since: its last move to it, backfill's
    take of its baseline there, or the second she joined in, or her join's read of it: joined_since): Intercom's
    search lags, and may show the contact as it was before, when it was not hers (a merge's survivor before the
    merge) or not yet her baseline (before_view, were it a notification). Not judged as the contact now: it is read
    again (as a value holds_back holds), or, under `match: email`, judged as the duplicate of hers it was then
    (contact_events.duplicate_then)."""
    return seen.current and not seen.read_after_link and before_view(link, replace(seen, current=False))


def _before_view(link: Link, reason: str, details: dict) -> Entry:
    """The note of a value before_view leaves unjudged: why (the move, the take of her baseline, or her join, or the
    later try of it that found and read the contact: the latest)."""
    moved, taken, joined = link.moved_at, link.baseline_at, link.joined_since
    if joined is not None and (moved is None or joined > moved) and (taken is None or joined > taken):
        later = link.read_later
        read = "that try's read of it" if later else "her baseline, read at the join,"
        return Entry("evaluation", "not_met", (
            f"{reason}: of an event from before {_joined(link, 'this contact')}, on the contact her join found (in "
            f"order it came before her link {'held it' if later else 'existed'}, and nothing judged it; "
            f"{read} followed it): not a change (it neither qualifies nor arms the link)"),
            {**details, **_joined_details(link)})
    if taken is not None and (moved is None or taken > moved):
        return Entry("evaluation", "not_met", (
            f"{reason}: of an event from before `bridge backfill --apply` took the link's baseline ({iso(taken)}), "
            "which is her value after it; the link judges the changes after the take: not a change (it neither "
            "qualifies nor arms the link)"), {**details, "before_baseline_taken": taken})
    return Entry("evaluation", "not_met", (
        f"{reason}: of an event from before the link moved to this contact ({iso(moved or 0.0)}), when it "
        "was not hers; the link took or kept its baseline there at the move, and judges the changes after it: "
        "not a change (it neither qualifies nor arms the link)"), {**details, "before_move": moved})


def _joined(link: Link, contact: str) -> str:
    """What Link.joined_since is, said: the second she joined in, or the later try of her join that found and read
    `contact` (this contact, her contact): her baseline is that read, or, when that try found the contact an earlier
    try held merged into this one, the baseline it held there (kept: join.moved_baseline)."""
    if link.read_later:
        return (f"the try of her join that found {contact} and read it ({iso(link.found_at or 0.0)}; "
                f"she joined at {link.joined_at}, on an earlier try)")
    return f"she joined ({link.joined_at})"


def _joined_details(link: Link) -> dict[str, Any]:
    """The note's bound (Link.joined_since): `before_joined`, and `found_at` when a later try read her baseline."""
    return {"before_joined": link.joined_at, **({"found_at": link.found_at} if link.read_later else {})}


def _arms(link: Link, armed: bool, rule: Qualification, data_type: str, value: Any, seen: Sighting) -> bool:
    """Seeing a non-target value after joining makes a later return to the target a real change.
    Only the linked contact itself can show that; a duplicate's value says nothing of it. `armed`: for a value of
    this time (armed_for): one older than what armed the link arms it again, since then (the store's arm writes
    `seen.when` as Link.armed_at). Nor a value from before the link moved to the contact, or took its baseline there
    (before_view): in order it was not hers, or no change after that baseline, and a return to the target after it no
    change from the baseline the link took or kept (armed, the contact read then, a check, or a later event at the
    target would qualify her)."""
    if armed or seen.duplicate or before_view(link, seen) or not rules.arms(rule, data_type, value):
        return False
    joined = rules.event_time(link.joined_at)
    return seen.when is None or joined is None or seen.when >= joined
