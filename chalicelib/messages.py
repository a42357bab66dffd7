"""The work queue's messages: one pydantic model per kind, told apart by `kind` (`rf.join`,
`intercom.contact`, `intercom.check`, `intercom.changes`, `join.verify`, `sync.page`, `referral.count`; who produces and who handles each:
docs/development.md, "Code layout").
Every message is built here and read back here; nothing else knows their fields.

The wire format is the model's JSON, flat, as earlier versions wrote it: messages already in the
queue or the dead-letter queue still parse. `replayed_from` is set by `bridge dlq replay`."""
from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal, Optional, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from .domain.link import PersonRef
from .webhooks import CONTACT_TOPICS, WHO, Change, ContactItem, Email, Id, RFPerson, Timestamp, describe

#: What a thin message leaves out beyond the bytes it must lose: room for what it adds (`too_large`, `left_out`)
#: and for the queue's escapes, which the sizes here do not count.
THIN_ROOM = 1024


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    # The dead letter's message id, when `bridge dlq replay` sent this message back: a replay may
    # retry what failed before (e.g. a failed qualification).
    replayed_from: Optional[Annotated[str, Field(max_length=256)]] = None
    #: Fields the wire carries only when set (added after messages without them were queued).
    WHEN_SET: ClassVar[frozenset[str]] = frozenset({"replayed_from"})

    @property
    def person_ref(self) -> Optional[PersonRef]:
        return None

    def wire(self) -> dict:
        """The JSON-ready dict the queue carries (the fields of WHEN_SET only when set)."""
        out = self.model_dump(mode="json")
        for name in self.WHEN_SET:
            if out.get(name) is None:
                out.pop(name, None)
        return out

    def replayed(self, dead_letter_id: str) -> "_Message":
        return self.model_copy(update={"replayed_from": dead_letter_id})


class _AboutPerson(_Message):
    campaign_id: Id
    rf_user_id: Id

    @property
    def person_ref(self) -> PersonRef:
        return PersonRef(self.campaign_id, self.rf_user_id)


class JoinMessage(_AboutPerson):
    """A person joined an RF campaign (the webhook's body, read through the owner's field names)."""

    kind: Literal["rf.join"] = "rf.join"
    person: RFPerson
    received_at: Optional[float] = None
    # Set on a join too large to queue whole: its size in bytes, and how many of its fields were left out (the
    # worker reads the person from Referral Factory, as for a webhook that leaves fields out).
    too_large: Optional[int] = None
    left_out: Optional[int] = None
    WHEN_SET = _Message.WHEN_SET | {"too_large", "left_out"}

    def thin(self, size: int, limit: int) -> "JoinMessage":
        """This join, `size` bytes where the queue takes `limit`, without its largest fields, as many as it takes
        to fit. Who joined where (webhooks.WHO: ids, email, type) always stays."""
        person = self.person.as_dict()
        sizes = {k: len(json.dumps({k: v}, ensure_ascii=False, separators=(",", ":")).encode())
                 for k, v in person.items() if k not in WHO}
        over, left_out = size - limit + THIN_ROOM, 0
        for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if over <= 0:
                break
            del person[key]
            over, left_out = over - sizes[key], left_out + 1
        return self.model_copy(update={"person": RFPerson.model_validate(person), "too_large": size,
                                       "left_out": left_out})


class ContactMessage(_Message):
    """Intercom told us about a contact."""

    kind: Literal["intercom.contact"] = "intercom.contact"
    workspace: Id
    topic: str
    notification_id: Optional[Annotated[str, Field(max_length=256)]] = None
    created_at: Optional[Timestamp] = None
    item: ContactItem
    # Set on a notification too large to queue whole: its size in bytes. Its item is then the contact's id, email
    # and `merged_from` only, and the worker reads the contact from Intercom (qualification/contact_events.py).
    too_large: Optional[int] = None
    WHEN_SET = _Message.WHEN_SET | {"too_large"}

    def thin(self, size: int, limit: int) -> "ContactMessage":
        """This notification, `size` bytes where the queue takes `limit`, naming its contact only."""
        item = self.item
        named = {"id": item.id, "email": item.email, "updated_at": item.updated_at,
                 "merged_from": item.merged_from and {"id": item.merged_from.id}}
        return self.model_copy(update={"too_large": size, "item": ContactItem.model_validate(
            {k: v for k, v in named.items() if v is not None})})

    @field_validator("topic")
    @classmethod
    def _known_topic(cls, topic: str) -> str:
        if topic not in CONTACT_TOPICS:
            raise ValueError(f"{topic[:80]!r} is not a contact topic this bridge handles")
        return topic

    @property
    def change(self) -> Change:
        return CONTACT_TOPICS[self.topic]


class CheckMessage(_AboutPerson):
    """Reconciliation: read this lead's contact now, as if its webhook had arrived."""

    kind: Literal["intercom.check"] = "intercom.check"
    workspace: Id
    # `match: email`: another contact with the lead's email, whose value met the target (the search of
    # changed contacts found it): the check judges it first, then, unless that qualified, the lead's own.
    duplicate_contact_id: Optional[Id] = None
    WHEN_SET = _Message.WHEN_SET | {"duplicate_contact_id"}


class VerifyMessage(_AboutPerson):
    """A lead the bridge created for this person, looked at again once Intercom's search has caught
    up (`not_before`): did it duplicate a contact that search did not show yet when they joined?"""

    kind: Literal["join.verify"] = "join.verify"
    workspace: Id
    contact_id: Id
    email: Email
    created_at: Optional[float] = None   # the contact's, as Intercom answered the create
    not_before: float


class ChangesMessage(_Message):
    """Reconciliation: search this workspace's contacts changed since its last search (or, the first
    time, within `lookback` seconds of `at`), and judge the pending leads linked to them. A search longer
    than a worker's time goes on in a message of its own: the same search (`since`) from the page it
    reached (`cursor`, the search's `starting_after`). After a rule change that may qualify values seen
    before (`rule_change`: the workspace's marker, cleared when this search completes), the search also
    looks back to `back_to`, the oldest pending lead's place in the pending index (None: no lead waits)."""

    kind: Literal["intercom.changes"] = "intercom.changes"
    workspace: Id
    at: float                    # when reconciliation asked: where the next search starts (with an overlap)
    lookback: float = 7 * 86400
    since: Optional[float] = None
    cursor: Optional[Annotated[str, Field(max_length=4096)]] = None
    rule_change: Optional[Annotated[str, Field(max_length=1024)]] = None
    back_to: Optional[float] = None
    WHEN_SET: ClassVar[frozenset[str]] = _Message.WHEN_SET | {"since", "cursor", "rule_change", "back_to"}


class SyncPageMessage(_Message):
    """Contact sync: work one page of a run's contact search (services/sync.py). `cursor` is the
    search's `starting_after` for this page; the page that follows is the next message."""

    kind: Literal["sync.page"] = "sync.page"
    campaign_id: Id
    run: Annotated[int, Field(ge=1)]
    page: Annotated[int, Field(ge=0)]
    cursor: Optional[Annotated[str, Field(max_length=4096)]] = None


class ReferralCountMessage(_AboutPerson):
    """Write this referrer's referral count (as the store has it when the message is worked) to their
    Intercom contact (services/referral_count.py). `unless_written`: only when Intercom may not hold it
    yet (a repeated join's check), not on every repeat."""

    kind: Literal["referral.count"] = "referral.count"
    unless_written: bool = False
    # The contact the referrer's own join linked, when it asks: a read of the link just after may
    # not show it yet (DynamoDB's reads are eventually consistent).
    contact_id: Optional[str] = None


AnyMessage = Union[JoinMessage, ContactMessage, CheckMessage, VerifyMessage, ChangesMessage, SyncPageMessage,
                   ReferralCountMessage]
Message = Annotated[AnyMessage, Field(discriminator="kind")]
KINDS: dict[str, type[_Message]] = {m.model_fields["kind"].default: m for m in get_args(AnyMessage)}
_MESSAGE = TypeAdapter(Message)


class Unreadable(ValueError):
    """A message body no model accepts; `reason` says why (for the dead-letter queue)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse(body: Union[str, bytes]) -> AnyMessage:
    try:
        return _MESSAGE.validate_json(body)
    except ValidationError as exc:
        raise Unreadable(describe(exc)) from None


def replayed(body: Union[str, bytes], dead_letter_id: str) -> dict:
    """The message of `body` (a dead letter's) as `bridge dlq replay` sends it back: marked replayed, with the fields
    this version does not know (a later version's, rolled back over its dead letters: read past) as they came, for
    the version rolled forward again to read. Raises Unreadable."""
    message = parse(body)
    unknown = {k: v for k, v in json.loads(body).items() if k not in type(message).model_fields}
    return {**unknown, **message.replayed(dead_letter_id).wire()}


def read(message: Any) -> AnyMessage:
    """A message from an already-decoded dict (e.g. a test's or a fake queue's)."""
    try:
        return _MESSAGE.validate_python(message)
    except ValidationError as exc:
        raise Unreadable(describe(exc)) from None
