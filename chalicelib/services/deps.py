"""What the worker's use cases are given: the store's repositories and the API clients, each
typed by its narrow interface (chalicelib/ports). The composition root (chalicelib/runtime.py)
builds one from the real adapters; unit tests from the in-memory twin and fakes."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Optional, Protocol, Sequence, TypeVar

from ..config import Config
from ..domain.advice import discarded
from ..domain.history import Entry, iso
from ..domain.link import PersonRef
from ..domain.settings import CampaignSettings, SettingsError, parse_settings
from ..errors import InvalidSettings
from ..observability import count, logger, mask_emails
from ..ports import (Apis, Cursor, EdgeLog, HistoryLog, LinkLookup, LinkRepository, SettingsRepository, Store,
                     SyncRepository, WorkQueue)
from .qualification.qualifier import Qualifier

Q = TypeVar("Q", covariant=True)


def stored_settings(campaign_id: str, document: Optional[dict]) -> Optional[CampaignSettings]:
    """A campaign's stored settings, as work reads them: None when none are stored; raises InvalidSettings (the
    work waits in the dead-letter queue) when they no longer read as valid."""
    if document is None:
        return None
    try:
        return parse_settings(document)
    except SettingsError as exc:
        raise InvalidSettings(campaign_id, "; ".join(exc.problems)) from None


def earliest(clock: Callable[[], float]) -> float:
    """The earliest the time may be by AWS's clock (the workers'): the CLI's AwsClock says (adapters/aws_clock.py);
    any other clock is taken as AWS's own (a worker's, a test's). What the CLI stamps that must come before what a
    worker writes next is stamped so (`bridge dlq replay`'s note, `bridge sync start`'s run)."""
    return float(getattr(clock, "earliest", clock)())


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
    sync: SyncRepository
    clock: Callable[[], float]                  # given, never read from the wall: tests run on a fake clock
    queue: Optional[WorkQueue] = None           # follow-up work (a created lead verified later, a sync run's next page)
    search_lag: Callable[[], float] = lambda: 180.0     # Config.search_lag, read when needed
    remaining_ms: Callable[[], int] = lambda: 10**9     # the Lambda's time left (a sync page stops in time)
    edge: Optional[EdgeLog] = None              # where joins note the fields they could not write (for doctor)

    @classmethod
    def of(cls, store: Store, apis: Apis, queue: Optional[WorkQueue], clock: Callable[[], float],
           search_lag: Callable[[], float] = lambda: 180.0,
           remaining_ms: Callable[[], int] = lambda: 10**9) -> "WorkDeps":
        return cls(store.links, store.lookup, store.history, store.settings, apis, store.cursor, store.sync, clock,
                   queue, search_lag, remaining_ms, store.edge)

    @cached_property
    def qualifier(self) -> Qualifier:
        return Qualifier(self.links, self.apis, self.clock, self.history)

    def dead_letter(self, body: str, reason: str, tries: int, person: Optional[Sequence[str]] = None,
                    kind: Optional[str] = None, details: Optional[dict] = None) -> None:
        """Work that failed for good goes to the dead-letter queue with its reason, and the history of the
        `person` it is about (campaign, RF user) says so: `kind`, the message's, as `bridge dlq list` says it
        (explain tells what a later success resolves), while they are kept (LinkRepository.note)."""
        assert self.queue is not None
        self.queue.dead_letter(body, reason, tries, iso(self.clock()))
        count("DeadLettered")
        logger.error("record sent to the dead-letter queue", extra={"reason": mask_emails(reason)})
        if not person:
            return
        then = {"discard": "bridge dlq discard"} if discarded(reason) else {"replay": "bridge dlq replay"}
        try:
            self.links.lettered(PersonRef(*person), reason)      # a failed qualification owes its letter no more
            self.links.note(PersonRef(*person), [Entry("dead_letter", "failed", reason, {
                "attempts": tries, **then, **({"kind": kind} if kind else {}), **(details or {})})])
        except Exception:  # the letter is sent: it stands without its notes (not sent again with the whole batch)
            logger.exception("could not note the dead letter on the link and in the history")
