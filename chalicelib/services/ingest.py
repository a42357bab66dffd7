"""The webhook edge: verify, validate, enqueue once, answer fast. No API calls, no scans."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from ..domain.people import normalise

RF_SECRET_HEADER = "x-bridge-secret"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": code, "message": message})


def _json_object(raw: bytes, rt) -> dict | Reply:
    if len(raw) > rt.config.max_body_bytes:
        return _error(413, "too_large", f"body over {rt.config.max_body_bytes} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "malformed_json", "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "malformed_json", "the body must be a JSON object")
    return body


def _same(given: str, secret: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(secret.encode()).digest())


def receive_rf_join(headers: dict, raw: bytes, rt) -> Reply:
    """POST /webhooks/referral-factory: one RF "user joins" event."""
    given = {k.lower(): v for k, v in headers.items()}.get(RF_SECRET_HEADER, "")
    secret = rt.rf_webhook_secret(accept=lambda s: _same(given, s))
    if not secret:
        return _error(503, "not_configured", "no webhook secret is configured: run `bridge rf connect`")
    if not _same(given, secret):
        return _error(401, "unauthorized", f"missing or wrong {RF_SECRET_HEADER} header")
    body = _json_object(raw, rt)
    if isinstance(body, Reply):
        return body
    person = normalise(body)
    if not person.get("id"):
        return _error(400, "missing_user_id", "no user id: send the RF user's id as `id`")
    if not person.get("campaign_id"):
        return _error(400, "missing_campaign_id", "no campaign id: send the campaign's id as `campaign_id`")
    campaign_id = person["campaign_id"]
    if not rt.campaign_known(campaign_id):
        return _error(404, "unknown_campaign",
                      f"campaign {campaign_id} has no settings here: apply them with `bridge settings apply`")
    message_id = rt.queue.send({"kind": "rf.join", "campaign_id": campaign_id, "rf_user_id": person["id"],
                                "person": person, "received_at": rt.clock()})
    return Reply(202, {"queued": True, "message_id": message_id})


CONTACT_TOPICS = frozenset({
    "contact.user.created", "contact.user.updated", "contact.lead.created", "contact.lead.updated",
    "contact.lead.signed_up", "contact.lead.added_email", "contact.email.updated", "contact.merged",
    "contact.deleted", "contact.archived", "contact.unarchive", "contact.subscribed", "contact.unsubscribed",
    "contact.user.tag.created", "contact.user.tag.deleted", "contact.lead.tag.created", "contact.lead.tag.deleted",
})


def signature(secret: str, raw: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()


def receive_intercom(headers: dict, raw: bytes, rt) -> Reply:
    """POST /webhooks/intercom: one Intercom notification."""
    body = _json_object(raw, rt)
    if isinstance(body, Reply):
        return body
    workspace = body.get("app_id")
    given = {k.lower(): v for k, v in headers.items()}.get("x-hub-signature", "")
    signed = lambda s: hmac.compare_digest(given.encode(), signature(s, raw).encode())  # noqa: E731
    secret = rt.intercom_client_secret(workspace, accept=signed) if isinstance(workspace, str) and workspace else None
    if not secret or not signed(secret):
        # One answer for both: an unauthenticated caller must not learn which workspaces exist.
        return _error(401, "unauthorized", "missing or wrong X-Hub-Signature for this app_id")
    topic = body.get("topic")
    if topic == "ping":
        return Reply(200, {"ok": True, "topic": "ping"})
    if topic not in CONTACT_TOPICS:
        return Reply(200, {"ok": True, "ignored": f"topic {topic!r} is not used by this bridge"})
    item = (body.get("data") or {}).get("item") if isinstance(body.get("data"), dict) else None
    if isinstance(item, dict) and item.get("type") == "contact_tag":
        item = item.get("contact")
    if not isinstance(item, dict) or not item.get("id"):
        return _error(400, "no_contact", "data.item carries no contact id")
    message_id = rt.queue.send({"kind": "intercom.contact", "workspace": workspace, "topic": topic,
                                "notification_id": body.get("id"), "created_at": body.get("created_at"),
                                "item": item})
    return Reply(200, {"ok": True, "queued": True, "message_id": message_id})
