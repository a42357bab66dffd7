"""`bridge doctor` (and `bridge backfill`) when Intercom or Referral Factory answers with an error: the
advice follows the answer's status, never digits in its text. Only 401/403 say the token was refused;
a 429, a 5xx or a timeout says the vendor is unavailable or limiting the bridge now (nothing to change,
no token to replace)."""
from __future__ import annotations

from typing import Any

import pytest

from chalicelib.errors import ApiError, Transient, WorkError
from chalicelib.services.doctor import examine
from tests.unit import scenario


class Doctored:
    """What the doctor is given, over the worker's fakes."""

    def __init__(self) -> None:
        self.work = work = scenario.world()
        self.config, self.store, self.clock, self.queue = work.config, work.store, work.clock, work.queue
        work.store.connections.put_workspace(scenario.WS, ["token", "client-secret"])
        work.store.connections.put_rf(["token", "webhook-secret"])

    def intercom(self, workspace: str) -> Any:
        return self.work.apis.intercom_

    def rf(self) -> Any:
        return self.work.apis.rf_


def finding(rt: Doctored, check: str) -> dict:
    [found] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == check]
    return found


def raising(exc: WorkError):
    def call(*_: Any) -> dict:
        raise exc
    return call


UNAVAILABLE = {"429": lambda vendor: ApiError(vendor, 429, "Too many requests 401", retry_after=10),
               "500": lambda vendor: ApiError(vendor, 500, "Internal error (403)"),
               "timeout": lambda vendor: Transient(f"{vendor} did not answer: read timed out")}
WAITS = "nothing to change: the work waits and retries; run `bridge doctor 42` again later"


@pytest.mark.parametrize("answer", list(UNAVAILABLE))
def test_intercom_unavailable_or_limiting_is_not_a_refused_token(answer):
    rt = Doctored()
    rt.work.apis.intercom_.me = raising(UNAVAILABLE[answer]("Intercom"))   # type: ignore[attr-defined]
    token = finding(rt, "intercom.token")
    assert not token["ok"] and token["what"].startswith("Intercom is unavailable or limiting the bridge now")
    assert "refused" not in token["what"] and "connect" not in token["fix"] and "token" not in token["fix"]
    assert token["fix"] == WAITS


@pytest.mark.parametrize("status", [401, 403])
def test_intercom_refusing_the_token_is_told_to_replace_it(status):
    rt = Doctored()
    rt.work.apis.intercom_.me = raising(ApiError("Intercom", status, "Unauthorized"))   # type: ignore[attr-defined]
    token = finding(rt, "intercom.token")
    assert token["what"].startswith("Intercom refused the token of workspace ws")
    assert token["fix"] == "`bridge workspace connect ws` (it asks for the new token), then `bridge dlq replay`"
