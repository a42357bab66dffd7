"""Powertools logger and metrics, and masking of personal data in logs."""
from __future__ import annotations

import os
import re
from typing import Any, Optional

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "rf-intercom-bridge")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "RFIntercomBridge")

logger = Logger()
metrics = Metrics()


def mask_email(email: object) -> str:
    """a***@example.com: enough to recognise, not enough to leak."""
    if not isinstance(email, str) or "@" not in email:
        return "<none>" if not email else "<invalid>"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


_EMAIL = re.compile(r"([A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")


def mask_emails(value: Any, known: Optional[str] = None) -> Any:
    """Every email inside `value` (text, lists, dicts) as a***@example.com; `known` (the person's
    email as they gave it, valid or not, in any case) as mask_email masks it."""
    if isinstance(value, str):
        if known and known.strip():       # where it stands alone, not inside a longer word
            value = re.sub(rf"(?<![\w.@+-]){re.escape(known.strip())}(?![\w.@+-])",
                           lambda _: mask_email(known.strip()), value, flags=re.IGNORECASE)
        return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)
    if isinstance(value, list):
        return [mask_emails(v, known) for v in value]
    if isinstance(value, dict):
        return {k: mask_emails(v, known) for k, v in value.items()}
    return value


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def flush() -> None:
    """The invocation's metrics as one EMF log line; none, no line (Powertools would log a UserWarning
    saying there is nothing to publish: noise in the function's logs, once per container)."""
    if metrics.metric_set:
        metrics.flush_metrics()
