"""A link: one Referral Factory person and the Intercom contact the bridge joined them to, as the
store keeps it. Stores take and return these values; nobody changes one in place. Pure: no I/O."""
from __future__ import annotations

import math

from dataclasses import MISSING, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Mapping, NamedTuple, Optional

from .people import given_email
from .qualification import QState
from .rules import event_time


class PersonRef(NamedTuple):
    """Whose link and history: an RF person in a campaign."""

    campaign_id: str
    rf_user_id: str

    def __str__(self) -> str:          # "<campaign>#<rf id>": how pointers name a link
        return f"{self.campaign_id}#{self.rf_user_id}"

    @classmethod
    def parse(cls, text: str) -> "PersonRef":
        campaign_id, _, rf_user_id = text.partition("#")
        return cls(campaign_id, rf_user_id)


class LinkStatus(StrEnum):
    IN_PROGRESS = "in_progress"     # a worker holds the join's claim
    LINKED = "linked"               # the contact exists and is ours to watch
    IGNORED = "ignored"             # the settings say nothing is done for this person
    FAILED = "failed"               # the join failed; a retry or a replay may claim it again
    # A try had to wait (errors.Deferred: a 429's pause, another worker's claim, search catching up):
    # its message waits in the queue without using up a try, and its next try claims it again.
    WAITING = "waiting"

    @property
    def final(self) -> bool:
        return self in (LinkStatus.LINKED, LinkStatus.IGNORED)

    @property
    def tried(self) -> bool:
        """A try ended without applying the join (it failed or waits): the next try may claim it."""
        return self in (LinkStatus.FAILED, LinkStatus.WAITING)


class ContactState(StrEnum):
    DELETED = "deleted"
    ARCHIVED = "archived"


LEAD, REFERRER = "lead", "referrer"

# A lead dated up to this much before its count began is still in it (ReferralCount.counts). This version
# dates a lead from its count's start when another worker began the count by a clock ahead of its own;
# versions before 2026-11-26 dated it by their own worker's clock, so of two first leads of a referrer
# finishing at once on two workers, one could be dated milliseconds before the count the other began.
# A second covers those (Lambda's clocks agree to milliseconds, a transaction takes tens of them). What
# it gives up: a lead counted less than a second before its referrer's forgotten count was begun again
# by another lead (`bridge forget` of the referrer landing amid her leads' joins) is taken as in it.
COUNT_CLOCK_SLACK = 1.0

# A link's `baseline_of` once it moved to another contact of the person's that existed when they joined and
# changed since (domain/join.moved_baseline): its value then is not known (no attribute is named so).
MOVED_UNKNOWN = "(unknown: moved to an older contact)"


def by_the_second(at: float) -> float:
    """A time by the bridge's clock, as Intercom dates its events: in whole seconds (down). What bounds the values a
    link judges as changes (Link.viewed_since: a take, or a move dated by the bridge) is dated so: an event of that
    second, which Intercom dates no later than the bridge's time though it may have come after it, is judged (a
    value of that second is, judge.before_view), not taken as one from before it."""
    return float(math.floor(at))

@dataclass(frozen=True)
class LeftContact:
    """What a link held while on a contact it left (LinkRepository.move's `left`: Intercom merged that contact into
    another, or it was gone, and the link took the other's baseline), recorded by the move: a notification about that
    contact from before the move, delivered after it, is judged against these, as it would have been in order
    (contact_events._late), not against the baseline the link holds now (another contact's)."""

    contact_id: str
    baseline: Any = None
    baseline_of: Optional[str] = None
    armed: bool = False
    armed_by: Optional[str] = None
    # When the link left it, by Intercom's clock: the time of the event that moved it (a merge notification's, the
    # move's `when`); a move that names none (a check's 410 or 404, the duplicate check's merge), the bridge's time of
    # the move, when the contact was gone already. Only an event about it no later than this is judged.
    moved_at: Optional[float] = None
    armed_at: Optional[float] = None        # since when it was armed on it (Link.armed_at)
    # When `bridge backfill --apply` had last taken the link's baseline as it left it (Link.baseline_at then): a take
    # made later, on another contact, replaces the link's, and a late notification of this one from before this take
    # would be judged as a change (held). None: no take, or a record made before the bridge kept it.
    baseline_at: Optional[float] = None
    # When the link had last moved (to this contact) as it left it (Link.last_moved_at then): a move that recorded
    # nothing it left (the duplicate check's leaving her lead in Intercom or its merge, before 2026-11-28) bounds this
    # contact's view too. None: a record made before it was kept.
    last_moved_at: Optional[float] = None
    # Her email as the link left it (Link.email then: a merge's survivor may bring another, set on the link after
    # the move). Under `match: email`, a contact the link moved to later was a duplicate of hers then only with this
    # email (contact_events.duplicate_then). None: a record made before it was kept (the link's email now is taken).
    email: Optional[str] = None
    # The move kept her baseline (join.moved_baseline: the contact moved to was made after she joined), and with it the
    # armed state: the link on the contact it moved to went on with what it held here (judge.carried). False: it took
    # the other's (or a move recorded before the bridge kept this: taken as so).
    kept: bool = False
    # A value at the target of her lead the duplicate check's move left in Intercom (recorded, not in left_contacts:
    # LinkRepository.move's `stays`), from before the move, delivered after it, judged no change against this record
    # and held (as Link.held_at, under the rule `held_by`: LinkRepository.hold_left): an older change away there,
    # delivered later, arms the record and releases it (judge.releases: she qualifies, as in order). None: none held
    # (a contact merged or gone records none: a known miss).
    held_at: Optional[float] = None
    held_by: Optional[str] = None
    # The record as stored when read (`of_stored`; None: made by this version): what this version writes back of it,
    # keys it does not know (a later version's) and all (as_stored). Not part of its value.
    read_as: Optional[Mapping[str, Any]] = field(default=None, compare=False, repr=False)

    def held(self, link: "Link") -> "Link":
        """`link` as it stood on this contact: its baseline and armed state then (its qualification as it is now), and
        the moves made before it left it (Link.moved_at: when it came to this contact, as far as they recorded it)."""
        earlier = tuple(held for held in link.left_baselines if held.moved_at is not None
                        and self.moved_at is not None and held.moved_at < self.moved_at)
        # (the take and the move to it the move from it recorded; a take not recorded, before the record kept it: one
        # taken while on it is older than the move that left it, a later one another contact's. The link's last move
        # now is this one, or a later one: not the one to this contact, which only the record, or `earlier`, tells.)
        taken = self.baseline_at if self.baseline_at is not None else link.baseline_at \
            if link.baseline_at is not None and self.moved_at is not None and link.baseline_at < self.moved_at else None
        return replace(link, contact_id=self.contact_id, baseline=self.baseline, baseline_of=self.baseline_of,
                       armed=self.armed, armed_by=self.armed_by, armed_at=self.armed_at, held_at=self.held_at,
                       held_by=self.held_by, left_baselines=earlier, baseline_at=taken, last_moved_at=self.last_moved_at)

    def before_move(self, when: Optional[float]) -> bool:
        """An event at `when` (Intercom's clock) happened while the link was on this contact: no later than the move.
        An unknown time (either) is not."""
        return when is not None and self.moved_at is not None and when <= self.moved_at

    def stamped(self, link: "Link", attribute: str, key: str) -> "LeftContact":
        """This record with the rule settings replace named where an earlier version left it unnamed (`attribute`
        for a baseline judge.baseline_known takes as the current rule's, `key` for an `armed` judge.armed_under
        does), as LinkRepository.stamp_rule names it on the link: the new rule does not take either as its own when a
        late notification of this contact is judged (a move of an earlier version's link to a contact whose value
        then is unknown names no attribute here; one armed then, no rule)."""
        then = self.held(link)
        return replace(self, baseline_of=attribute if then.baseline_unrecorded else self.baseline_of,
                       armed_by=key if then.armed_unrecorded else self.armed_by)

    @classmethod
    def of(cls, link: "Link", moved_at: Optional[float], attribute: Any = None, kept: bool = False,
           held: bool = False) -> "LeftContact":
        """What `link`, on the contact it leaves now, holds (LinkRepository.move records it). `attribute`: the rule's
        attribute now (the move's `baseline_of`), which a baseline stored before links named theirs is of (it is
        taken as the current rule's, and settings that change the rule name it on the link first: stamp_rule): named
        here too, so that a rule changed after the move does not take it as its own. `kept`: the move keeps her
        baseline (LeftContact.kept). `held`: the contact stays in Intercom (LinkRepository.move's `stays`): the value
        the link holds back there (Link.held_at, held_by), which the move clears on the link, is recorded with it (a
        late change away there, from before it, releases it, as on the link in order)."""
        of = link.baseline_of
        if of is None and link.baseline_unrecorded and isinstance(attribute, str) and attribute != MOVED_UNKNOWN:
            of = attribute
        return cls(str(link.contact_id), link.baseline, of, link.armed, link.armed_by, moved_at,
                   link.armed_at, link.baseline_at, link.last_moved_at, link.email, kept,
                   held_at=link.held_at if held else None, held_by=link.held_by if held else None)

    @classmethod
    def of_stored(cls, contact_id: str, stored: Mapping[str, Any]) -> "LeftContact":
        """The record of `contact_id` as LinkItem.left_baselines stores it (as_stored), keys a later version added and
        all (stored_as_read)."""
        return cls(contact_id, **_known(cls, stored), read_as=stored)

    def as_stored(self) -> dict[str, Any]:
        """(`armed_at` only when known, `kept` only when true: a record stored before the bridge kept them is written
        back as it was read, which writes that hold to the records as read compare. A record read: stored_as_read.)"""
        return stored_as_read(self, self.read_as, {
            "baseline": self.baseline, "baseline_of": self.baseline_of, "armed": self.armed,
            "armed_by": self.armed_by, "moved_at": self.moved_at,
            **({"armed_at": self.armed_at} if self.armed_at is not None else {}),
            **({"baseline_at": self.baseline_at} if self.baseline_at is not None else {}),
            **({"last_moved_at": self.last_moved_at} if self.last_moved_at is not None else {}),
            **({"email": self.email} if self.email is not None else {}),
            **({"kept": True} if self.kept else {}),
            **({"held_at": self.held_at, "held_by": self.held_by} if self.held_at is not None else {})})


# A record a link stores in a JSON attribute (LeftContact, DuplicateSeen): its stored keys are its fields but these.
_NOT_STORED = frozenset({"contact_id", "read_as"})


def _known(record: type, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of `stored` the record's fields name: those a later version added are left out (of_stored)."""
    return {name: stored[name] for name in (f.name for f in fields(record) if f.name not in _NOT_STORED)
            if name in stored}


def stored_as_read(record: Any, read: Optional[Mapping[str, Any]], written: dict[str, Any]) -> dict[str, Any]:
    """`record` as stored, `written` being how this version writes its fields, when it was read as `read` (None: made
    by this version, `written` as it is). Rolling back to this version, a record a later version wrote may hold keys
    this one does not know: the writes that hold to the records as read (LinkRepository.arm_left, see_duplicate,
    move) compare the JSON text, which this gives back as read for a record read and not changed since, in its order
    and its values as written. One changed holding no key unknown here is written as this version writes it: in the
    fixed order the versions before this one hold their conditions to (after a rollback to one of them). One changed
    holding keys it does not know keeps them, its own fields set in place (those no longer written, left out; those
    newly written, added last). A later version thus finds its keys as it wrote them, on a record this one changed too
    (kept with values of its fields this version may have changed since)."""
    if read is None:
        return written
    known = {f.name: f.default for f in fields(record) if f.name not in _NOT_STORED}

    def same(name: str) -> bool:        # (the value read: the field's default when the key is not there)
        return (read[name] == getattr(record, name)) if name in read else \
            (known[name] is not MISSING and known[name] == getattr(record, name))
    if read.keys() <= known.keys() and not all(same(name) for name in known):
        return written      # changed, and no key unknown: as every version writes it (in its fixed order, which the
        #                     versions before this one hold their conditions to: after a rollback they read it again)
    stored = {name: value if name not in known or same(name) else written[name] for name, value in read.items()
              if name not in known or same(name) or name in written}
    return {**stored, **{name: value for name, value in written.items() if name not in read and not same(name)}}


def left_with(held: tuple[LeftContact, ...], left: LeftContact) -> tuple[LeftContact, ...]:
    """The records `held`, with `left` in place of any earlier one of its contact (the link left it again)."""
    return tuple(sorted((*(h for h in held if h.contact_id != left.contact_id), left), key=lambda h: h.contact_id))


def left_stamped(link: "Link", attribute: str, key: str) -> tuple[LeftContact, ...]:
    """`link.left_baselines` with the rule settings replace named where an earlier version left it unnamed
    (LeftContact.stamped); the same records when none is."""
    return tuple(held.stamped(link, attribute, key) for held in link.left_baselines)


@dataclass(frozen=True)
class DuplicateSeen:
    """A value meeting the target seen on another contact with the lead's email (`match: contact`: not counted there,
    contact_events._not_counted), the newest of that contact's: Intercom may merge the lead's contact into it, and a
    notification about it delivered before the merge's, of an event after the merge, is one the link would have judged
    on it in order. The merge judges it then (contact_events._seen_before_merge), only when its event is later than the
    merge's: one no later showed the contact as it was when the link took it (its baseline then), no change."""

    contact_id: str
    value: Any
    of: str                 # the rule's attribute `value` is of (a rule on another attribute since: not judged)
    at: float               # its event's time, by Intercom's clock
    # The record as stored when read (None: made by this version): as LeftContact.read_as. Not part of its value.
    read_as: Optional[Mapping[str, Any]] = field(default=None, compare=False, repr=False)

    @classmethod
    def of_stored(cls, contact_id: str, stored: Mapping[str, Any]) -> "DuplicateSeen":
        """The record of `contact_id` as LinkItem.duplicates_seen stores it (as_stored), keys a later version added
        and all (stored_as_read)."""
        return cls(contact_id, **_known(cls, stored), read_as=stored)

    def as_stored(self) -> dict[str, Any]:
        return stored_as_read(self, self.read_as, {"value": self.value, "of": self.of, "at": self.at})


def seen_with(seen: tuple[DuplicateSeen, ...], new: DuplicateSeen) -> tuple[DuplicateSeen, ...]:
    """The records `seen`, with `new` in place of its contact's, unless that one is of a newer event (kept)."""
    was = next((s for s in seen if s.contact_id == new.contact_id), None)
    if was is not None and was.at > new.at:
        return seen
    return tuple(sorted((*(s for s in seen if s.contact_id != new.contact_id), new), key=lambda s: s.contact_id))


@dataclass(frozen=True)
class Link:
    campaign_id: str
    rf_user_id: str
    workspace: str
    status: LinkStatus
    kind: Optional[str] = None                       # lead | referrer
    email: Optional[str] = None
    contact_id: Optional[str] = None
    contact_role: Optional[str] = None
    contact_state: Optional[ContactState] = None
    baseline: Any = None                             # the rule's attribute when the person joined
    armed: bool = False                              # a non-target value was seen after joining
    # The attribute `baseline` is a value of (the campaign's rule's when the person joined; None: no rule
    # then, or a link stored before the bridge recorded it, until settings change the rule:
    # Link.baseline_unrecorded; MOVED_UNKNOWN: none, the link moved to a contact whose value then is not known).
    baseline_of: Optional[str] = None
    # The rule (rules.key) whose target the value that armed the link missed: `armed` holds under that
    # rule only (None with `armed`: armed before the bridge recorded it, taken as the current rule's).
    armed_by: Optional[str] = None
    # Since when (Intercom's clock: the event time of the earliest value seen missing the target that armed it): a
    # value meeting the target from an event older than that, delivered after (out of order), was no change to the
    # target then, and is judged as if the link were not armed (judge.armed_for). None with `armed`: armed by a value
    # of no known time, or before the bridge recorded it (before 2026-11-28): armed since always, as it was taken.
    armed_at: Optional[float] = None
    # The event time of the newest value meeting the target that judge held back as no change (unchanged from a
    # baseline at the target, require_change): one armed_at held back (judge.armed_for), or one seen while the link was
    # not armed under the rule, under the rule `held_by` names: a value missing the target from an event no later
    # than it, delivered after, arms the link since then, which makes that held value a change to the target in
    # order: she qualifies then (judge: Verdict.releases). Or a change to the target a join not finished kept for its
    # finish (judge: Verdict.keeps), with an arm since no later than it: the finish qualifies her (judge.released).
    # Cleared with the baseline (a move, a baseline taken, a hold of another contact: LinkRepository.hold_found) and by
    # any move (it was the contact left's), but for a change a join not finished kept (Link.keeps_for_join: hers, which
    # a move and a hold of another contact of hers carry, with its arm: FoundContact.kept_at); kept by an arm under the
    # same rule (LinkRepository.arm). Not recorded on a contact the link left (LeftContact): a late notification's
    # held value is not released.
    held_at: Optional[float] = None
    # The rule (rules.key) `held_at` was held under. None with `held_at`: held before the bridge recorded it (before
    # 2026-11-28; only an armed link held one then): under `armed_by`.
    held_by: Optional[str] = None
    qualification: Optional[QState] = None
    qualified_at: Optional[str] = None
    # When `bridge backfill --apply` took `baseline` (LinkRepository.take_baselines: the bridge's clock as its read of the
    # contact answered, by the second): its value as of then, after every change made before. A value from an event
    # older than that is none after the baseline (judge.before_view, as one from before a move). None: not taken, or
    # taken before the bridge recorded it (before 2026-11-28: bounded by the moves only, as then).
    baseline_at: Optional[float] = None
    # When the link last moved to another contact (LinkRepository.move: the move's event time, or the bridge's clock
    # for one that names none), whether or not the move recorded what it left (LeftContact): the duplicate check's
    # move that keeps her baseline records none. None: never moved since the bridge recorded it (Link.moved_at).
    last_moved_at: Optional[float] = None
    last_event_at: Optional[float] = None            # newest Intercom event applied to role/state
    reason: Optional[str] = None
    joined_at: Optional[str] = None
    # When the join's try that found the contact the link holds (one that existed) and read her baseline there began:
    # its claim, by the bridge's clock (JoinClaim.at; every read of that try follows it), recorded by that try's hold
    # (LinkRepository.hold_found) and kept by a later try resuming that baseline. A retry after a first try that found
    # nothing (an Intercom outage) reads her baseline later than `joined_at` (the first claim's): a value of the
    # contact from between the two, delivered after, is none after her baseline (Link.joined_since). None: the join
    # made the contact (it has no earlier event), found none, or found it before the bridge recorded this (before
    # 2026-11-28), or a version before it held it (it writes none, and drops none: docs/deploying.md): judged from
    # `joined_at` alone, as then.
    found_at: Optional[float] = None
    updated_at: Optional[str] = None
    # A try may have created the person's contact since then without seeing Intercom's answer (it
    # claimed the join then, or its create got no answer): look for our marker before creating again.
    uncertain_since: Optional[float] = None
    # An unconfirmed qualification whose PUT never went out after RF said the user is not qualified
    # (e.g. the shared budget held it back): RF's answer still holds, so the next try need not ask.
    # False or None (links written before this was recorded): a PUT may have reached RF.
    rf_said_no: Optional[bool] = None
    # A failed qualification whose dead letter may not have been sent yet: the link is written `failed` before the
    # letter is sent (the worker's, or the search of changed contacts' own), and a worker killed in between, or a
    # send SQS did not take, would leave the failure with no letter. Cleared by the letter (LinkRepository.lettered).
    letter_owed: bool = False
    # When its qualification was last refused (unix time): written `failed`, then again once its letter is sent
    # (LinkRepository.lettered): what dates the letter SQS deletes after DEAD_LETTER_DAYS (judge.letter_gone). None:
    # never refused, or refused before the bridge recorded it (the link's last write dates it then).
    refused_at: Optional[float] = None
    # The operator discarded that refusal's dead letter (`bridge dlq discard`: given up on for good), until the
    # qualification ends again (qualified, or failed anew).
    refusal_discarded: bool = False
    # When `bridge backfill --apply` found this refused lead deleted in Referral Factory (unix time): RF no longer
    # listed it and answered 404 for it, so its refusal can never be checked again (judge.letter_gone leaves it out),
    # until the qualification ends again (qualified, or failed anew). None: not found so.
    rf_deleted_at: Optional[float] = None
    # The referrer (RF id) this lead's join counted for (referral counts; or `bridge backfill --apply`,
    # for a join applied before the campaign kept counts): erasing the link takes the lead off that
    # count, so that a join that comes again after `bridge forget` counts once again.
    counted_for: Optional[str] = None
    # When it was counted (unix time, in the write that set `counted_for`; None: counted before the
    # bridge dated it). Erasing the link lowers the count only if that count began no later
    # (ReferralCount.counts): a lead counted before their referrer was forgotten is not taken off the
    # count the referrer began since.
    counted_at: Optional[float] = None
    # A join not finished yet found this person's contact (`contact_id`, one that existed: not one it created) and
    # recorded it, with its baseline, before writing anything to it (LinkRepository.hold_found): a later try
    # resumes with that baseline, not the contact's value by then, and a value missing the target seen meanwhile
    # arms the link (judge.judge), as it would once linked.
    contact_found: bool = False
    # The bridge created `contact_id` for this person (their join did), until the link moves to another contact: a
    # merge of it into a contact made before they joined is one search did not show yet (join.moved_baseline).
    # False for links finished before the bridge recorded it.
    contact_created: bool = False
    # The contacts the link moved off whose notifications are not judged against the baseline it holds (LinkRepository
    # .move's `left`: a merge followed to its survivor, a contact gone followed to another of hers, the link then
    # taking that contact's baseline or, a lead's under a rule, keeping its own: join.records_left): one about them,
    # delivered after the move, shows a contact from before the move, which the baseline now held may not be of,
    # though it shares her email. It is judged against what the link held on that contact (`left_baselines`), under
    # either `match` (it was her contact then), or, of an event after the move or with nothing recorded, not at all.
    # A move that leaves a contact that stays in Intercom (the duplicate check's move to an older contact), or a
    # referrer's or one under no rule that keeps her baseline (a move before 2026-11-28 that kept it, too), records
    # none: its notifications are judged as those of any contact with her email (the duplicate check's, since
    # 2026-11-28, records what the link held there all the same, in `left_baselines` alone, LinkRepository.move's
    # `stays`: its notifications of an event from before the move are judged against it, contact_events._same_email).
    left_contacts: frozenset[str] = frozenset()
    # What the link held on each contact of `left_contacts` (and on one the duplicate check's move left in Intercom:
    # `stays`) when it left it, and when (LeftContact): a notification
    # about one, of an event from before the move, delivered after it, is judged against that, as it would have been
    # had it come in order. Empty for a contact left before the bridge recorded it: its notifications not judged.
    left_baselines: tuple["LeftContact", ...] = ()
    # Values meeting the target seen on other contacts with her email while not hers (DuplicateSeen), the newest of
    # each: judged when a merge moves the link onto that contact, of an event after the merge. Empty on links written
    # before the bridge recorded them.
    duplicates_seen: tuple["DuplicateSeen", ...] = ()

    def held_under(self, by: str) -> Optional[float]:
        """`held_at` if held under the rule (rules.key) `by`, not under another: what an arm under it keeps
        (LinkRepository.arm) and releases (judge.releases). One held before the bridge recorded the rule (`held_by`)
        was held under `armed_by` (or, armed before that was recorded too, the current rule's: judge.armed_under)."""
        if self.held_at is None:
            return None
        if self.held_by is not None:
            return self.held_at if self.held_by == by else None
        return self.held_at if self.armed and self.armed_by in (None, by) else None

    def armed_fields(self, by: str, at: Optional[float], keep_held: bool = True,
                     hold: Optional[float] = None) -> dict[str, Any]:
        """What an arm under the rule `by` since `at` writes on this link (LinkRepository.arm, and arm_left's
        `carry`): the value held under that rule (held_under) kept, unless `keep_held` is false. `hold`: a value at
        the target of that time held too, the newer of the two (judge: Verdict.keeps, a join not finished keeping a
        change to the target for its finish)."""
        kept = self.held_under(by) if keep_held else None
        if hold is not None:
            kept = hold if kept is None else max(kept, hold)
        return {"armed": True, "armed_by": by, "armed_at": at, "held_at": kept, "held_by": None if kept is None else by}

    def left(self, contact_id: Optional[str]) -> bool:
        """`contact_id` is a contact the link moved off, and not the one it holds (again) now."""
        return bool(contact_id) and contact_id in self.left_contacts and contact_id != self.contact_id

    def seen_on(self, contact_id: Optional[str]) -> Optional["DuplicateSeen"]:
        """The newest value meeting the target recorded of `contact_id` while it was not the link's (DuplicateSeen)."""
        return next((seen for seen in self.duplicates_seen if seen.contact_id == contact_id), None)

    def left_at(self, when: Optional[float]) -> Optional["LeftContact"]:
        """What the link held on the contact it was on at `when` (Intercom's clock), one it left since: the first of
        its moves no earlier than `when` that recorded what it left (LeftContact.moved_at; an event of a move's own time
        was on the contact it left, as LeftContact.before_move says). None: no time, or none recorded."""
        later = [held for held in self.left_baselines if held.before_move(when)]
        return min(later, key=lambda held: held.moved_at or 0.0, default=None)

    def left_then(self, contact_id: Optional[str]) -> Optional["LeftContact"]:
        """What the link held on `contact_id`, a contact it left (`left`), when it left it; None: not recorded (left
        before the bridge recorded it), or not a contact it left."""
        if not self.left(contact_id):
            return None
        return next((held for held in self.left_baselines if held.contact_id == contact_id), None)

    def stayed_at(self, contact_id: Optional[str], when: Optional[float]) -> Optional["LeftContact"]:
        """What the link held on `contact_id`, her contact at `when` (Intercom's clock), which the duplicate check's
        move since left in Intercom (recorded, not in `left_contacts`: LinkRepository.move's `stays`). None: not so."""
        then = self.left_at(when)
        return then if then is not None and then.contact_id == contact_id and not self.left(contact_id) else None

    def left_record(self, contact_id: Optional[str]) -> Optional["LeftContact"]:
        """What the link held on `contact_id` when it left it, a contact it does not hold now: one it left (left_then),
        or one the duplicate check's move left in Intercom (recorded, not in `left_contacts`: LinkRepository.move's
        `stays`). None: not recorded."""
        if not contact_id or contact_id == self.contact_id:
            return None
        return next((held for held in self.left_baselines if held.contact_id == contact_id), None)

    def left_armed(self, contact_id: Optional[str], by: str, at: Optional[float],
                   drop_held: bool = False) -> Optional["LeftContact"]:
        """The record of `contact_id` (left_record) armed by `by` at `at` (LinkRepository.arm_left), its held value
        dropped with `drop_held`. None: not recorded."""
        held = self.left_record(contact_id)
        dropped: dict[str, Any] = {"held_at": None, "held_by": None} if drop_held else {}
        return None if held is None else replace(held, armed=True, armed_by=by, armed_at=at, **dropped)

    def left_held(self, contact_id: Optional[str], at: float, by: str) -> Optional["LeftContact"]:
        """The record of `contact_id` (left_record) holding back a value at the target of `at`, under rule `by`
        (LinkRepository.hold_left). None: not recorded."""
        held = self.left_record(contact_id)
        return None if held is None else replace(held, held_at=at, held_by=by)

    @property
    def moved_at(self) -> Optional[float]:
        """When the link last moved to another contact, as its moves tell: `last_moved_at` (every move records it), and
        those that recorded what they left (LeftContact.moved_at: a move before the bridge recorded `last_moved_at`).
        None: it never did, or no move recorded its time (before 2026-11-28, the duplicate check's keeping her
        baseline)."""
        times = [held.moved_at for held in self.left_baselines if held.moved_at is not None]
        return max([*times, self.last_moved_at] if self.last_moved_at is not None else times, default=None)

    @property
    def viewed_since(self) -> Optional[float]:
        """Since when the link judges the values of the contact it holds as changes after its baseline: its last move
        to it (moved_at), the time `bridge backfill --apply` took its baseline there (baseline_at), or, on the contact
        the join found or made, the second she joined in, or that the try of her join that found it began in (its
        read of her baseline there followed: joined_since), the latest. A value from an event older than
        that is none (judge.before_view). None: none recorded."""
        times = [t for t in (self.moved_at, self.baseline_at, self.joined_since) if t is not None]
        return max(times, default=None)

    @property
    def joined_since(self) -> Optional[float]:
        """Since when the link judges the contact the join found (or made) as hers: the second she joined in (the
        join's first claim, `joined_at`, by the bridge's clock, taken down to its second: by_the_second), or, when
        later, the second the try that read her baseline there began in (`found_at`: a retry's, its first try having
        found nothing). A notification of an event of an earlier second, delivered after her link exists, came in order
        before the link held that contact, when nothing judged it, and the join's read of the contact (her baseline),
        made after that try's claim, followed it: its value is no change after her baseline, whatever it was (a "Yes"
        at t - 30, "No" since t - 20, her baseline "No"; or, her first try at t waiting out an outage, a "Yes" at t +
        10, "No" since t + 20, read by the retry at t + 100). One of that second may have been made after the claim
        and, in order, judged: it is (as judge.before_joined, join.moved_baseline). Left judged: a value made after
        the claim and before the read (the same second, nearly always), which the read followed too. None: no
        `joined_at` recorded (judged as before)."""
        joined, found = event_time(self.joined_at), self.found_at
        if joined is None:
            return None
        return by_the_second(joined if found is None else max(joined, found))

    @property
    def read_later(self) -> bool:
        """Her baseline on the contact her join found was read by a try begun in a later second than her join's
        first (Link.found_at): what bounds joined_since is that read, not the second she joined in."""
        joined = event_time(self.joined_at)
        return joined is not None and self.found_at is not None and \
            by_the_second(self.found_at) > by_the_second(joined)

    @property
    def ref(self) -> PersonRef:
        return PersonRef(self.campaign_id, self.rf_user_id)

    @property
    def final(self) -> bool:
        return self.status.final

    @property
    def baseline_unrecorded(self) -> bool:
        """A baseline taken under a rule, stored before links named its attribute (before 2026-11-27): a lead's
        linked under a rule (it has a qualification state), or a join's not linked yet whose contact was made
        (its retry keeps the baseline). judge.baseline_known takes it as the current rule's: settings
        replacing the rule record the stored one's first (LinkRepository.stamp_rule). Not a contact a join found and
        held (contact_found: recorded since, with the rule's attribute; none when the campaign had no rule)."""
        return self.baseline_of is None and (self.qualification is not None or (
            self.status is not LinkStatus.LINKED and self.contact_id is not None and not self.contact_found))

    @property
    def armed_unrecorded(self) -> bool:
        """Armed before links named the rule they were armed under (judge.armed_under: the current rule's)."""
        return self.armed and self.armed_by is None

    @property
    def is_lead(self) -> bool:
        return self.kind == LEAD

    @property
    def keeps_for_join(self) -> bool:
        """A lead's join not finished holds a change to the target kept for its finish (judge._kept: held with an arm
        since no later than it, under the rule that armed it; judge.kept_for_join asks it under the rule now). It was
        seen on her contact then, after her baseline: hers, whichever contact she is on since, so a move carries it
        (LinkRepository.move), as a hold of another contact of hers does (FoundContact.kept_at). Nothing else holds a
        value on a link not linked (a held-back value is a linked link's: judge._hold)."""
        return (self.status is not LinkStatus.LINKED and self.is_lead and self.armed and self.held_at is not None
                and self.armed_at is not None and self.held_by is not None and self.held_by == self.armed_by
                and self.held_at >= self.armed_at)

    @property
    def part_way(self) -> bool:
        """Its join is under way in the link's workspace, not yet linked: claimed (a worker applies it there, or
        died applying it: a retry finishes it with the contact it may have made), or tried with a contact made
        there, or maybe made (a retry under another workspace would make the person a second contact). Not one
        tried with a contact it found there (contact_found): none of theirs was made, and a retry elsewhere does not
        find that one."""
        return self.status is LinkStatus.IN_PROGRESS or (self.status.tried and (
            (self.contact_id is not None and not self.contact_found) or self.uncertain_since is not None))

    @property
    def owes_letter(self) -> bool:
        """Its qualification failed and the dead letter that says so may not exist: the next record that sees
        it, unless a replay, fails as the first did (with its reason), and is that letter."""
        return self.qualification is QState.FAILED and self.letter_owed

    def view(self) -> dict[str, Any]:
        """What `bridge history` shows of the link."""
        return {name: _plain(getattr(self, name)) for name in VIEW}


def email_now(link: Link, contact: Mapping[str, Any]) -> Optional[str]:
    """The email an event about the link's own contact says it has, when it is not the link's (the person
    changed it in Intercom, `contact.email.updated`): the link follows it, for `match: email`, `explain` and
    `forget` know the person by their email. None: the same address (in any case), none said (a deletion's
    stub, a tag event), another contact's, or a link not linked (a join applied later sets it)."""
    email = contact.get("email")
    if link.status is not LinkStatus.LINKED or link.contact_id != contact.get("id") or not isinstance(email, str) \
            or given_email({"email": email}) in (None, given_email({"email": link.email})):
        return None
    return email.strip()


VIEW = ("status", "kind", "email", "contact_id", "contact_role", "contact_state", "baseline", "baseline_of", "armed",
        "qualification", "qualified_at", "reason", "joined_at", "updated_at")


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, StrEnum) else value


@dataclass(frozen=True)
class JoinResult:
    """What a finished join (or a failed try) records on the link."""

    status: LinkStatus
    kind: Optional[str] = None
    email: Optional[str] = None
    contact_id: Optional[str] = None
    contact_role: Optional[str] = None
    baseline: Any = None
    baseline_of: Optional[str] = None                # the attribute `baseline` is a value of (Link)
    qualification: Optional[QState] = None
    reason: Optional[str] = None
    uncertain_since: Optional[float] = None          # a failed try's create may have been applied
    qualified_at: Optional[str] = None               # RF holds the lead qualified already (then QUALIFIED)
    # A lead's join that ends (linked or ignored) counts for their referrer (RF id): the store adds it
    # to the referrer's ReferralCount in the same write, and the link keeps it as `counted_for`.
    counts_for: Optional[str] = None
    contact_found: bool = False                      # a failed try's `contact_id` existed: it found it (Link)
    contact_created: bool = False                    # the join created `contact_id` (Link)
    found_at: Optional[float] = None                 # when the try that found `contact_id` began (Link.found_at)

    @property
    def counted_for(self) -> Optional[str]:
        """The referrer this join counts for, once it ends (a failed try counts for nobody)."""
        return self.counts_for if self.status.final else None


@dataclass(frozen=True)
class ReferralCount:
    """A referrer's count of leads the bridge saw join with them (each lead once), the contact it is
    written to (known once sync enrolled them, with its workspace), and the count last written to Intercom, and to which
    attribute (`written_to`: a count written to another attribute, or before the bridge recorded it,
    is not held by the campaign's attribute now). `since`: when it began (unix time, set by the write
    that counts its first lead, and erased with it when the referrer is forgotten; None: begun before
    the bridge dated counts). It dates the count, it is not part of its value (not compared)."""

    n: int = 0
    written: Optional[int] = None
    contact_id: Optional[str] = None
    written_to: Optional[str] = None
    since: Optional[float] = field(default=None, compare=False)
    workspace: Optional[str] = None       # contact_id's workspace (None: learnt before the bridge recorded it)

    def counts(self, lead: Link) -> bool:
        """The lead (whose link counted for this referrer) is in this count, as far as the dates tell:
        not when the lead was counted before it began (into a count of the referrer erased since).
        A count or a link not dated (written before the bridge dated them) is taken to hold the lead, and
        so is a lead dated up to COUNT_CLOCK_SLACK before the count began."""
        return self.since is None or lead.counted_at is None or self.since <= lead.counted_at + COUNT_CLOCK_SLACK

    def held(self, attribute: str) -> bool:
        """Intercom holds the count kept, in `attribute`."""
        return self.written == self.n and self.written_to == attribute


@dataclass(frozen=True)
class FoundContact:
    """A contact with the person's email that existed, as a join found it: recorded before anything is
    written to it (LinkRepository.hold_found)."""

    contact_id: str
    kind: Optional[str]                  # the person's (lead | referrer)
    role: Optional[str]                  # the contact's
    baseline: Any
    baseline_of: Optional[str]
    found_at: Optional[float] = None     # when the try that found and read it began: its claim (Link.found_at)
    # A change to the target the link kept for the join's finish on the contact it held (judge.kept_for_join, as the
    # try read it: another contact of hers), carried to this one in the hold's own write: it is hers whichever contact
    # the join finishes with. Held (Link.held_at = `kept_at`, held_by = `kept_by`) with its arm (armed_by = `kept_by`,
    # armed_at = `kept_since`), where a hold of no keep clears both. None: nothing kept.
    kept_at: Optional[float] = None
    kept_since: Optional[float] = None
    kept_by: Optional[str] = None
    # What the link held (Link.held_at, held_by) as the try read it, when it held another contact of hers (a hold of
    # this one leaves it): the hold holds to it. A notification that kept a change on that contact after the try's
    # read (judge._kept) makes it Busy, nothing written: the join waits, and its retry reads the keep and carries it.
    # None: no such condition (the link held no other contact found).
    held_read: Optional[tuple[Optional[float], Optional[str]]] = None

    def armed_fields(self) -> dict[str, Any]:
        """What the hold writes of the link's armed state: the keep carried (with its arm), or none."""
        if self.kept_at is None or self.kept_by is None:
            return {"armed": False, "armed_by": None, "armed_at": None, "held_at": None, "held_by": None}
        return {"armed": True, "armed_by": self.kept_by, "armed_at": self.kept_since, "held_at": self.kept_at,
                "held_by": self.kept_by}


@dataclass(frozen=True)
class JoinClaim:
    """The right to apply one person's join, until `finish` or the lease runs out."""

    ref: PersonRef
    workspace: str
    token: str
    created_at: Optional[float] = None   # this claim wrote the link first, then: nothing else is in it
    at: Optional[float] = None           # when it was taken (the store's clock): before any read of the try's


@dataclass(frozen=True)
class Claim:
    """A qualification claim: `link` as it is now that we hold it; `previous`, the state it was taken
    from; `took_over` when it was another worker's whose lease had run out (RF may already have said
    yes)."""

    token: str
    link: Link
    took_over: bool = False
    previous: Optional[QState] = None


@dataclass(frozen=True)
class Overdue:
    """A link left unfinished past `lease_until`: a join or a qualification whose worker died holding
    its claim, or a qualification left unconfirmed that no retry has finished (reconciliation's job).
    `due` is its place in the overdue index: the end of its lease, or, once reconciliation queued the
    message that finishes it (`requeued` times since the lease ended), when that message has had its
    fair chance to run (the next retry)."""

    link: Link
    lease_until: float
    due: float
    requeued: int = 0


@dataclass(frozen=True)
class PendingPage:
    """Leads awaiting qualification, oldest first; `position` is where the next page starts."""

    links: list[Link] = field(default_factory=list)
    position: Optional[str] = None
