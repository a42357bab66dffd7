"""Powertools logger and metrics, and masking of personal data in logs."""
from __future__ import annotations

import os

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


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
