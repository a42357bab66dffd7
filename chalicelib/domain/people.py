"""Referral Factory people: normalising a webhook body or an API user into one flat dict
that the mapping reads. Pure: no I/O."""
from __future__ import annotations

import hashlib
import hmac
from typing import Any, Iterable, Optional

from .mapping import ConversionError, to_unix
from .mapping import is_empty as blank      # no value: how a payload renders a field RF has no value for

# Webhook body names we accept for each field (RF lets the account owner name them).
ALIASES = {
    "id": ("id", "user_id", "rf_user_id"),
    "campaign_id": ("campaign_id", "campaign"),
    "email": ("email", "user_email"),
    "first_name": ("first_name", "name", "firstname"),
    "code": ("code", "referral_code"),
    "url": ("url", "referral_link", "referral_url"),
    "source": ("source",),
    "type": ("type", "user_type"),
    "referrer_id": ("referrer_id",),
    "signed_up_at": ("signed_up_at", "joined_at", "created_at"),
    "qualified_at": ("qualified_at",),
}
TYPES = {"person_invited": "lead", "lead": "lead", "referred": "lead",
         "person_referring": "referrer", "referrer": "referrer"}


def of_campaign(user: dict, campaign_id: str) -> bool:
    """Is an RF user (as RF lists it) of the campaign, by its own campaign_id? RF's list of people
    (`GET /users`) may hold every campaign's, whatever it was asked: one without a campaign_id is not
    taken as the campaign's."""
    return normalise(user).get("campaign_id") == str(campaign_id)


def signed_up(user: dict) -> Optional[float]:
    """When an RF user joined, by `signed_up_at` in any form (unix seconds or milliseconds, ISO-8601: UTC when it
    names no zone); None when it has none that reads."""
    try:
        return float(to_unix(normalise(user).get("signed_up_at")))
    except (ConversionError, TypeError, ValueError):
        return None


def newest(users: Iterable[dict]) -> Optional[dict]:
    """Who joined last, by `signed_up_at` (of equal or unreadable times, the one listed last)."""
    def joined(user: dict) -> float:
        at = signed_up(user)
        return float("-inf") if at is None else at
    found: Optional[dict] = None
    for user in users:
        if found is None or joined(user) >= joined(found):
            found = user
    return found


def _scalar_id(value: Any) -> Optional[str]:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if isinstance(value, (int, str)) else None


def _unusable_id(value: Any) -> bool:
    """An object, a list or a fraction is not an id: kept as it came, so that the webhook's
    model can say which field is wrong (None and "" still read as "not given"; so does a boolean
    `referrer_id`, while a boolean `id` or `campaign_id` is kept, to be refused as such)."""
    return isinstance(value, (dict, list)) or (isinstance(value, float) and not value.is_integer())


def normalise(obj: dict) -> dict:
    """Flat person dict from an RF user object or a webhook body. Keys present only when the
    source had them; `meta.<field>` for custom fields; `type` is 'lead' or 'referrer'."""
    if isinstance(obj.get("data"), dict):        # an API answer {"data": {...}}
        obj = obj["data"]
    if isinstance(obj.get("user"), dict):        # a body nesting the user
        obj = {**obj, **obj["user"]}
    out: dict[str, Any] = {}
    for name, aliases in ALIASES.items():
        for alias in aliases:
            if alias in obj:
                out[name] = obj[alias]
                break
    for key in ("id", "campaign_id", "referrer_id"):
        if key in out and not _unusable_id(out[key]) and not (key != "referrer_id" and isinstance(out[key], bool)):
            out[key] = _scalar_id(out[key])
    if "type" in out:
        out["type"] = TYPES.get(str(out["type"]).strip().lower())
        if out["type"] is None:
            del out["type"]
    if "type" not in out and "referrer_id" in out:
        out["type"] = "lead" if out["referrer_id"] else "referrer"
    if isinstance(out.get("email"), str):
        out["email"] = out["email"].strip()
    meta = obj.get("meta")
    if isinstance(meta, list):
        for item in meta:
            if isinstance(item, dict) and item.get("field") is not None and item.get("field") != "":
                out[f"meta.{item['field']}"] = item.get("value")
    elif isinstance(meta, dict):
        for key, value in meta.items():
            out[f"meta.{key}"] = value
    for key, value in obj.items():            # custom fields sent at the top level (a list too: mapped, it is said)
        if key.startswith("meta.") or (key not in out and key not in _KNOWN):
            out.setdefault(key if key.startswith("meta.") else f"meta.{key}", value)
    return out


_KNOWN = {a for aliases in ALIASES.values() for a in aliases} | {"meta", "user", "data", "referrer"}


def missing(person: dict, sources: Iterable[str]) -> set[str]:
    """Which of the wanted fields (plus the ones every join needs) the person lacks, or has blank."""
    wanted = set(sources) | {"email", "type"}
    return {f for f in wanted if blank(person.get(f)) and not f.startswith("referrer_") and f != "campaign_name"}


def merge(primary: dict, fallback: dict) -> dict:
    """Webhook values win; the API fills what the webhook did not send, or sent blank."""
    out = dict(fallback)
    out.update({k: v for k, v in primary.items() if not blank(v) or k not in fallback})
    return out


#: How the reason of a user of another campaign reads (dead letters name their fix by it).
OTHER_CAMPAIGN = "belongs to campaign"


def other_campaign(user: dict, rf_user_id: str, campaign_id: str) -> Optional[str]:
    """Why RF's user cannot be handled for `campaign_id`: RF places them in another campaign (a webhook
    naming one campaign for a user of another; RF's webhook secret is one for the whole account). None
    when RF says the same campaign, or does not say."""
    theirs = normalise(user).get("campaign_id")
    if theirs is None or str(theirs) == str(campaign_id):
        return None
    return f"RF user {rf_user_id} {OTHER_CAMPAIGN} {theirs}, not {campaign_id}"


def with_referrer(person: dict, referrer: Optional[dict]) -> dict:
    if not referrer:
        return person
    return {**person, "referrer_name": referrer.get("first_name"), "referrer_email": referrer.get("email"),
            "referrer_code": referrer.get("code")}


def given_email(person: Any) -> Optional[str]:
    """The person's email as the bridge keys it (lower case), or None."""
    email = person.get("email") if isinstance(person, dict) else None
    return email.strip().lower() or None if isinstance(email, str) else None


def email_hash(email: str) -> str:
    """How an older version's edge log named an email (an authenticated refusal's, a field not written): sha256 of
    the normalised address, reversible by anyone with a list of addresses. Its samples are matched (`explain`,
    `forget`) until they expire (REFUSALS_KEEP_DAYS); every sample now names an email by `digest`."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def digest(key: str, kind: str, value: str) -> str:
    """How the edge's log names any email it keeps, and the RF user id or contact id (`kind`) of a body nobody
    authenticated:
    HMAC-SHA256 keyed with `key` (its table's name: no secret, so a guessed value can be tested against it;
    it pseudonymises), of the value normalised as `explain` is asked it."""
    normal = value.strip().lower() if kind == "email" else value.strip()
    return hmac.new(key.encode(), f"{kind}:{normal}".encode(), hashlib.sha256).hexdigest()
