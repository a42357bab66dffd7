"""The store's in-memory twin: the same repositories as adapters/dynamo, honouring the same
conditions (claims and their leases, event-time ordering, only-forward qualification, what a lost
claim raises), proved by the one contract suite that runs against both (tests/contract/). For fast
unit tests of the services; like the todo sample's in-memory DB beside its DynamoDB one."""
from __future__ import annotations

import dataclasses
import inspect
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial, wraps
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from ..domain.budget import BudgetState
from ..domain.history import Entry, Recorded, iso, kind_of
from ..domain.oauth import Outcome
from ..domain.link import (Claim, ContactState, DuplicateSeen, FoundContact, JoinClaim, JoinResult, LeftContact, Link,
                           LinkStatus, Overdue, PendingPage, PersonRef, ReferralCount, by_the_second, left_stamped,
                           left_with, seen_with)
from ..domain.people import digest
from ..domain.pointers import CONTACT, EMAIL, Finding, Placed, Pointer, Stale
from ..domain.qualification import ENDINGS, QState, claimable
from ..domain.sync import PageError
from ..errors import Throttled
from ..ports.edge import REFUSALS_KEEP_DAYS, SAMPLES, EdgeLog, RefusalCount, Refusals, RefusalSample
from ..ports.store import (CHANGED_SINCE_READ, COUNT_ASK_GRACE, DEFAULT_LEASE_SECONDS, KEEP, KEPT_MEANWHILE,
                           MOVED_SINCE_READ, PAST_RUN_DAYS, PENDING_SWEEP, Busy, Connection, ConnectionRepository, Cursor, Erased, Found,
                           HistoryLog, Leases, LinkLookup, LinkRepository, RateWindows, RFConnection, SettingsRepository, StoredSettings,
                           SyncRepository, normal_email)
from ..ports.store import (SCAN_LIMIT, AttributeList, CountBackfill, LedgerEntry, OAuthTicket, PointerPage, SyncRun,
                           answer_or_error)

# One database: each repository call runs alone, as each of DynamoDB's conditional writes and
# transactions is atomic. The worker runs a batch's records and steps in threads (a claim beside a
# read), which must not interleave inside a claim's check and its write.
_ONE_AT_A_TIME = threading.RLock()
_SKIP = object()          # a link a capped read passes over


def _atomic(cls: type) -> type:
    for name, method in list(vars(cls).items()):
        if inspect.isfunction(method) and not name.startswith("_"):     # instance methods (not static ones)
            setattr(cls, name, _alone(method))
    return cls


def _alone(method: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(method)
    def alone(self: Any, *args: Any, **kw: Any) -> Any:
        with _ONE_AT_A_TIME:
            throttle = getattr(self, "_throttle", None)
            if throttle is not None:
                throttle(method.__name__)
            return method(self, *args, **kw)
    return alone


class _Throttle:
    """The table throttled (MemoryStore.throttle): until `until` (the store's clock), each repository call fails before
    it does anything, as DynamoDB's throttled call does after botocore's retries (adapters/aws.py)."""

    def __init__(self, clock: Callable[[], float]):
        self.clock, self.until = clock, float("-inf")

    def __call__(self, call: str) -> None:
        if self.clock() < self.until:
            raise Throttled("DynamoDB", f"DynamoDB throttled {call} (ProvisionedThroughputExceededException: The level "
                                        "of configured provisioned throughput for the table was exceeded)")


@dataclass
class _Held:
    """What the store keeps beside a link: its claim, and its place in the pending index and in the
    overdue index (every link with a `lease_until`; once reconciliation requeued it, `lease_until` is
    its next retry and `lease_ended` when the lease ended)."""

    link: Link
    claim: Optional[str] = None
    lease_until: Optional[float] = None
    pending: Optional[str] = None
    lease_ended: Optional[float] = None
    requeued: int = 0
    # The workspace whose pointer names the link's contact (LinkItem.contact_workspace; None: the link's)
    contact_workspace: Optional[str] = None
    # Attributes of the item a later version wrote, which this one does not know (tests put them there): DynamoDB's
    # updates leave them as they are, and so do the twin's writes.
    unknown: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tables:
    """Everything the twin holds (tests may look)."""

    links: dict[PersonRef, _Held] = field(default_factory=dict)
    contacts: dict[tuple[str, str], set[PersonRef]] = field(default_factory=dict)
    emails: dict[tuple[str, str], set[PersonRef]] = field(default_factory=dict)
    seen: dict[tuple[str, str], float] = field(default_factory=dict)         # -> expires at
    history: dict[PersonRef, list[Recorded]] = field(default_factory=dict)
    repeats: dict[tuple[PersonRef, str], Recorded] = field(default_factory=dict)
    latest: dict[tuple[PersonRef, str], Recorded] = field(default_factory=dict)   # (ref, event#outcome)
    referrals: dict[PersonRef, ReferralCount] = field(default_factory=dict)
    owed: dict[PersonRef, float] = field(default_factory=dict)     # counts owing their write -> due at


@_atomic
class MemoryHistory:
    def __init__(self, tables: Tables, clock: Callable[[], float], days: int = 400):
        self.tables, self.clock, self.days = tables, clock, days

    def _expires(self) -> Optional[int]:
        return int(self.clock()) + self.days * 86400 if self.days > 0 else None

    def add(self, ref: PersonRef, entries: Sequence[Entry], at: Optional[float] = None) -> None:
        """The twin's own write, under the conditions of MemoryLinks' writes (not the port's: each of its writes
        holds to the person being kept). `at`: their time, if earlier than the clock's (LinkRepository.note_many)."""
        at_, expires = iso(min(self.clock(), at) if at is not None else self.clock()), self._expires()
        self.tables.history.setdefault(ref, []).extend(
            Recorded(at_, e.event, e.outcome, e.reason, e.details, expires_at=expires) for e in entries)

    def note_repeat(self, ref: PersonRef, event: str, reason: str, outcome: str = "ignored",
                    restart_after: Optional[float] = None) -> None:
        before = self.tables.repeats.get((ref, event))
        if before is not None and restart_after is not None and (
                before.at < iso(self.clock() - restart_after) or not (before.reason or "").startswith(kind_of(reason))):
            before = None
        self.tables.repeats[(ref, event)] = Recorded(iso(self.clock()), event, outcome, reason,
                                                     count=(before.count or 0) + 1 if before else 1,
                                                     expires_at=self._expires())

    def note_latest(self, ref: PersonRef, entry: Entry) -> None:
        """The twin's own write of MemoryLinks.note_latest (as `add`)."""
        self.tables.latest[(ref, f"{entry.event}#{entry.outcome}")] = Recorded(
            iso(self.clock()), entry.event, entry.outcome, entry.reason, entry.details, expires_at=self._expires())

    def entries(self, ref: PersonRef) -> list[Recorded]:
        # The latest entries, then the counted repeats, sort last, as in the table.
        return list(self.tables.history.get(ref, [])) + [r for table in (self.tables.latest, self.tables.repeats)
                                                         for (who, _), r in sorted(table.items()) if who == ref]

    def erase(self, ref: PersonRef) -> int:
        gone = len(self.tables.history.pop(ref, []))
        for table in (self.tables.latest, self.tables.repeats):
            for key in [k for k in table if k[0] == ref]:
                del table[key]
                gone += 1
        return gone


@_atomic
class MemoryLinks(Leases):
    def __init__(self, tables: Tables, clock: Callable[[], float], history: MemoryHistory,
                 ledgers: dict[str, dict[str, LedgerEntry]], lease: float = DEFAULT_LEASE_SECONDS):
        self.tables, self.clock, self.history, self.lease = tables, clock, history, lease
        self.ledgers = ledgers    # contact sync's (MemorySync.ledgers): `note` reads them

    def get(self, ref: PersonRef) -> Optional[Link]:
        held = self.tables.links.get(PersonRef(*ref))
        return held.link if held else None

    def get_many(self, refs: Iterable[PersonRef], consistent: bool = False) -> dict[PersonRef, Link]:
        return {link.ref: link for link in (self.get(r) for r in refs) if link is not None}

    def _in_campaign(self, campaign_id: str) -> list[Link]:
        """The campaign's links as a query of its partition reads them: by sort key, PERSON#<rf id> as text."""
        return [h.link for ref, h in sorted(self.tables.links.items(), key=lambda item: item[0].rf_user_id)
                if ref.campaign_id == campaign_id]

    def statuses_in(self, campaign_id: str, limit: int) -> dict[LinkStatus, int]:
        return dict(Counter(link.status for link in self._in_campaign(campaign_id)[:limit]))

    def linked_elsewhere(self, campaign_id: str, workspace: str, limit: int,
                         scan_limit: int = SCAN_LIMIT) -> tuple[dict[str, int], bool]:
        found, complete = self._capped(campaign_id, limit, scan_limit, lambda link: link.workspace if link.status is
                                       LinkStatus.LINKED and link.workspace != workspace else _SKIP)
        return dict(Counter(found)), complete

    def joining_elsewhere(self, campaign_id: str, workspace: str, limit: int,
                          scan_limit: int = SCAN_LIMIT) -> tuple[dict[str, int], bool]:
        found, complete = self._capped(campaign_id, limit, scan_limit, lambda link: link.workspace if link.part_way
                                       and link.workspace != workspace else _SKIP)
        return dict(Counter(found)), complete

    def ignored_in(self, campaign_id: str, limit: int,
                   scan_limit: int = SCAN_LIMIT) -> tuple[dict[Optional[str], int], bool]:
        found, complete = self._capped(campaign_id, limit, scan_limit,
                                       lambda link: link.kind if link.status is LinkStatus.IGNORED else _SKIP)
        return dict(Counter(found)), complete

    def unbaselined(self, campaign_id: str, workspace: str, attribute: str, limit: int,
                    scan_limit: int = SCAN_LIMIT) -> tuple[dict[Optional[QState], int], bool]:
        def unknown(link: Link) -> Any:
            if link.status is not LinkStatus.LINKED or not link.is_lead or link.workspace != workspace:
                return _SKIP
            other = link.qualification is QState.PENDING and link.baseline_of not in (None, attribute)
            return link.qualification if link.qualification is None or other else _SKIP
        found, complete = self._capped(campaign_id, limit, scan_limit, unknown)
        return dict(Counter(found)), complete

    def joined_people(self, campaign_id: str,
                      scan_limit: int = SCAN_LIMIT) -> tuple[list[tuple[str, Optional[str]]], bool]:
        return self._capped(campaign_id, scan_limit + 1, scan_limit,
                            lambda link: (link.rf_user_id, link.email) if link.final else _SKIP)

    def refused_in(self, campaign_id: str, scan_limit: int = SCAN_LIMIT) -> tuple[list[Link], bool]:
        return self._capped(campaign_id, scan_limit + 1, scan_limit,
                            lambda link: link if link.qualification is QState.FAILED else _SKIP)

    def pending_in(self, campaign_id: str, scan_limit: int = SCAN_LIMIT) -> tuple[list[Link], bool]:
        return self._capped(campaign_id, scan_limit + 1, scan_limit,
                            lambda link: link if self.tables.links[link.ref].pending is not None else _SKIP)

    def _capped(self, campaign_id: str, limit: int, scan_limit: int,
                key: Callable[[Link], Any]) -> tuple[list[Any], bool]:
        """As DynamoDB reads them: the campaign's links until `limit` match, or `scan_limit` were read."""
        links = self._in_campaign(campaign_id)
        found = [k for k in map(key, links[:scan_limit]) if k is not _SKIP]
        return found[:limit], len(found) >= limit or len(links) < scan_limit

    def _write(self, ref: PersonRef, entries: Sequence[Entry], **changes: Any) -> Link:
        held = self.tables.links[ref]
        held.link = dataclasses.replace(held.link, updated_at=iso(self.clock()), **changes)
        self.history.add(ref, entries)
        return held.link

    def _point(self, index: dict[tuple[str, str], set[PersonRef]], key: tuple[str, str], ref: PersonRef) -> None:
        index.setdefault(key, set()).add(ref)

    @staticmethod
    def _unpoint(index: dict[tuple[str, str], set[PersonRef]], key: tuple[str, str], ref: PersonRef) -> None:
        """The pointer no longer names `ref`; it goes when it named nobody else."""
        index.get(key, set()).discard(ref)
        if key in index and not index[key]:
            del index[key]

    # --- joining ---------------------------------------------------------------------------
    def claim(self, ref: PersonRef, workspace: str, lease: Optional[float] = None) -> Optional[JoinClaim]:
        return self._claim(ref, workspace, lease, {})

    def _claim(self, ref: PersonRef, workspace: str, lease: Optional[float],
               read: Mapping[PersonRef, Optional[Link]]) -> Optional[JoinClaim]:
        now, held = self.clock(), self.tables.links.get(ref)
        free = held is None or held.link.status.tried or (
            held.link.status is LinkStatus.IN_PROGRESS and _lease_ended(held, now))
        if not free:
            assert held is not None
            if held.link.final:
                return None
            raise Busy("another worker is applying this join right now",
                       retry_after=max(1.0, (held.lease_until or now) - now))
        if ref in read and _written_since(read[ref], held.link if held else None):
            raise Busy(CHANGED_SINCE_READ, retry_after=1.0)
        token = uuid.uuid4().hex
        base = held.link if held else Link(ref.campaign_id, ref.rf_user_id, workspace, LinkStatus.IN_PROGRESS)
        link = dataclasses.replace(base, workspace=workspace, status=LinkStatus.IN_PROGRESS, reason=None,
                                   joined_at=base.joined_at or iso(now), updated_at=iso(now), uncertain_since=now)
        self.tables.links[ref] = _Held(link, token, now + self._lease(lease),
                                       held.pending if held else None,
                                       contact_workspace=held.contact_workspace if held else None,
                                       unknown=held.unknown if held else {})
        return JoinClaim(ref, workspace, token, at=now)

    def claim_many(self, wanted: Sequence[tuple[PersonRef, str]], lease: Optional[float] = None,
                   read: Mapping[PersonRef, Optional[Link]] = MappingProxyType({})
                   ) -> list[JoinClaim | None | Exception]:
        return [answer_or_error(lambda: self._claim(ref, workspace, lease, read)) for ref, workspace in wanted]

    def finish_many(self, done: Sequence[tuple[JoinClaim, JoinResult, Sequence[Entry]]]) -> list[Optional[Exception]]:
        return [answer_or_error(partial(self.finish, *d)) for d in done]

    def hold_found(self, held: Sequence[tuple[JoinClaim, FoundContact]]) -> list[Optional[Exception]]:
        return [answer_or_error(partial(self._hold, *h)) for h in held]

    def _hold(self, claim: JoinClaim, found: FoundContact) -> None:
        held = self._held_by(claim.ref, claim.token)
        if found.held_read is not None and (held.link.held_at, held.link.held_by) != found.held_read:
            raise Busy(KEPT_MEANWHILE, retry_after=1.0)     # (a keep after the try's read: its retry carries it)
        if held.link.contact_id and held.link.contact_id != found.contact_id:     # (an earlier try's contact: left,
            self._unpoint(self.tables.contacts, (_contact_in(held), held.link.contact_id), claim.ref)   # where it is)
        held.contact_workspace = claim.workspace
        self._write(claim.ref, [], contact_id=found.contact_id, kind=found.kind, contact_role=found.role,
                    baseline=found.baseline,
                    baseline_of=found.baseline_of, found_at=found.found_at, contact_found=True,
                    **found.armed_fields(),       # (none, or the keep carried: FoundContact.kept_at)
                    contact_state=None)
        self._point(self.tables.contacts, (claim.workspace, found.contact_id), claim.ref)

    def reopen_ignored_many(self, ignored: Sequence[tuple[PersonRef, str, Sequence[Entry]]]) -> list[bool]:
        return [self._reopen(PersonRef(*ref), reason, entries) for ref, reason, entries in ignored]

    def _reopen(self, ref: PersonRef, reason: str, entries: Sequence[Entry]) -> bool:
        held = self.tables.links.get(ref)
        if held is None or held.link.status is not LinkStatus.IGNORED:
            return False
        self._write(ref, entries, status=LinkStatus.WAITING, reason=reason)
        return True

    def _held_by(self, ref: PersonRef, token: str) -> _Held:
        held = self.tables.links.get(ref)
        if held is None or held.claim != token:
            raise Busy("lost the claim on this join to another worker")
        return held

    def finish(self, claim: JoinClaim, result: JoinResult, entries: Sequence[Entry]) -> None:
        held = self._held_by(claim.ref, claim.token)
        if held.link.contact_id and held.link.contact_id != result.contact_id:      # (the contact it held: left)
            self._unpoint(self.tables.contacts, (_contact_in(held), held.link.contact_id), claim.ref)
        held.contact_workspace = claim.workspace if result.contact_id else None
        held.claim = held.lease_until = held.lease_ended = None
        held.requeued = 0
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "counts_for"
                  and (f.name != "baseline_of" or result.baseline_of is not None)}     # (the rule recorded: kept)
        if result.contact_created:
            fields["contact_state"] = None
        if result.counted_for:      # (a link counted already, an ignored join sent again, keeps its count)
            referrer = PersonRef(claim.ref.campaign_id, result.counted_for)
            fields.update(counted_for=result.counted_for, counted_at=self._one_more(referrer))
        link = self._write(claim.ref, entries, **fields)
        if result.qualification is QState.PENDING:
            held.pending = f"{link.updated_at}#{claim.ref}"
        if result.contact_id:
            self._point(self.tables.contacts, (claim.workspace, result.contact_id), claim.ref)
        if result.email:
            self._point(self.tables.emails, (claim.workspace, normal_email(result.email)), claim.ref)

    # --- referral counts -------------------------------------------------------------------
    def referrals(self, ref: PersonRef) -> Optional[ReferralCount]:
        return self.tables.referrals.get(PersonRef(*ref))

    def referrals_many(self, refs: Iterable[PersonRef]) -> dict[PersonRef, ReferralCount]:
        return {PersonRef(*r): c for r in refs if (c := self.tables.referrals.get(PersonRef(*r))) is not None}

    def referrals_in(self, campaign_id: str) -> dict[PersonRef, ReferralCount]:
        return {r: c for r, c in sorted(self.tables.referrals.items()) if r.campaign_id == campaign_id}

    def referrer_contact(self, ref: PersonRef, contact_id: str, workspace: str) -> ReferralCount:
        count = self.tables.referrals[ref] = dataclasses.replace(
            self.tables.referrals.get(ref, ReferralCount()), contact_id=contact_id, workspace=workspace)
        return count

    def drop_referrer_contact(self, ref: PersonRef, contact_id: str, workspace: Optional[str] = None) -> bool:
        count = self.tables.referrals.get(ref)
        if count is None or count.contact_id != contact_id or count.workspace not in (None, workspace):
            return False
        self.tables.referrals[ref] = dataclasses.replace(count, contact_id=None, workspace=None)
        return True

    def forget_referrals(self, ref: PersonRef) -> bool:
        self.tables.owed.pop(PersonRef(*ref), None)
        return self.tables.referrals.pop(PersonRef(*ref), None) is not None

    def referrals_written(self, ref: PersonRef, n: int, attribute: str) -> None:
        if ref in self.tables.referrals:
            self.tables.referrals[ref] = dataclasses.replace(self.tables.referrals[ref], written=n,
                                                             written_to=attribute)

    def count_applied_many(self, leads: Sequence[tuple[PersonRef, str, Sequence[Entry]]]) -> list[bool]:
        return [self._count_applied(PersonRef(*ref), referrer, entries) for ref, referrer, entries in leads]

    def _count_applied(self, ref: PersonRef, referrer: str, entries: Sequence[Entry]) -> bool:
        held = self.tables.links.get(ref)
        if held is None or not held.link.final or held.link.counted_for:
            return False
        self._write(held.link.ref, entries, counted_for=referrer,
                    counted_at=self._one_more(PersonRef(ref.campaign_id, referrer)))
        return True

    def _one_more(self, referrer: PersonRef) -> float:
        """One more lead, counted now (the count begins then, unless it began already), but never
        before the count began (another worker may have begun it by a clock ahead of this one's):
        when the lead is counted."""
        count = self.tables.referrals.get(referrer, ReferralCount())
        since = self.clock() if count.since is None else count.since
        self.tables.referrals[referrer] = dataclasses.replace(count, n=count.n + 1, since=since)
        return max(self.clock(), since)

    # --- what Intercom says of the contact ---------------------------------------------------
    def move(self, link: Link, contact_id: str, entries: Sequence[Entry], role: Optional[str] = None,
             baseline: Any = KEEP, baseline_of: Optional[str] = KEEP, when: Optional[float] = None,
             left: bool = False, stays: bool = False) -> Optional[Link]:
        old = link.contact_id
        if old == contact_id:
            return link
        stored = self.tables.links.get(link.ref)
        if stored is None:
            return None                # erased meanwhile: neither the link nor a pointer to it comes back
        if stored.link.contact_id != old:
            raise Busy("the link moved meanwhile (another worker applied the merge)")
        if old:     # (in the workspace of the try that recorded it: a campaign moved since keeps it there)
            self._unpoint(self.tables.contacts, (_contact_in(stored), old), link.ref)
        self._point(self.tables.contacts, (link.workspace, contact_id), link.ref)
        stored.contact_workspace = link.workspace
        changes = {name: value for name, value in (("baseline", baseline), ("baseline_of", baseline_of))
                   if value is not KEEP}
        kept = not changes      # (her baseline, and with it the armed state: LeftContact.kept)
        carried = stored.link.keeps_for_join      # (a change her join kept for its finish: hers, carried with its arm)
        if changes and not carried:     # a value seen missing the target was the other contact's: not armed under
            changes.update(armed=False, armed_by=None, armed_at=None)       # the new baseline
        if not carried:     # (a value held back was the contact left's: an older change away on this one is no change
            changes.update(held_at=None, held_by=None)      # on that one)
        moved_at = when if when is not None else by_the_second(self.clock())
        changes["last_moved_at"] = moved_at     # (every move: one that records nothing it left too)
        if old and left:        # (what it holds on the contact it leaves, as stored: a late notification's judge)
            if not stays:       # (one staying in Intercom is a contact with her email as any other: not left)
                changes["left_contacts"] = stored.link.left_contacts | {old}
            changes["left_baselines"] = left_with(stored.link.left_baselines, LeftContact.of(
                stored.link, moved_at, baseline_of, kept, held=stays))
        if when is not None and (stored.link.last_event_at is None or stored.link.last_event_at < when):
            changes["last_event_at"] = when
        return self._write(link.ref, entries, contact_id=contact_id, contact_state=None, contact_created=False,
                           contact_role=role or stored.link.contact_role, **changes)

    def set_contact(self, link: Link, entries: Sequence[Entry], *, when: Optional[float] = None,
                    role: Optional[str] = KEEP, state: Optional[ContactState] = KEEP,
                    email: str = KEEP) -> Optional[Link]:
        changes: dict[str, Any] = {name: value for name, value in (("contact_role", role), ("contact_state", state),
                                                                   ("email", email)) if value is not KEEP}
        stored = self.get(link.ref)
        if stored is None:
            return None                # erased meanwhile: nothing about the person is written back
        if stored.contact_id != link.contact_id:
            raise Busy(MOVED_SINCE_READ, retry_after=1.0)
        if when is not None and stored.last_event_at is not None and stored.last_event_at > when:
            self.history.note_repeat(link.ref, "older_event",
                                     "an Intercom event older than one already applied was ignored")
            return None
        if email is not KEEP:
            if stored.email != link.email:
                raise Busy("the link's email changed meanwhile (another worker applied an Intercom event)")
            # (no link left: the old address is kept nowhere)
            self._unpoint(self.tables.emails, (link.workspace, normal_email(link.email)), link.ref)
            self._point(self.tables.emails, (link.workspace, normal_email(email)), link.ref)
        if when is not None:
            changes["last_event_at"] = when
        return self._write(link.ref, entries, **changes)

    def stamp_rule(self, campaign_id: str, attribute: str, key: str) -> int:
        stamped = 0
        for read in self._in_campaign(campaign_id):
            held = self.tables.links.get(read.ref)       # (as it is now: written, or erased, since it was read)
            if held is None:
                continue
            left = left_stamped(held.link, attribute, key)      # (what it left: judges late notifications)
            changes: dict[str, Any] = {**({"baseline_of": attribute} if held.link.baseline_unrecorded else {}),
                                       **({"armed_by": key} if held.link.armed_unrecorded else {}),
                                       **({"left_baselines": left} if left != held.link.left_baselines else {})}
            if changes:
                held.link = dataclasses.replace(held.link, **changes)
                stamped += 1
        return stamped

    def arm(self, link: Link, entries: Sequence[Entry], by: str, at: Optional[float] = None,
            keep_held: bool = True, hold: Optional[float] = None) -> Link:
        if hold is not None:     # (a join's keep: held to its status as read too, as DynamoDB's twin)
            stored = self.get(link.ref)
            if stored is not None and stored.contact_id == link.contact_id and stored.status is not link.status:
                raise Busy("the link changed meanwhile (another worker applied an Intercom event)")
        return self._armed_as_read(link, entries, **link.armed_fields(by, at, keep_held, hold))

    def hold_back(self, link: Link, entries: Sequence[Entry], at: float, by: str) -> Link:
        return self._armed_as_read(link, entries, held_at=at, held_by=by)

    def _armed_as_read(self, link: Link, entries: Sequence[Entry], **changes: Any) -> Link:
        """`changes` written while the stored link is on the contact `link` names and armed as it reads (else Busy);
        erased meanwhile: `link`, nothing written."""
        stored = self.get(link.ref)
        if stored is None:
            return link                # erased meanwhile
        if stored.contact_id != link.contact_id:
            raise Busy(MOVED_SINCE_READ, retry_after=1.0)
        if _armed_state(stored) != _armed_state(link):
            raise Busy("the link changed meanwhile (another worker applied an Intercom event)")
        return self._write(link.ref, entries, **changes)

    def arm_left(self, link: Link, contact_id: str, entries: Sequence[Entry], by: str, at: Optional[float] = None,
                 carry: bool = False, keep_held: bool = True, drop_left_held: bool = False) -> Link:
        record = link.left_armed(contact_id, by, at, drop_left_held)
        return link if record is None else self._write_left(     # (None: nothing recorded of that contact)
            link, entries, record, link.armed_fields(by, at, keep_held) if carry else None)

    def hold_left(self, link: Link, contact_id: str, entries: Sequence[Entry], at: float, by: str) -> Link:
        record = link.left_held(contact_id, at, by)
        return link if record is None else self._write_left(link, entries, record, None)

    def _write_left(self, link: Link, entries: Sequence[Entry], record: LeftContact,
                    carried: Optional[dict[str, Any]]) -> Link:
        """`record` in place of the link's of its contact, held to the records as read (else Busy); `carried`: the
        link's own armed fields too, held to its contact and armed state as read (arm_left's `carry`). Erased
        meanwhile: `link`, nothing written (as DynamoDB's twin)."""
        stored = self.get(link.ref)
        if stored is None:
            return link                # erased meanwhile
        if carried is not None and stored.contact_id != link.contact_id:    # (said first, as DynamoDB's twin does)
            raise Busy(MOVED_SINCE_READ, retry_after=1.0)
        if stored.left_baselines != link.left_baselines:
            raise Busy("what the link held on the contacts it left changed meanwhile (another worker)")
        if carried is not None and _armed_state(stored) != _armed_state(link):    # (the link itself too, as arm)
            raise Busy("the link changed meanwhile (another worker applied an Intercom event)")
        return self._write(link.ref, entries, left_baselines=left_with(stored.left_baselines, record),
                           **(carried or {}))

    def see_duplicate(self, link: Link, seen: DuplicateSeen) -> Link:
        stored = self.get(link.ref)
        if stored is None:
            return link                # erased meanwhile
        if stored.duplicates_seen != link.duplicates_seen or stored.contact_id != link.contact_id:
            raise Busy("the values seen on her other contacts, or the contact she is on, changed meanwhile "
                       "(another worker)")
        kept = seen_with(stored.duplicates_seen, seen)
        return stored if kept == stored.duplicates_seen else self._write(link.ref, [], duplicates_seen=kept)

    def take_baselines(self, taken: Sequence[tuple[Link, Any, str, Sequence[Entry]]],
                       read_at: Optional[float] = None) -> list[bool]:
        at = by_the_second(read_at if read_at is not None else self.clock())
        return [self._take_baseline(*t, at=at) for t in taken]

    def _take_baseline(self, link: Link, baseline: Any, attribute: str, entries: Sequence[Entry], at: float) -> bool:
        held = self.tables.links.get(link.ref)
        if held is None or held.link.status is not LinkStatus.LINKED or held.link.qualification not in (
                None, QState.PENDING) or (held.link.qualification, held.link.baseline_of) != (
                link.qualification, link.baseline_of):
            return False
        written = self._write(link.ref, entries, baseline=baseline, baseline_of=attribute, armed=False,
                              armed_by=None, armed_at=None, held_at=None, held_by=None, qualification=QState.PENDING,
                              baseline_at=at)
        held.pending = f"{written.updated_at}#{link.ref}"
        return True

    # --- qualification ------------------------------------------------------------------------
    def start_qualifying(self, link: Link, replay: bool = False, lease: Optional[float] = None) -> Claim | Link | None:
        now, held = self.clock(), self.tables.links.get(link.ref)
        if held is None:
            return None
        state = held.link.qualification
        took_over = state is QState.QUALIFYING and _lease_ended(held, now)
        if state not in claimable(replay) and not took_over:
            return held.link
        held.claim, held.lease_ended, held.requeued = uuid.uuid4().hex, None, 0
        held.lease_until = now + self._lease(lease)
        held.link = dataclasses.replace(held.link, qualification=QState.QUALIFYING)
        return Claim(held.claim, held.link, took_over, state)

    def note(self, ref: PersonRef, entries: Sequence[Entry], enrolled: Optional[str] = None) -> None:
        if self._kept(ref) if enrolled is None else \
                getattr(self.ledgers.get(ref.campaign_id, {}).get(enrolled), "rf_user_id", None) == ref.rf_user_id:
            self.history.add(ref, entries)

    def note_many(self, noted: Sequence[tuple[PersonRef, Sequence[Entry]]], at: Optional[float] = None) -> None:
        for ref, entries in noted:
            if self._kept(ref):
                self.history.add(ref, entries, at)

    def note_latest(self, ref: PersonRef, entry: Entry) -> None:
        if self._kept(ref):
            self.history.note_latest(ref, entry)

    def note_repeat(self, ref: PersonRef, event: str, reason: str, outcome: str = "ignored",
                    restart_after: Optional[float] = None) -> None:
        if self._kept(ref):
            self.history.note_repeat(ref, event, reason, outcome, restart_after)

    def _kept(self, ref: PersonRef) -> bool:
        return PersonRef(*ref) in self.tables.links or PersonRef(*ref) in self.tables.referrals

    def finish_qualifying(self, claim: Claim, state: QState, entries: Sequence[Entry],
                          reason: Optional[str] = None, lease: Optional[float] = None,
                          rf_said_no: bool = False) -> Link:
        if state not in ENDINGS:
            raise ValueError(f"a qualification claim cannot end in {state}")
        held = self.tables.links.get(claim.link.ref)
        if held is None or held.claim != claim.token:
            raise Busy("lost the qualification claim to another worker")
        now = self.clock()
        held.claim, held.pending, held.lease_ended, held.requeued = None, None, None, 0
        held.lease_until = now + self._lease(lease) if state is QState.UNCONFIRMED else None
        return self._write(claim.link.ref, entries, qualification=state, reason=reason or None,
                           qualified_at=iso(now) if state is QState.QUALIFIED else held.link.qualified_at,
                           rf_said_no=True if state is QState.UNCONFIRMED and rf_said_no else None,
                           letter_owed=state is QState.FAILED, refusal_discarded=False, rf_deleted_at=None,
                           refused_at=now if state is QState.FAILED else held.link.refused_at)

    def lettered(self, ref: PersonRef, reason: str) -> None:
        held = self.tables.links.get(PersonRef(*ref))
        if held is not None and held.link.letter_owed and held.link.reason == reason:
            held.link = dataclasses.replace(held.link, letter_owed=False, refused_at=self.clock())

    def discard_refusals(self, refs: Iterable[PersonRef]) -> None:
        for ref in refs:
            held = self.tables.links.get(PersonRef(*ref))
            if held is not None and held.link.qualification is QState.FAILED:
                held.link = dataclasses.replace(held.link, refusal_discarded=True)

    def rf_deleted(self, found: Sequence[tuple[Link, Sequence[Entry]]]) -> list[bool]:
        out = []
        for link, entries in found:
            held = self.tables.links.get(link.ref)
            if held is None or held.link.qualification is not QState.FAILED \
                    or held.link.refused_at != link.refused_at \
                    or (link.refused_at is None and held.link.updated_at != link.updated_at):
                out.append(False)
                continue
            # (not _write: updated_at kept, what dates a refusal without refused_at)
            held.link = dataclasses.replace(held.link, rf_deleted_at=self.clock())
            self.history.add(link.ref, entries)
            out.append(True)
        return out

    def unpend(self, link: Link, reason: str) -> Link:
        held = self.tables.links.get(link.ref)
        if held is None:
            return link                # erased meanwhile
        held.pending = None
        self.history.add(link.ref, [Entry("reconciliation", "stopped", reason)])
        return held.link

    def pending(self, after: Optional[str], limit: int) -> PendingPage:
        waiting = sorted((h.pending, h.link) for h in self.tables.links.values()
                         if h.pending is not None and (after is None or h.pending > after))[:limit]
        return PendingPage([link for _, link in waiting], waiting[-1][0] if waiting else None)

    def count_pending(self, before: Optional[str] = None, limit: Optional[int] = None) -> int:
        n = sum(1 for h in self.tables.links.values() if h.pending is not None and (before is None or h.pending < before))
        return n if limit is None else min(n, limit)

    def overdue(self, now: float, limit: int) -> list[Overdue]:
        late = sorted((h.lease_until, h.link.ref) for h in self.tables.links.values()
                      if h.lease_until is not None and h.lease_until < now)[:limit]
        return [_overdue(self.tables.links[ref]) for _, ref in late]

    def requeue(self, late: Overdue, retry_at: float, entries: Sequence[Entry]) -> bool:
        held = self.tables.links.get(late.link.ref)
        if held is None or held.lease_until is None or held.lease_until != late.due:
            return False
        held.lease_ended = held.lease_until if held.lease_ended is None else held.lease_ended
        held.lease_until, held.requeued = retry_at, held.requeued + 1
        self.history.add(late.link.ref, entries)
        return True

    def unqueue(self, late: Overdue, retry_at: float, entries: Sequence[Entry]) -> bool:
        held = self.tables.links.get(late.link.ref)
        if held is None or held.lease_until != retry_at:
            return False
        held.lease_until, held.requeued = late.due, late.requeued
        held.lease_ended = late.lease_until if late.requeued else None
        self.history.add(late.link.ref, entries)
        return True

    # --- pointers earlier versions left (`bridge pointers`) ----------------------------------
    def _pointer_index(self, kind: str) -> dict[tuple[str, str], set[PersonRef]]:
        return self.tables.contacts if kind == CONTACT else self.tables.emails

    def pointers(self, after: Optional[str], limit: int) -> PointerPage:
        # (as the table's scan pages them: by key, `limit` items a page, a position to go on from)
        keyed = sorted((f"{kind.upper()}#{ws}#{value}", Pointer(kind, ws, value, frozenset(refs)))
                       for kind in (CONTACT, EMAIL) for (ws, value), refs in self._pointer_index(kind).items())
        left = [(key, p) for key, p in keyed if after is None or key > after]
        page = left[:limit]
        refs = {ref for _, p in page for ref in p.refs}
        placed = {ref: Placed(held.link, held.contact_workspace) for ref in refs
                  if (held := self.tables.links.get(ref)) is not None}
        return PointerPage([p for _, p in page], placed, page[-1][0] if len(left) > limit else None)

    def drop_reference(self, finding: Finding) -> bool:
        pointer, ref = finding.pointer, finding.ref
        index, key = self._pointer_index(pointer.kind), (pointer.workspace, pointer.value)
        if ref not in index.get(key, set()) or not _still_stale(finding, self.tables.links.get(ref)):
            return False
        self._unpoint(index, key, ref)
        return True

    def place_contact(self, finding: Finding) -> bool:
        pointer, ref, read, held = finding.pointer, finding.ref, finding.read, self.tables.links.get(finding.ref)
        if read is None or pointer.kind != CONTACT or held is None or held.contact_workspace is not None \
                or held.link.contact_id != pointer.value or held.link.workspace != read.workspace \
                or ref not in self.tables.contacts.get((pointer.workspace, pointer.value), set()):
            return False
        held.contact_workspace = pointer.workspace
        return True

    def erase(self, link: Link) -> Erased:
        held = self.tables.links.pop(link.ref, None)
        stored = held.link if held is not None else link     # (as it is now: a worker may have moved it since)
        pointers = 0
        keys = [(self.tables.contacts, (_contact_in(held) if held is not None else stored.workspace,
                                        stored.contact_id or ""))]
        if normal_email(stored.email) and normal_email(stored.email) != normal_email(link.email):
            keys.append((self.tables.emails, (stored.workspace, normal_email(stored.email))))   # (changed since)
        for index, key in keys:
            if link.ref in index.get(key, set()):
                self._unpoint(index, key, link.ref)
                pointers += 1
        self.forget_referrals(link.ref)
        # The lead counts no more (once: only while their link was still there; never below 0), for
        # whom the stored link says it counted (a join may have finished since `link` was read), if
        # that count began no later than the lead was counted; the count owes its write from now on.
        counted_for = held.link.counted_for if held is not None else None
        referrer = PersonRef(link.campaign_id, counted_for) if counted_for else None
        count = self.tables.referrals.get(referrer) if referrer else None
        lowered = None
        if referrer and held and count is not None and count.n > 0 and count.counts(held.link):
            self.tables.referrals[referrer] = dataclasses.replace(count, n=count.n - 1)
            self.tables.owed[referrer] = self.clock() + COUNT_ASK_GRACE
            lowered = referrer
        return Erased(self.history.erase(link.ref), pointers, lowered, held.link.contact_id if held else None,
                      _contact_in(held) if held and held.link.contact_id else None)

    def counts_owed(self, now: float, limit: int) -> list[tuple[PersonRef, float]]:
        return sorted(((ref, due) for ref, due in self.tables.owed.items() if due < now), key=lambda o: o[1])[:limit]

    def count_asked(self, ref: PersonRef, due: float) -> bool:
        if self.tables.owed.get(ref) != due:
            return False
        del self.tables.owed[ref]
        return True


def _still_stale(finding: Finding, held: Optional[_Held]) -> bool:
    """The stored link still does not make `finding`'s reference its own (the DynamoDB store's condition:
    adapters/dynamo/links._still_stale)."""
    pointer = finding.pointer
    if pointer.kind == EMAIL:
        return held is not None and finding.read is not None and held.link.email == finding.read.email
    if finding.stale is Stale.ERASED:
        return held is None
    return held is None or held.link.contact_id != pointer.value or _contact_in(held) != pointer.workspace


def _contact_in(held: _Held) -> str:
    """The workspace whose pointer names the held link's contact: where the try that recorded it wrote it (a claim
    in another workspace, the campaign moved, keeps it)."""
    return held.contact_workspace or held.link.workspace


def _written_since(read: Optional[Link], now: Optional[Link]) -> bool:
    """Was the link written after it was `read` (None: there was none then; `now`: None, there is none now)?
    (The DynamoDB store's condition: adapters/dynamo/links._as_read.)"""
    if read is None or now is None:
        return (read is None) != (now is None)
    return read.updated_at != now.updated_at


def _lease_ended(held: _Held, now: float) -> bool:
    """The claim's lease ran out (reconciliation's requeue keeps it ended)."""
    return held.lease_ended is not None or (held.lease_until or 0) < now


def _overdue(held: _Held) -> Overdue:
    assert held.lease_until is not None
    return Overdue(held.link, held.lease_until if held.lease_ended is None else held.lease_ended,
                   due=held.lease_until, requeued=held.requeued)


@_atomic
class MemoryLookup:
    def __init__(self, tables: Tables, clock: Callable[[], float]):
        self.tables, self.clock = tables, clock

    def look_up(self, *, contacts: Iterable[tuple[str, str]] = (), emails: Iterable[tuple[str, str]] = (),
                notifications: Iterable[tuple[str, str]] = (), refs: Iterable[PersonRef] = ()) -> Found:
        found = Found(seen={n for n in notifications if self.tables.seen.get(n, 0) > self.clock()})
        for pairs, index, into in ((contacts, self.tables.contacts, found.by_contact),
                                   (emails, self.tables.emails, found.by_email)):
            for workspace, value in pairs:
                key = (workspace, normal_email(value) if index is self.tables.emails else value)
                if key in index:
                    into[key] = frozenset(index[key])
        wanted = set(PersonRef(*r) for r in refs).union(*found.by_contact.values(), *found.by_email.values())
        found.links = {r: self.tables.links[r].link for r in wanted if r in self.tables.links}
        return found

    def mark_seen(self, workspace: str, notification_id: str, keep_days: int = 7) -> None:
        self.tables.seen[(workspace, notification_id)] = self.clock() + keep_days * 86400

    def first_seen(self, workspace: str, notification_id: str, keep_days: int = 7) -> bool:
        if self.tables.seen.get((workspace, notification_id), 0) > self.clock():
            return False
        self.mark_seen(workspace, notification_id, keep_days)
        return True

    def forget_email(self, workspace: str, email: str) -> None:
        self.tables.emails.pop((workspace, normal_email(email)), None)


@_atomic
class MemorySettings:
    def __init__(self, clock: Callable[[], float], connections: "MemoryConnections"):
        self.clock, self.connections = clock, connections
        self.stored: dict[str, StoredSettings] = {}
        self.deleted: dict[str, int] = {}       # the last version of a campaign's deleted settings
        self.by_workspace: dict[str, set[str]] = {}

    def put(self, campaign_id: str, document: dict, workspace: str,
            count_backfill: Optional[CountBackfill] = None) -> int:
        version = max(self.stored[campaign_id].version if campaign_id in self.stored else 0,
                      self.deleted.get(campaign_id, 0)) + 1
        self.stored[campaign_id] = StoredSettings(campaign_id, workspace, document, version, iso(self.clock()),
                                                  count_backfill)
        self.connections.register_workspace(workspace)
        self.by_workspace.setdefault(workspace, set()).add(campaign_id)
        return version

    def campaigns(self, workspace: str) -> set[str]:
        return set(self.by_workspace.get(workspace, ()))

    def get(self, campaign_id: str) -> Optional[StoredSettings]:
        return self.stored.get(campaign_id)

    def count_backfilled(self, campaign_id: str, owed: CountBackfill) -> bool:
        stored = self.stored.get(campaign_id)
        if stored is None or stored.count_backfill != owed:
            return False
        self.stored[campaign_id] = dataclasses.replace(stored, count_backfill=None)
        return True

    def delete(self, campaign_id: str) -> bool:
        gone = self.stored.pop(campaign_id, None)
        if gone is not None:
            self.deleted[campaign_id] = gone.version
        return gone is not None

    def documents(self, campaign_ids: Iterable[str]) -> dict[str, dict]:
        return {c: self.stored[c].document for c in campaign_ids if c in self.stored}


DIGEST_KEY = "memory"        # the twin's table has no name: one fixed key (EdgeLog.digest)


@_atomic
class MemoryEdge:
    """The edge's log (ports/edge.py), with the same bounds as the table's."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.counts: dict[tuple[str, str, str], RefusalCount] = {}        # (scope, reason, hour)
        self.samples: dict[tuple[str, str, int], tuple[float, RefusalSample]] = {}
        self.beats: dict[tuple[str, str], str] = {}

    def refused(self, scope: str, *samples: RefusalSample, count: Optional[int] = None) -> None:
        now, first, last = self.clock(), samples[0], samples[-1]
        hour = datetime.fromtimestamp(now - now % 3600, timezone.utc).strftime("%Y-%m-%dT%H:00Z")
        before = self.counts.get((scope, first.reason, hour))
        was = before.count if before else 0
        n = was + (len(samples) if count is None else count)
        self.counts[(scope, first.reason, hour)] = RefusalCount(first.reason, n, before.first_at if before else first.at,
                                                                last.at)
        for slot, sample in zip(range(was, min(n, SAMPLES)), samples):
            self.samples[(scope, first.reason, slot)] = (now, sample)

    def refusals(self, scope: str) -> Refusals:
        keep = self.clock() - REFUSALS_KEEP_DAYS * 86400
        counts = [c for (s, _, hour), c in self.counts.items()
                  if s == scope and datetime.strptime(hour, "%Y-%m-%dT%H:00Z").replace(
                      tzinfo=timezone.utc).timestamp() + 3600 > keep]
        samples = [sample for (s, _, _), (at, sample) in self.samples.items() if s == scope and at > keep]
        return Refusals(sorted(counts, key=lambda c: c.last_at, reverse=True),
                        sorted(samples, key=lambda x: x.at, reverse=True))

    def forget(self, scope: str, about: Callable[[RefusalSample], bool]) -> int:
        gone = [key for key, (_, sample) in self.samples.items() if key[0] == scope and about(sample)]
        for key in gone:
            del self.samples[key]
        return len(gone)

    def heard(self, scope: str, what: str) -> None:
        self.beats[(scope, what)] = iso(self.clock())

    def last_heard(self, scope: str, what: str) -> Optional[str]:
        return self.beats.get((scope, what))

    @staticmethod
    def digest(kind: str, value: str) -> str:     # (no call, as DynamoDB's: never throttled)
        return digest(DIGEST_KEY, kind, value)


@_atomic
class MemoryConnections:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.workspaces_: dict[str, Connection] = {}
        self.known: set[str] = set()
        self.rf_: Optional[RFConnection] = None
        self.used_states: dict[str, Optional[Outcome]] = {}      # nonce -> what its callback did
        self.tickets: dict[str, OAuthTicket] = {}

    def put_workspace(self, workspace: str, secrets: Iterable[str] = (), api_base: Optional[str] = None,
                      token_app: Optional[str] = None) -> None:
        now = self.workspaces_.get(workspace) or Connection(workspace)
        self.workspaces_[workspace] = dataclasses.replace(now, status="active", api_base=api_base or now.api_base,
                                              secrets=now.secrets | frozenset(secrets),
                                              token_app=token_app or now.token_app)
        self.register_workspace(workspace)

    def mark(self, workspace: str, secrets: Iterable[str]) -> None:
        now = self.workspaces_.get(workspace)
        if now is not None:
            self.workspaces_[workspace] = dataclasses.replace(now, secrets=now.secrets | frozenset(secrets))

    def unmark(self, workspace: str, secrets: Iterable[str], read: Optional[Connection] = None) -> bool:
        now = self.workspaces_.get(workspace)
        if now is None or (read is not None and (now.status, now.secrets, now.token_app) !=
                           (read.status, read.secrets, read.token_app)):
            return False
        self.workspaces_[workspace] = dataclasses.replace(now, secrets=now.secrets - frozenset(secrets))
        return True

    def workspace(self, workspace: str) -> Optional[Connection]:
        return self.workspaces_.get(workspace)

    def keep_attributes(self, workspace: str, listed: AttributeList) -> None:
        now = self.workspaces_.get(workspace)
        kept = now.attribute_list if now is not None else None
        if now is None or (kept is not None and listed.read_at < kept.read_at and not kept.ahead_of(listed.read_at)):
            return
        self.workspaces_[workspace] = dataclasses.replace(now, attribute_list=AttributeList(
            json.loads(json.dumps(listed.attributes)), listed.read_at))     # a copy, as stored

    def disconnect_workspace(self, workspace: str) -> bool:
        now = self.workspaces_.get(workspace)
        if now is None:
            return False
        self.workspaces_[workspace] = dataclasses.replace(now, status="disconnected", secrets=now.secrets - {"token"},
                                                          token_app=None)
        return True

    def use_oauth_state(self, nonce: str, expires_at: float) -> bool:
        if nonce in self.used_states:
            return False
        self.used_states[nonce] = None
        return True

    def end_oauth_state(self, nonce: str, expires_at: float, outcome: Outcome) -> None:
        if nonce in self.used_states and self.used_states[nonce] is None:
            self.used_states[nonce] = outcome

    def oauth_state_outcome(self, nonce: str) -> Optional[Outcome]:
        return self.used_states.get(nonce)

    def add_oauth_ticket(self, ticket: OAuthTicket) -> None:
        if ticket.ticket in self.tickets:
            raise ValueError("this ticket id is kept already")
        self.tickets[ticket.ticket] = ticket

    def oauth_ticket(self, ticket: str, now: float) -> Optional[OAuthTicket]:
        kept = self.tickets.get(ticket)
        # an expired one stays until TTL removes it, unspendable
        return kept if kept is not None and now < kept.expires_at else None

    def spend_oauth_ticket(self, ticket: str, now: float) -> Optional[OAuthTicket]:
        kept = self.oauth_ticket(ticket, now)
        if kept is not None:
            del self.tickets[ticket]
        return kept

    def register_workspace(self, workspace: str) -> None:
        self.known.add(workspace)

    def workspaces(self) -> set[str]:
        return set(self.known)

    def put_rf(self, secrets: Iterable[str] = ()) -> None:
        given, had = frozenset(secrets), self.rf_ or RFConnection()
        if given:
            self.rf_ = RFConnection(had.secrets | given, iso(self.clock()) if "token" in given else had.token_at)

    def rf(self) -> Optional[RFConnection]:
        return self.rf_


@_atomic
class MemoryCursor:
    def __init__(self) -> None:
        self.positions: dict[str, str] = {}

    def get(self, name: str = PENDING_SWEEP) -> Optional[str]:
        return self.positions.get(name)

    def set(self, position: Optional[str], name: str = PENDING_SWEEP) -> None:
        if position is None:
            self.positions.pop(name, None)
        else:
            self.positions[name] = position

    def clear(self, name: str, position: str) -> bool:
        if self.positions.get(name) != position:
            return False
        del self.positions[name]
        return True


@_atomic
class MemoryRates:
    """Thread-safe: several limiters (as several Lambdas) may share one."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, int], tuple[int, int]] = {}    # (budget, slice) -> (asked for, cap)
        self.states: dict[str, BudgetState] = {}

    def reserve(self, budget: str, slice_id: int, want: int, cap: int, ttl: int) -> int:
        before = self.windows.get((budget, slice_id), (0, cap))[0]
        self.windows[(budget, slice_id)] = (before + want, cap)
        return max(0, min(want, cap - before))

    def used(self, budget: str, slice_ids: Iterable[int]) -> int:
        return sum(min(asked, cap) for asked, cap in (self.windows.get((budget, s), (0, 0)) for s in slice_ids))

    def state(self, budget: str) -> BudgetState:
        return self.states.get(budget, BudgetState())

    def pause(self, budget: str, until: float, now: float, share: float, strikes: int, window: float) -> bool:
        state = self.state(budget)
        if state.new_strike(now, window):
            self.states[budget] = dataclasses.replace(state, pause_until=until, share=share, lowered_at=now,
                                                      strikes=strikes)
            return True
        if state.pause_until < until:
            self.states[budget] = dataclasses.replace(state, pause_until=until)
        return False

    def block(self, budget: str, until: float, now: float, reason: str) -> None:
        state = self.state(budget)
        self.states[budget] = dataclasses.replace(state, blocked_until=until, blocked_reason=reason,
                                                  blocked_since=state.blocked_since or now)

    def probe(self, budget: str, now: float, until: float) -> bool:
        state = self.state(budget)
        if state.blocked_since is None or state.blocked_until > now:
            return False
        self.states[budget] = dataclasses.replace(state, blocked_until=until)
        return True

    def unblock(self, budget: str) -> None:
        self.states[budget] = dataclasses.replace(self.state(budget), blocked_until=0.0, blocked_since=None,
                                                  blocked_reason=None)


def _plus(counts: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Counts by outcome with `more` added (DynamoDB's ADD on each)."""
    return {**counts, **{k: counts.get(k, 0) + n for k, n in more.items()}}


@_atomic
class MemorySync(Leases):
    """Sync runs (one list per campaign, the last is the latest) and the ledger."""

    def __init__(self, tables: Tables, clock: Callable[[], float], lease: float = DEFAULT_LEASE_SECONDS) -> None:
        self.tables, self.clock, self.lease = tables, clock, lease   # (the links: an adopted entry holds to its join's)
        self.runs: dict[str, list[SyncRun]] = {}
        self.expires: dict[tuple[str, int], float] = {}   # a past run's TTL (SyncRepository.start)
        self.ledgers: dict[str, dict[str, LedgerEntry]] = {}

    def start(self, campaign_id: str, kind: str, source: str, now: float,
              since: Optional[float] = None, required: tuple[str, ...] = (),
              workspace: Optional[str] = None) -> Optional[SyncRun]:
        runs = self.runs.setdefault(campaign_id, [])
        if runs and runs[-1].status == "running":
            return None
        full = runs[-1].number if runs and runs[-1].kind == "full" else runs[-1].full_run if runs else None
        run = SyncRun(campaign_id, len(runs) + 1, kind, source, "running", since=since, started_at=now,
                      updated_at=now, required=tuple(required), workspace=workspace,
                      full_run=len(runs) + 1 if kind == "full" else full)
        # One step, as DynamoDB's one conditional write: the run before is kept as it stands (every count a webhook
        # added to it included) for a while, unless it is the latest full one; so is the one replaced (with it).
        if runs:
            expiring = [n for n in {runs[-1].number, full} if n and (n != full or kind == "full")]
            self.expires.update(((campaign_id, n), now + PAST_RUN_DAYS * 86400) for n in expiring)
        runs.append(run)
        return run

    def run(self, campaign_id: str, number: Optional[int] = None) -> Optional[SyncRun]:
        runs = self.runs.get(campaign_id) or []
        if number is None:
            return runs[-1] if runs else None
        expired = self.expires.get((campaign_id, number), float("inf")) <= self.clock()
        return runs[number - 1] if 0 < number <= len(runs) and not expired else None

    def _set(self, run: SyncRun, **changes: Any) -> SyncRun:
        new = dataclasses.replace(run, **changes)
        self.runs[run.campaign_id][run.number - 1] = new
        return new

    def claim_page(self, campaign_id: str, number: int, page: int, owner: str, now: float,
                   lease: Optional[float] = None) -> tuple[Optional[SyncRun], bool]:
        run = self.run(campaign_id, number)
        if run is None or run.status != "running" or run.page != page:
            return run, False
        if run.owner and run.owner != owner and (run.lease_until or 0) > now:
            raise Busy(f"another worker works page {page} of sync run {number}",
                       retry_after=(run.lease_until or now) - now)
        return self._set(run, owner=owner, lease_until=now + self._lease(lease)), True

    def checkpoint(self, campaign_id: str, number: int, page: int, owner: str, now: float, *,
                   cursor: Optional[str], counts: dict[str, int], total: Optional[int] = None,
                   finished: bool = False, message: Optional[str] = None, paused: float = 0.0) -> bool:
        run = self.run(campaign_id, number)
        if run is None or run.status != "running" or run.page != page or run.owner != owner:
            return False
        status = "stopped" if message else "done" if finished else "running"
        self._set(run, page=page + 1, cursor=cursor, counts=_plus(run.counts, counts),
                  total=run.total if total is None else total, owner=None, lease_until=None, updated_at=now,
                  status=status, message=message, finished_at=now if status != "running" else None, error=None,
                  paused=run.paused + paused)
        return True

    def release(self, campaign_id: str, number: int, page: int, owner: str,
                error: Optional[PageError] = None, paused: float = 0.0) -> None:
        run = self.run(campaign_id, number)
        if run is not None and run.page == page and run.owner == owner:
            self._set(run, owner=None, lease_until=None, error=error or run.error, paused=run.paused + paused)

    def begin_again(self, campaign_id: str, number: int, now: float) -> bool:
        run = self.run(campaign_id, number)
        if run is None or run.status != "running" or run.page != 0 or run.owner and (run.lease_until or 0) >= now:
            return False
        self._set(run, started_at=now, updated_at=now)
        return True

    def stop(self, campaign_id: str, number: int, page: int, now: float, message: str, paused: float = 0.0) -> bool:
        run = self.run(campaign_id, number)
        if run is None or run.status != "running" or run.page != page:
            return False
        self._set(run, status="stopped", message=message, finished_at=now, updated_at=now, owner=None,
                  lease_until=None, paused=run.paused + paused)
        return True

    def add_counts(self, campaign_id: str, number: int, counts: dict[str, int]) -> None:
        run = self.run(campaign_id)
        if run is not None and run.number == number:   # as DynamoDB's condition: a newer run started meanwhile,
            self._set(run, by_webhook=_plus(run.by_webhook, counts))   # the count stays with the ledger

    def entries(self, campaign_id: str, contact_ids: Iterable[str], consistent: bool = False) -> dict[str, LedgerEntry]:
        ledger = self.ledgers.get(campaign_id, {})
        return {c: ledger[c] for c in contact_ids if c in ledger}

    def intend(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> set[str]:
        ledger = self.ledgers.get(campaign_id, {})    # as DynamoDB's condition: over an earlier run's skip too
        written = [e for e in entries        # (an enrolled one only over the page's `creating` entry: not forgotten)
                   if (not ledger[e.contact_id].rf_user_id if e.contact_id in ledger else not e.rf_user_id)]
        self._put(campaign_id, written)
        return {e.contact_id for e in written}

    def _put(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> None:
        ledger = self.ledgers.setdefault(campaign_id, {})
        for e in entries:
            ledger[e.contact_id] = e

    def adopt(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> set[str]:
        written = [e for e in entries if PersonRef(campaign_id, str(e.rf_user_id)) in self.tables.links]
        self._put(campaign_id, written)
        return {e.contact_id for e in written}

    def rewrite(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> set[str]:
        ledger = self.ledgers.get(campaign_id, {})
        written = [e for e in entries if e.contact_id in ledger and ledger[e.contact_id].rf_user_id == e.rf_user_id]
        self._put(campaign_id, written)
        return {e.contact_id for e in written}

    def move(self, campaign_id: str, from_id: str, entry: LedgerEntry) -> bool:
        ledger = self.ledgers.get(campaign_id, {})
        survivor, merged = ledger.get(entry.contact_id), ledger.get(from_id)
        if survivor is not None and survivor.rf_user_id or merged is None or merged.rf_user_id != entry.rf_user_id:
            return False
        del ledger[from_id]
        ledger[entry.contact_id] = entry
        return True

    def ledger(self, campaign_id: str, limit: Optional[int] = None) -> Iterable[LedgerEntry]:
        return sorted(self.ledgers.get(campaign_id, {}).values(), key=lambda e: e.contact_id)[:limit]

    def with_email(self, campaign_id: str, email: str) -> list[LedgerEntry]:
        return [e for e in self.ledgers.get(campaign_id, {}).values() if (e.email or "") == normal_email(email)]

    def forget(self, campaign_id: str, email: str, contact_ids: Iterable[str] = ()) -> list[LedgerEntry]:
        ledger, named = self.ledgers.get(campaign_id, {}), set(contact_ids)
        gone = [e for e in ledger.values() if (e.email or "") == normal_email(email) or e.contact_id in named]
        for e in gone:
            del ledger[e.contact_id]
        return gone


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.time, history_days: int = 400,
                 lease: float = DEFAULT_LEASE_SECONDS):
        self.tables = Tables()
        history, connections = MemoryHistory(self.tables, clock, history_days), MemoryConnections(clock)
        self.history: HistoryLog = history
        sync = MemorySync(self.tables, clock, lease)
        self.links: LinkRepository = MemoryLinks(self.tables, clock, history, sync.ledgers, lease)
        self.lookup: LinkLookup = MemoryLookup(self.tables, clock)
        self.connections: ConnectionRepository = connections
        self.settings: SettingsRepository = MemorySettings(clock, connections)
        self.cursor: Cursor = MemoryCursor()
        self.rates: RateWindows = MemoryRates()
        self.sync: SyncRepository = sync
        self.edge: EdgeLog = MemoryEdge(clock)
        self._throttle = _Throttle(clock)
        for repository in (history, self.links, self.lookup, connections, self.settings, self.cursor, self.rates, sync,
                           self.edge):
            setattr(repository, "_throttle", self._throttle)

    def throttle(self, until: float) -> None:
        """DynamoDB throttles the table until `until` (the store's clock): every call fails meanwhile, nothing done."""
        self._throttle.until = until


def _armed_state(link: Link) -> tuple:
    """What arm and hold_back hold to, as read: armed or not, under which rule, since when, and what it held, under
    which rule."""
    return link.armed, link.armed_by, link.armed_at, link.held_at, link.held_by
