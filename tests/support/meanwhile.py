"""Something that happens just after a given call of ours answers (another worker's write, the table throttling),
before its caller goes on: the race a test stages at that point."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator


@contextmanager
def after(owner: Any, name: str, action: Callable[[], object], once: bool = False) -> Iterator[None]:
    """Meanwhile, `action` runs each time `owner.name` (a method, or a module's function) has answered, before its
    caller sees the answer (`once`: only the first time, and not for the calls `action` makes itself). Afterwards
    `owner.name` is as it was."""
    real, own = getattr(owner, name), name in vars(owner)
    ran: list[bool] = []

    def then(*args: Any, **kwargs: Any) -> Any:
        answer = real(*args, **kwargs)
        if not (once and ran):
            ran.append(True)
            action()
        return answer
    setattr(owner, name, then)
    try:
        yield
    finally:
        if own:
            setattr(owner, name, real)
        else:
            delattr(owner, name)
