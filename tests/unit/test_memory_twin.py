"""The store's in-memory twin under threads: the worker runs a batch's claims beside its reads in a
pool of threads, and a claim (a check, then a write) must be as atomic as DynamoDB's conditional
write, or a unit test could see two workers win one join."""
from __future__ import annotations

import sys
import threading

from chalicelib.adapters.memory import MemoryStore
from chalicelib.domain.link import PersonRef
from chalicelib.ports.store import Busy
from tests.fakes import FakeClock


def test_two_threads_claiming_one_join_at_once_never_both_win():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)            # switch threads as often as the interpreter allows
    try:
        both = 0
        for n in range(300):
            store, ref = MemoryStore(FakeClock()), PersonRef("42", str(n))
            barrier, won = threading.Barrier(2), []

            def claim() -> None:
                barrier.wait()
                try:
                    if store.links.claim(ref, "ws") is not None:
                        won.append(1)
                except Busy:
                    pass
            threads = [threading.Thread(target=claim) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            both += len(won) == 2
    finally:
        sys.setswitchinterval(old)
    assert both == 0
