"""In-memory fakes of the adapters' interfaces, for unit tests of the services."""
from __future__ import annotations

from typing import Any, Callable, Optional

from chalicelib.adapters.memory import MemoryStore
from chalicelib.adapters.queue import encode
from chalicelib.adapters.secrets import Scoped
from chalicelib.config import Config
from chalicelib.ports import Conflict, Merged, NotFound
from chalicelib.services.deps import WorkDeps


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

    def __init__(self, prefix: str = "/bridge", values: Optional[dict] = None, reads: Optional[list] = None):
        super().__init__(prefix)
        self.values = {} if values is None else values
        self.reads = [] if reads is None else reads

    def scoped(self, part: str) -> "MemorySecrets":
        return MemorySecrets(self.full_name(part), self.values, self.reads)

    def get(self, name: str) -> Optional[str]:
        full = self.full_name(name)
        self.reads.append(full)
        return self.values.get(full)

    def put(self, name: str, value: str) -> None:
        self.values[self.full_name(name)] = value

    def delete(self, name: str) -> None:
        self.values.pop(self.full_name(name), None)


class FakeQueue:
    """WorkQueue and DeadLetterQueue in memory."""

    dlq_url = "memory://dlq"

    def __init__(self) -> None:
        self.sent: list[dict | str] = []
        self.dead: list[dict] = []
        self.deleted: list[str] = []
        self.delayed: dict[str, float] = {}

    def send(self, message: dict | str) -> str:
        encode(message)                      # the same size limit as SQS (raises MessageTooLarge)
        self.sent.append(message)
        return f"m{len(self.sent)}"

    def send_many(self, messages: list[dict]) -> None:
        self.sent += messages

    def dead_letter(self, body: str, reason: str, attempts: int, failed_at: str) -> None:
        self.dead.append({"body": body, "reason": reason, "attempts": attempts, "failed_at": failed_at})

    def delete(self, receipt_handles: list[str]) -> None:
        self.deleted += receipt_handles

    def retry_in(self, receipt_handle: str, seconds: float) -> None:
        self.delayed[receipt_handle] = seconds

    def receive_dead(self, max_messages: int = 10, visibility: int = 60) -> list[dict]:
        return []

    def delete_dead(self, receipt_handle: str) -> None:
        pass

    def release_dead(self, receipt_handle: str) -> None:
        pass


class FakeEdge:
    """What the webhook intake is given (services/ingest.Edge)."""

    def __init__(self, *, rf_secret: str = "s3cret", intercom_secrets: Optional[dict] = None,
                 campaigns: tuple = ("42",), **config: str):
        self.config = Config.from_env({"BRIDGE_MAX_ATTEMPTS": "3", **config})
        self.clock: Callable[[], float] = FakeClock()
        self.queue = FakeQueue()
        self._rf_secret = rf_secret
        self._intercom = intercom_secrets or {}
        self._campaigns = set(campaigns)

    def rf_webhook_secret(self, accept: Optional[Callable[[str], bool]] = None) -> str:
        return self._rf_secret

    def intercom_client_secret(self, workspace: str, accept: Optional[Callable[[str], bool]] = None) -> Optional[str]:
        return self._intercom.get(workspace)

    def campaign_known(self, campaign_id: str) -> bool:
        return campaign_id in self._campaigns


class FakeIntercom:
    """IntercomPort in memory: contacts by id, search that can lag, 409 on a duplicate email, merged
    (410) and gone (404) contacts. `fail` maps a call name to the exception its next call raises."""

    def __init__(self, attributes: Optional[dict] = None):
        self.contacts: dict[str, dict] = {}
        self.merged: dict[str, Optional[str]] = {}
        self.unsearchable: set[str] = set()
        self.tags: list[tuple[str, str]] = []
        self.calls: list[str] = []
        self.fail: dict[str, Exception] = {}
        self.attributes = attributes or {}
        self.made = 0

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail.pop(name)

    def add(self, email: str, role: str = "lead", searchable: bool = True, **custom: Any) -> dict:
        self.made += 1
        contact_id = f"c{self.made}"
        contact = {"type": "contact", "id": contact_id, "email": email, "role": role, "custom_attributes": dict(custom)}
        self.contacts[contact_id] = contact
        if not searchable:
            self.unsearchable.add(contact_id)
        return contact

    def merge(self, contact_id: str, into: Optional[str]) -> None:
        """Intercom merged the contact: a GET answers 410 with the survivor (None: without a link)."""
        self.contacts.pop(contact_id, None)
        self.merged[contact_id] = into

    def search_by_email(self, email: str) -> list[dict]:
        self._call("search")
        return [c for c in self.contacts.values() if c["email"] == email and c["id"] not in self.unsearchable]

    def create_contact(self, body: dict) -> dict:
        self._call("create")
        for c in self.contacts.values():
            if c["email"] == body.get("email"):
                raise Conflict(c["id"], f"A contact matching those details already exists with id={c['id']}")
        contact = self.add(body["email"], body.get("role", "user"), **body.get("custom_attributes", {}))
        contact.update({k: v for k, v in body.items() if k not in ("custom_attributes", "role")})
        return contact

    def update_contact(self, contact_id: str, body: dict) -> dict:
        self._call("update")
        contact = self.contacts[contact_id]
        contact["custom_attributes"].update(body.get("custom_attributes", {}))
        contact.update({k: v for k, v in body.items() if k != "custom_attributes"})
        return contact

    def get_contact(self, contact_id: str) -> dict:
        self._call("get")
        if contact_id in self.merged:
            raise Merged(self.merged[contact_id])
        if contact_id not in self.contacts:
            raise NotFound(contact_id)
        return self.contacts[contact_id]

    def data_attributes(self) -> dict[str, dict]:
        return self.attributes

    def tag_contact(self, contact_id: str, tag_name: str) -> str:
        self._call("tag")
        self.tags.append((contact_id, tag_name))
        return "t1"


class FakeRF:
    """ReferralFactoryPort in memory. `qualify` answers with `answers` in turn (an exception is
    raised) and then succeeds; `qualified_at` is what get_user says of a qualified user."""

    def __init__(self, users: Optional[dict] = None):
        self.users = users or {}
        self.qualified: list[str] = []
        self.calls: list[str] = []
        self.answers: list[Exception] = []

    def get_user(self, user_id: str) -> dict:
        self.calls.append(f"get_user {user_id}")
        user = dict(self.users.get(str(user_id), {"id": user_id}))
        if str(user_id) in self.qualified:
            user["qualified_at"] = "2026-11-25T12:00:00Z"
        return user

    def get_campaign(self, campaign_id: str) -> dict:
        return {"id": campaign_id, "name": "Friends of Acme"}

    def qualify(self, user_id: str) -> dict:
        self.calls.append(f"qualify {user_id}")
        if self.answers:
            raise self.answers.pop(0)
        self.qualified.append(user_id)
        return {"id": user_id}


class FakeApis:
    """Apis over one FakeIntercom (for every workspace) and one FakeRF."""

    def __init__(self, intercom: Optional[FakeIntercom] = None, rf: Optional[FakeRF] = None):
        self.intercom_ = intercom or FakeIntercom()
        self.rf_ = rf or FakeRF()

    def intercom(self, workspace: str) -> FakeIntercom:
        return self.intercom_

    def rf(self) -> FakeRF:
        return self.rf_

    def attributes(self, workspace: str) -> dict[str, dict]:
        return self.intercom_.attributes

    def campaign_name(self, campaign_id: str) -> Optional[str]:
        return self.rf_.get_campaign(campaign_id).get("name")


class FakeWork:
    """What the worker is given (services/worker.Work): the store's in-memory twin, fake APIs,
    a fake queue and clock."""

    def __init__(self, apis: Optional[FakeApis] = None, **config: str):
        self.config = Config.from_env({"BRIDGE_MAX_ATTEMPTS": "3", **config})
        self.clock = FakeClock()
        self.store = MemoryStore(self.clock)
        self.apis = apis or FakeApis()
        self.queue = FakeQueue()
        self.deps = WorkDeps.of(self.store, self.apis)
        self.remaining_ms: Callable[[], int] = lambda: 10**9


class FakeIntercomAuth:
    """IntercomAuth in memory: `codes` code -> token (single use), `apps` token -> /me's app."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.apps: dict[str, dict] = {}
        self.calls: list[str] = []

    def exchange(self, code: str, client_id: str, client_secret: str) -> str:
        from chalicelib.errors import Permanent
        self.calls.append("exchange")
        if code not in self.codes:
            raise Permanent("Intercom answered 400: Invalid or already used authorization code")
        return self.codes.pop(code)

    def whoami(self, token: str, api_base: Optional[str] = None) -> dict:
        from chalicelib.errors import Permanent
        self.calls.append("me")
        if token not in self.apps:
            raise Permanent("Intercom answered 401 unauthorized: Access Token Invalid")
        return {"type": "admin", "email": "admin@example.com", "app": self.apps[token]}


class FakeConnecting:
    """What connecting is given (services/connections.Connecting, services/oauth.OAuthEdge)."""

    def __init__(self, **config: str):
        self.config = Config.from_env(config)
        self.clock = FakeClock()
        self.store = MemoryStore(self.clock)
        self.secrets = MemorySecrets()
        self.auth = FakeIntercomAuth()

    def intercom_auth(self) -> FakeIntercomAuth:
        return self.auth

    def oauth_app(self) -> Optional[tuple[str, str, str]]:
        from chalicelib.services.connections import OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_STATE_KEY
        edge = self.secrets.scoped("edge")
        values = tuple(edge.get(n) for n in (OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_STATE_KEY))
        return values if all(values) else None  # type: ignore[return-value]


def _typed_as_their_interfaces() -> None:
    """Never called: the type checker (make test) proves that each fake still implements the
    interface it stands in for, so a fake cannot drift from its port."""
    from chalicelib.ports import (Apis, DeadLetterQueue, IntercomAuth, IntercomPort, ReferralFactoryPort, SecretStore,
                                  Store, WorkQueue)
    from chalicelib.services.oauth import OAuthEdge
    from chalicelib.services.admin import Operator
    from chalicelib.services.ingest import Edge
    from chalicelib.services.deps import Stack
    from chalicelib.services.worker import Work

    intercom: IntercomPort = FakeIntercom()
    rf: ReferralFactoryPort = FakeRF()
    apis: Apis = FakeApis()
    queue: WorkQueue = FakeQueue()
    dead: DeadLetterQueue = FakeQueue()
    secrets: SecretStore = MemorySecrets()
    store: Store = MemoryStore()
    edge: Edge = FakeEdge()
    work: Work = FakeWork()
    scheduled: Stack[WorkQueue] = FakeWork()
    auth: IntercomAuth = FakeIntercomAuth()
    connecting: OAuthEdge = FakeConnecting()
    del intercom, rf, apis, queue, dead, secrets, store, edge, work, scheduled, Operator, auth, connecting
