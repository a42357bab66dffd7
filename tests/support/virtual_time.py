"""Time for tests with threads: a clock that moves only when every participating thread sleeps, to
the earliest wake-up (discrete-event time). Threads run truly in parallel (their I/O overlaps), yet
no test waits in real time, and the clock never passes a sleeper's wake-up before it has woken."""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, TypeVar

from infra.local.sims.base import busiest  # noqa: F401  (one count of the busiest span, for the tests)

T = TypeVar("T")


class VirtualTime:
    def __init__(self, now: float = 1_790_000_000.0):
        self.now = now
        self._cond = threading.Condition()
        self._active = 0
        self._wakes: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            wake = self.now + max(0.0, seconds)
            self._wakes.append(wake)
            self._active -= 1
            self._advance()
            while self.now < wake:
                self._cond.wait()
            self._wakes.remove(wake)          # only now: until then the clock cannot pass it
            self._active += 1

    def _advance(self) -> None:
        if self._active == 0 and self._wakes:
            self.now = max(self.now, min(self._wakes))
            self._cond.notify_all()

    @contextlib.contextmanager
    def participant(self) -> Iterator[None]:
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._advance()

    def run(self, tasks: list[Callable[[], T]]) -> list[T]:
        """Run each task in its own participating thread; their results (or the first error)."""
        results: list = [None] * len(tasks)
        errors: list[BaseException] = []
        with self._cond:
            self._active += len(tasks)        # all count before any sleeps

        def work(i: int) -> None:
            try:
                results[i] = tasks[i]()
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                errors.append(exc)
            finally:
                with self._cond:
                    self._active -= 1
                    self._advance()
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(tasks))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        if errors:
            raise errors[0]
        return results
