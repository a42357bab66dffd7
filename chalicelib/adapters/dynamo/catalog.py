"""The small repositories: campaign settings, connections, the reconciliation cursor, and the
shared rate-limit windows."""
from __future__ import annotations

from typing import Callable, Iterable, Optional

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from ...domain.history import iso
from ...ports.store import Connection, RFConnection, StoredSettings
from .keys import (CURSOR_KEY, RF_KEY, WORKSPACES_KEY, campaign_of_settings, connection_key, oauth_state_key,
                   rate_key, settings_key)
from .models import (ConnectionItem, CursorItem, OAuthStateItem, RateItem, RFConfigItem, SettingsItem, WorkspacesItem,
                     batch_get, conditional, get)


class DynamoConnections:
    def __init__(self, clock: Callable[[], float]):
        self.clock = clock

    def put_workspace(self, workspace: str, secrets: Iterable[str] = (), api_base: Optional[str] = None) -> None:
        given = set(secrets)
        actions: list[Action] = [ConnectionItem.status.set("active"),
                                 ConnectionItem.updated_at.set(iso(self.clock()))]
        if given:
            actions.append(ConnectionItem.secrets.add(given))
        if api_base:
            actions.append(ConnectionItem.api_base.set(api_base))
        ConnectionItem(*connection_key(workspace)).update(actions=actions)
        self.register_workspace(workspace)

    def workspace(self, workspace: str) -> Optional[Connection]:
        item = get(ConnectionItem, connection_key(workspace))
        if item is None:
            return None
        return Connection(workspace, item.status, item.api_base, frozenset(item.secrets or ()))

    def disconnect_workspace(self, workspace: str) -> bool:
        try:
            ConnectionItem(*connection_key(workspace)).update(
                actions=[ConnectionItem.status.set("disconnected"), ConnectionItem.secrets.delete({"token"}),
                         ConnectionItem.updated_at.set(iso(self.clock()))],
                condition=ConnectionItem.pk.exists())
            return True
        except UpdateError as exc:
            if conditional(exc):
                return False
            raise

    def use_oauth_state(self, nonce: str, expires_at: float) -> bool:
        try:
            OAuthStateItem(*oauth_state_key(nonce), expires_at=int(expires_at)).save(
                condition=OAuthStateItem.pk.does_not_exist())
            return True
        except PutError as exc:
            if conditional(exc):
                return False
            raise

    def register_workspace(self, workspace: str) -> None:
        WorkspacesItem(*WORKSPACES_KEY).update(actions=[WorkspacesItem.names.add({workspace})])

    def workspaces(self) -> set[str]:
        item = get(WorkspacesItem, WORKSPACES_KEY)
        return set(item.names or ()) if item is not None else set()

    def put_rf(self, secrets: Iterable[str] = ()) -> None:
        given = set(secrets)
        actions: list[Action] = [RFConfigItem.updated_at.set(iso(self.clock()))]
        if given:
            actions.append(RFConfigItem.secrets.add(given))
        RFConfigItem(*RF_KEY).update(actions=actions)

    def rf(self) -> Optional[RFConnection]:
        item = get(RFConfigItem, RF_KEY)
        return RFConnection(frozenset(item.secrets or ())) if item is not None else None


class DynamoSettings:
    def __init__(self, clock: Callable[[], float], connections: DynamoConnections):
        self.clock, self.connections = clock, connections

    def put(self, campaign_id: str, document: dict, workspace: str) -> int:
        existing = self.get(campaign_id)
        version = (existing.version if existing else 0) + 1
        SettingsItem(*settings_key(campaign_id), document=document, workspace=workspace, version=version,
                     updated_at=iso(self.clock())).save()
        self.connections.register_workspace(workspace)
        return version

    def get(self, campaign_id: str) -> Optional[StoredSettings]:
        item = get(SettingsItem, settings_key(campaign_id))
        if item is None:
            return None
        return StoredSettings(campaign_id, item.workspace, item.document, int(item.version), item.updated_at)

    def documents(self, campaign_ids: Iterable[str]) -> dict[str, dict]:
        items = batch_get(SettingsItem, (settings_key(c) for c in campaign_ids))
        return {campaign_of_settings(i.pk): i.document for i in items}


class DynamoCursor:
    def get(self) -> Optional[str]:
        item = get(CursorItem, CURSOR_KEY)
        return item.position if item is not None else None

    def set(self, position: Optional[str]) -> None:
        CursorItem(*CURSOR_KEY, position=position).save()


class DynamoRates:
    def take_slot(self, budget: str, window_start: int, limit: int, ttl: int) -> bool:
        try:
            RateItem(*rate_key(budget, window_start)).update(
                actions=[RateItem.n.add(1), RateItem.expires_at.set(ttl)],
                condition=RateItem.n.does_not_exist() | (RateItem.n < limit))
            return True
        except UpdateError as exc:
            if conditional(exc):
                return False
            raise
