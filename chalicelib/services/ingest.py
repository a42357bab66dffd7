"""The webhook edge: verify, validate, enqueue once, answer fast. No API calls, no scans.

Every body gets an answer of its own: 2xx when it is queued or deliberately ignored, otherwise a
4xx `{"error", "message"}` that says what is wrong (never a 5xx for anything a caller sends)."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Protocol, TypeVar, Union

from .. import webhooks
from ..config import Config
from ..domain.history import iso
from ..domain.people import normalise
from ..messages import ContactMessage, JoinMessage
from ..observability import logger, mask_email
from ..ports import MessageTooLarge, RefusalSample, WorkQueue
from ..ports.edge import campaign_scope, workspace_scope
from ..ports.store import normal_email
from ..webhooks import FORM, BodyError

RF_SECRET_HEADER = "x-bridge-secret"
#: A store the edge checks a caller with failed to answer (a throttled or failed read): the caller is
#: asked to come back (both senders retry a webhook that got no 2xx; Intercom after about a minute).
UNAVAILABLE_RETRY_AFTER = 60
T = TypeVar("T")


class Edge(Protocol):
    """What the webhook intake is given (the composition root's Runtime; tests: FakeEdge)."""

    config: Config

    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def queue(self) -> WorkQueue: ...
    def rf_webhook_secret(self, accept: Optional[Callable[[str], bool]] = None) -> str: ...
    def intercom_client_secret(self, workspace: str,
                               accept: Optional[Callable[[str], bool]] = None) -> Optional[str]: ...
    def campaign_known(self, campaign_id: str) -> bool: ...
    def note_refusal(self, sample: RefusalSample, campaign_id: Optional[str] = None,
                     workspace: Optional[str] = None) -> None:
        """Keep the refusal in the edge's log (the campaign's or workspace's, if known; else the
        one 'unknown' bucket). Never raises: the answer does not depend on it."""
    def note_heard(self, scope: str, what: str) -> None:
        """The edge accepted a webhook (written at most once a minute per container). Never raises."""
    def digest(self, kind: str, value: str) -> str:
        """How the edge's log names a person a body that did not authenticate names (EdgeLog.digest)."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict
    headers: Mapping[str, str] = field(default_factory=dict)


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": code, "message": message})


def _checked_with(read: Callable[[], T], what: str) -> Union[T, Reply]:
    """What the caller is checked with (a secret, whether a workspace is connected), or, when the store
    holding it fails, a 503 with Retry-After: an outage on our side, never the body's fault (no 5xx
    for a body), and not a 401 that would tell a genuine sender its signature is wrong."""
    try:
        return read()
    except Exception:  # a throttled, timed-out or failed read: told apart from a refusal
        logger.warning(f"could not read {what} to check a webhook", exc_info=True)
        return _unavailable(f"the bridge could not read {what} to check this request")


def _unavailable(what_failed: str) -> Reply:
    return Reply(503, {"error": "unavailable", "message": f"{what_failed}: try again in {UNAVAILABLE_RETRY_AFTER} s"},
                 {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})


def _lower(headers: Mapping[str, Any]) -> dict:
    return {str(k).lower(): v for k, v in headers.items()}


@dataclass(frozen=True)
class _Shape:
    media: str                # the bare media type
    text: bytes               # the body with its Content-Encoding undone, in UTF-8 (JSON) or as sent (a form)
    charset: Optional[str]    # the Content-Type's, when not UTF-8


def _checked_shape(headers: dict, raw: bytes, rt: Edge, accepted: tuple[str, ...]) -> Union[Reply, _Shape]:
    """Size, media type, charset and content coding: what can be refused before anything else."""
    if len(raw) > rt.config.max_body_bytes:
        return _error(413, "too_large", f"body over {rt.config.max_body_bytes} bytes")
    media = webhooks.media_type(headers.get("content-type"))
    if not (webhooks.is_json(media) or media in accepted):
        shown = media or f"{str(headers.get('content-type'))[:100]!r} (no type/subtype)"
        return _error(415, "unsupported_media_type", f"Content-Type {shown[:120]} is not accepted: send "
                      + " or ".join(("application/json",) + accepted))
    try:
        charset = webhooks.charset(headers.get("content-type"))
        text = webhooks.decoded(headers.get("content-encoding"), raw, rt.config.max_body_bytes)
    except BodyError as exc:
        return _error(exc.status, exc.code, exc.message)
    return _Shape(media, text if media == FORM else webhooks.in_charset(text, charset), charset)


def _parsed(shape: _Shape, repeats: bool = False) -> dict:
    return (webhooks.parse_form(shape.text, shape.charset) if shape.media == FORM
            else webhooks.parse_json_object(shape.text, repeats=repeats))


def queued_whole_or_thin(queue: WorkQueue, message: Union[JoinMessage, ContactMessage]) -> str:
    """The message queued, or, when the queue will not take it whole, a thin one that names what the worker reads
    from the vendor (messages.py: `thin`): its message id."""
    try:
        return queue.send(message.wire())
    except MessageTooLarge as exc:
        return queue.send(message.thin(exc.size, exc.limit).wire())


def _enqueue(rt: Edge, message: Union[JoinMessage, ContactMessage], status: int, answer: dict) -> Reply:
    """The message queued (thin if need be: a valid event is never refused for its size here)."""
    try:
        message_id = queued_whole_or_thin(rt.queue, message)
    except Exception:  # SQS throttled, unreachable or refusing: an outage the sender retries, not the body's fault
        logger.warning("could not queue a webhook's event", exc_info=True)
        return _unavailable("the bridge could not queue this event")
    return Reply(status, {**answer, "queued": True, "message_id": message_id})


def _same(given: str, secret: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(_sent(given)).digest(), hashlib.sha256(secret.encode()).digest())


def _sent(header: str) -> bytes:
    """A header's value as bytes to compare with a secret's: one holding a lone surrogate (bytes that were not
    UTF-8) matches no secret, as any other wrong value (a plain encode raised: the caller's 401 became a 503)."""
    return header.encode("utf-8", "surrogatepass")


def receive_rf_join(headers: Mapping[str, Any], raw: bytes, rt: Edge) -> Reply:
    """POST /webhooks/referral-factory: one RF "user joins" event, as JSON or as a form. A refusal is
    kept in the edge's log (for `doctor` and `explain`); an accepted join marks the campaign as heard."""
    lowered = _lower(headers)
    read = _Read()
    reply, campaign_id = _rf_join(lowered, raw, rt, read)
    if reply.status >= 400:
        _note_rf_refusal(rt, read.shape, reply, read.signed)
    elif campaign_id:
        rt.note_heard(campaign_scope(campaign_id), "join")
    return reply


def _rf_join(lowered: dict, raw: bytes, rt: Edge, read: "_Read") -> tuple[Reply, Optional[str]]:
    shape = _checked_shape(lowered, raw, rt, accepted=(FORM,))
    if isinstance(shape, Reply):
        return shape, None
    read.shape = shape
    given = lowered.get(RF_SECRET_HEADER) or ""
    secret = _checked_with(lambda: rt.rf_webhook_secret(accept=lambda s: _same(given, s)), "the webhook secret")
    if isinstance(secret, Reply):
        return secret, None
    if not secret:
        return _error(503, "not_configured", "no webhook secret is configured: run `bridge rf connect`"), None
    if not _same(given, secret):
        return _error(401, "unauthorized", f"missing or wrong {RF_SECRET_HEADER} header"), None
    read.signed = True
    try:
        person = webhooks.rf_join(_parsed(shape, repeats=True))
    except BodyError as exc:
        return _error(exc.status, exc.code, exc.message), None
    known = _checked_with(lambda: rt.campaign_known(person.campaign_id), "the campaign's settings")
    if isinstance(known, Reply):
        return known, None
    if not known:
        return _error(404, "unknown_campaign", f"campaign {person.campaign_id} has no settings here: "
                      "apply them with `bridge settings apply`"), None
    message = JoinMessage(campaign_id=person.campaign_id, rf_user_id=person.id, person=person,
                          received_at=rt.clock())
    return _enqueue(rt, message, 202, {}), person.campaign_id


def _note_rf_refusal(rt: Edge, shape: Optional[_Shape], reply: Reply, signed: bool) -> None:
    """What can be read of a refused join, best effort (its campaign, person and email: never the
    secret, never the body). A body too large or of another media type is not read at all. The person
    of a body that did not authenticate (`signed`: its secret was checked) is kept as digests only:
    anyone can send one naming anyone."""
    campaign_id = rf_user_id = email = None
    if shape is not None:
        try:
            person = normalise(_parsed(shape))
            campaign_id, rf_user_id = _plain_id(person.get("campaign_id")), _plain_id(person.get("id"))
            # (an email refused for a NUL or a space in it: kept as the address without them, the one
            # `bridge explain` and `bridge forget` are given)
            email = person.get("email")
        except Exception:  # an unreadable body: counted without a person
            pass
    email = _email_of(email)
    # (any body's email is kept as its digest, authenticated or not: `explain` and `forget` match it)
    who = (dict(rf_user_id=rf_user_id, email_masked=mask_email(email) if email else None) if signed else
           dict(rf_user_digest=rt.digest("rf_user", rf_user_id) if rf_user_id else None))
    rt.note_refusal(_sample(reply, at=rt.clock(), campaign_id=campaign_id,
                            email_digest=rt.digest("email", email) if email else None, **who), campaign_id=campaign_id)


def _email_of(value: Any) -> Optional[str]:
    """A body's email as the edge's log keys it (lower case, printable, at most 320 characters), or None."""
    email = normal_email(webhooks.printable(value)) if isinstance(value, str) else None
    return email if email and len(email) <= 320 else None


def _plain_id(value: Any) -> Optional[str]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and webhooks.is_id(value) else None


def _sample(reply: Reply, *, at: float, **known: Optional[str]) -> RefusalSample:
    return RefusalSample(reason=str(reply.body.get("error")), at=iso(at), message=str(reply.body.get("message"))[:300],
                         **known)


def signature(secret: str, raw: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()


def receive_intercom(headers: Mapping[str, Any], raw: bytes, rt: Edge) -> Reply:
    """POST /webhooks/intercom: one Intercom notification. The body must be read to know whose
    secret signs it; only `app_id` is looked at before the signature is checked. A refusal is kept
    in the edge's log (the workspace's when it is connected); a queued one marks it as heard."""
    read = _Read()
    reply = _intercom(_lower(headers), raw, rt, read)
    body = read.body
    workspace = webhooks.app_id_of(body)
    if reply.status >= 400:
        # A contact's id in clear only from a body whose signature verified: an unsigned one (a 401, or a
        # 503 before its secret could be read) may name anyone, under whatever workspace its app_id names.
        # Its contact id and email are kept as digests only (`explain` and `forget` recognise them), as a
        # join's without its secret.
        data = body.get("data")
        item = data.get("item") if isinstance(data, dict) else None
        contact_id = _plain_id(item.get("id")) if isinstance(item, dict) else None
        email = _email_of(item.get("email")) if isinstance(item, dict) else None
        who = (dict(contact_id=contact_id) if read.signed else
               dict(contact_digest=rt.digest("contact", contact_id) if contact_id else None,
                    email_digest=rt.digest("email", email) if email else None))
        rt.note_refusal(_sample(reply, at=rt.clock(), **who), workspace=workspace)
    elif reply.body.get("queued") and workspace:
        rt.note_heard(workspace_scope(workspace), "notification")
    return reply


@dataclass
class _Read:
    """What was read of a webhook, for its refusal's sample: the body (a notification's), and whether
    its sender authenticated (the secret or signature checked)."""
    body: dict = field(default_factory=dict)
    signed: bool = False
    shape: Optional[_Shape] = None     # its size, media type and coding were accepted: its body can be read


def _intercom(lowered: dict, raw: bytes, rt: Edge, read: _Read) -> Reply:
    shape = _checked_shape(lowered, raw, rt, accepted=())
    if isinstance(shape, Reply):
        return shape
    try:
        body = _parsed(shape)
    except BodyError as exc:
        return _error(exc.status, exc.code, exc.message)
    read.body = body
    workspace = webhooks.app_id_of(body)
    given = lowered.get("x-hub-signature") or ""
    signed_bytes = (raw,) if shape.text == raw else (raw, shape.text)     # as sent, or before it was compressed

    def signed(secret: str) -> bool:
        return any([hmac.compare_digest(_sent(given), signature(secret, b).encode()) for b in signed_bytes])
    secret = _checked_with(lambda: rt.intercom_client_secret(workspace, accept=signed) if workspace else None,
                           "the workspace's client secret")
    if isinstance(secret, Reply):
        return secret
    if not secret or not signed(secret):
        # One answer for all: an unauthenticated caller must not learn which workspaces exist.
        return _error(401, "unauthorized", "missing or wrong X-Hub-Signature for this app_id")
    read.signed = True
    try:
        notification = webhooks.intercom_notification(body)
        if notification.topic == "ping":
            return Reply(200, {"ok": True, "topic": "ping"})
        if notification.change is None:
            return Reply(200, {"ok": True, "ignored": f"topic {notification.topic!r} is not used by this bridge"})
        contact = webhooks.contact_notification(body)
    except BodyError as exc:
        return _error(exc.status, exc.code, exc.message)
    message = ContactMessage(workspace=contact.app_id, topic=contact.topic, notification_id=contact.id,
                             created_at=contact.created_at, item=contact.contact)
    return _enqueue(rt, message, 200, {"ok": True})
