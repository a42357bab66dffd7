"""In-memory fakes of the adapters' interfaces, for unit tests of the services."""
from __future__ import annotations

from chalicelib.adapters.queue import encode
from chalicelib.adapters.secrets import Scoped
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


class MemorySecrets(Scoped):
    """SecretStore in memory, with the real store's naming rules (scoped views share one dict).
    `reads` records every full name read, in order."""

    def __init__(self, prefix: str = "/bridge", values: dict | None = None, reads: list | None = None):
        super().__init__(prefix)
        self.values = {} if values is None else values
        self.reads = [] if reads is None else reads

    def scoped(self, part: str) -> "MemorySecrets":
        return MemorySecrets(self.full_name(part), self.values, self.reads)

    def get(self, name: str):
        full = self.full_name(name)
        self.reads.append(full)
        return self.values.get(full)

    def put(self, name: str, value: str) -> None:
        self.values[self.full_name(name)] = value

    def delete(self, name: str) -> None:
        self.values.pop(self.full_name(name), None)


class FakeQueue:
    def __init__(self):
        self.sent: list[dict] = []
        self.dead: list[dict] = []
        self.deleted: list[str] = []
        self.delayed: dict[str, float] = {}

    def send(self, message: dict | str, delay: int = 0) -> str:
        encode(message)                      # the same size limit as SQS (raises MessageTooLarge)
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


class FakeHistory:
    """The history part of the Store: entries per person, in order."""

    def __init__(self):
        self.entries: dict[tuple[str, str], list[dict]] = {}

    def append_history(self, campaign_id: str, rf_user_id: str, entries: list[dict]) -> None:
        self.entries.setdefault((campaign_id, rf_user_id), []).extend(entries)


class FakeRuntime:
    """What the webhook intake and the worker's batch handling use of the Runtime."""

    def __init__(self, *, rf_secret="s3cret", intercom_secrets=None, campaigns=("42",), **config):
        self.config = Config.from_env({"BRIDGE_MAX_ATTEMPTS": "3", **config})
        self.clock = FakeClock()
        self.queue = FakeQueue()
        self._rf_secret = rf_secret
        self._intercom = intercom_secrets or {}
        self._campaigns = set(campaigns)
        self.store = FakeHistory()
        self.remaining_ms = lambda: 10**9

    def rf_webhook_secret(self, accept=None) -> str:
        return self._rf_secret

    def intercom_client_secret(self, workspace: str, accept=None):
        return self._intercom.get(workspace)

    def campaign_known(self, campaign_id: str) -> bool:
        return campaign_id in self._campaigns


class FakeIntercom:
    """IntercomPort in memory: contacts by id, search that can lag, 409 on a duplicate email."""

    def __init__(self, attributes: dict | None = None):
        self.contacts: dict[str, dict] = {}
        self.unsearchable: set[str] = set()
        self.tags: list[tuple[str, str]] = []
        self.calls: list[str] = []
        self.attributes = attributes or {}

    def add(self, email: str, role: str = "lead", searchable: bool = True, **custom) -> dict:
        contact = {"type": "contact", "id": f"c{len(self.contacts) + 1}", "email": email, "role": role,
                   "custom_attributes": dict(custom)}
        self.contacts[contact["id"]] = contact
        if not searchable:
            self.unsearchable.add(contact["id"])
        return contact

    def search_by_email(self, email: str) -> list[dict]:
        self.calls.append("search")
        return [c for c in self.contacts.values() if c["email"] == email and c["id"] not in self.unsearchable]

    def create_contact(self, body: dict) -> dict:
        from chalicelib.adapters.intercom import Conflict
        self.calls.append("create")
        for c in self.contacts.values():
            if c["email"] == body.get("email"):
                raise Conflict(c["id"], f"A contact matching those details already exists with id={c['id']}")
        contact = self.add(body["email"], body.get("role", "user"), **body.get("custom_attributes", {}))
        contact.update({k: v for k, v in body.items() if k not in ("custom_attributes", "role")})
        return contact

    def update_contact(self, contact_id: str, body: dict) -> dict:
        self.calls.append("update")
        contact = self.contacts[contact_id]
        contact["custom_attributes"].update(body.get("custom_attributes", {}))
        contact.update({k: v for k, v in body.items() if k != "custom_attributes"})
        return contact

    def get_contact(self, contact_id: str) -> dict:
        from chalicelib.adapters.intercom import NotFound
        self.calls.append("get")
        if contact_id not in self.contacts:
            raise NotFound(contact_id)
        return self.contacts[contact_id]

    def data_attributes(self) -> dict[str, dict]:
        return self.attributes

    def tag_contact(self, contact_id: str, tag_name: str) -> str:
        self.tags.append((contact_id, tag_name))
        return "t1"


class FakeRF:
    """ReferralFactoryPort in memory."""

    def __init__(self, users: dict | None = None):
        self.users = users or {}
        self.qualified: list[str] = []

    def get_user(self, user_id: str) -> dict:
        return self.users[str(user_id)]

    def get_campaign(self, campaign_id: str) -> dict:
        return {"id": campaign_id, "name": "Friends of Acme"}

    def qualify(self, user_id: str) -> dict:
        self.qualified.append(user_id)
        return {"id": user_id}


class FakeJoinRuntime:
    """What the join step needs of the Runtime, with fakes behind it."""

    def __init__(self, intercom: FakeIntercom, rf: FakeRF):
        self._intercom, self._rf = intercom, rf
        self.created: list[tuple] = []
        self.store = self

    def note_created(self, *args) -> None:
        self.created.append(args)

    def intercom(self, workspace: str) -> FakeIntercom:
        return self._intercom

    def rf(self) -> FakeRF:
        return self._rf

    def attributes(self, workspace: str) -> dict:
        return self._intercom.attributes

    def campaign_name(self, campaign_id: str) -> str:
        return self._rf.get_campaign(campaign_id)["name"]
