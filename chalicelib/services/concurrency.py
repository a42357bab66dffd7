"""Running a batch's I/O-bound work at once: the records of a batch, and the per-person steps of a
batch of joins, in a pool of threads per container. Every call still takes its slot from the
shared rate limiter, so running at once never spends more than the budgets."""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Hashable, Iterable, Optional, Sequence, TypeVar

from ..pool import Pool

T = TypeVar("T")
R = TypeVar("R")


class Runner:
    """`each(fn, items)`: fn of every item, at once, in the items' order; an item's exception is its
    result (one failure never stops the others). `chains(fn, items, key)`: items with the same key
    one after another, in their order (two messages about the same person never run at the same
    time), different keys at once."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = Pool(self.workers, thread_name_prefix="record")
            return self._pool

    def both(self, first: Callable[[], R], second: Callable[[], T]) -> tuple[R | Exception, T | Exception]:
        """`first` and `second` at the same time (`second` in this thread); each one's answer or
        exception."""
        if self.workers == 1:
            return _safe(lambda _: first(), None), _safe(lambda _: second(), None)
        future = self.pool.submit(_safe, lambda _: first(), None)
        other = _safe(lambda _: second(), None)
        return future.result(), other

    def each(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R | Exception]:
        if self.workers == 1 or len(items) <= 1:
            return [_safe(fn, item) for item in items]
        return list(self.pool.map(lambda item: _safe(fn, item), items))

    def chains(self, fn: Callable[[T], R], items: Iterable[T],
               keys: Callable[[T], Iterable[Hashable]]) -> list[R | Exception]:
        """Items sharing any key (say, the same person, or the same contact) run one after another."""
        ordered = list(items)
        groups = _groups([set(keys(item)) for item in ordered])
        results: list[Any] = [None] * len(ordered)

        def chain(indexes: list[int]) -> None:
            for i in indexes:
                results[i] = _safe(fn, ordered[i])

        if self.workers == 1 or len(groups) <= 1:
            for indexes in groups:
                chain(indexes)
            return results
        futures: list[Future] = [self.pool.submit(chain, indexes) for indexes in groups]
        for future in futures:
            future.result()
        return results


def _safe(fn: Callable[[T], R], item: T) -> R | Exception:
    try:
        return fn(item)
    except Exception as exc:  # the caller decides what a failure means
        return exc


def _groups(keys: list[set[Hashable]]) -> list[list[int]]:
    """Indexes of items connected by a shared key, each group in the items' order."""
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[Hashable, int] = {}
    for i, item_keys in enumerate(keys):
        for key in item_keys:
            if key in owner:
                parent[root(i)] = root(owner[key])
            else:
                owner[key] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(keys)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())
