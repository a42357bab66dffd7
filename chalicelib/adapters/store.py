"""DynamoDB repositories (PynamoDB) over the one table of infra/template.yaml.

Item kinds (pk / sk):
  CAMPAIGN#<id> / SETTINGS               the settings document
  WORKSPACE#<app_id> / CONNECTION        a connected Intercom workspace: api base, status, which secrets are
                                         set (the secrets themselves live in SSM, see adapters/secrets.py)
  WORKSPACES / INDEX                     the workspaces ever connected or configured (what `forget` visits)
  RF / CONFIG                            Referral Factory is connected: which secrets are set
  CAMPAIGN#<id> / PERSON#<rf id>         the link RF person <-> Intercom contact; while a lead awaits
                                         qualification it is in the sparse `pending` index
  CONTACT#<ws>#<contact id> / LINKS      which links point at a contact  } one BatchGetItem answers
  EMAIL#<ws>#<email> / LINKS             which links share an email      } "is this contact linked?"
  NOTIFICATION#<ws>#<id> / DONE          Intercom notifications already applied (TTL)
  HISTORY#<campaign>#<rf id> / <ts>      the person's history, read by `explain`; expires (TTL
                                         `expires_at`) after BRIDGE_HISTORY_DAYS
  RATE#<budget> / <window start>         shared rate-limit windows (TTL)
  RECONCILE / CURSOR                     where the reconciliation left off
"""
from __future__ import annotations

import itertools
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

from pynamodb.attributes import (BooleanAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute,
                                 UnicodeSetAttribute)
from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, TransactWriteError, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ..errors import Transient


class _Meta:
    table_name = "rf-intercom-bridge-table"
    region = None


class _Item(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class SettingsItem(_Item):
    class Meta(_Meta):
        pass

    document = JSONAttribute()
    workspace = UnicodeAttribute()
    version = NumberAttribute(default=1)
    updated_at = UnicodeAttribute()


class ConnectionItem(_Item):
    """Non-secret connection metadata only: never a token or a secret."""

    class Meta(_Meta):
        pass

    api_base = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="active")
    secrets = UnicodeSetAttribute(null=True)        # which are set in the secret store: token, client-secret
    updated_at = UnicodeAttribute(null=True)


class RFConfigItem(_Item):
    class Meta(_Meta):
        pass

    secrets = UnicodeSetAttribute(null=True)        # token, webhook-secret
    updated_at = UnicodeAttribute(null=True)


class WorkspacesItem(_Item):
    class Meta(_Meta):
        pass

    names = UnicodeSetAttribute(null=True)


class PendingIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "pending"
        projection = AllProjection()

    pending_pk = UnicodeAttribute(hash_key=True)
    pending_sk = UnicodeAttribute(range_key=True)


PENDING = "PENDING"


class LinkItem(_Item):
    class Meta(_Meta):
        pass

    campaign_id = UnicodeAttribute()
    rf_user_id = UnicodeAttribute()
    workspace = UnicodeAttribute()
    status = UnicodeAttribute()                     # in_progress | linked | ignored | failed
    kind = UnicodeAttribute(null=True)              # lead | referrer
    email = UnicodeAttribute(null=True)
    contact_id = UnicodeAttribute(null=True)
    contact_role = UnicodeAttribute(null=True)
    contact_state = UnicodeAttribute(null=True)     # deleted | archived when Intercom says so
    baseline = JSONAttribute(null=True)
    armed = BooleanAttribute(null=True)             # a non-target value was seen after joining
    qualification = UnicodeAttribute(null=True)     # pending | qualifying | qualified | failed
    qualified_at = UnicodeAttribute(null=True)
    last_event_at = NumberAttribute(null=True)      # newest Intercom event applied to role/state
    reason = UnicodeAttribute(null=True)
    claim = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)
    joined_at = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    pending_pk = UnicodeAttribute(null=True)
    pending_sk = UnicodeAttribute(null=True)
    pending = PendingIndex()

    @property
    def final(self) -> bool:
        return self.status in ("linked", "ignored")

    @property
    def ref(self) -> str:
        return f"{self.campaign_id}#{self.rf_user_id}"


class PointerItem(_Item):
    class Meta(_Meta):
        pass

    links = UnicodeSetAttribute(null=True)          # {"<campaign>#<rf id>", ...}


class NotificationItem(_Item):
    class Meta(_Meta):
        pass

    expires_at = NumberAttribute()


class HistoryItem(_Item):
    class Meta(_Meta):
        pass

    event = UnicodeAttribute()
    outcome = UnicodeAttribute()
    reason = UnicodeAttribute(null=True)
    details = JSONAttribute(null=True)
    count = NumberAttribute(null=True)
    at = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)         # the table's TTL attribute


class RateItem(_Item):
    class Meta(_Meta):
        pass

    n = NumberAttribute(default=0)
    expires_at = NumberAttribute()


class CursorItem(_Item):
    class Meta(_Meta):
        pass

    position = UnicodeAttribute(null=True)


MODELS = (SettingsItem, ConnectionItem, RFConfigItem, WorkspacesItem, LinkItem, PointerItem, NotificationItem,
          HistoryItem, RateItem, CursorItem)


def bind(table_name: str, region: Optional[str] = None) -> None:
    """Point every model at `table_name` (tests and the local stack create a table per stack)."""
    for model in MODELS:
        model.Meta.table_name = table_name
        if region:
            model.Meta.region = region
        model._connection = None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def link_key(campaign_id: str, rf_user_id: str) -> tuple[str, str]:
    return f"CAMPAIGN#{campaign_id}", f"PERSON#{rf_user_id}"


def contact_key(workspace: str, contact_id: str) -> tuple[str, str]:
    return f"CONTACT#{workspace}#{contact_id}", "LINKS"


def notification_key(workspace: str, notification_id: str) -> tuple[str, str]:
    return f"NOTIFICATION#{workspace}#{notification_id}", "DONE"


def email_key(workspace: str, email: str) -> tuple[str, str]:
    return f"EMAIL#{workspace}#{email.strip().lower()}", "LINKS"


def history_pk(campaign_id: str, rf_user_id: str) -> str:
    return f"HISTORY#{campaign_id}#{rf_user_id}"


_SEQUENCE = itertools.count()


def _batch_get(model, keys: Iterable[tuple[str, str]]) -> list:
    wanted = list(dict.fromkeys(keys))
    return list(model.batch_get(wanted)) if wanted else []


class Store:
    """The repository the services use. `clock` is injected; history entries expire after
    `history_days` (0: never)."""

    def __init__(self, clock=time.time, history_days: int = 400):
        self.clock = clock
        self.history_days = history_days

    # --- settings and connections ----------------------------------------------------------
    def put_settings(self, campaign_id: str, document: dict, workspace: str) -> int:
        existing = self.get_settings_item(campaign_id)
        version = (existing.version if existing else 0) + 1
        SettingsItem(f"CAMPAIGN#{campaign_id}", "SETTINGS", document=document, workspace=workspace,
                     version=version, updated_at=iso(self.clock())).save()
        self.register_workspace(workspace)
        return version

    def get_settings_item(self, campaign_id: str) -> Optional[SettingsItem]:
        try:
            return SettingsItem.get(f"CAMPAIGN#{campaign_id}", "SETTINGS")
        except SettingsItem.DoesNotExist:
            return None

    def settings_documents(self, campaign_ids: Iterable[str]) -> dict[str, dict]:
        items = _batch_get(SettingsItem, ((f"CAMPAIGN#{c}", "SETTINGS") for c in campaign_ids))
        return {i.pk.split("#", 1)[1]: i.document for i in items}

    def put_connection(self, workspace: str, secrets: Iterable[str] = (), api_base: Optional[str] = None) -> None:
        """Mark a workspace connected. What is not given (a secret, the api base) is kept."""
        actions = [ConnectionItem.status.set("active"), ConnectionItem.updated_at.set(iso(self.clock()))]
        if set(secrets):
            actions.append(ConnectionItem.secrets.add(set(secrets)))
        if api_base:
            actions.append(ConnectionItem.api_base.set(api_base))
        ConnectionItem(f"WORKSPACE#{workspace}", "CONNECTION").update(actions=actions)
        self.register_workspace(workspace)

    def register_workspace(self, workspace: str) -> None:
        WorkspacesItem("WORKSPACES", "INDEX").update(actions=[WorkspacesItem.names.add({workspace})])

    def workspaces(self) -> set[str]:
        try:
            return set(WorkspacesItem.get("WORKSPACES", "INDEX").names or ())
        except WorkspacesItem.DoesNotExist:
            return set()

    def get_connection(self, workspace: str) -> Optional[ConnectionItem]:
        try:
            return ConnectionItem.get(f"WORKSPACE#{workspace}", "CONNECTION")
        except ConnectionItem.DoesNotExist:
            return None

    def put_rf_config(self, secrets: Iterable[str] = ()) -> None:
        actions = [RFConfigItem.updated_at.set(iso(self.clock()))]
        if set(secrets):
            actions.append(RFConfigItem.secrets.add(set(secrets)))
        RFConfigItem("RF", "CONFIG").update(actions=actions)

    def get_rf_config(self) -> Optional[RFConfigItem]:
        try:
            return RFConfigItem.get("RF", "CONFIG")
        except RFConfigItem.DoesNotExist:
            return None

    # --- links -------------------------------------------------------------------------
    def links(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], LinkItem]:
        """Batch read of links by (campaign_id, rf_user_id)."""
        return {(i.campaign_id, i.rf_user_id): i for i in _batch_get(LinkItem, (link_key(c, u) for c, u in keys))}

    def links_by_ref(self, refs: Iterable[str]) -> dict[str, LinkItem]:
        return {f"{c}#{u}": item for (c, u), item in self.links(r.split("#", 1) for r in refs).items()}

    def get_link(self, campaign_id: str, rf_user_id: str) -> Optional[LinkItem]:
        return self.links([(campaign_id, rf_user_id)]).get((campaign_id, rf_user_id))

    def pointers(self, keys: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
        """One batch read of key-only items (contact/email pointers, notification markers):
        pk -> set of link refs (empty for a marker). Absent keys are absent."""
        return {p.pk: set(p.links or ()) for p in _batch_get(PointerItem, keys)}

    def claim_join(self, campaign_id: str, rf_user_id: str, workspace: str, lease: float = 120) -> Optional[str]:
        """Take the person for processing. Returns a claim token, or None when the join was
        already applied (a repeat). Raises Transient when another worker holds it right now."""
        now = self.clock()
        token = uuid.uuid4().hex
        # An update, not a put: what an earlier try recorded (the contact it created, its
        # baseline, when the person joined) survives the new claim.
        try:
            LinkItem(*link_key(campaign_id, rf_user_id)).update(actions=[
                LinkItem.campaign_id.set(campaign_id), LinkItem.rf_user_id.set(rf_user_id),
                LinkItem.workspace.set(workspace), LinkItem.status.set("in_progress"), LinkItem.claim.set(token),
                LinkItem.lease_until.set(now + lease), LinkItem.joined_at.set(LinkItem.joined_at | iso(now)),
                LinkItem.updated_at.set(iso(now))],
                condition=LinkItem.pk.does_not_exist() | (LinkItem.status == "failed")
                | ((LinkItem.status == "in_progress") & (LinkItem.lease_until < now)))
            return token
        except UpdateError as exc:
            if not _conditional(exc):
                raise
        current = self.get_link(campaign_id, rf_user_id)
        if current is not None and current.final:
            return None
        raise Transient("another worker is applying this join right now", retry_after=lease)

    def note_created(self, campaign_id: str, rf_user_id: str, token: str, contact_id: str, baseline: Any) -> None:
        """Remember at once the contact this try created, so a crash before the end cannot make
        our own contact look like someone else's on the next try."""
        LinkItem(*link_key(campaign_id, rf_user_id)).update(
            actions=[LinkItem.contact_id.set(contact_id), LinkItem.baseline.set(baseline),
                     LinkItem.reason.set("contact created; join not finished")],
            condition=LinkItem.claim == token)

    def finish_join(self, campaign_id: str, rf_user_id: str, token: str, *, status: str, history: list[dict],
                    workspace: str, **fields: Any) -> None:
        """Record the join's result, its pointers and its history in one transaction, only if we
        still hold the claim."""
        pk, sk = link_key(campaign_id, rf_user_id)
        now = self.clock()
        ref = f"{campaign_id}#{rf_user_id}"
        actions = [LinkItem.status.set(status), LinkItem.updated_at.set(iso(now)), LinkItem.claim.remove(),
                   LinkItem.lease_until.remove()]
        for name, value in fields.items():
            attr = getattr(LinkItem, name)
            actions.append(attr.set(value) if value is not None else attr.remove())
        if fields.get("qualification") == "pending":
            actions += [LinkItem.pending_pk.set(PENDING), LinkItem.pending_sk.set(f"{iso(now)}#{ref}")]
        try:
            with TransactWrite(connection=self._connection()) as tx:
                tx.update(LinkItem(pk, sk), actions=actions, condition=LinkItem.claim == token)
                if fields.get("contact_id"):
                    tx.update(PointerItem(*contact_key(workspace, fields["contact_id"])),
                              actions=[PointerItem.links.add({ref})])
                if fields.get("email"):
                    tx.update(PointerItem(*email_key(workspace, fields["email"])),
                              actions=[PointerItem.links.add({ref})])
                for entry in self._history_items(campaign_id, rf_user_id, history, now):
                    tx.save(entry)
        except TransactWriteError as exc:
            if _conditional(exc):
                raise Transient("lost the claim on this join to another worker") from None
            raise

    def move_link(self, link: LinkItem, new_contact_id: str, history: list[dict], role: Optional[str] = None) -> None:
        """The contact was merged into another: point the link (and the pointers) at the survivor."""
        now = self.clock()
        old = link.contact_id
        if old == new_contact_id:
            return
        actions = [LinkItem.contact_id.set(new_contact_id), LinkItem.updated_at.set(iso(now)),
                   LinkItem.contact_state.remove()]   # the survivor is alive, whatever happened to the old one
        if role:
            actions.append(LinkItem.contact_role.set(role))
        with TransactWrite(connection=self._connection()) as tx:
            tx.update(link, actions=actions, condition=LinkItem.contact_id == old)
            if old:
                tx.update(PointerItem(*contact_key(link.workspace, old)), actions=[PointerItem.links.delete({link.ref})])
            tx.update(PointerItem(*contact_key(link.workspace, new_contact_id)),
                      actions=[PointerItem.links.add({link.ref})])
            for entry in self._history_items(link.campaign_id, link.rf_user_id, history, now):
                tx.save(entry)
        link.contact_id = new_contact_id
        link.contact_state = None
        if role:
            link.contact_role = role

    def set_link(self, link: LinkItem, history: list[dict], when: Optional[float] = None, **fields: Any) -> bool:
        """Attribute changes (contact role/state, armed) with their history. With `when` (the
        event's time), an event older than the newest one applied changes nothing."""
        now = self.clock()
        actions = [LinkItem.updated_at.set(iso(now))]
        for name, value in fields.items():
            attr = getattr(LinkItem, name)
            actions.append(attr.set(value) if value is not None else attr.remove())
        condition = LinkItem.pk.exists()
        if when is not None:
            actions.append(LinkItem.last_event_at.set(when))
            condition &= LinkItem.last_event_at.does_not_exist() | (LinkItem.last_event_at <= when)
        try:
            with TransactWrite(connection=self._connection()) as tx:
                tx.update(link, actions=actions, condition=condition)
                for entry in self._history_items(link.campaign_id, link.rf_user_id, history, now):
                    tx.save(entry)
        except TransactWriteError as exc:
            if not _conditional(exc):
                raise
            self.note_repeat(link.campaign_id, link.rf_user_id, "older_event",
                             "an Intercom event older than one already applied was ignored")
            return False
        for name, value in fields.items():
            setattr(link, name, value)
        return True

    def unpend(self, link: LinkItem, reason: str) -> None:
        """Take a link out of the reconciliation index."""
        with TransactWrite(connection=self._connection()) as tx:
            tx.update(link, actions=[LinkItem.pending_pk.remove(), LinkItem.pending_sk.remove()])
            for entry in self._history_items(link.campaign_id, link.rf_user_id,
                                             [{"event": "reconciliation", "outcome": "stopped", "reason": reason}],
                                             self.clock()):
                tx.save(entry)

    # --- qualification: pending -> qualifying -> qualified, by conditional writes -------------
    def start_qualifying(self, link: LinkItem, lease: float = 120, allow_failed: bool = False) -> Optional[str]:
        """Returns a claim token, or None when already qualified (or failed, unless this is a
        replay) or another worker holds it."""
        now = self.clock()
        token = uuid.uuid4().hex
        states = ("pending", "failed") if allow_failed else ("pending",)
        try:
            link.update(actions=[LinkItem.qualification.set("qualifying"), LinkItem.claim.set(token),
                                 LinkItem.lease_until.set(now + lease)],
                        condition=LinkItem.qualification.is_in(*states)
                        | ((LinkItem.qualification == "qualifying") & (LinkItem.lease_until < now)))
            return token
        except UpdateError as exc:
            if _conditional(exc):
                link.refresh()
                return None
            raise

    def finish_qualifying(self, link: LinkItem, token: str, *, state: str, history: list[dict],
                          reason: Optional[str] = None) -> None:
        """state: qualified | failed (final until a replay) | pending (released for a retry)."""
        now = self.clock()
        actions = [LinkItem.qualification.set(state), LinkItem.claim.remove(), LinkItem.lease_until.remove(),
                   LinkItem.updated_at.set(iso(now))]
        actions.append(LinkItem.reason.set(reason) if reason else LinkItem.reason.remove())
        if state == "qualified":
            actions.append(LinkItem.qualified_at.set(iso(now)))
        if state == "pending":
            actions += [LinkItem.pending_pk.set(PENDING), LinkItem.pending_sk.set(f"{link.joined_at}#{link.ref}")]
        else:  # qualified, or failed: reconciliation must not retry a 4xx every run
            actions += [LinkItem.pending_pk.remove(), LinkItem.pending_sk.remove()]
        with TransactWrite(connection=self._connection()) as tx:
            tx.update(link, actions=actions, condition=LinkItem.claim == token)
            for entry in self._history_items(link.campaign_id, link.rf_user_id, history, now):
                tx.save(entry)
        link.qualification = state

    def pending_links(self, after: Optional[str], limit: int) -> list[LinkItem]:
        """Pending leads, oldest first, from the sparse index (never a scan)."""
        condition = LinkItem.pending_sk > after if after else None
        return list(LinkItem.pending.query(PENDING, range_key_condition=condition, limit=limit))

    def get_cursor(self) -> Optional[str]:
        try:
            return CursorItem.get("RECONCILE", "CURSOR").position
        except CursorItem.DoesNotExist:
            return None

    def set_cursor(self, position: Optional[str]) -> None:
        CursorItem("RECONCILE", "CURSOR", position=position).save()

    # --- Intercom notifications already applied ------------------------------------------------
    def mark_notification(self, workspace: str, notification_id: str, keep_days: int = 7) -> None:
        NotificationItem(*notification_key(workspace, notification_id), expires_at=int(self.clock()) + keep_days * 86400).save()

    # --- history -------------------------------------------------------------------------
    def _history_items(self, campaign_id: str, rf_user_id: str, entries: list[dict], now: float):
        for entry in entries:
            # Sorts by time, then by write order within this container (same-millisecond entries).
            sk = f"{iso(now)}#{next(_SEQUENCE):09d}#{uuid.uuid4().hex[:4]}"
            yield HistoryItem(history_pk(campaign_id, rf_user_id), sk,
                              event=entry["event"], outcome=entry["outcome"], reason=entry.get("reason"),
                              details=entry.get("details"), at=iso(now), expires_at=self._expires(now))

    def _expires(self, now: float) -> Optional[int]:
        return int(now) + self.history_days * 86400 if self.history_days > 0 else None

    def append_history(self, campaign_id: str, rf_user_id: str, entries: list[dict]) -> None:
        with HistoryItem.batch_write() as batch:
            for item in self._history_items(campaign_id, rf_user_id, entries, self.clock()):
                batch.save(item)

    def note_repeat(self, campaign_id: str, rf_user_id: str, event: str, reason: str) -> None:
        """One history entry per person and event that counts the ignored repeats."""
        now = iso(self.clock())
        expires = self._expires(self.clock())
        HistoryItem(history_pk(campaign_id, rf_user_id), f"~repeats#{event}").update(actions=[
            HistoryItem.event.set(event), HistoryItem.outcome.set("ignored"), HistoryItem.reason.set(reason),
            HistoryItem.count.add(1), HistoryItem.at.set(now),
            HistoryItem.expires_at.set(expires) if expires else HistoryItem.expires_at.remove()])

    def history(self, campaign_id: str, rf_user_id: str) -> list[HistoryItem]:
        return list(HistoryItem.query(history_pk(campaign_id, rf_user_id)))

    # --- erasure (`bridge forget`) ----------------------------------------------------------
    def erase_link(self, link: LinkItem) -> tuple[int, int]:
        """Delete a person's history, its contact pointer's reference and the link itself.
        Returns (history entries, pointers) removed. Safe to repeat."""
        entries = list(HistoryItem.query(history_pk(link.campaign_id, link.rf_user_id),
                                         attributes_to_get=["pk", "sk"]))
        with HistoryItem.batch_write() as batch:
            for entry in entries:
                batch.delete(entry)
        pointers = 0
        if link.contact_id:
            pointers += self.drop_reference(contact_key(link.workspace, link.contact_id), link.ref)
        link.delete()
        return len(entries), pointers

    def drop_reference(self, key: tuple[str, str], ref: str) -> int:
        """Remove one link from a pointer; delete the pointer when no link is left. 1 if it was there."""
        try:
            PointerItem(*key).update(actions=[PointerItem.links.delete({ref})], condition=PointerItem.pk.exists())
        except UpdateError as exc:
            if _conditional(exc):
                return 0
            raise
        try:
            PointerItem(*key).delete(condition=PointerItem.links.does_not_exist())
        except DeleteError as exc:
            if not _conditional(exc):
                raise
        return 1

    def delete_pointer(self, key: tuple[str, str]) -> None:
        PointerItem(*key).delete()

    # --- rate-limit windows ----------------------------------------------------------------
    def take_slot(self, budget: str, window_start: int, limit: int, ttl: int) -> bool:
        try:
            RateItem(f"RATE#{budget}", str(window_start)).update(
                actions=[RateItem.n.add(1), RateItem.expires_at.set(ttl)],
                condition=RateItem.n.does_not_exist() | (RateItem.n < limit))
            return True
        except UpdateError as exc:
            if _conditional(exc):
                return False
            raise

    @staticmethod
    def _connection() -> Connection:
        return LinkItem._get_connection().connection


def _conditional(exc: Exception) -> bool:
    code = getattr(exc, "cause_response_code", None)
    if code == "ConditionalCheckFailedException":
        return True
    return code == "TransactionCanceledException" and "ConditionalCheckFailed" in str(
        getattr(exc, "cause_response_message", ""))
