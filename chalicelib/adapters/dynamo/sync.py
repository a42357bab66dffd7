"""Contact sync's runs and ledger (ports.store.SyncRepository) in DynamoDB."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterable, Optional, Sequence

from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from ...domain.history import iso
from ...domain.link import PersonRef
from ...domain.sync import OUTCOMES, PageError
from ...errors import Deferred
from ...pool import Pool
from ...ports.store import DEFAULT_LEASE_SECONDS, PAST_RUN_DAYS, Busy, LedgerEntry, Leases, SyncRun, normal_email
from .keys import contact_of_ledger, ledger_key, ledger_pk, link_key, sync_run_key
from .models import (CONFLICT_WAIT, Conflict, LedgerItem, LinkItem, SyncRunItem, applied, batch_get, conditional, get,
                     refused_items)

LEDGER_PAGE = 500          # ledger entries read per page when only the first few are asked for
START_TRIES = 3            # a start's tries while another write meets its transaction (read again each time)
PUT_THREADS = 10           # a page's conditional writes of its ledger in flight at once
_ERROR = ("error_page", "error_reason", "error_tries", "error_at", "error_state")
_WEBHOOK_COUNTS = tuple(f"w_{o}" for o in OUTCOMES)
_RUN_FIELDS = ("number", "kind", "source", "status", "page", "cursor", "total", "since", "started_at", "updated_at",
               "finished_at", "message", "lease_until", "owner", "paused", "required", "workspace", "full_run", *_ERROR) + tuple(f"{p}_{o}" for p in "cw" for o in OUTCOMES)


class _Refused(Exception):
    """A start's write refused on its condition: the latest run is no longer run `number` as read (another start's
    run began, or a webhook counted on it), or the full run it replaces (`gone`) is not there."""

    def __init__(self, number: int, gone: Optional[int]) -> None:
        super().__init__(number, gone)
        self.number, self.gone = number, gone


def _run(campaign_id: str, item: SyncRunItem) -> SyncRun:
    counts, by_webhook = ({o: int(getattr(item, f"{p}_{o}")) for o in OUTCOMES if getattr(item, f"{p}_{o}")}
                          for p in "cw")
    return SyncRun(campaign_id, int(item.number), item.kind, item.source, item.status, page=int(item.page or 0),
                   cursor=item.cursor, counts=counts, by_webhook=by_webhook, total=None if item.total is None else int(item.total),
                   since=item.since, started_at=item.started_at, updated_at=item.updated_at,
                   finished_at=item.finished_at, message=item.message, lease_until=item.lease_until,
                   owner=item.owner, error=_error(item), paused=float(item.paused or 0),
                   required=tuple(map(str, item.required or ())), workspace=item.workspace,
                   full_run=int(item.full_run) if item.full_run else None)


def _paused(seconds: float) -> list[Action]:
    return [SyncRunItem.paused.add(seconds)] if seconds > 0 else []


def _error(item: SyncRunItem) -> Optional[PageError]:
    if item.error_reason is None:
        return None
    return PageError(int(item.error_page or 0), item.error_reason, int(item.error_tries or 0),
                     float(item.error_at or 0), item.error_state or "retrying")


def _entry(item: LedgerItem) -> LedgerEntry:
    return LedgerEntry(contact_of_ledger(item.sk), item.outcome, email=item.email, rf_user_id=item.rf_user_id,
                       url=item.url, reason=item.reason, run=int(item.run or 0), seen_run=int(item.seen_run or 0),
                       written_back=bool(item.written_back), at=item.at, count_known=bool(item.count_known),
                       adopted=bool(item.adopted), linked_run=int(item.linked_run or 0),
                       workspace=item.workspace, link_attribute=item.link_attribute)


def _item(campaign_id: str, e: LedgerEntry, at: str) -> LedgerItem:
    return LedgerItem(*ledger_key(campaign_id, e.contact_id), outcome=e.outcome, email=e.email,
                      rf_user_id=e.rf_user_id, url=e.url, reason=e.reason, run=e.run, seen_run=e.seen_run,
                      written_back=e.written_back, at=e.at or at, count_known=e.count_known or None,
                      adopted=e.adopted or None, linked_run=e.linked_run or None, workspace=e.workspace,
                      link_attribute=e.link_attribute)


def _counts(counts: dict[str, int], prefix: str = "c") -> list[Action]:
    return [getattr(SyncRunItem, f"{prefix}_{o}").add(n) for o, n in counts.items() if n and o in OUTCOMES]


class DynamoSync(Leases):
    def __init__(self, clock: Callable[[], float], lease: float = DEFAULT_LEASE_SECONDS):
        self.clock, self.lease = clock, lease

    def start(self, campaign_id: str, kind: str, source: str, now: float,
              since: Optional[float] = None, required: tuple[str, ...] = (),
              workspace: Optional[str] = None) -> Optional[SyncRun]:
        after, gone = None, None       # (what a refused try learnt: the run it read; a replaced full run not there)
        for tried in range(1, START_TRIES + 1):
            try:
                return self._start(campaign_id, kind, source, now, since, required, workspace, after, gone)
            except Conflict:     # (a webhook's count, or the other start, writing the latest run: nothing applied)
                if tried == START_TRIES:
                    raise
            except _Refused as refused:      # (nothing applied either)
                after, gone = refused.number, refused.gone or gone
                if tried == START_TRIES:
                    raise Deferred(f"sync run {refused.number}'s counts kept changing while run {refused.number + 1} "
                                   f"started (webhooks counting on it): tried again in {CONFLICT_WAIT:g} s",
                                   retry_after=CONFLICT_WAIT) from None
        raise AssertionError("unreachable")

    def _start(self, campaign_id: str, kind: str, source: str, now: float, since: Optional[float],
               required: tuple[str, ...], workspace: Optional[str], after: Optional[int],
               gone: Optional[int]) -> Optional[SyncRun]:
        current = get(SyncRunItem, sync_run_key(campaign_id), consistent=True)
        if current is not None and current.status == "running":
            return None
        last = int(current.number) if current is not None else 0
        if after is not None and last != after:     # another start's run began (and ended) since the try before
            return None
        full = last if current is not None and current.kind == "full" else \
            int(current.full_run) if current is not None and current.full_run else None     # the latest full run
        expires = int(now) + PAST_RUN_DAYS * 86400
        item = SyncRunItem(*sync_run_key(campaign_id), number=last + 1, kind=kind, source=source, status="running",
                           page=0, since=since, started_at=now, updated_at=now, required=list(required) or None,
                           workspace=workspace, full_run=last + 1 if kind == "full" else full)
        if current is None:
            if not applied(lambda: item.save(condition=SyncRunItem.number.does_not_exist())):
                return None
            return _run(campaign_id, item)
        # The run before keeps its own item (for a while, unless the latest full one), copied in the very write
        # that starts the new run: two starts at once (`bridge sync start` and the schedule's) both read run
        # `last`, and only the one whose run starts may say whether it expires (the loser's copy, written
        # apart, could land last: the latest full run expiring under its catch-ups, or a replaced one kept). The
        # copy is of run `last` as read: the write holds to its webhooks' counts being those read (a webhook's
        # count landing between would be lost with the item the new run overwrites), and is tried again if not.
        # A full run replaced (kept apart since, as the latest full one) expires in the same write: a worker
        # killed after it cannot leave it kept for ever (no item is in a transaction twice: full != last).
        values: dict[str, Any] = {f: getattr(current, f) for f in _RUN_FIELDS}
        values["expires_at"] = expires if current.kind != "full" or kind == "full" else None
        replaced = full if kind == "full" and full and full not in (last, gone) else None
        condition = (SyncRunItem.number == last) & (SyncRunItem.status != "running")
        for name in _WEBHOOK_COUNTS:
            read, attribute = getattr(current, name), getattr(SyncRunItem, name)
            condition &= attribute.does_not_exist() if read is None else attribute == read
        try:
            with TransactWrite(connection=SyncRunItem._get_connection().connection) as tx:
                tx.save(SyncRunItem(*sync_run_key(campaign_id, last), **values))
                tx.save(item, condition=condition)
                if replaced:     # (there since it was replaced as the latest, unless deleted by hand: not made)
                    tx.update(SyncRunItem(*sync_run_key(campaign_id, replaced)),
                              actions=[SyncRunItem.expires_at.set(expires)], condition=SyncRunItem.number.exists())
        except PynamoDBException as exc:
            if not conditional(exc):
                raise
            refused = refused_items(exc)
            raise _Refused(last, replaced if refused == {2} else None) from None
        return _run(campaign_id, item)

    def run(self, campaign_id: str, number: Optional[int] = None, consistent: bool = False) -> Optional[SyncRun]:
        current = get(SyncRunItem, sync_run_key(campaign_id), consistent)
        if current is not None and (number is None or int(current.number) == number):
            return _run(campaign_id, current)
        if number is None:
            return None
        item = get(SyncRunItem, sync_run_key(campaign_id, number), consistent)
        expired = item is not None and item.expires_at is not None and item.expires_at <= self.clock()
        return _run(campaign_id, item) if item is not None and not expired else None

    def claim_page(self, campaign_id: str, number: int, page: int, owner: str, now: float,
                   lease: Optional[float] = None) -> tuple[Optional[SyncRun], bool]:
        item, until = SyncRunItem(*sync_run_key(campaign_id)), now + self._lease(lease)
        if applied(lambda: item.update(
                actions=[SyncRunItem.owner.set(owner), SyncRunItem.lease_until.set(until)],
                condition=(SyncRunItem.number == number) & (SyncRunItem.status == "running") & (SyncRunItem.page == page)
                & (SyncRunItem.owner.does_not_exist() | (SyncRunItem.lease_until < now) | (SyncRunItem.owner == owner)))):
            return _run(campaign_id, item), True
        run = self.run(campaign_id, number, consistent=True)     # (where it stands: a repeat may resend the next page)
        if run is not None and run.status == "running" and run.page == page and run.owner:
            raise Busy(f"another worker works page {page} of sync run {number}",
                       retry_after=max(1.0, (run.lease_until or now) - now))
        return run, False

    def checkpoint(self, campaign_id: str, number: int, page: int, owner: str, now: float, *,
                   cursor: Optional[str], counts: dict[str, int], total: Optional[int] = None,
                   finished: bool = False, message: Optional[str] = None, paused: float = 0.0) -> bool:
        actions: list[Action] = [SyncRunItem.page.set(page + 1), SyncRunItem.owner.remove(),
                                 SyncRunItem.lease_until.remove(), SyncRunItem.updated_at.set(now), *_counts(counts),
                                 *(getattr(SyncRunItem, name).remove() for name in _ERROR), *_paused(paused)]
        actions.append(SyncRunItem.cursor.set(cursor) if cursor else SyncRunItem.cursor.remove())
        if total is not None:
            actions.append(SyncRunItem.total.set(total))
        if message or finished:
            actions += [SyncRunItem.status.set("stopped" if message else "done"), SyncRunItem.finished_at.set(now)]
        if message:
            actions.append(SyncRunItem.message.set(message))
        return applied(lambda: SyncRunItem(*sync_run_key(campaign_id)).update(
            actions=actions, condition=(SyncRunItem.number == number) & (SyncRunItem.status == "running")
            & (SyncRunItem.page == page) & (SyncRunItem.owner == owner)))

    def release(self, campaign_id: str, number: int, page: int, owner: str,
                error: Optional[PageError] = None, paused: float = 0.0) -> None:
        actions: list[Action] = [SyncRunItem.owner.remove(), SyncRunItem.lease_until.remove(), *_paused(paused)]
        if error is not None:
            actions += [SyncRunItem.error_page.set(error.page), SyncRunItem.error_reason.set(error.reason),
                        SyncRunItem.error_tries.set(error.tries), SyncRunItem.error_at.set(error.at),
                        SyncRunItem.error_state.set(error.state)]
        applied(lambda: SyncRunItem(*sync_run_key(campaign_id)).update(       # (no longer its owner: nothing to do)
            actions=actions,
            condition=(SyncRunItem.number == number) & (SyncRunItem.page == page) & (SyncRunItem.owner == owner)))

    def begin_again(self, campaign_id: str, number: int, now: float) -> bool:
        return applied(lambda: SyncRunItem(*sync_run_key(campaign_id)).update(
            actions=[SyncRunItem.started_at.set(now), SyncRunItem.updated_at.set(now)],
            condition=(SyncRunItem.number == number) & (SyncRunItem.status == "running") & (SyncRunItem.page == 0)
            & (SyncRunItem.owner.does_not_exist() | (SyncRunItem.lease_until < now))))

    def stop(self, campaign_id: str, number: int, page: int, now: float, message: str, paused: float = 0.0) -> bool:
        actions: list[Action] = [SyncRunItem.status.set("stopped"), SyncRunItem.message.set(message),
                                 SyncRunItem.finished_at.set(now), SyncRunItem.updated_at.set(now),
                                 SyncRunItem.owner.remove(), SyncRunItem.lease_until.remove(), *_paused(paused)]
        return applied(lambda: SyncRunItem(*sync_run_key(campaign_id)).update(
            actions=actions, condition=(SyncRunItem.number == number) & (SyncRunItem.status == "running")
            & (SyncRunItem.page == page)))

    def add_counts(self, campaign_id: str, number: int, counts: dict[str, int]) -> None:
        actions = _counts(counts, "w")
        if not actions:
            return
        # (a newer run started meanwhile: the count stays with the ledger)
        applied(lambda: SyncRunItem(*sync_run_key(campaign_id)).update(actions=actions,
                                                                       condition=SyncRunItem.number == number))

    def entries(self, campaign_id: str, contact_ids: Iterable[str], consistent: bool = False) -> dict[str, LedgerEntry]:
        items = batch_get(LedgerItem, (ledger_key(campaign_id, c) for c in contact_ids), consistent)
        return {contact_of_ledger(i.sk): _entry(i) for i in items}

    def intend(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> set[str]:
        def put(item: LedgerItem, e: LedgerEntry) -> None:
            condition = LedgerItem.rf_user_id.does_not_exist()
            if e.rf_user_id:         # (only over the page's `creating` entry: forget deleted it, not written back)
                condition &= LedgerItem.pk.exists()
            item.save(condition=condition)
        return self._writes(campaign_id, entries, put)

    def rewrite(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> set[str]:
        return self._writes(campaign_id, entries,
                            lambda item, e: item.save(condition=LedgerItem.rf_user_id == e.rf_user_id))

    def adopt(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> set[str]:
        def with_link(item: LedgerItem, e: LedgerEntry) -> None:
            with TransactWrite(connection=LedgerItem._get_connection().connection) as tx:
                tx.save(item)
                tx.condition_check(LinkItem, *link_key(PersonRef(campaign_id, str(e.rf_user_id))),
                                   condition=LinkItem.pk.exists())
        return self._writes(campaign_id, entries, with_link)

    def _writes(self, campaign_id: str, entries: Sequence[LedgerEntry],
                write: Callable[[LedgerItem, LedgerEntry], object]) -> set[str]:
        """`write` of each entry's item, a conditional write each (a batch write takes no condition): the contact ids
        written. Made at once, a page's ~150 one after another held its RF creates back (sync at 83% of RF's limit,
        not 95%)."""
        at = iso(self.clock())

        def written(e: LedgerEntry) -> bool:
            return applied(partial(write, _item(campaign_id, e, at), e))
        if len(entries) <= 1:
            return {e.contact_id for e in entries if written(e)}
        with Pool(max_workers=min(PUT_THREADS, len(entries)), thread_name_prefix="ledger") as pool:
            return {e.contact_id for e, done in zip(entries, pool.map(written, entries)) if done}

    def move(self, campaign_id: str, from_id: str, entry: LedgerEntry) -> bool:
        def moved() -> None:
            with TransactWrite(connection=LedgerItem._get_connection().connection) as tx:
                tx.save(_item(campaign_id, entry, iso(self.clock())), condition=LedgerItem.rf_user_id.does_not_exist())
                tx.delete(LedgerItem(*ledger_key(campaign_id, from_id)),
                          condition=LedgerItem.rf_user_id == entry.rf_user_id)
        return applied(moved)

    def ledger(self, campaign_id: str, limit: Optional[int] = None) -> Iterable[LedgerEntry]:
        for item in LedgerItem.query(ledger_pk(campaign_id), limit=limit,
                                     page_size=min(limit, LEDGER_PAGE) if limit else None):
            yield _entry(item)

    def _with_email(self, campaign_id: str, email: str) -> Iterable[LedgerItem]:
        # Consistent: a page asks it of entries its try before (or another contact's create) wrote a moment ago.
        # It reads the campaign's whole ledger (the filter lowers no cost): at 100k entries of ~340 bytes, 34 MB, 30
        # pages of 1 MB, ~8,300 read units. Asked only by forget and explain (once a person) and by a page for a
        # contact whose create RF refused after a try of ours may have made her user (its answer lost: at most the
        # contacts in flight when a worker died, or those RF answered no more), never by a page's ordinary contacts
        # (tests/unit/test_sync.py). No index: a GSI is never strongly consistent; items of their own per email and
        # contact in the partition would cost a write more for each new entry and email change, a pass over every
        # campaign's ledger for the entries written before, forget finding those under emails a contact no longer
        # has, and every ledger write kept in step with them (one missed: a contact takes another's RF user).
        return LedgerItem.query(ledger_pk(campaign_id), filter_condition=LedgerItem.email == normal_email(email),
                                consistent_read=True)

    def with_email(self, campaign_id: str, email: str) -> list[LedgerEntry]:
        return [_entry(item) for item in self._with_email(campaign_id, email)]

    def forget(self, campaign_id: str, email: str, contact_ids: Iterable[str] = ()) -> list[LedgerEntry]:
        items = {item.sk: item for item in self._with_email(campaign_id, email)}
        named = [ledger_key(campaign_id, c) for c in set(contact_ids)]
        items.update((item.sk, item) for item in batch_get(LedgerItem, named) if item.sk not in items)
        for item in items.values():
            item.delete()
        return [_entry(item) for item in items.values()]
