"""The small repositories: campaign settings, connections, the reconciliation cursor, and the
shared rate-limit windows."""
from __future__ import annotations

from functools import partial
from typing import Callable, Iterable, Optional

from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from ...domain.budget import BudgetState
from ...domain.history import iso
from ...domain.oauth import Outcome
from ...ports.store import (LIST_CLOCK_SKEW, AttributeList, Connection, CountBackfill, OAuthTicket, RFConnection,
                             StoredSettings)
from ...ports.store import PENDING_SWEEP
from .keys import (RF_KEY, WORKSPACES_KEY, budget_state_key, campaign_of_settings, campaigns_key, connection_key,
                   cursor_key, deleted_settings_key, oauth_state_key, oauth_ticket_key, rate_key, rollback_settings_key, settings_key)
from .models import (BudgetStateItem, CampaignsItem, ConnectionItem, CursorItem, OAuthStateItem, OAuthTicketItem, RateItem, RFConfigItem,
                     SettingsDeletedItem, SettingsItem, WorkspacesItem, applied, batch_get, get)


class DynamoConnections:
    def __init__(self, clock: Callable[[], float]):
        self.clock = clock

    def put_workspace(self, workspace: str, secrets: Iterable[str] = (), api_base: Optional[str] = None,
                      token_app: Optional[str] = None) -> None:
        given = set(secrets)
        actions: list[Action] = [ConnectionItem.status.set("active"),
                                 ConnectionItem.updated_at.set(iso(self.clock()))]
        if given:
            actions.append(ConnectionItem.secrets.add(given))
        if api_base:
            actions.append(ConnectionItem.api_base.set(api_base))
        if token_app:
            actions.append(ConnectionItem.token_app.set(token_app))
        ConnectionItem(*connection_key(workspace)).update(actions=actions)
        self.register_workspace(workspace)

    def mark(self, workspace: str, secrets: Iterable[str]) -> None:
        applied(lambda: ConnectionItem(*connection_key(workspace)).update(
            actions=[ConnectionItem.secrets.add(set(secrets)), ConnectionItem.updated_at.set(iso(self.clock()))],
            condition=ConnectionItem.pk.exists()))

    def unmark(self, workspace: str, secrets: Iterable[str], read: Optional[Connection] = None) -> bool:
        condition = ConnectionItem.pk.exists()
        if read is not None:       # the record as read: its status, the very secrets set, the token's app
            token_app = ConnectionItem.token_app
            condition &= (ConnectionItem.status == read.status) & (
                token_app == read.token_app if read.token_app else token_app.does_not_exist())
            condition &= (size(ConnectionItem.secrets) == len(read.secrets)) if read.secrets else \
                ConnectionItem.secrets.does_not_exist()
            for name in sorted(read.secrets):
                condition &= ConnectionItem.secrets.contains(name)
        return applied(lambda: ConnectionItem(*connection_key(workspace)).update(
            actions=[ConnectionItem.secrets.delete(set(secrets)), ConnectionItem.updated_at.set(iso(self.clock()))],
            condition=condition))

    def workspace(self, workspace: str) -> Optional[Connection]:
        item = get(ConnectionItem, connection_key(workspace))
        if item is None:
            return None
        listed = (AttributeList(item.attributes, float(item.attributes_read_at))
                  if item.attributes is not None and item.attributes_read_at is not None else None)
        return Connection(workspace, item.status, item.api_base, frozenset(item.secrets or ()), listed, item.token_app)

    def keep_attributes(self, workspace: str, listed: AttributeList) -> None:
        read_at = ConnectionItem.attributes_read_at
        applied(lambda: ConnectionItem(*connection_key(workspace)).update(
            actions=[ConnectionItem.attributes.set(listed.attributes), read_at.set(listed.read_at)],
            condition=ConnectionItem.pk.exists() & (read_at.does_not_exist() | (read_at <= listed.read_at)
                                                    | (read_at > listed.read_at + LIST_CLOCK_SKEW))))

    def disconnect_workspace(self, workspace: str) -> bool:
        return applied(lambda: ConnectionItem(*connection_key(workspace)).update(
            actions=[ConnectionItem.status.set("disconnected"), ConnectionItem.secrets.delete({"token"}),
                     ConnectionItem.token_app.remove(), ConnectionItem.updated_at.set(iso(self.clock()))],
            condition=ConnectionItem.pk.exists()))

    def use_oauth_state(self, nonce: str, expires_at: float) -> bool:
        return applied(lambda: OAuthStateItem(*oauth_state_key(nonce), expires_at=int(expires_at)).save(
            condition=OAuthStateItem.pk.does_not_exist()))

    def end_oauth_state(self, nonce: str, expires_at: float, outcome: Outcome) -> None:
        # The used state put again, with its expiry and the outcome (a put: the callback's one write
        # there), only while it is kept and has none.
        applied(lambda: OAuthStateItem(*oauth_state_key(nonce), expires_at=int(expires_at), ended_at=outcome.at,
                                       workspace=outcome.workspace, name=outcome.name,
                                       stopped=outcome.stopped or None).save(
            condition=OAuthStateItem.pk.exists() & OAuthStateItem.ended_at.does_not_exist()))

    def oauth_state_outcome(self, nonce: str) -> Optional[Outcome]:
        item = get(OAuthStateItem, oauth_state_key(nonce), consistent=True)
        if item is None or item.ended_at is None:
            return None
        return Outcome(int(item.ended_at), item.workspace, item.name, bool(item.stopped))

    def add_oauth_ticket(self, ticket: OAuthTicket) -> None:
        if not applied(lambda: OAuthTicketItem(*oauth_ticket_key(ticket.ticket), workspace=ticket.workspace,
                                               expires_at=ticket.expires_at).save(
                condition=OAuthTicketItem.pk.does_not_exist())):
            raise ValueError("this ticket id is kept already")

    def oauth_ticket(self, ticket: str, now: float) -> Optional[OAuthTicket]:
        item = get(OAuthTicketItem, oauth_ticket_key(ticket), consistent=True)
        if item is None or now >= item.expires_at:       # TTL removes expired items late
            return None
        return OAuthTicket(ticket, item.workspace, int(item.expires_at))

    def spend_oauth_ticket(self, ticket: str, now: float) -> Optional[OAuthTicket]:
        # Read (what it allows), then spend by a delete that holds only while it is there and unexpired
        # (TTL removes expired items late): of two starts with one ticket, one delete goes through.
        kept = self.oauth_ticket(ticket, now)
        if kept is None or not applied(lambda: OAuthTicketItem(*oauth_ticket_key(ticket)).delete(
                condition=OAuthTicketItem.pk.exists() & (OAuthTicketItem.expires_at > int(now)))):
            return None
        return kept

    def register_workspace(self, workspace: str) -> None:
        WorkspacesItem(*WORKSPACES_KEY).update(actions=[WorkspacesItem.names.add({workspace})])

    def workspaces(self) -> set[str]:
        item = get(WorkspacesItem, WORKSPACES_KEY)
        return set(item.names or ()) if item is not None else set()

    def put_rf(self, secrets: Iterable[str] = ()) -> None:
        given = set(secrets)
        actions: list[Action] = [RFConfigItem.secrets.add(given)] if given else []
        if "token" in given:
            actions.append(RFConfigItem.token_at.set(iso(self.clock())))
        if actions:
            RFConfigItem(*RF_KEY).update(actions=actions)

    def rf(self) -> Optional[RFConnection]:
        item = get(RFConfigItem, RF_KEY)
        return RFConnection(frozenset(item.secrets or ()), item.token_at) if item is not None else None


class DynamoSettings:
    def __init__(self, clock: Callable[[], float], connections: DynamoConnections):
        self.clock, self.connections = clock, connections

    def put(self, campaign_id: str, document: dict, workspace: str,
            count_backfill: Optional[CountBackfill] = None) -> int:
        version = self._last_version(campaign_id)[1] + 1
        at = iso(self.clock())
        with _both() as tx:
            for key in _settings_keys(campaign_id):
                tx.save(SettingsItem(*key, document=document, workspace=workspace, version=version, updated_at=at,
                                     count_backfill_attribute=count_backfill.attribute if count_backfill else None,
                                     count_backfill_since=count_backfill.since if count_backfill else None))
        self.connections.register_workspace(workspace)
        CampaignsItem(*campaigns_key(workspace)).update(actions=[CampaignsItem.names.add({campaign_id})])
        return version

    @staticmethod
    def _last_version(campaign_id: str) -> tuple[Optional[int], int]:
        """The version of the settings stored (None: none), and the last version the campaign's settings had: of
        those, of the ones a version rolled back to wrote in its partition since, or of the deleted ones (a version
        never names two documents)."""
        # One strongly consistent BatchGetItem of the three (not three GetItems): each is read for its version alone,
        # which the deleted version's model reads of a settings item too.
        keys = settings_key(campaign_id), rollback_settings_key(campaign_id), deleted_settings_key(campaign_id)
        versions = {(i.pk, i.sk): int(i.version) for i in batch_get(SettingsDeletedItem, keys, consistent=True)
                    if i.version is not None}
        return versions.get(keys[0]), max((versions.get(key, 0) for key in keys), default=0)

    def campaigns(self, workspace: str) -> set[str]:
        item = get(CampaignsItem, campaigns_key(workspace))
        return set(item.names or ()) if item is not None else set()

    def get(self, campaign_id: str) -> Optional[StoredSettings]:
        item = get(SettingsItem, settings_key(campaign_id))
        if item is None:
            return None
        owed = (CountBackfill(item.count_backfill_attribute, item.count_backfill_since)
                if item.count_backfill_attribute and item.count_backfill_since else None)
        return StoredSettings(campaign_id, item.workspace, item.document, int(item.version), item.updated_at, owed)

    def count_backfilled(self, campaign_id: str, owed: CountBackfill) -> bool:
        owes = (SettingsItem.count_backfill_attribute == owed.attribute) & (SettingsItem.count_backfill_since == owed.since)

        def cleared() -> list[Action]:
            return [SettingsItem.count_backfill_attribute.remove(), SettingsItem.count_backfill_since.remove()]

        def both() -> None:
            with _both() as tx:
                for key in _settings_keys(campaign_id):
                    tx.update(SettingsItem(*key), actions=cleared(), condition=owes)
        # The rollback key owes no longer what this one does only when a version before this one wrote (or
        # deleted) it since: it keeps what that version wrote, and this key alone is cleared.
        return applied(both) or applied(lambda: SettingsItem(*settings_key(campaign_id)).update(
            actions=cleared(), condition=owes))

    def delete(self, campaign_id: str) -> bool:
        """Both keys deleted, and the last version kept apart (SETTINGS#<id> / DELETED, which neither this version
        nor one before reads as settings), in one transaction."""
        def both(stored: int, last: int) -> None:
            with _both() as tx:
                tx.delete(SettingsItem(*settings_key(campaign_id)), condition=SettingsItem.version == stored)
                tx.delete(SettingsItem(*rollback_settings_key(campaign_id)))
                tx.save(SettingsDeletedItem(*deleted_settings_key(campaign_id), version=last,
                                            deleted_at=iso(self.clock())))
        for _ in range(5):          # (settings applied between the read and the delete: read again)
            stored, last = self._last_version(campaign_id)
            if stored is None:
                return False
            if applied(partial(both, stored, last)):
                return True
        raise RuntimeError(f"the settings of campaign {campaign_id} changed at each try to delete them: try again")

    def documents(self, campaign_ids: Iterable[str]) -> dict[str, dict]:
        items = batch_get(SettingsItem, (settings_key(c) for c in campaign_ids))
        return {campaign_of_settings(i.pk): i.document for i in items}


def _settings_keys(campaign_id: str) -> tuple[tuple[str, str], ...]:
    """Where settings are written: their own partition, and where versions before 2026-11-28 read them (keys.py)."""
    return settings_key(campaign_id), rollback_settings_key(campaign_id)


def _both() -> TransactWrite:
    """One transaction for a write of settings at both their keys (all or nothing)."""
    return TransactWrite(connection=SettingsItem._get_connection().connection)


class DynamoCursor:
    def get(self, name: str = PENDING_SWEEP) -> Optional[str]:
        item = get(CursorItem, cursor_key(name))
        return item.position if item is not None else None

    def set(self, position: Optional[str], name: str = PENDING_SWEEP) -> None:
        CursorItem(*cursor_key(name), position=position).save()

    def clear(self, name: str, position: str) -> bool:
        return applied(lambda: CursorItem(*cursor_key(name)).save(condition=CursorItem.position == position))


class DynamoRates:
    def reserve(self, budget: str, slice_id: int, want: int, cap: int, ttl: int) -> int:
        # One unconditional ADD that answers the new count: our slots are the ones between the count
        # before us and ours, so callers together never get more than `cap`, and a full slice costs
        # one write (a conditional one would cost more tries to find how many are left).
        item = RateItem(*rate_key(budget, slice_id))
        item.update(actions=[RateItem.n.add(want), RateItem.cap.set(cap), RateItem.expires_at.set(ttl)])
        before = int(item.n) - want
        return max(0, min(want, cap - before))

    def used(self, budget: str, slice_ids: Iterable[int]) -> int:
        items = batch_get(RateItem, (rate_key(budget, s) for s in slice_ids))
        return sum(min(int(i.n), int(i.cap if i.cap is not None else i.n)) for i in items)

    def state(self, budget: str) -> BudgetState:
        item = get(BudgetStateItem, budget_state_key(budget))
        if item is None:
            return BudgetState()
        return BudgetState(pause_until=item.pause_until or 0.0, share=1.0 if item.share is None else item.share,
                           lowered_at=item.lowered_at or 0.0, strikes=int(item.strikes or 0),
                           blocked_until=item.blocked_until or 0.0, blocked_since=item.blocked_since,
                           blocked_reason=item.blocked_reason)

    def pause(self, budget: str, until: float, now: float, share: float, strikes: int, window: float) -> bool:
        item = BudgetStateItem(*budget_state_key(budget))
        if _update(item, [BudgetStateItem.pause_until.set(until), BudgetStateItem.share.set(share),
                          BudgetStateItem.lowered_at.set(now), BudgetStateItem.strikes.set(strikes)],
                   (BudgetStateItem.pause_until.does_not_exist() | (BudgetStateItem.pause_until < now))
                   & (BudgetStateItem.lowered_at.does_not_exist() | (BudgetStateItem.lowered_at <= now - window))):
            return True
        _update(item, [BudgetStateItem.pause_until.set(until)], BudgetStateItem.pause_until < until)
        return False

    def block(self, budget: str, until: float, now: float, reason: str) -> None:
        BudgetStateItem(*budget_state_key(budget)).update(actions=[
            BudgetStateItem.blocked_until.set(until), BudgetStateItem.blocked_reason.set(reason),
            BudgetStateItem.blocked_since.set(BudgetStateItem.blocked_since | now)])

    def probe(self, budget: str, now: float, until: float) -> bool:
        return _update(BudgetStateItem(*budget_state_key(budget)), [BudgetStateItem.blocked_until.set(until)],
                       BudgetStateItem.blocked_since.exists() & (BudgetStateItem.blocked_until <= now))

    def unblock(self, budget: str) -> None:
        BudgetStateItem(*budget_state_key(budget)).update(actions=[
            BudgetStateItem.blocked_until.remove(), BudgetStateItem.blocked_since.remove(),
            BudgetStateItem.blocked_reason.remove()])


def _update(item: BudgetStateItem, actions: list[Action], condition: Condition) -> bool:
    """A conditional update: False when its condition did not hold."""
    return applied(lambda: item.update(actions=actions, condition=condition))
