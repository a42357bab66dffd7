"""Mapping Referral Factory people onto Intercom contact payloads, and converting values
to the Intercom attribute's type. Pure: no I/O."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable, Optional

# Standard Intercom contact attributes that our mapping may write, with their types: Intercom 2.16's (its OpenAPI
# description's create and update requests and contact model; owner_id is text there, whatever its list of data
# attributes says).
STANDARD_ATTRIBUTE_TYPES = {
    "email": "string",
    "name": "string",
    "phone": "string",
    "external_id": "string",
    "avatar": "string",
    "language_override": "string",
    "signed_up_at": "date",
    "last_seen_at": "date",
    "owner_id": "string",
    "unsubscribed_from_emails": "boolean",
}
MAX_STRING = 255  # Intercom's limit for a text attribute
# Standard attributes a contact carries that Intercom 2.16's create and update requests have no field for: a value
# sent there is not kept. Mapping rows may still name them (settings stored before still read), but `settings apply`
# refuses them, `bridge doctor` reports them, and a join records each value as not written.
NOT_WRITABLE = ("language_override",)
NOT_WRITABLE_REASON = "Intercom's contact create and update requests have no such field (its API does not write it)"

# Standard contact attributes a qualification rule may watch, with their types: those above and those Intercom
# sets itself (read-only). Each is on Intercom's contact (a webhook's item and GET /contacts/{id} are both it),
# and the contact search filters on it (the search of changed contacts asks by the rule's attribute): the
# OpenAPI description's contact model and its search's "Accepted Fields".
WATCHABLE_ATTRIBUTE_TYPES = {
    **STANDARD_ATTRIBUTE_TYPES,
    "role": "string",                      # lead or user: "a lead becomes a user"
    "created_at": "date", "last_contacted_at": "date", "last_replied_at": "date",
    "last_email_opened_at": "date", "last_email_clicked_at": "date",
    "marked_email_as_spam": "boolean", "has_hard_bounced": "boolean",
    "browser": "string", "browser_language": "string", "os": "string",
    "ios_last_seen_at": "date", "ios_app_name": "string", "ios_app_version": "string", "ios_device": "string",
    "ios_os_version": "string", "ios_sdk_version": "string",
    "android_last_seen_at": "date", "android_app_name": "string", "android_app_version": "string",
    "android_device": "string",
}
_NOT_ON_CONTACT = "the contact search knows it, but a contact (a webhook's, or one read) does not carry it"
_NOT_SEARCHED = ("a contact carries it, but the contact search cannot filter on it, so the search of changed "
                 "contacts could not find its changes")
_NESTED = "a contact carries it inside `location`, which the bridge does not read"
_SEVERAL = "a contact carries it as a list of several values, not one value a rule compares"
#: Standard names a rule cannot watch, and why (any other name that is not custom_attributes.<name> is no
#: contact attribute at all).
UNWATCHABLE = {
    "id": "it never changes", "workspace_id": "it never changes",
    "updated_at": "it changes with every change to the contact, whatever changed",
    "email_domain": _NOT_ON_CONTACT, "formatted_phone": _NOT_ON_CONTACT, "ios_app_device": _NOT_ON_CONTACT,
    "browser_version": _NOT_SEARCHED, "android_os_version": _NOT_SEARCHED,
    "android_sdk_version": _NOT_SEARCHED + " (its search field is spelled andoid_sdk_version)",
    "location.country": _NESTED, "location.region": _NESTED, "location.city": _NESTED,
    "location": "a contact carries it as an object (country, region, city), not one value a rule compares",
    "tags": _SEVERAL, "companies": _SEVERAL, "notes": _SEVERAL, "social_profiles": _SEVERAL,
}
#: Standard attributes a rule may name (settings stored before still read) whose value on a contact is no value a
#: rule compares: `settings apply` refuses such a rule and `bridge doctor` reports it.
NOT_COMPARED = {"avatar": "an object on a contact ({type, image_url}), written as text (its URL)"}

# The bridge's own marker on every contact it creates: which RF person (`<campaign>#<RF user id>`)
# it was created for. A text attribute the bridge creates in the workspace when it is missing. It is
# how a contact whose create answer was lost is found again (and recognised as ours), and never
# written to a contact the bridge did not create.
MARKER_NAME = "rf_person"
MARKER_ATTRIBUTE = f"custom_attributes.{MARKER_NAME}"
MARKER_DESCRIPTION = ("Set by the Referral Factory bridge on the contacts it creates: the campaign and "
                      "Referral Factory user (<campaign>#<user id>) it created this contact for")

# Referral Factory fields a mapping may read (`meta.<field>` reads a custom field).
RF_FIELDS = {
    "id": "string", "email": "string", "first_name": "string", "code": "string", "url": "string",
    "source": "string", "type": "string", "signed_up_at": "date", "campaign_id": "string",
    "campaign_name": "string", "referrer_id": "string", "referrer_name": "string",
    "referrer_email": "string", "referrer_code": "string",
}


def rf_field_known(name: str) -> bool:
    return name in RF_FIELDS or (name.startswith("meta.") and len(name) > 5)


def rf_field_type(name: str) -> str:
    return RF_FIELDS.get(name, "any")


class ConversionError(ValueError):
    pass


SHOWN = 80      # characters of a value a reason quotes (a webhook's field may be as long as its body)


def shown(value: Any) -> str:
    """How a reason quotes a value: its repr, cut to SHOWN characters."""
    said = repr(value)
    return said if len(said) <= SHOWN else f"{said[:SHOWN - 1]}…"


# The Intercom attribute types `convert` writes (a date as unix seconds): a mapping to any other is never written.
WRITABLE_TYPES = ("string", "integer", "float", "boolean", "date", "datetime")


def type_unsupported(data_type: str) -> Optional[str]:
    """Why no value can be written to an attribute of `data_type` (None: one `convert` writes): the words
    each join records for the field, and `settings apply` and doctor refuse the mapping with."""
    return None if data_type in WRITABLE_TYPES else f"attribute type {data_type!r} is not supported"


_WHOLE = re.compile(r"[+-]?\d+")
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def convert(value: Any, data_type: str) -> Any:
    """Convert `value` to what Intercom expects for `data_type` (string, integer, float,
    boolean, date/datetime = unix seconds). Raises ConversionError saying why."""
    if value is None:
        return None
    unsupported = type_unsupported(data_type)
    if unsupported:
        raise ConversionError(unsupported)
    if data_type == "string":
        if isinstance(value, (list, dict)):     # several values, or fields: no text of their own
            raise ConversionError(f"{shown(value)} is {'a list' if isinstance(value, list) else 'an object'}, not text")
        text = value if isinstance(value, str) else _text(value)
        if len(text) > MAX_STRING:
            raise ConversionError(f"text is too long ({len(text)} characters, Intercom allows {MAX_STRING})")
        return text
    if data_type == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value            # as sent: a float would round it past 2**53 (an id, an account number)
        if isinstance(value, str) and _WHOLE.fullmatch(value.strip()) and len(value) < 4300:   # (int's own limit)
            return int(value)
        number = _number(value)
        if number != int(number):
            raise ConversionError(f"{shown(value)} is not a whole number")
        return int(number)
    if data_type == "float":
        return float(_number(value))
    if data_type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConversionError(f"{shown(value)} is not true or false")
    return to_unix(value)          # date, datetime


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ConversionError(f"{shown(value)} is a boolean, not a number")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ConversionError(f"{shown(value)} is not a number") from None
    if not math.isfinite(number):
        raise ConversionError(f"{shown(value)} is not a finite number")
    return number


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


def to_unix(value: Any) -> int:
    """Unix seconds from a unix number (seconds or milliseconds) or an ISO-8601 string."""
    if isinstance(value, bool):
        raise ConversionError(f"{shown(value)} is not a date")
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip())):
        seconds = float(value)
        if not abs(seconds) < 1e13:          # also NaN and infinity: no date at all
            raise ConversionError(f"{shown(value)} is out of range for a date")
        return int(seconds / 1000 if seconds > 100_000_000_000 else seconds)
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_ONLY.match(text):
                parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
        except ValueError:
            raise ConversionError(f"{shown(value)} is not a date (use ISO-8601 or unix seconds)") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return int(parsed.timestamp())
    raise ConversionError(f"{shown(value)} is not a date")


# A field error's reason when Intercom refused the attribute (a 400 naming it): Intercom's words follow.
REFUSED_BY_INTERCOM = "Intercom refused it"

# What kind of value a field error is about, from convert()'s own words around the value (the reason
# carries the value: a kind never does), or Intercom's refusal (whatever its words).
REFUSED_KIND = "refused by Intercom"
_KINDS = ((str.startswith, REFUSED_BY_INTERCOM, REFUSED_KIND),
          (str.startswith, "text is too long", "text too long"),
          (str.endswith, "is not a whole number", "not a whole number"),
          (str.endswith, "number", "not a number"),
          (str.endswith, "is not true or false", "not true or false"),
          (str.endswith, "is not a date", "not a date"), (str.endswith, "(use ISO-8601 or unix seconds)", "not a date"),
          (str.endswith, "for a date", "not a date"),
          (str.startswith, "attribute type", "attribute type not supported"),
          (str.startswith, "the person has no email", "no email"),
          (str.startswith, NOT_WRITABLE_REASON, "not written by Intercom's API"))


@dataclass(frozen=True)
class FieldError:
    to: str
    source: str      # "from <rf field>" or "fixed value"
    reason: str

    @property
    def kind(self) -> str:
        """The reason without the value (one of a few words): what doctor counts fields not written by."""
        return next((kind for found, words, kind in _KINDS if found(self.reason, words)), "not convertible")


@dataclass
class ContactPayload:
    """What to send to Intercom: standard attributes + custom_attributes, and the rows that
    could not be converted (recorded, never silently dropped)."""
    attributes: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)

    def body(self, role: Optional[str] = None) -> dict:
        out: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for name, value in self.attributes.items():
            if name.startswith("custom_attributes."):
                custom[name.split(".", 1)[1]] = value
            else:
                out[name] = value
        if custom:
            out["custom_attributes"] = custom
        if role:
            out["role"] = role
        return out

    @property
    def email(self) -> Optional[str]:
        """The email the contact is looked for and known by (lower case: matching ignores case); the contact is
        created with it as the person typed it (trimmed)."""
        email = self.attributes.get("email")
        return email.lower() if isinstance(email, str) else None


def compact_attributes(listed: dict[str, dict]) -> dict[str, dict]:
    """Of Intercom's attribute list (full_name -> data attribute), only what the bridge reads of
    it: the type, and whether it is archived or read-only (only when so)."""
    out: dict[str, dict] = {}
    for name, attr in listed.items():
        kept: dict[str, Any] = {"data_type": attr.get("data_type") or "string"}
        if attr.get("archived"):
            kept["archived"] = True
        if attr.get("api_writable") is False:
            kept["api_writable"] = False
        out[name] = kept
    return out


def unlisted(names: Iterable[str], attributes: dict[str, dict]) -> list[str]:
    """The custom attributes among `names` the workspace's list does not name (created after it was read, or
    not in the workspace at all): attribute_type would take them as text."""
    return [name for name in names if name.startswith("custom_attributes.") and name not in attributes]


def attribute_type(name: str, attributes: dict[str, dict]) -> str:
    """A standard attribute's type is the API's own; a custom one's, the workspace's list says."""
    if name in WATCHABLE_ATTRIBUTE_TYPES:
        return WATCHABLE_ATTRIBUTE_TYPES[name]
    return (attributes.get(name) or {}).get("data_type") or "string"


def build_payload(rows, person: dict, attributes: dict[str, dict], extra: Optional[dict] = None) -> ContactPayload:
    """Apply mapping `rows` (settings FieldMap) to a flat RF `person` dict.
    `extra` adds attribute values (e.g. the qualification's initial value) the same way."""
    payload = ContactPayload()
    items = [(r.to, r.from_, r.value) for r in rows] + [(k, None, v) for k, v in (extra or {}).items()]
    for to, source, fixed in items:
        if source is not None:
            raw = person.get(source)
            origin = f"from {source}"
            if raw is None or raw == "":
                if to == "email":
                    payload.errors.append(FieldError(to, origin, "the person has no email"))
                continue  # an absent optional field is not written; not an error
        else:
            raw, origin = fixed, "fixed value"
        if to in NOT_WRITABLE:
            payload.errors.append(FieldError(to, origin, NOT_WRITABLE_REASON))
            continue
        try:
            value = convert(raw, attribute_type(to, attributes))
        except ConversionError as exc:
            payload.errors.append(FieldError(to, origin, str(exc)))
            continue
        if to == "email":
            value = value.strip()
        payload.attributes[to] = value
    return payload


def has_attribute(contact: dict, name: str) -> bool:
    """Does this contact view say anything about the attribute? Webhook stubs (tags, deletions)
    carry no attributes; a full contact without the key means "not set"."""
    if name.startswith("custom_attributes."):
        return isinstance(contact.get("custom_attributes"), dict)
    return name in contact


def is_empty(value: Any) -> bool:
    """Nothing written there yet (what `duplicates: update` may fill)."""
    return value is None or (isinstance(value, str) and not value.strip())


def attribute_value(contact: dict, name: str) -> Any:
    """Read an attribute (standard or custom_attributes.x) from an Intercom contact."""
    if name.startswith("custom_attributes."):
        return (contact.get("custom_attributes") or {}).get(name.split(".", 1)[1])
    return contact.get(name)
