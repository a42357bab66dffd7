"""Runtime configuration, read from the environment (set by .chalice/config.json,
by the local stack, or by tests). Nothing here does I/O."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    table: str
    queue_url: str
    dlq_url: str
    intercom_base_url: str
    intercom_oauth_url: str     # where an admin authorizes the public app (the simulator's page in tests)
    rf_base_url: str
    max_attempts: int           # tries before a message goes to the DLQ with its reason
    max_body_bytes: int         # larger webhook bodies get 413
    http_timeout: float         # seconds, per HTTP call to Intercom / RF
    max_retry_wait: float       # longer server-requested waits go back to the queue instead
    rf_calls_per_minute: int    # shared budget, below RF's 600/min IP-block limit
    intercom_calls_per_10s: int  # shared budget per workspace, below ~1,666 / 10 s
    reconcile_per_run: int      # pending leads checked per reconciliation run
    record_budget_ms: int       # a record is not started with less Lambda time left than this
    secrets_path: str           # SSM Parameter Store prefix of this stage's secrets (adapters/secrets.py)
    history_days: int           # history entries expire (DynamoDB TTL) after this many days; 0: never

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Config":
        e = os.environ if env is None else env
        return cls(
            table=e.get("BRIDGE_TABLE", "rf-intercom-bridge-table"),
            queue_url=e.get("BRIDGE_QUEUE_URL", ""),
            dlq_url=e.get("BRIDGE_DLQ_URL", ""),
            intercom_base_url=e.get("INTERCOM_BASE_URL", "https://api.intercom.io").rstrip("/"),
            intercom_oauth_url=e.get("INTERCOM_OAUTH_URL", "https://app.intercom.com/oauth"),
            rf_base_url=e.get("RF_BASE_URL", "https://api.referral-factory.com/api/v2").rstrip("/"),
            max_attempts=int(e.get("BRIDGE_MAX_ATTEMPTS", "5")),
            max_body_bytes=int(e.get("BRIDGE_MAX_BODY_BYTES", str(256 * 1024))),
            http_timeout=float(e.get("BRIDGE_HTTP_TIMEOUT", "10")),
            max_retry_wait=float(e.get("BRIDGE_MAX_RETRY_WAIT", "20")),
            rf_calls_per_minute=int(e.get("RF_CALLS_PER_MINUTE", "500")),
            intercom_calls_per_10s=int(e.get("INTERCOM_CALLS_PER_10S", "1500")),
            reconcile_per_run=int(e.get("RECONCILE_PER_RUN", "1000")),
            record_budget_ms=int(e.get("BRIDGE_RECORD_BUDGET_MS", "30000")),
            secrets_path="/" + e.get("BRIDGE_SECRETS_PATH", "/rf-intercom-bridge").strip("/"),
            history_days=int(e.get("BRIDGE_HISTORY_DAYS", "400")),
        )
