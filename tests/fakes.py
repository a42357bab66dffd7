"""In-memory fakes of the adapters' interfaces, for unit tests of the services."""
from __future__ import annotations

from chalicelib.config import Config


class FakeClock:
    def __init__(self, now: float = 1_790_000_000.0):
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeQueue:
    def __init__(self):
        self.sent: list[dict] = []
        self.dead: list[dict] = []
        self.deleted: list[str] = []
        self.delayed: dict[str, float] = {}

    def send(self, message: dict, delay: int = 0) -> str:
        self.sent.append(message)
        return f"m{len(self.sent)}"

    def send_many(self, messages: list[dict]) -> None:
        self.sent += messages

    def dead_letter(self, body: str, reason: str, attempts: int, failed_at: str) -> None:
        self.dead.append({"body": body, "reason": reason, "attempts": attempts})

    def delete(self, receipt_handles: list[str]) -> None:
        self.deleted += receipt_handles

    def retry_in(self, receipt_handle: str, seconds: float) -> None:
        self.delayed[receipt_handle] = seconds


class FakeSlots:
    """The rate-limit part of the Store: fixed windows in a dict."""

    def __init__(self):
        self.windows: dict[tuple[str, int], int] = {}

    def take_slot(self, budget: str, window_start: int, limit: int, ttl: int) -> bool:
        used = self.windows.get((budget, window_start), 0)
        if used >= limit:
            return False
        self.windows[(budget, window_start)] = used + 1
        return True


class FakeRuntime:
    """What the webhook intake and the worker's settle step use of the Runtime."""

    def __init__(self, *, rf_secret="s3cret", intercom_secrets=None, campaigns=("42",), **config):
        self.config = Config.from_env({"BRIDGE_MAX_ATTEMPTS": "3", **config})
        self.clock = FakeClock()
        self.queue = FakeQueue()
        self._rf_secret = rf_secret
        self._intercom = intercom_secrets or {}
        self._campaigns = set(campaigns)

    def rf_webhook_secret(self) -> str:
        return self._rf_secret

    def intercom_client_secret(self, workspace: str):
        return self._intercom.get(workspace)

    def campaign_known(self, campaign_id: str) -> bool:
        return campaign_id in self._campaigns
