"""The store in DynamoDB (PynamoDB) over the one table of infra/template.yaml: keys.py is the key
scheme, models.py the items, and one module per repository. Nothing outside this package sees an
item or a key: the repositories take and return chalicelib/domain values (ports/store.py)."""
from __future__ import annotations

import time
from typing import Callable

from ...ports.edge import EdgeLog
from ...ports.store import (DEFAULT_LEASE_SECONDS, ConnectionRepository, Cursor, HistoryLog, LinkLookup,
                            LinkRepository, RateWindows, SettingsRepository, SyncRepository)
from .edge import DynamoEdge
from .catalog import DynamoConnections, DynamoCursor, DynamoRates, DynamoSettings
from .history import DynamoHistory
from .links import DynamoLinks
from .lookup import DynamoLookup
from .sync import DynamoSync
from .models import _client as client
from .models import bind, watch_clients


class DynamoStore:
    """Every repository over one table. `clock` is injected; history entries expire after
    `history_days` (0: never); claims hold `lease` seconds unless a call says otherwise (Config.lease)."""

    def __init__(self, clock: Callable[[], float] = time.time, history_days: int = 400,
                 lease: float = DEFAULT_LEASE_SECONDS):
        history, connections = DynamoHistory(clock, history_days), DynamoConnections(clock)
        self.history: HistoryLog = history
        self.links: LinkRepository = DynamoLinks(clock, history, lease=lease)
        self.lookup: LinkLookup = DynamoLookup(clock)
        self.connections: ConnectionRepository = connections
        self.settings: SettingsRepository = DynamoSettings(clock, connections)
        self.cursor: Cursor = DynamoCursor()
        self.rates: RateWindows = DynamoRates()
        self.sync: SyncRepository = DynamoSync(clock, lease)
        self.edge: EdgeLog = DynamoEdge(clock)


__all__ = ["DynamoStore", "bind", "client", "watch_clients"]
