"""In-memory fakes of the adapters' interfaces, for unit tests of the services."""
from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, Callable, ContextManager, Iterable, Optional, Sequence

from chalicelib.adapters.memory import DIGEST_KEY, MemoryStore
from chalicelib.adapters.queue import encode
from chalicelib.adapters.secrets import Scoped
from chalicelib.config import Config
from chalicelib.domain.mapping import MARKER_NAME, unlisted
from chalicelib.domain.people import digest
from chalicelib.errors import Uncertain
from chalicelib.ports import Conflict, Store, Later, Merged, NotFound, NotSent, PeoplePage, ReceivedLetter, Refused
from chalicelib.ports.edge import Refusals
from chalicelib.ports.queue import kept_reason
from chalicelib.ports.store import LedgerEntry, SyncRepository
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
        return type(self)(self.full_name(part), self.values, self.reads)

    def get(self, name: str) -> Optional[str]:
        full = self.full_name(name)
        self.reads.append(full)
        return self.values.get(full)

    def put(self, name: str, value: str) -> None:
        self.values[self.full_name(name)] = value

    def delete(self, name: str) -> None:
        self.values.pop(self.full_name(name), None)


class FakeQueue:
    """WorkQueue and DeadLetterQueue in memory. Batch sends go 10 a call (`batch_calls` holds each
    call's size); `refuse(message)` gives the reason SQS would refuse one (send_many then raises
    NotSent after sending the rest). Dead letters (`dead_letter` puts them in, as SQS messages) keep
    SQS's hide times by `clock`: a letter received is hidden for its visibility timeout, then can be
    received again (with a new receipt handle); `hide_dead_many` refuses a stale handle or a letter
    whose hide time ran out. `refuse_delete(handle)` gives the reason SQS would refuse to delete one
    (a work record or a dead letter: it stays)."""

    dlq_url = "memory://dlq"

    def __init__(self, clock: Optional[Callable[[], float]] = None) -> None:
        self.clock: Callable[[], float] = clock or FakeClock()
        self.sent: list[dict | str] = []
        self.dead: list[dict] = []
        self.deleted: list[str] = []
        self.delayed: dict[str, float] = {}
        self.sent_delays: list[float] = []
        self.deferred: list[Later] = []
        self.batch_calls: list[int] = []
        self.refuse: Callable[[dict | str], Optional[str]] = lambda message: None
        self.refuse_delete: Callable[[str], Optional[str]] = lambda handle: None
        self.letters: dict[str, ReceivedLetter] = {}   # message id -> the letter, as received last
        self._visible_at: dict[str, float] = {}
        self.dead_calls: Counter[str] = Counter()
        self._made = 0

    def send(self, message: dict | str) -> str:
        encode(message)                      # the same size limit as SQS (raises MessageTooLarge)
        self.sent.append(message)
        self.sent_delays.append(0.0)         # (one a message sent: its delay)
        return f"m{len(self.sent)}"

    def send_many(self, messages: Sequence[dict | str], delay: float = 0) -> None:
        refused: list[tuple[dict | str, str]] = []
        for m in messages:                   # every one, before any is sent (as the adapter does)
            encode(m)
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            self.batch_calls.append(len(chunk))
            answers = [(m, self.refuse(m)) for m in chunk]
            refused += [(m, reason) for m, reason in answers if reason]
            sent = [m for m, reason in answers if not reason]
            self.sent += sent
            self.sent_delays += [delay] * len(sent)
        if refused:
            raise NotSent(refused, len(messages))

    def dead_letter(self, body: str, reason: str, attempts: int, failed_at: str) -> None:
        self.dead.append({"body": body, "reason": reason, "attempts": attempts, "failed_at": failed_at})
        self._made += 1
        message_id = f"d{self._made}"
        self.letters[message_id] = ReceivedLetter(message_id, "", body, kept_reason(reason) or "unknown", attempts,
                                                  failed_at, receive_count=0)
        self._visible_at[message_id] = self.clock()

    def delete(self, receipt_handles: list[str]) -> dict[str, str]:
        refused = self._refused_deletes(receipt_handles)
        self.deleted += [h for h in receipt_handles if h not in refused]
        return refused

    def _refused_deletes(self, receipt_handles: list[str]) -> dict[str, str]:
        return {h: reason for h in receipt_handles if (reason := self.refuse_delete(h))}

    def retry_in(self, receipt_handle: str, seconds: float) -> None:
        self.delayed[receipt_handle] = seconds

    def defer(self, later: list[Later]) -> None:
        for m in later:
            encode(m.body)
        self.deferred += later

    def receive_dead(self, max_messages: int = 10, visibility: int = 60) -> list[ReceivedLetter]:
        self.dead_calls["receive"] += 1
        now = self.clock()
        out = []
        for message_id in [i for i, at in self._visible_at.items() if at <= now][:max_messages]:
            receives = self.letters[message_id].receive_count + 1
            self.letters[message_id] = replace(self.letters[message_id], handle=f"{message_id}@{receives}",
                                               receive_count=receives)
            self._visible_at[message_id] = now + visibility
            out.append(self.letters[message_id])
        return out

    def _latest(self, receipt_handle: str) -> Optional[str]:
        """The letter whose latest receive gave this handle (SQS ignores an older one)."""
        message_id = receipt_handle.split("@")[0]
        letter = self.letters.get(message_id)
        return message_id if letter and letter.handle == receipt_handle else None

    def delete_dead(self, receipt_handle: str) -> None:
        if (message_id := self._latest(receipt_handle)) is not None:
            del self.letters[message_id], self._visible_at[message_id]

    def delete_dead_many(self, receipt_handles: list[str]) -> dict[str, str]:
        self.dead_calls["delete"] += -(-len(receipt_handles) // 10)        # 10 a DeleteMessageBatch
        refused = self._refused_deletes(receipt_handles)
        for handle in receipt_handles:
            if handle not in refused:
                self.delete_dead(handle)
        return refused

    def hide_dead_many(self, receipt_handles: list[str], seconds: int) -> set[str]:
        # 10 a ChangeMessageVisibilityBatch; counted apart: hiding ("hide") and showing at once ("release")
        self.dead_calls["hide" if seconds > 0 else "release"] += -(-len(receipt_handles) // 10)
        refused = set()
        for handle in receipt_handles:
            message_id = self._latest(handle)
            if message_id is None or self._visible_at[message_id] <= self.clock():     # MessageNotInflight
                refused.add(handle)
            else:
                self._visible_at[message_id] = self.clock() + seconds
        return refused

    def dead_count(self) -> int:
        return len(self.letters)

    def work_count(self) -> int:
        """The messages sent and deferred that no test has worked yet (tests take them out of `sent`)."""
        return len(self.sent) + len(self.deferred)


def refused(refusals: Refusals, reason: Optional[str] = None) -> int:
    """How many refusals (of the reason) the edge's log counted."""
    return sum(c.count for c in refusals.counts if reason is None or c.reason == reason)


class FakeEdge:
    """What the webhook intake is given (services/ingest.Edge)."""

    def __init__(self, *, rf_secret: str = "s3cret", intercom_secrets: Optional[dict] = None,
                 campaigns: tuple = ("42",), **config: str):
        self.config = Config.from_env({"BRIDGE_MAX_ATTEMPTS": "3", **config})
        self.clock: Callable[[], float] = FakeClock()
        self.queue = FakeQueue(self.clock)
        self._rf_secret = rf_secret
        self._intercom = intercom_secrets or {}
        self._campaigns = set(campaigns)
        self.refusals: list = []
        self.heard: list = []

    def rf_webhook_secret(self, accept: Optional[Callable[[str], bool]] = None) -> str:
        return self._rf_secret

    def intercom_client_secret(self, workspace: str, accept: Optional[Callable[[str], bool]] = None) -> Optional[str]:
        return self._intercom.get(workspace)

    def campaign_known(self, campaign_id: str) -> bool:
        return campaign_id in self._campaigns

    def note_refusal(self, sample: Any, campaign_id: Optional[str] = None, workspace: Optional[str] = None) -> None:
        self.refusals.append((campaign_id, workspace, sample))

    def note_heard(self, scope: str, what: str) -> None:
        self.heard.append((scope, what))

    def digest(self, kind: str, value: str) -> str:
        """As the store's twin names them (the runtime asks its store): the samples go to one in tests."""
        return digest(DIGEST_KEY, kind, value)


class FakeIntercom:
    """IntercomPort in memory: contacts by id, search that can lag, leads that share an email (a user
    gets 409 on another user's email: the "archived contact" one when that user is archived), merged (410),
    gone and archived (404, never searched) contacts. `fail` maps a call name
    to the exception its next call raises before doing anything; `after` to the exception it raises
    after it was applied (its answer lost: "create" then `Uncertain`); `down`, while set, makes the
    exception every call raises (an outage)."""

    def __init__(self, attributes: Optional[dict] = None):
        self.contacts: dict[str, dict] = {}
        self.merged: dict[str, Optional[str]] = {}
        self.unsearchable: set[str] = set()
        self.archived: set[str] = set()
        self.tags: list[tuple[str, str]] = []
        self.calls: list[str] = []
        self.fail: dict[str, Exception] = {}
        self.after: dict[str, Exception] = {}
        self.down: Optional[Callable[[], Exception]] = None
        self.attributes = attributes or {}
        self.made = 0
        self.searches: list[dict] = []
        self.segment_list: list[dict] = []
        self.total = 0

    def ahead(self, calls: int) -> None:
        """No shared budget here: nothing to take ahead (not a call)."""

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down is not None:
            raise self.down()
        if name in self.fail:
            raise self.fail.pop(name)

    def _done(self, name: str) -> None:
        if name in self.after:
            raise self.after.pop(name)

    def add(self, email: str, role: str = "lead", searchable: bool = True, **custom: Any) -> dict:
        self.made += 1
        contact_id = f"c{self.made}"
        contact = {"type": "contact", "id": contact_id, "email": email, "role": role, "created_at": self.made,
                   "custom_attributes": dict(custom)}
        self.contacts[contact_id] = contact
        if not searchable:
            self.unsearchable.add(contact_id)
        return contact

    def merge(self, contact_id: str, into: Optional[str]) -> None:
        """Intercom merged the contact: a GET answers 410 with the survivor (None: without a link)."""
        self.contacts.pop(contact_id, None)
        self.merged[contact_id] = into

    def with_email(self, email: str) -> list[dict]:
        return [c for c in self.contacts.values() if c["email"] == email]

    def search_by_email(self, email: str) -> list[dict]:
        return self.search([email])

    def search(self, emails: Sequence[str] = (), markers: Sequence[str] = ()) -> list[dict]:
        self._call("search")
        wanted = {e.lower() for e in emails}           # as Intercom: case ignored, the email shown as stored
        return [c for c in self.contacts.values() if c["id"] not in self.unsearchable | self.archived and (
            c["email"].lower() in wanted or c["custom_attributes"].get(MARKER_NAME) in markers)]

    def search_contacts(self, query: dict, starting_after: Optional[str] = None,
                        per_page: int = 150) -> tuple[list[dict], Optional[str]]:
        """Intercom's search rules (the simulator's engine: dates by calendar day, strings without case)."""
        from infra.local.sims.search import compile_query, field_type
        self._call("search_contacts")
        self.searches.append(query)

        def field(contact: dict, name: str) -> Any:
            value: Any = contact
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value
        match = compile_query(query, field, lambda name: field_type(
            name, lambda full: (self.attributes.get(full) or {}).get("data_type")))
        hits = [c for c in self.contacts.values() if c["id"] not in self.unsearchable | self.archived and match(c)]
        start = int(starting_after or 0)
        more = start + per_page < len(hits)
        self.total = len(hits)
        return hits[start:start + per_page], str(start + per_page) if more else None

    def search_page(self, query: dict, starting_after: Optional[str] = None,
                    per_page: int = 150) -> tuple[list[dict], Optional[str], Optional[int]]:
        contacts, following = self.search_contacts(query, starting_after, per_page)
        return contacts, following, self.total

    def create_contact(self, body: dict) -> dict:
        self._call("create")
        if body.get("role", "user") == "user":
            for c in self.contacts.values():
                if c["email"] == body.get("email") and c["role"] == "user":
                    archived = c["id"] in self.archived
                    raise Conflict(c["id"], f"{'An archived contact' if archived else 'A contact'} matching those "
                                   f"details already exists with id={c['id']}", archived=archived)
        contact = self.add(body["email"], body.get("role", "user"), **body.get("custom_attributes", {}))
        contact.update({k: v for k, v in body.items() if k not in ("custom_attributes", "role")})
        self._done("create")
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
        if contact_id not in self.contacts or contact_id in self.archived:
            raise NotFound(contact_id)
        return self.contacts[contact_id]

    def merge_contacts(self, lead_id: str, into_id: str) -> dict:
        self._call("merge")
        lead, user = self.contacts[lead_id], self.contacts[into_id]
        assert lead["role"] == "lead" and user["role"] == "user", "Intercom merges a lead into a user only"
        for key, value in lead["custom_attributes"].items():
            user["custom_attributes"].setdefault(key, value)
        self.tags += [(into_id, name) for cid, name in list(self.tags) if cid == lead_id]
        self.merge(lead_id, into_id)
        self._done("merge")
        return user

    def data_attributes(self) -> dict[str, dict]:
        return self.attributes

    def create_data_attribute(self, name: str, data_type: str, description: str) -> dict:
        self._call("attribute")
        attribute = {"name": name, "full_name": f"custom_attributes.{name}", "data_type": data_type,
                     "description": description}
        self.attributes[attribute["full_name"]] = attribute
        return attribute

    def tag_contacts(self, contact_ids: Sequence[str], tag_name: str) -> None:
        self._call("tag")
        gone = [c for c in contact_ids if c not in self.contacts or c in self.archived]
        if gone:          # Intercom tags all of them, or none (404) when one is merged, deleted or archived
            raise NotFound(gone[0])
        self.tags += [(contact_id, tag_name) for contact_id in contact_ids]

    def segments(self) -> list[dict]:
        self._call("segments")
        return list(self.segment_list)


def people_page(people: list[dict], after: Optional[str], per_page: int) -> PeoplePage:
    """A page of `people` as RF's list gives it: its next page named by a link (here an opaque offset)."""
    start = int(after or 0)
    following = str(start + per_page) if start + per_page < len(people) else None
    return PeoplePage(people[start:start + per_page], following, len(people), len(people[start:start + per_page]))


class FakeRF:
    """ReferralFactoryPort in memory. `qualify` answers with `answers` in turn (an exception is
    raised) and then succeeds; `lost` calls after that are applied and then raise Uncertain (the
    answer was lost); `qualified_at` is what get_user says of a qualified user, and `get_answers`
    are raised by get_user in turn (None: that one answers); `down`, while set, makes the exception
    every call raises (an outage)."""

    def __init__(self, users: Optional[dict] = None):
        self.users = users or {}
        self.qualified: list[str] = []
        self.calls: list[str] = []
        self.answers: list[Exception] = []
        self.get_answers: list[Optional[Exception]] = []
        self.campaign_calls = 0                  # get_campaign's, which raises `campaign_answers` in turn
        self.campaign_answers: list[Optional[Exception]] = []
        self.lost = 0
        self.created: list[dict] = []        # users made by create_user (a referrer each)
        self.create_answers: list[Exception] = []
        self.down: Optional[Callable[[], Exception]] = None

    def _up(self) -> None:
        if self.down is not None:
            raise self.down()

    def get_user(self, user_id: str) -> dict:
        self.calls.append(f"get_user {user_id}")
        self._up()
        if self.get_answers:
            answer = self.get_answers.pop(0)
            if answer is not None:                       # None: this one answers as RF would
                raise answer
        user = {"qualified_at": None, **self.users.get(str(user_id), {"id": user_id})}   # RF says null until
        if str(user_id) in self.qualified:
            user["qualified_at"] = "2026-11-25T12:00:00Z"
        return user

    def get_campaign(self, campaign_id: str) -> dict:
        self._up()
        self.campaign_calls += 1
        if self.campaign_answers:
            answer = self.campaign_answers.pop(0)
            if answer is not None:
                raise answer
        return {"id": campaign_id, "name": "Friends of Acme"}

    def qualify(self, user_id: str) -> dict:
        self.calls.append(f"qualify {user_id}")
        self._up()
        if self.answers:
            raise self.answers.pop(0)
        self.qualified.append(user_id)
        if self.lost:
            self.lost -= 1
            raise Uncertain("Referral Factory did not answer: read timed out")
        return {"id": user_id}


    def create_user(self, body: dict) -> dict:
        self.calls.append(f"create_user {body.get('email')}")
        self._up()
        if self.create_answers:
            raise self.create_answers.pop(0)
        if any(u["email"].lower() == str(body.get("email")).lower() for u in self.created):
            raise Refused(422, "The given data was invalid.", {"email": "The email has already been taken."})
        user = {**body, "id": 5000 + len(self.created), "url": f"https://rf.example/r/{len(self.created)}"}
        self.created.append(user)
        return user

    def users_page(self, campaign_id: str, after: Optional[str] = None, per_page: int = 250) -> PeoplePage:
        self.calls.append(f"users_page {after or 'first'}")
        self._up()
        people = [u for u in self.created if str(u.get("campaign_id")) == str(campaign_id)]
        return people_page(people, after, per_page)


class FakeApis:
    """Apis over one FakeIntercom (for every workspace) and one FakeRF."""

    def __init__(self, intercom: Optional[FakeIntercom] = None, rf: Optional[FakeRF] = None):
        self.intercom_ = intercom or FakeIntercom()
        self.rf_ = rf or FakeRF()
        self.held: Optional[dict] = None     # a list this container read before (stale): `hold_attributes`
        self.read_again = 0
        self.answers: dict[str, float] = {}  # vendor -> when it last answered this container (not a 5xx)

    def intercom(self, workspace: str) -> FakeIntercom:
        return self.intercom_

    def rf(self) -> FakeRF:
        return self.rf_

    def hold_attributes(self) -> None:
        """This container keeps the attribute list as it is now: later changes in Intercom are not seen
        until the list is read again (`attributes_again`)."""
        self.held = {name: dict(attr) for name, attr in self.intercom_.attributes.items()}

    def attributes(self, workspace: str, naming: Iterable[str] = ()) -> dict[str, dict]:
        """The list held, unless it does not name a custom attribute in `naming` that Intercom has (created since):
        then read again, as runtime.Runtime.attributes does (not modelled: its interval, and its read when none is
        found, which refreshes the rest of the list too: this twin's held list has no age)."""
        if self.held is not None and set(unlisted(naming, self.held)) & set(self.intercom_.attributes):
            self.held = None
        return self.intercom_.attributes if self.held is None else self.held

    def attributes_again(self, workspace: str, since: float) -> dict[str, dict]:
        if self.held is not None:
            self.read_again += 1
            self.held = None
        return self.intercom_.attributes

    def ensure_attribute(self, workspace: str, name: str, description: str) -> None:
        if f"custom_attributes.{name}" not in self.intercom_.attributes:
            self.intercom_.create_data_attribute(name, "string", description)

    def campaign_name(self, campaign_id: str) -> Optional[str]:
        return self.rf_.get_campaign(campaign_id).get("name")

    def answered(self, vendor: str, where: Optional[str] = None) -> Optional[float]:
        return self.answers.get(vendor)      # (one API base a vendor)


def seed_ledger(sync: SyncRepository, campaign_id: str, entries: Sequence[LedgerEntry]) -> None:
    """Ledger entries written as sync writes them (every ledger write is conditional): a `creating` entry, then
    the entry (one naming an RF user is written only over an entry naming none). Not over an entry naming one."""
    sync.intend(campaign_id, [LedgerEntry(e.contact_id, "creating", email=e.email) for e in entries])
    assert sync.intend(campaign_id, entries) == {e.contact_id for e in entries}, "an entry names an RF user there"


class FakeWork:
    """What the worker is given (services/worker.Work): the store's in-memory twin (or `store`, made on
    `clock`: the DynamoDB store, for a test run on both), fake APIs, a fake queue and clock."""

    def __init__(self, apis: Optional[FakeApis] = None, clock: Optional[FakeClock] = None,
                 store: Optional[Store] = None, **config: str):
        self.config = Config.from_env({"BRIDGE_MAX_ATTEMPTS": "3", **config})
        self.clock = clock or FakeClock()
        self.store = MemoryStore(self.clock, lease=self.config.lease) if store is None else store
        self.apis = apis or FakeApis()
        self.queue = FakeQueue(self.clock)
        self.deps = WorkDeps.of(self.store, self.apis, self.queue, self.clock, lambda: self.config.search_lag,
                                lambda: self.remaining_ms())
        self.remaining_ms: Callable[[], int] = lambda: 10**9

    def in_time(self, kept_ms: int) -> ContextManager[None]:
        return nullcontext()         # (no AWS client: the in-memory twins never hang)


def _in_time(within: Optional[float]) -> None:
    """As the real client: a call given no time is not sent."""
    from chalicelib.errors import NoAnswer
    if within is not None and within <= 0:
        raise NoAnswer("no time was left to ask Intercom")


class FakeIntercomAuth:
    """IntercomAuth in memory: `codes` code -> token (single use), `apps` token -> /me's app."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.apps: dict[str, dict] = {}
        self.calls: list[str] = []

    def exchange(self, code: str, client_id: str, client_secret: str, within: Optional[float] = None) -> str:
        from chalicelib.errors import Permanent
        _in_time(within)
        self.calls.append("exchange")
        if code not in self.codes:
            raise Permanent("Intercom answered 400: Invalid or already used authorization code")
        return self.codes.pop(code)

    def whoami(self, token: str, api_base: Optional[str] = None, within: Optional[float] = None) -> dict:
        from chalicelib.errors import Permanent
        _in_time(within)
        self.calls.append("me")
        if token not in self.apps:
            raise Permanent("Intercom answered 401 unauthorized: Access Token Invalid", status=401)
        return {"type": "admin", "email": "admin@example.com", "app": self.apps[token]}


class FakeConnecting:
    """What connecting is given (services/connections.Connecting, services/oauth.OAuthEdge)."""

    def __init__(self, **config: str):
        self.config = Config.from_env(config)
        self.clock = FakeClock()
        self.store = MemoryStore(self.clock, lease=self.config.lease)
        self.secrets = MemorySecrets()
        self.auth = FakeIntercomAuth()

    def intercom_auth(self) -> FakeIntercomAuth:
        return self.auth

    def rf_auth(self, token: str) -> "FakeConnecting":
        return self                         # (its check_token: RF takes every token)

    def check_token(self) -> None:
        pass

    def oauth_app(self) -> Optional[tuple[str, str, str]]:
        from chalicelib.ports.secrets import OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_STATE_KEY
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
