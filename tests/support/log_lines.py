"""What the functions' logger (observability.logger: its own handler and formatter) writes, as CloudWatch
would receive it: the text of each line, each one JSON document."""
from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Callable, Iterator

from chalicelib.observability import logger


@contextmanager
def written_lines() -> Iterator[Callable[[], list[str]]]:
    """The lines the logger's handler writes meanwhile (a function giving those written so far)."""
    written = io.StringIO()
    before = logger.registered_handler.setStream(written)
    try:
        yield lambda: written.getvalue().splitlines()
    finally:
        logger.registered_handler.setStream(before)
