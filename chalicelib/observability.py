"""Powertools logger and metrics, and masking of personal data in logs."""
from __future__ import annotations

import logging
import os
import re
import threading
from contextlib import contextmanager
from functools import wraps
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar, Union

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "rf-intercom-bridge")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "RFIntercomBridge")


class MaskingFormatter(LambdaPowertoolsFormatter):
    """Every log line with its emails masked (mask_emails): the message, every key (the `extra` fields),
    the exception and its stack trace, whatever a call site passes (a vendor's refusal may quote the
    person's address). Masked value by value before the line is serialised, so it stays valid JSON;
    a value JSON cannot carry is masked as the text it becomes. One pass over the line's text."""

    def __init__(self, **kwargs: Any):
        super().__init__(json_default=lambda value: mask_emails(str(value)), **kwargs)

    def serialize(self, log: Any) -> str:
        return super().serialize(mask_emails(log))


logger = Logger(logger_formatter=MaskingFormatter())     # the one logger of every function
# urllib3 (under requests and botocore) says each retry of a broken connection as a warning of its own logger: in a
# Lambda, plain lines through the runtime's root handler, outside this logger and its masking, beside the one line
# that says what failed (a vendor's outage, a retry). Its errors only.
logging.getLogger("urllib3").setLevel(logging.ERROR)
metrics = Metrics()
F = TypeVar("F", bound=Callable[..., Any])


class Masked(Exception):
    """An exception whose text names nobody (masked where it was made): it may leave a function as it is
    (the worker's RetryBatch, which makes SQS return the records to retry)."""


class Failed(Exception):
    """What leaves a function in place of any other exception: its type's name, nothing it said."""


def contained(handler: F) -> F:
    """`handler` as a function's entry point. An exception that leaves it is printed by the Lambda runtime
    (or logged by Chalice, for a route's 500), message and traceback, outside this logger's masking: so it
    is logged here, masked, and a Failed leaves instead, without it as its context (a Masked leaves as is)."""
    @wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except Masked:
            raise
        except Exception as exc:
            logger.exception(f"{handler.__name__} failed")
            raise Failed(f"{handler.__name__} failed with {type(exc).__name__}: its message and traceback "
                         "are in the log line before, masked") from None
    return run  # type: ignore[return-value]


def mask_email(email: object) -> str:
    """a***@example.com: enough to recognise, not enough to leak."""
    if not isinstance(email, str) or "@" not in email:
        return "<none>" if not email else "<invalid>"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


# An address as people write it, not only as the RFC's ASCII would have it: a run of characters that are
# no space, quote, bracket, separator or URL/path separator (unicode letters, `\u00e9` as JSON escapes them,
# `o'brien`...) or a quoted name, an @, and a host of such labels with a dot between them, or one word
# (`localhost`). A run is only read from where it begins (quotes before it are kept, not masked) and
# possessively, so a long text without an address is read once, not again from each of its characters;
# and a link's or an id's text before the address (`?email=`, `<id>/`) stays.
_NOT = r"\s\"<>()\[\]{},;:@/?=&#"
_EMAIL = re.compile(rf"""(?:(?P<name>"[^"\n]{{0,64}}")|(?<![^{_NOT}])(?P<quotes>'*+)(?P<local>[^{_NOT}'][^{_NOT}]*+))"""
                    rf"@(?P<host>[^{_NOT}'.]++(?:\.[^{_NOT}'.]++)++|[^\W\d_][\w-]*+)")


def mask_emails(value: Any, known: Union[None, str, Sequence[str]] = None) -> Any:
    """Every email inside `value` (text, lists, tuples, dicts: their values, never their keys) as a***@example.com;
    `known` (the person's email as they gave it, valid or not, in any case; or several people's) as
    mask_email masks it."""
    if isinstance(value, str):
        for one in [known] if isinstance(known, str) else known or ():
            masked = mask_email(one.strip()) if one and one.strip() else None
            if masked:                    # where it stands alone, not inside a longer word
                value = re.sub(rf"(?<![\w.@+-]){re.escape(one.strip())}(?![\w.@+-])", lambda _: masked, value,
                               flags=re.IGNORECASE)
        return _EMAIL.sub(_masked, value)
    if isinstance(value, list):
        return [mask_emails(v, known) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_emails(v, known) for v in value)
    if isinstance(value, dict):
        return {k: mask_emails(v, known) for k, v in value.items()}
    return value


def _masked(m: re.Match) -> str:
    local = m["name"] or m["local"]
    if re.fullmatch(r".?\*\*\*", local):        # masked already (a***@, or "***@ of a quoted name)
        return m.group(0)
    return f"{m['quotes'] or ''}{local[:1]}***@{m['host']}"


_counting = True


@contextmanager
def uncounted() -> Iterator[None]:
    """What is counted meanwhile is dropped: the CLI's commands, which run the services outside a Lambda. Nothing
    flushes their counts, and Powertools prints a metric's EMF line to stdout by itself at its 100th value (100
    429s in a long backfill), inside the command's answer (`--json`). A flag, not a context variable: the
    command's worker threads count too."""
    global _counting
    before, _counting = _counting, False
    try:
        yield
    finally:
        _counting = before


#: The metrics are the process's: one process answering requests in threads (`make run`'s local server) counts and
#: flushes them from several at once, and a flush between another's check and its own raised (a webhook's 500).
_lock = threading.Lock()


def count(name: str, value: float = 1) -> None:
    if _counting:
        with _lock:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def seconds(name: str, value: Optional[float]) -> None:
    """A delay (domain/latency.delay), in Seconds, as count counts: the dashboard shows its p50, p95 and maximum.
    None: nothing measured. Never fails its caller (it follows a qualification RF confirmed, a join written): a
    value Powertools refuses is logged and dropped."""
    if _counting and value is not None:
        try:
            with _lock:
                metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=value)
        except Exception:
            logger.warning("a delay was not recorded", extra={"metric": name})


def flush() -> None:
    """The invocation's metrics as one EMF log line; none, no line (Powertools would log a UserWarning
    saying there is nothing to publish: noise in the function's logs, once per container)."""
    with _lock:
        if metrics.metric_set:
            metrics.flush_metrics()
