"""A person's history in DynamoDB, and the one way a change is written with its history: a
transaction of the item updates and the entries (all or nothing)."""
from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Optional, Sequence

from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ...domain.history import Entry, Recorded, iso, kind_of
from ...domain.link import PersonRef
from .keys import history_pk, latest_sk, repeats_sk
from .models import HistoryItem, applied, batch_delete, refused_items

_SEQUENCE = itertools.count()


@dataclass
class Update:
    """One conditional item update inside a transaction."""

    item: Model
    actions: list[Any]
    condition: Optional[Condition] = None


@dataclass
class Put:
    """One conditional put of a whole item inside a transaction."""

    item: Model
    condition: Optional[Condition] = None


@dataclass
class Check:
    """A condition on another item (its model and key) that the transaction holds to (nothing written to it)."""

    model: type[Model]
    key: tuple[str, str]
    condition: Condition


@dataclass
class Delete:
    """One conditional delete of an item inside a transaction."""

    item: Model
    condition: Optional[Condition] = None


class DynamoHistory:
    """Entries expire (the table's TTL) after `days` (0: never)."""

    def __init__(self, clock: Callable[[], float], days: int = 400):
        self.clock, self.days = clock, days

    def _items(self, ref: PersonRef, entries: Sequence[Entry], now: float) -> Iterator[HistoryItem]:
        """One item for the entries of one write: the first's fields, the others in `also`."""
        if not entries:
            return
        first, rest = entries[0], entries[1:]
        # Sorts by time, then by write order within this container (same-millisecond writes).
        sk = f"{iso(now)}#{next(_SEQUENCE):09d}#{uuid.uuid4().hex[:4]}"
        yield HistoryItem(history_pk(ref), sk, event=first.event, outcome=first.outcome, reason=first.reason,
                          details=first.details, at=iso(now), expires_at=self._expires(now),
                          also=[[e.event, e.outcome, e.reason, e.details] for e in rest] or None)

    def _expires(self, now: float) -> Optional[int]:
        return int(now) + self.days * 86400 if self.days > 0 else None

    def transact(self, ref: PersonRef, entries: Sequence[Entry], *updates: Update | Put | Delete | Check) -> None:
        """The updates and the entries at once. Raises TransactWriteError (models.conditional
        tells a failed condition)."""
        self.transact_all([(ref, entries, updates)])

    def transact_all(self, groups: Sequence[tuple[PersonRef, Sequence[Entry], Sequence[Update | Put | Delete | Check]]],
                     at: Optional[float] = None) -> None:
        """Several people's updates and entries in one transaction (all or nothing); `at`: the entries' time, if
        earlier than the clock's (LinkRepository.note_many)."""
        now = self.clock() if at is None else min(self.clock(), at)
        with TransactWrite(connection=HistoryItem._get_connection().connection) as tx:
            for ref, entries, updates in groups:
                for update in updates:
                    if isinstance(update, Check):
                        tx.condition_check(update.model, *update.key, condition=update.condition)
                    elif isinstance(update, Put):
                        tx.save(update.item, condition=update.condition)
                    elif isinstance(update, Delete):
                        tx.delete(update.item, condition=update.condition)
                    else:
                        tx.update(update.item, actions=update.actions, condition=update.condition)
                for item in self._items(ref, entries, now):
                    tx.save(item)

    @staticmethod
    def refused(exc: Exception, groups: Sequence[tuple[PersonRef, Sequence[Entry],
                                                       Sequence[Update | Put | Delete | Check]]]) -> set[int]:
        """The groups of a transact_all DynamoDB cancelled whose items' conditions failed, as its
        cancellation reasons say (none when they say nothing)."""
        # PynamoDB sends a transaction's condition checks, then its deletes, then its puts (a group's entries: one,
        # after the group's puts), then its updates, each in the order transact_all gave them.
        def owners(kind: type, entries: bool = False) -> list[int]:
            return [g for g, (_, written, updates) in enumerate(groups)
                    for _ in [*(u for u in updates if isinstance(u, kind)), *(written[:1] if entries else ())]]
        sent = owners(Check) + owners(Delete) + owners(Put, entries=True) + owners(Update)
        return {sent[i] for i in refused_items(exc) if i < len(sent)}

    def note_repeat(self, ref: PersonRef, event: str, reason: str, outcome: str = "ignored",
                    restart_after: Optional[float] = None, *, while_there: Sequence[Check]) -> None:
        """LinkRepository.note_repeat's write. `while_there`: the note is written only while one of those
        conditions holds (the person's link, or count, exists). A note on an item already there costs no more
        (the person was not erased since it was made: an erasure deletes those, then the history); only the one
        that makes the item (or makes it anew, counting from one) checks them with it, in a transaction."""
        now = self.clock()
        expires = self._expires(now)
        item = HistoryItem(history_pk(ref), repeats_sk(event))
        actions = [HistoryItem.event.set(event), HistoryItem.outcome.set(outcome), HistoryItem.reason.set(reason),
                   HistoryItem.at.set(iso(now)),
                   HistoryItem.expires_at.set(expires) if expires else HistoryItem.expires_at.remove()]
        counted: list[Action] = [*actions, HistoryItem.repeats.add(1)]
        # Counted on while it is the same kind of repeat, not long after the last; else counted from one.
        same = HistoryItem.pk.exists()
        if restart_after is not None:
            same &= HistoryItem.at >= iso(now - restart_after)
            kind = kind_of(reason)
            if kind:
                same &= HistoryItem.reason.startswith(kind)
        anew: list[Action] = [*actions, HistoryItem.repeats.set(1)]
        if applied(lambda: item.update(actions=counted, condition=same)):
            return
        fresh = counted if restart_after is None else anew     # (the item made, or made anew: counted from one)
        any(applied(partial(self.transact, ref, (), Update(item, fresh), kept)) for kept in while_there)

    def latest(self, ref: PersonRef, entry: Entry) -> HistoryItem:
        """The item of LinkRepository.note_latest (the latest entry of its event and outcome), not written."""
        now = self.clock()
        return HistoryItem(history_pk(ref), latest_sk(entry.event, entry.outcome), event=entry.event,
                           outcome=entry.outcome, reason=entry.reason, details=entry.details, at=iso(now),
                           expires_at=self._expires(now))

    def entries(self, ref: PersonRef) -> list[Recorded]:
        out = []
        for h in HistoryItem.query(history_pk(ref)):
            expires = int(h.expires_at) if h.expires_at is not None else None
            out.append(Recorded(at=h.at, event=h.event, outcome=h.outcome, reason=h.reason, details=h.details,
                                count=int(h.repeats) if h.repeats else None, expires_at=expires))
            out += [Recorded(at=h.at, event=event, outcome=outcome, reason=reason, details=details, expires_at=expires)
                    for event, outcome, reason, details, *_ in h.also or ()]     # (a later version may add more)
        return out

    def erase(self, ref: PersonRef) -> int:
        items = list(HistoryItem.query(history_pk(ref), attributes_to_get=["pk", "sk", "also"]))
        batch_delete(HistoryItem, ((item.pk, item.sk) for item in items))
        return sum(1 + len(item.also or ()) for item in items)     # entries, as the memory twin counts them
