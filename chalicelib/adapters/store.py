"""DynamoDB repositories (PynamoDB) over the one table of infra/template.yaml.

Item kinds (pk / sk):
  CAMPAIGN#<id> / SETTINGS             the settings document
  WORKSPACE#<app_id> / CONNECTION      Intercom token and client secret (never logged or returned)
  RF / CONFIG                          Referral Factory token and webhook secret
  CAMPAIGN#<id> / PERSON#<rf id>       the link RF person <-> Intercom contact (gsi1: by contact)
  HISTORY#<campaign>#<rf id> / <ts>    the person's history, read by `explain`
  RATE#<budget> / <window start>       shared rate-limit windows (TTL)
"""
from __future__ import annotations

import itertools
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

from pynamodb.attributes import (JSONAttribute, MapAttribute, NumberAttribute,
                                 UnicodeAttribute)
from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
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
    class Meta(_Meta):
        pass

    access_token = UnicodeAttribute()
    client_secret = UnicodeAttribute(null=True)
    api_base = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="active")
    updated_at = UnicodeAttribute()


class RFConfigItem(_Item):
    class Meta(_Meta):
        pass

    api_token = UnicodeAttribute()
    webhook_secret = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class ByContact(GlobalSecondaryIndex):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


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
    baseline = JSONAttribute(null=True)
    qualification = UnicodeAttribute(null=True)     # pending | qualifying | qualified (issue: qualification)
    reason = UnicodeAttribute(null=True)
    claim = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)
    joined_at = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    by_contact = ByContact()

    @property
    def final(self) -> bool:
        return self.status in ("linked", "ignored")


class HistoryItem(_Item):
    class Meta(_Meta):
        pass

    event = UnicodeAttribute()
    outcome = UnicodeAttribute()
    reason = UnicodeAttribute(null=True)
    details = JSONAttribute(null=True)
    count = NumberAttribute(null=True)
    at = UnicodeAttribute()


class RateItem(_Item):
    class Meta(_Meta):
        pass

    n = NumberAttribute(default=0)
    expires_at = NumberAttribute()


MODELS = (SettingsItem, ConnectionItem, RFConfigItem, LinkItem, HistoryItem, RateItem)


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


def history_pk(campaign_id: str, rf_user_id: str) -> str:
    return f"HISTORY#{campaign_id}#{rf_user_id}"


_SEQUENCE = itertools.count()


class Store:
    """The repository the services use. `clock` is injected."""

    def __init__(self, clock=time.time):
        self.clock = clock

    # --- settings and connections ----------------------------------------------------------
    def put_settings(self, campaign_id: str, document: dict, workspace: str) -> int:
        existing = self.get_settings_item(campaign_id)
        version = (existing.version if existing else 0) + 1
        SettingsItem(f"CAMPAIGN#{campaign_id}", "SETTINGS", document=document, workspace=workspace,
                     version=version, updated_at=iso(self.clock())).save()
        return version

    def get_settings_item(self, campaign_id: str) -> Optional[SettingsItem]:
        try:
            return SettingsItem.get(f"CAMPAIGN#{campaign_id}", "SETTINGS")
        except SettingsItem.DoesNotExist:
            return None

    def settings_documents(self, campaign_ids: Iterable[str]) -> dict[str, dict]:
        keys = [(f"CAMPAIGN#{c}", "SETTINGS") for c in set(campaign_ids)]
        return {i.pk.split("#", 1)[1]: i.document for i in SettingsItem.batch_get(keys)} if keys else {}

    def put_connection(self, workspace: str, access_token: str, client_secret: Optional[str] = None,
                       api_base: Optional[str] = None) -> None:
        ConnectionItem(f"WORKSPACE#{workspace}", "CONNECTION", access_token=access_token,
                       client_secret=client_secret, api_base=api_base, status="active",
                       updated_at=iso(self.clock())).save()

    def get_connection(self, workspace: str) -> Optional[ConnectionItem]:
        try:
            return ConnectionItem.get(f"WORKSPACE#{workspace}", "CONNECTION")
        except ConnectionItem.DoesNotExist:
            return None

    def put_rf_config(self, api_token: str, webhook_secret: str) -> None:
        RFConfigItem("RF", "CONFIG", api_token=api_token, webhook_secret=webhook_secret,
                     updated_at=iso(self.clock())).save()

    def get_rf_config(self) -> Optional[RFConfigItem]:
        try:
            return RFConfigItem.get("RF", "CONFIG")
        except RFConfigItem.DoesNotExist:
            return None

    # --- links -------------------------------------------------------------------------
    def links(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], LinkItem]:
        """Batch read of links by (campaign_id, rf_user_id)."""
        wanted = list({link_key(c, u) for c, u in keys})
        return {(i.campaign_id, i.rf_user_id): i for i in LinkItem.batch_get(wanted)} if wanted else {}

    def get_link(self, campaign_id: str, rf_user_id: str) -> Optional[LinkItem]:
        return self.links([(campaign_id, rf_user_id)]).get((campaign_id, rf_user_id))

    def claim_join(self, campaign_id: str, rf_user_id: str, workspace: str, lease: float = 120) -> Optional[str]:
        """Take the person for processing. Returns a claim token, or None when the join was
        already applied (a repeat). Raises Transient when another worker holds it right now."""
        now = self.clock()
        token = uuid.uuid4().hex
        pk, sk = link_key(campaign_id, rf_user_id)
        item = LinkItem(pk, sk, campaign_id=campaign_id, rf_user_id=rf_user_id, workspace=workspace,
                        status="in_progress", claim=token, lease_until=now + lease, joined_at=iso(now),
                        updated_at=iso(now))
        try:
            item.save(condition=LinkItem.pk.does_not_exist() | (LinkItem.status == "failed")
                      | ((LinkItem.status == "in_progress") & (LinkItem.lease_until < now)))
            return token
        except PutError as exc:
            if not _conditional(exc):
                raise
        current = self.get_link(campaign_id, rf_user_id)
        if current is not None and current.final:
            return None
        raise Transient("another worker is applying this join right now", retry_after=lease)

    def finish_join(self, campaign_id: str, rf_user_id: str, token: str, *, status: str, history: list[dict],
                    workspace: str, **fields: Any) -> None:
        """Record the join's result and its history in one transaction, only if we still hold it."""
        pk, sk = link_key(campaign_id, rf_user_id)
        now = self.clock()
        actions = [LinkItem.status.set(status), LinkItem.updated_at.set(iso(now)), LinkItem.claim.remove(),
                   LinkItem.lease_until.remove()]
        for name, value in fields.items():
            attr = getattr(LinkItem, name)
            actions.append(attr.set(value) if value is not None else attr.remove())
        if fields.get("contact_id"):
            actions += [LinkItem.gsi1pk.set(f"CONTACT#{workspace}#{fields['contact_id']}"),
                        LinkItem.gsi1sk.set(f"LINK#{campaign_id}#{rf_user_id}")]
        try:
            with TransactWrite(connection=self._connection()) as tx:
                tx.update(LinkItem(pk, sk), actions=actions, condition=LinkItem.claim == token)
                for entry in self._history_items(campaign_id, rf_user_id, history, now):
                    tx.save(entry)
        except TransactWriteError as exc:
            if _conditional(exc):
                raise Transient("lost the claim on this join to another worker") from None
            raise

    def links_for_contact(self, workspace: str, contact_id: str) -> list[LinkItem]:
        return list(LinkItem.by_contact.query(f"CONTACT#{workspace}#{contact_id}"))

    # --- history -------------------------------------------------------------------------
    def _history_items(self, campaign_id: str, rf_user_id: str, entries: list[dict], now: float):
        for entry in entries:
            # Sorts by time, then by write order within this container (same-millisecond entries).
            sk = f"{iso(now)}#{next(_SEQUENCE):09d}#{uuid.uuid4().hex[:4]}"
            yield HistoryItem(history_pk(campaign_id, rf_user_id), sk,
                              event=entry["event"], outcome=entry["outcome"], reason=entry.get("reason"),
                              details=entry.get("details"), at=iso(now))

    def append_history(self, campaign_id: str, rf_user_id: str, entries: list[dict]) -> None:
        with HistoryItem.batch_write() as batch:
            for item in self._history_items(campaign_id, rf_user_id, entries, self.clock()):
                batch.save(item)

    def note_repeat(self, campaign_id: str, rf_user_id: str, event: str, reason: str) -> None:
        """One history entry per person and event that counts the ignored repeats."""
        now = iso(self.clock())
        HistoryItem(history_pk(campaign_id, rf_user_id), f"~repeats#{event}").update(actions=[
            HistoryItem.event.set(event), HistoryItem.outcome.set("ignored"), HistoryItem.reason.set(reason),
            HistoryItem.count.add(1), HistoryItem.at.set(now)])

    def history(self, campaign_id: str, rf_user_id: str) -> list[HistoryItem]:
        return list(HistoryItem.query(history_pk(campaign_id, rf_user_id)))

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
    if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
        return "ConditionalCheckFailed" in str(getattr(exc, "cause_response_message", "")) or \
            code == "ConditionalCheckFailedException"
    return False
