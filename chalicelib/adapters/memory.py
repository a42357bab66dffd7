"""The store's in-memory twin: the same repositories as adapters/dynamo, honouring the same
conditions (claims and their leases, event-time ordering, only-forward qualification, what a lost
claim raises), proved by the one contract suite that runs against both (tests/contract/). For fast
unit tests of the services; like the todo sample's in-memory DB beside its DynamoDB one."""
from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from ..domain.history import Entry, Recorded, iso
from ..domain.link import Claim, ContactState, JoinClaim, JoinResult, Link, LinkStatus, PendingPage, PersonRef
from ..domain.qualification import ENDINGS, QState, claimable
from ..ports.store import (KEEP, LEASE_SECONDS, Busy, Connection, ConnectionRepository, Cursor, Found,
                           HistoryLog, LinkLookup, LinkRepository, RateWindows, RFConnection, SettingsRepository,
                           StoredSettings, normal_email)


@dataclass
class _Held:
    """What the store keeps beside a link: its claim, and its place in the pending index."""

    link: Link
    claim: Optional[str] = None
    lease_until: Optional[float] = None
    pending: Optional[str] = None


@dataclass
class Tables:
    """Everything the twin holds (tests may look)."""

    links: dict[PersonRef, _Held] = field(default_factory=dict)
    contacts: dict[tuple[str, str], set[PersonRef]] = field(default_factory=dict)
    emails: dict[tuple[str, str], set[PersonRef]] = field(default_factory=dict)
    seen: dict[tuple[str, str], float] = field(default_factory=dict)         # -> expires at
    history: dict[PersonRef, list[Recorded]] = field(default_factory=dict)
    repeats: dict[tuple[PersonRef, str], Recorded] = field(default_factory=dict)


class MemoryHistory:
    def __init__(self, tables: Tables, clock: Callable[[], float], days: int = 400):
        self.tables, self.clock, self.days = tables, clock, days

    def _expires(self) -> Optional[int]:
        return int(self.clock()) + self.days * 86400 if self.days > 0 else None

    def append(self, ref: PersonRef, entries: Sequence[Entry]) -> None:
        at, expires = iso(self.clock()), self._expires()
        self.tables.history.setdefault(ref, []).extend(
            Recorded(at, e.event, e.outcome, e.reason, e.details, expires_at=expires) for e in entries)

    def note_repeat(self, ref: PersonRef, event: str, reason: str) -> None:
        before = self.tables.repeats.get((ref, event))
        self.tables.repeats[(ref, event)] = Recorded(iso(self.clock()), event, "ignored", reason,
                                                     count=(before.count or 0) + 1 if before else 1,
                                                     expires_at=self._expires())

    def entries(self, ref: PersonRef) -> list[Recorded]:
        repeats = [r for (who, _), r in sorted(self.tables.repeats.items()) if who == ref]
        return list(self.tables.history.get(ref, [])) + repeats      # counted repeats sort last, as in the table

    def erase(self, ref: PersonRef) -> int:
        gone = len(self.tables.history.pop(ref, []))
        for key in [k for k in self.tables.repeats if k[0] == ref]:
            del self.tables.repeats[key]
            gone += 1
        return gone


class MemoryLinks:
    def __init__(self, tables: Tables, clock: Callable[[], float], history: MemoryHistory):
        self.tables, self.clock, self.history = tables, clock, history

    def get(self, ref: PersonRef) -> Optional[Link]:
        held = self.tables.links.get(PersonRef(*ref))
        return held.link if held else None

    def get_many(self, refs: Iterable[PersonRef]) -> dict[PersonRef, Link]:
        return {link.ref: link for link in (self.get(r) for r in refs) if link is not None}

    def _write(self, ref: PersonRef, entries: Sequence[Entry], **changes: Any) -> Link:
        held = self.tables.links[ref]
        held.link = dataclasses.replace(held.link, updated_at=iso(self.clock()), **changes)
        self.history.append(ref, entries)
        return held.link

    def _point(self, index: dict[tuple[str, str], set[PersonRef]], key: tuple[str, str], ref: PersonRef) -> None:
        index.setdefault(key, set()).add(ref)

    # --- joining ---------------------------------------------------------------------------
    def claim(self, ref: PersonRef, workspace: str, lease: float = LEASE_SECONDS) -> Optional[JoinClaim]:
        now, held = self.clock(), self.tables.links.get(ref)
        free = held is None or held.link.status is LinkStatus.FAILED or (
            held.link.status is LinkStatus.IN_PROGRESS and (held.lease_until or 0) < now)
        if not free:
            assert held is not None
            if held.link.final:
                return None
            raise Busy("another worker is applying this join right now", retry_after=lease)
        token = uuid.uuid4().hex
        base = held.link if held else Link(ref.campaign_id, ref.rf_user_id, workspace, LinkStatus.IN_PROGRESS)
        link = dataclasses.replace(base, workspace=workspace, status=LinkStatus.IN_PROGRESS,
                                   joined_at=base.joined_at or iso(now), updated_at=iso(now))
        self.tables.links[ref] = _Held(link, token, now + lease, held.pending if held else None)
        return JoinClaim(ref, workspace, token)

    def _held_by(self, ref: PersonRef, token: str) -> _Held:
        held = self.tables.links.get(ref)
        if held is None or held.claim != token:
            raise Busy("lost the claim on this join to another worker")
        return held

    def note_created(self, claim: JoinClaim, contact_id: str, baseline: Any) -> None:
        held = self._held_by(claim.ref, claim.token)
        held.link = dataclasses.replace(held.link, contact_id=contact_id, baseline=baseline,
                                        reason="contact created; join not finished")

    def finish(self, claim: JoinClaim, result: JoinResult, entries: Sequence[Entry]) -> None:
        held = self._held_by(claim.ref, claim.token)
        held.claim = held.lease_until = None
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
        link = self._write(claim.ref, entries, **fields)
        if result.qualification is QState.PENDING:
            held.pending = f"{link.updated_at}#{claim.ref}"
        if result.contact_id:
            self._point(self.tables.contacts, (claim.workspace, result.contact_id), claim.ref)
        if result.email:
            self._point(self.tables.emails, (claim.workspace, normal_email(result.email)), claim.ref)

    # --- what Intercom says of the contact ---------------------------------------------------
    def move(self, link: Link, contact_id: str, entries: Sequence[Entry], role: Optional[str] = None) -> Link:
        old = link.contact_id
        if old == contact_id:
            return link
        stored = self.tables.links.get(link.ref)
        if stored is None or stored.link.contact_id != old:
            raise Busy("the link moved meanwhile (another worker applied the merge)")
        if old:
            self.tables.contacts.get((link.workspace, old), set()).discard(link.ref)
        self._point(self.tables.contacts, (link.workspace, contact_id), link.ref)
        return self._write(link.ref, entries, contact_id=contact_id, contact_state=None,
                           contact_role=role or stored.link.contact_role)

    def set_contact(self, link: Link, entries: Sequence[Entry], *, when: Optional[float] = None,
                    role: Optional[str] = KEEP, state: Optional[ContactState] = KEEP) -> Optional[Link]:
        changes: dict[str, Any] = {name: value for name, value in (("contact_role", role), ("contact_state", state))
                                   if value is not KEEP}
        stored = self.get(link.ref)
        if stored is None or when is not None and stored.last_event_at is not None and stored.last_event_at > when:
            self.history.note_repeat(link.ref, "older_event",
                                     "an Intercom event older than one already applied was ignored")
            return None
        if when is not None:
            changes["last_event_at"] = when
        return self._write(link.ref, entries, **changes)

    def arm(self, link: Link, entries: Sequence[Entry]) -> Link:
        if link.ref not in self.tables.links:
            return link                # erased meanwhile
        return self._write(link.ref, entries, armed=True)

    # --- qualification ------------------------------------------------------------------------
    def start_qualifying(self, link: Link, replay: bool = False, lease: float = LEASE_SECONDS) -> Claim | Link:
        now, held = self.clock(), self.tables.links.get(link.ref)
        if held is None:
            return link
        state = held.link.qualification
        took_over = state is QState.QUALIFYING and (held.lease_until or 0) < now
        if state not in claimable(replay) and not took_over:
            return held.link
        held.claim, held.lease_until = uuid.uuid4().hex, now + lease
        held.link = dataclasses.replace(held.link, qualification=QState.QUALIFYING)
        return Claim(held.claim, held.link, took_over)

    def finish_qualifying(self, claim: Claim, state: QState, entries: Sequence[Entry],
                          reason: Optional[str] = None) -> Link:
        if state not in ENDINGS:
            raise ValueError(f"a qualification claim cannot end in {state}")
        held = self.tables.links.get(claim.link.ref)
        if held is None or held.claim != claim.token:
            raise Busy("lost the qualification claim to another worker")
        held.claim = held.lease_until = None
        now = iso(self.clock())
        held.pending = f"{held.link.joined_at}#{claim.link.ref}" if state is QState.PENDING else None
        return self._write(claim.link.ref, entries, qualification=state, reason=reason or None,
                           qualified_at=now if state is QState.QUALIFIED else held.link.qualified_at)

    def unpend(self, link: Link, reason: str) -> Link:
        held = self.tables.links[link.ref]
        held.pending = None
        self.history.append(link.ref, [Entry("reconciliation", "stopped", reason)])
        return held.link

    def pending(self, after: Optional[str], limit: int) -> PendingPage:
        waiting = sorted((h.pending, h.link) for h in self.tables.links.values()
                         if h.pending is not None and (after is None or h.pending > after))[:limit]
        return PendingPage([link for _, link in waiting], waiting[-1][0] if waiting else None)

    def erase(self, link: Link) -> tuple[int, int]:
        entries = self.history.erase(link.ref)
        pointers = 0
        key = (link.workspace, link.contact_id or "")
        if link.ref in self.tables.contacts.get(key, set()):
            self.tables.contacts[key].discard(link.ref)
            pointers = 1
            if not self.tables.contacts[key]:
                del self.tables.contacts[key]
        self.tables.links.pop(link.ref, None)
        return entries, pointers


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

    def forget_email(self, workspace: str, email: str) -> None:
        self.tables.emails.pop((workspace, normal_email(email)), None)


class MemorySettings:
    def __init__(self, clock: Callable[[], float], connections: "MemoryConnections"):
        self.clock, self.connections = clock, connections
        self.stored: dict[str, StoredSettings] = {}

    def put(self, campaign_id: str, document: dict, workspace: str) -> int:
        version = (self.stored[campaign_id].version if campaign_id in self.stored else 0) + 1
        self.stored[campaign_id] = StoredSettings(campaign_id, workspace, document, version, iso(self.clock()))
        self.connections.register_workspace(workspace)
        return version

    def get(self, campaign_id: str) -> Optional[StoredSettings]:
        return self.stored.get(campaign_id)

    def documents(self, campaign_ids: Iterable[str]) -> dict[str, dict]:
        return {c: self.stored[c].document for c in campaign_ids if c in self.stored}


class MemoryConnections:
    def __init__(self) -> None:
        self.workspaces_: dict[str, Connection] = {}
        self.known: set[str] = set()
        self.rf_: Optional[RFConnection] = None
        self.used_states: set[str] = set()

    def put_workspace(self, workspace: str, secrets: Iterable[str] = (), api_base: Optional[str] = None) -> None:
        now = self.workspaces_.get(workspace) or Connection(workspace)
        self.workspaces_[workspace] = Connection(workspace, "active", api_base or now.api_base,
                                                 now.secrets | frozenset(secrets))
        self.register_workspace(workspace)

    def workspace(self, workspace: str) -> Optional[Connection]:
        return self.workspaces_.get(workspace)

    def disconnect_workspace(self, workspace: str) -> bool:
        now = self.workspaces_.get(workspace)
        if now is None:
            return False
        self.workspaces_[workspace] = Connection(workspace, "disconnected", now.api_base, now.secrets - {"token"})
        return True

    def use_oauth_state(self, nonce: str, expires_at: float) -> bool:
        if nonce in self.used_states:
            return False
        self.used_states.add(nonce)
        return True

    def register_workspace(self, workspace: str) -> None:
        self.known.add(workspace)

    def workspaces(self) -> set[str]:
        return set(self.known)

    def put_rf(self, secrets: Iterable[str] = ()) -> None:
        self.rf_ = RFConnection((self.rf_.secrets if self.rf_ else frozenset()) | frozenset(secrets))

    def rf(self) -> Optional[RFConnection]:
        return self.rf_


class MemoryCursor:
    def __init__(self) -> None:
        self.position: Optional[str] = None

    def get(self) -> Optional[str]:
        return self.position

    def set(self, position: Optional[str]) -> None:
        self.position = position


class MemoryRates:
    def __init__(self) -> None:
        self.windows: dict[tuple[str, int], int] = {}

    def take_slot(self, budget: str, window_start: int, limit: int, ttl: int) -> bool:
        used = self.windows.get((budget, window_start), 0)
        if used >= limit:
            return False
        self.windows[(budget, window_start)] = used + 1
        return True


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.time, history_days: int = 400):
        self.tables = Tables()
        history, connections = MemoryHistory(self.tables, clock, history_days), MemoryConnections()
        self.history: HistoryLog = history
        self.links: LinkRepository = MemoryLinks(self.tables, clock, history)
        self.lookup: LinkLookup = MemoryLookup(self.tables, clock)
        self.connections: ConnectionRepository = connections
        self.settings: SettingsRepository = MemorySettings(clock, connections)
        self.cursor: Cursor = MemoryCursor()
        self.rates: RateWindows = MemoryRates()


