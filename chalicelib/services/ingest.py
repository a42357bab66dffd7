"""The webhook edge: verify, validate, enqueue once, answer fast. No API calls, no scans.

Every body gets an answer of its own: 2xx when it is queued or deliberately ignored, otherwise a
4xx `{"error", "message"}` that says what is wrong (never a 5xx for anything a caller sends)."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Protocol, Union

from .. import webhooks
from ..config import Config
from ..messages import ContactMessage, JoinMessage
from ..ports import MessageTooLarge, WorkQueue
from ..webhooks import FORM, BodyError

RF_SECRET_HEADER = "x-bridge-secret"


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


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": code, "message": message})


def _lower(headers: Mapping[str, Any]) -> dict:
    return {str(k).lower(): v for k, v in headers.items()}


def _checked_shape(headers: dict, raw: bytes, rt: Edge, accepted: tuple[str, ...]) -> Union[Reply, str]:
    """Size and media type: what can be refused before anything else. Returns the media type."""
    if len(raw) > rt.config.max_body_bytes:
        return _error(413, "too_large", f"body over {rt.config.max_body_bytes} bytes")
    media = webhooks.media_type(headers.get("content-type"))
    if not (webhooks.is_json(media) or media in accepted):
        return _error(415, "unsupported_media_type", f"Content-Type {media[:100]} is not accepted: send "
                      + " or ".join(("application/json",) + accepted))
    return media


def _enqueue(rt: Edge, message: Union[JoinMessage, ContactMessage], status: int, answer: dict) -> Reply:
    try:
        message_id = rt.queue.send(message.wire())
    except MessageTooLarge as exc:
        return _error(413, "too_large", f"the event is too large to queue ({exc})")
    return Reply(status, {**answer, "queued": True, "message_id": message_id})


def _same(given: str, secret: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(secret.encode()).digest())


def receive_rf_join(headers: Mapping[str, Any], raw: bytes, rt: Edge) -> Reply:
    """POST /webhooks/referral-factory: one RF "user joins" event, as JSON or as a form."""
    lowered = _lower(headers)
    media = _checked_shape(lowered, raw, rt, accepted=(FORM,))
    if isinstance(media, Reply):
        return media
    given = lowered.get(RF_SECRET_HEADER) or ""
    secret = rt.rf_webhook_secret(accept=lambda s: _same(given, s))
    if not secret:
        return _error(503, "not_configured", "no webhook secret is configured: run `bridge rf connect`")
    if not _same(given, secret):
        return _error(401, "unauthorized", f"missing or wrong {RF_SECRET_HEADER} header")
    try:
        body = webhooks.parse_form(raw) if media == FORM else webhooks.parse_json_object(raw)
        person = webhooks.rf_person(body)
    except BodyError as exc:
        return _error(exc.status, exc.code, exc.message)
    if not rt.campaign_known(person.campaign_id):
        return _error(404, "unknown_campaign", f"campaign {person.campaign_id} has no settings here: "
                      "apply them with `bridge settings apply`")
    message = JoinMessage(campaign_id=person.campaign_id, rf_user_id=person.id, person=person,
                          received_at=rt.clock())
    return _enqueue(rt, message, 202, {})


def signature(secret: str, raw: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()


def receive_intercom(headers: Mapping[str, Any], raw: bytes, rt: Edge) -> Reply:
    """POST /webhooks/intercom: one Intercom notification. The body must be read to know whose
    secret signs it; only `app_id` is looked at before the signature is checked."""
    lowered = _lower(headers)
    media = _checked_shape(lowered, raw, rt, accepted=())
    if isinstance(media, Reply):
        return media
    try:
        body = webhooks.parse_json_object(raw)
    except BodyError as exc:
        return _error(exc.status, exc.code, exc.message)
    workspace = webhooks.app_id_of(body)
    given = lowered.get("x-hub-signature") or ""
    signed = lambda s: hmac.compare_digest(given.encode(), signature(s, raw).encode())  # noqa: E731
    secret = rt.intercom_client_secret(workspace, accept=signed) if workspace else None
    if not secret or not signed(secret):
        # One answer for all: an unauthenticated caller must not learn which workspaces exist.
        return _error(401, "unauthorized", "missing or wrong X-Hub-Signature for this app_id")
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
