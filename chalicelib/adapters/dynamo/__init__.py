"""The store in DynamoDB (PynamoDB) over the one table of infra/template.yaml: keys.py is the key
scheme, models.py the items, and one module per repository. Nothing outside this package sees an
item or a key: the repositories take and return chalicelib/domain values (ports/store.py)."""
from __future__ import annotations

import time
from typing import Callable

from .catalog import DynamoConnections, DynamoCursor, DynamoRates, DynamoSettings
from .history import DynamoHistory
from .links import DynamoLinks
from .lookup import DynamoLookup
from .models import bind


class DynamoStore:
    """Every repository over one table. `clock` is injected; history entries expire after
    `history_days` (0: never)."""

    def __init__(self, clock: Callable[[], float] = time.time, history_days: int = 400):
        self.history = DynamoHistory(clock, history_days)
        self.links = DynamoLinks(clock, self.history)
        self.lookup = DynamoLookup(clock)
        self.connections = DynamoConnections(clock)
        self.settings = DynamoSettings(clock, self.connections)
        self.cursor = DynamoCursor()
        self.rates = DynamoRates()


__all__ = ["DynamoStore", "bind"]
