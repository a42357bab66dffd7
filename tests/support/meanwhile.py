"""Something that happens just before, or just after, a given call of ours (another worker's write, the table
throttling), while its caller waits on it: the race a test stages at that point."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator


@contextmanager
def after(owner: Any, name: str, action: Callable[[], object], once: bool = False) -> Iterator[None]:
    """Meanwhile, `action` runs each time `owner.name` (a method, or a module's function) has answered, before its
    caller sees the answer (`once`: only the first time, and not for the calls `action` makes itself). Afterwards
    `owner.name` is as it was."""
    with _around(owner, name, action, once, first=False):
        yield


@contextmanager
def before(owner: Any, name: str, action: Callable[[], object], once: bool = False) -> Iterator[None]:
    """Meanwhile, `action` runs each time `owner.name` (a method, or a module's function) is called, before the call
    itself does anything (`once`: only the first time, and not for the calls `action` makes itself). Afterwards
    `owner.name` is as it was."""
    with _around(owner, name, action, once, first=True):
        yield


@contextmanager
def _around(owner: Any, name: str, action: Callable[[], object], once: bool, first: bool) -> Iterator[None]:
    real, own = getattr(owner, name), name in vars(owner)
    ran: list[bool] = []

    def act() -> None:
        if not (once and ran):
            ran.append(True)
            action()

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if first:
            act()
        answer = real(*args, **kwargs)
        if not first:
            act()
        return answer
    setattr(owner, name, wrapped)
    try:
        yield
    finally:
        if own:
            setattr(owner, name, real)
        else:
            delattr(owner, name)
