"""Builders for Intercom webhook deliveries (envelope + ``X-Hub-Signature``)."""
from __future__ import annotations

import copy
import hashlib
import hmac
import time
import uuid
from datetime import datetime, timezone

DEFAULT_APP_ID = "vne310wv"
DATE_FIELDS = {"created_at", "updated_at", "signed_up_at", "last_seen_at", "last_contacted_at",
               "last_replied_at", "last_email_opened_at", "last_email_clicked_at",
               "ios_last_seen_at", "android_last_seen_at"}


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def webhook_payload(topic, item, notif_id=None, created_at=None, app_id=None, iso_dates=True,
                    **overrides):
    """An Intercom webhook envelope (shape of contracts/intercom/webhooks/*.json).

    The item's unix timestamps are rendered as ISO-8601 strings, as Intercom's own notification
    has them (its REST answers give unix numbers); ``iso_dates=False`` keeps them numbers (also
    seen in notifications). ``ping`` gets a null notification id unless ``notif_id`` is given. Any envelope
    key can be overridden through keyword arguments (e.g. ``delivery_attempts=2``)."""
    item = copy.deepcopy(item)
    if iso_dates:
        for k in DATE_FIELDS:
            if isinstance(item.get(k), int) and not isinstance(item.get(k), bool):
                item[k] = iso(item[k])
    created_at = int(time.time() if created_at is None else created_at)
    if notif_id is None and topic != "ping":
        notif_id = f"notif_{uuid.uuid4()}"
    env = {"type": "notification_event",
           "app_id": app_id or item.get("workspace_id") or DEFAULT_APP_ID,
           "data": {"type": "notification_event_data", "item": item},
           "links": {}, "id": notif_id, "topic": topic, "delivery_status": "pending",
           "delivery_attempts": 1, "delivered_at": 0, "first_sent_at": created_at,
           "created_at": created_at, "self": None}
    env.update(overrides)
    return env


def sign(body, secret):
    """The ``X-Hub-Signature`` value: ``sha1=`` + HMAC-SHA1(client_secret, raw body)."""
    body = body.encode() if isinstance(body, str) else body
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
