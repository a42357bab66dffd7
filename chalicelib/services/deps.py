"""What the worker's use cases are given: the store's repositories and the API clients, each
typed by its narrow interface (chalicelib/ports). The composition root (chalicelib/runtime.py)
builds one from the real adapters; unit tests from the in-memory twin and fakes."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Optional, Protocol, TypeVar

from ..config import Config
from ..ports import Apis, Cursor, HistoryLog, LinkLookup, LinkRepository, SettingsRepository, Store, WorkQueue
from .qualification.qualifier import Qualifier

Q = TypeVar("Q", covariant=True)


class Stack(Protocol[Q]):
    """The configuration, the store and a queue (of type Q): what reconciliation and the operator's
    commands are given (the composition root's Runtime)."""

    config: Config

    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def store(self) -> Store: ...
    @property
    def queue(self) -> Q: ...


@dataclass(frozen=True)
class WorkDeps:
    links: LinkRepository
    lookup: LinkLookup
    history: HistoryLog
    settings: SettingsRepository
    apis: Apis
    cursor: Cursor
    queue: Optional[WorkQueue] = None           # follow-up work (a created lead verified later)
    clock: Callable[[], float] = time.time
    search_lag: Callable[[], float] = lambda: 180.0     # Config.search_lag, read when needed

    @classmethod
    def of(cls, store: Store, apis: Apis, queue: Optional[WorkQueue] = None,
           clock: Callable[[], float] = time.time,
           search_lag: Callable[[], float] = lambda: 180.0) -> "WorkDeps":
        return cls(store.links, store.lookup, store.history, store.settings, apis, store.cursor, queue, clock,
                   search_lag)

    @cached_property
    def qualifier(self) -> Qualifier:
        return Qualifier(self.links, self.history, self.apis)
