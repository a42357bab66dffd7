"""Runtime configuration, read from the environment (set by .chalice/config.json,
by the local stack, or by tests). Nothing here does I/O."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

from .domain.oauth import safe_url
from .ports.store import DEFAULT_LEASE_SECONDS

#: What the worker keeps of the Lambda's time after its records' AWS calls (a hung one fails its record in time):
#: to send the waiting copies back, delete the handled messages and raise for the rest (each SQS call an attempt's
#: time, adapters/aws.WORKER), then RAISE_MS to log and raise. Killed by its timeout, it would log nothing,
#: count no try and give the whole batch back.
SETTLE_MS = 8000
RAISE_MS = 1000

# Where tokens, client secrets and an admin's sign-in are sent: each field, its variable and its default.
URLS = {"intercom_base_url": ("INTERCOM_BASE_URL", "https://api.intercom.io"),
        "intercom_oauth_url": ("INTERCOM_OAUTH_URL", "https://app.intercom.com/oauth"),
        "rf_base_url": ("RF_BASE_URL", "https://api.referral-factory.com/api/v2")}


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
    rf_calls_per_minute: int    # shared budget: the most calls to RF in any 60 s (its limit: 600, then an IP block)
    intercom_calls_per_10s: int  # shared budget per workspace: the most calls in any 10 s (~1,666)
    reconcile_per_run: int      # pending leads checked per reconciliation run
    reconcile_sweep_days: float  # pending leads older than this leave the one-by-one sweep
    reconcile_retry: float      # seconds work reconciliation queued gets before it is queued again
    record_budget_ms: int       # a record is not started with less Lambda time left than this
    secrets_path: str           # SSM Parameter Store prefix of this stage's secrets (adapters/secrets.py)
    history_days: int           # history entries expire (DynamoDB TTL) after this many days; 0: never
    search_lag: float = 180.0   # seconds Intercom's search may lag a create (what the bridge waits for)
    concurrency: int = 10       # records of a batch (and calls of a batch step) run at once
    rf_block_recheck: float = 900.0   # seconds after RF blocked us (403) before one call checks again
    reconcile_every: float = 900.0    # seconds between scheduled reconciliations (what `doctor` expects)
    outage_hours: float = 24.0        # how long work waits out a vendor's outage before the dead-letter queue
    dlq_poll: int = 1                 # seconds a scan of the dead letters long-polls (0: a one-server SQS, moto)
    lease: float = DEFAULT_LEASE_SECONDS   # seconds a claim holds (ports/store.py): the store is built with it

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Config":
        e = os.environ if env is None else env
        return cls(
            table=e.get("BRIDGE_TABLE", "rf-intercom-bridge-table"),
            queue_url=e.get("BRIDGE_QUEUE_URL", ""),
            dlq_url=e.get("BRIDGE_DLQ_URL", ""),
            intercom_base_url=_url(e, "intercom_base_url").rstrip("/"),
            intercom_oauth_url=_url(e, "intercom_oauth_url"),
            rf_base_url=_url(e, "rf_base_url").rstrip("/"),
            max_attempts=int(e.get("BRIDGE_MAX_ATTEMPTS", "5")),
            max_body_bytes=int(e.get("BRIDGE_MAX_BODY_BYTES", str(256 * 1024))),
            http_timeout=float(e.get("BRIDGE_HTTP_TIMEOUT", "10")),
            max_retry_wait=float(e.get("BRIDGE_MAX_RETRY_WAIT", "20")),
            rf_calls_per_minute=int(e.get("RF_CALLS_PER_MINUTE", "600")),
            intercom_calls_per_10s=int(e.get("INTERCOM_CALLS_PER_10S", "1666")),
            reconcile_per_run=int(e.get("RECONCILE_PER_RUN", "1000")),
            reconcile_sweep_days=float(e.get("RECONCILE_SWEEP_DAYS", "7")),
            # The work queue's visibility timeout (720 s) times BRIDGE_MAX_ATTEMPTS (5): a message's tries.
            reconcile_retry=float(e.get("RECONCILE_RETRY_SECONDS", "3600")),
            record_budget_ms=int(e.get("BRIDGE_RECORD_BUDGET_MS", "30000")),
            secrets_path="/" + e.get("BRIDGE_SECRETS_PATH", "/rf-intercom-bridge").strip("/"),
            history_days=int(e.get("BRIDGE_HISTORY_DAYS", "400")),
            search_lag=float(e.get("INTERCOM_SEARCH_LAG_SECONDS", "180")),
            concurrency=max(1, int(e.get("BRIDGE_CONCURRENCY", "10"))),
            rf_block_recheck=float(e.get("RF_BLOCK_RECHECK_SECONDS", "900")),
            dlq_poll=int(e.get("BRIDGE_DLQ_POLL_SECONDS", "1")),
            lease=float(e.get("BRIDGE_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)),
            # The schedule: RECONCILE_EVERY_MINUTES as deployed (app.py), RECONCILE_EVERY_SECONDS on `make run`.
            reconcile_every=float(e["RECONCILE_EVERY_SECONDS"]) if e.get("RECONCILE_EVERY_SECONDS")
            else 60 * reconcile_minutes(e),
            outage_hours=_hours(e, "BRIDGE_OUTAGE_HOURS", "24"),
        )

    def insecure(self, *names: str) -> Optional[str]:
        """One line naming each variable of URLS (of the fields `names`, else all) that is not an https:// URL
        (plain http:// to this machine only: the local stack's simulators), and would carry a token or a sign-in
        in clear; None when all are safe. from_env does not refuse them: a webhook is sent nowhere, so the API
        keeps taking and queueing webhooks; what would send a token asks this first (`make deploy`, the CLI,
        the worker's clients, the OAuth pages). The values are not repeated (a token pasted in their place)."""
        bad = [f"{URLS[name][0]} must be an https:// URL, e.g. {URLS[name][1]}" for name in names or URLS
               if not safe_url(getattr(self, name))]
        return "; ".join(bad) + " (plain http:// only to localhost or 127.0.0.1): tokens would travel in clear" \
            if bad else None


#: The longest deployed reconciliation schedule, in minutes: the reconcile-failing alarm watches two runs, within a
#: day; the reconcile-not-running alarm three (CloudWatch evaluates one of hourly periods over at most 7 days).
MAX_RECONCILE_MINUTES = 720


def reconcile_minutes(environ) -> int:
    """The deployed reconciliation schedule, RECONCILE_EVERY_MINUTES: app.py's rate (EventBridge's, in whole minutes)
    and the period of the reconcile-failing alarm (`make deploy`, which says a bad value before any AWS call). Else a
    ValueError of one line naming the variable. RECONCILE_EVERY_SECONDS is `make run`'s, not read here."""
    value = environ.get("RECONCILE_EVERY_MINUTES", "15") or "15"
    try:
        minutes = float(value)
    except ValueError:
        minutes = math.nan
    if not math.isfinite(minutes) or minutes != int(minutes) or not 1 <= minutes <= MAX_RECONCILE_MINUTES:
        raise ValueError(f"RECONCILE_EVERY_MINUTES must be a whole number of minutes from 1 to "
                         f"{MAX_RECONCILE_MINUTES} (the reconciliation schedule, e.g. 15), not {value!r}")
    return int(minutes)


def _url(e, name: str) -> str:
    variable, default = URLS[name]
    return e.get(variable, default)


def _hours(e, name: str, default: str) -> float:
    """A number of hours greater than 0, else a ValueError naming the variable (nan would wait forever, and 0
    or less give up at once)."""
    value = e.get(name) or default
    try:
        hours = float(value)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours) or hours <= 0:
        raise ValueError(f"{name} must be a number of hours greater than 0 (e.g. {default}), not {value!r}")
    return hours
