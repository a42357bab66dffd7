"""A thread pool for I/O that keeps to the invocation's time: its tasks run in the context (contextvars) of
the thread that gave them, so a record's AWS calls keep to adapters/aws.within in whichever thread they run.
Neutral ground: the services' runner and the adapters' own pools both use it."""
from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

R = TypeVar("R")


class Pool(ThreadPoolExecutor):
    """Each task runs in a copy of its giver's context."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
