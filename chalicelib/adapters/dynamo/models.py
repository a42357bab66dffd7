"""The PynamoDB items of the one table (keys.py names them), and the Link they store."""
from __future__ import annotations

from typing import Iterable, Optional, Type, TypeVar

from pynamodb.attributes import (BooleanAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute,
                                 UnicodeSetAttribute)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from ...domain.link import ContactState, Link, LinkStatus
from ...domain.qualification import QState
from .keys import Key


class _Meta:
    table_name = "rf-intercom-bridge-table"
    region: Optional[str] = None


class _Item(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class SettingsItem(_Item):
    document = JSONAttribute()
    workspace = UnicodeAttribute()
    version = NumberAttribute(default=1)
    updated_at = UnicodeAttribute()


class ConnectionItem(_Item):
    """Non-secret connection metadata only: never a token or a secret."""

    api_base = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="active")
    secrets = UnicodeSetAttribute(null=True)        # which are set in the secret store: token, client-secret
    updated_at = UnicodeAttribute(null=True)


class RFConfigItem(_Item):
    secrets = UnicodeSetAttribute(null=True)        # token, webhook-secret
    updated_at = UnicodeAttribute(null=True)


class WorkspacesItem(_Item):
    names = UnicodeSetAttribute(null=True)


class OAuthStateItem(_Item):
    expires_at = NumberAttribute()


class PendingIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "pending"
        projection = AllProjection()

    pending_pk = UnicodeAttribute(hash_key=True)
    pending_sk = UnicodeAttribute(range_key=True)


class LinkItem(_Item):
    campaign_id = UnicodeAttribute()
    rf_user_id = UnicodeAttribute()
    workspace = UnicodeAttribute()
    status = UnicodeAttribute()                     # domain.link.LinkStatus
    kind = UnicodeAttribute(null=True)              # lead | referrer
    email = UnicodeAttribute(null=True)
    contact_id = UnicodeAttribute(null=True)
    contact_role = UnicodeAttribute(null=True)
    contact_state = UnicodeAttribute(null=True)     # domain.link.ContactState
    baseline = JSONAttribute(null=True)
    armed = BooleanAttribute(null=True)
    qualification = UnicodeAttribute(null=True)     # domain.qualification.QState
    qualified_at = UnicodeAttribute(null=True)
    last_event_at = NumberAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    claim = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)
    joined_at = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    pending_pk = UnicodeAttribute(null=True)
    pending_sk = UnicodeAttribute(null=True)
    pending = PendingIndex()

    def to_link(self) -> Link:
        return Link(campaign_id=self.campaign_id, rf_user_id=self.rf_user_id, workspace=self.workspace,
                    status=LinkStatus(self.status), kind=self.kind, email=self.email, contact_id=self.contact_id,
                    contact_role=self.contact_role,
                    contact_state=ContactState(self.contact_state) if self.contact_state else None,
                    baseline=self.baseline, armed=bool(self.armed),
                    qualification=QState(self.qualification) if self.qualification else None,
                    qualified_at=self.qualified_at, last_event_at=self.last_event_at, reason=self.reason,
                    joined_at=self.joined_at, updated_at=self.updated_at)


class PointerItem(_Item):
    links = UnicodeSetAttribute(null=True)          # {"<campaign>#<rf id>", ...}; none for a marker


class NotificationItem(_Item):
    expires_at = NumberAttribute()


class HistoryItem(_Item):
    event = UnicodeAttribute()
    outcome = UnicodeAttribute()
    reason = UnicodeAttribute(null=True)
    details = JSONAttribute(null=True)
    repeats = NumberAttribute(null=True, attr_name="count")    # counted repeats (`note_repeat`)
    at = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)         # the table's TTL attribute


class RateItem(_Item):
    n = NumberAttribute(default=0)
    expires_at = NumberAttribute()


class CursorItem(_Item):
    position = UnicodeAttribute(null=True)


MODELS: tuple[Type[_Item], ...] = (SettingsItem, ConnectionItem, RFConfigItem, WorkspacesItem, LinkItem, PointerItem,
                                   NotificationItem, HistoryItem, RateItem, CursorItem, OAuthStateItem)


def bind(table_name: str) -> None:
    """Point every model at `table_name` (tests and the local stack create a table per stack)."""
    for model in MODELS:
        model.Meta.table_name = table_name
        model._connection = None


M = TypeVar("M", bound=_Item)


def batch_get(model: Type[M], keys: Iterable[Key]) -> list[M]:
    wanted = list(dict.fromkeys(keys))
    return list(model.batch_get(wanted)) if wanted else []


def get(model: Type[M], key: Key) -> Optional[M]:
    try:
        return model.get(*key)
    except model.DoesNotExist:
        return None


def conditional(exc: Exception) -> bool:
    """Did a write fail on its condition (alone, or inside a transaction)?"""
    code = getattr(exc, "cause_response_code", None)
    if code == "ConditionalCheckFailedException":
        return True
    return code == "TransactionCanceledException" and "ConditionalCheckFailed" in str(
        getattr(exc, "cause_response_message", ""))
