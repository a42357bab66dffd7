"""What Referral Factory and Intercom send to the webhook routes: a bounded body reader and the
pydantic models of Intercom's notification envelope and RF's "user joins" body, plus the table
of Intercom contact topics (the one list intake queues and qualification acts on). Pure: no I/O.

Every way a body can be wrong ends in `BodyError` (a 4xx with a code and a message that names
the field), never in another exception: nesting of any depth, wrong types, arrays for objects,
non-UTF-8, NaN, numbers too large to read (1e400 too, which the parser reads as infinity)."""
from __future__ import annotations

import math
import re
import unicodedata
from types import MappingProxyType
from typing import Annotated, Any, Literal, Mapping, Optional, Union
from urllib.parse import parse_qsl

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, StrictStr,
                      ValidationError, field_validator, model_serializer, model_validator)
from pydantic_core import from_json

from .domain.ids import ID, ID_RULE, as_id, is_id
from .domain.mapping import to_unix
from .domain.people import ALIASES, TYPES, normalise


class BodyError(ValueError):
    """The answer to a body the bridge cannot take: `status`, `code` (the JSON `error`), `message`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --- media types -------------------------------------------------------------------------------
FORM = "application/x-www-form-urlencoded"


_MEDIA = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+\Z")   # type/subtype (RFC 9110)


def media_type(content_type: Optional[str]) -> str:
    """The bare media type of a Content-Type header, lower case; none given (no header, or a blank
    one) reads as JSON (as Chalice and API Gateway assume). A header whose media type is empty or
    not `type/subtype` (`;;;`, `; charset=utf-8`, `json`) is "" (accepted by no route)."""
    if not (content_type or "").strip():
        return "application/json"
    bare = re.split(r"[;,]", content_type or "", maxsplit=1)[0].strip().lower()
    return bare if _MEDIA.match(bare) else ""


def is_json(media: str) -> bool:
    """application/json, text/json, application/<anything>+json, and text/plain (some senders
    label JSON as text)."""
    return media in ("application/json", "text/json", "text/plain") or (
        media.startswith("application/") and media.endswith("+json"))


_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^\";,\s]+)", re.IGNORECASE)


def charset(content_type: Optional[str]) -> Optional[str]:
    """The Content-Type's `charset`, as Python names it: None when none is given, or UTF-8 or ASCII (read
    as UTF-8). A charset Python does not know is a 415."""
    found = _CHARSET.search(content_type or "")
    if not found:
        return None
    import codecs
    try:
        info = codecs.lookup(found.group(1))
        name = info.name
        if not info._is_text_encoding:                   # (base64, rot13...: no charset)
            raise LookupError(name)
    except (LookupError, ValueError):       # (ValueError: a NUL or a lone surrogate in the name)
        raise BodyError(415, "unsupported_media_type", f"charset {found.group(1)[:40]!r} is not known: send UTF-8") \
            from None
    return None if name in ("utf-8", "ascii") else name


def in_charset(raw: bytes, name: Optional[str]) -> bytes:
    """The bytes of a text sent in charset `name`, as UTF-8. A body that is UTF-8 already stays as it is
    (many senders label UTF-8 with another charset, e.g. `text/plain; charset=ISO-8859-1`): UTF-8 without a
    NUL (UTF-16's and UTF-32's ASCII has them; JSON and forms never do). Bytes that are not text in `name`
    are left for the parser to refuse."""
    if name is None:
        return raw
    if b"\x00" not in raw:
        try:
            raw.decode("utf-8")
            return raw
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode(name).encode("utf-8", "surrogatepass")
    except (UnicodeDecodeError, ValueError):
        return raw


_CODINGS = {"gzip": 16 + 15, "x-gzip": 16 + 15, "deflate": 32 + 15}   # zlib's wbits (deflate: zlib's or raw)
_GZIP = b"\x1f\x8b"


def decoded(content_encoding: Optional[str], raw: bytes, limit: int) -> bytes:
    """The body before its Content-Encoding (RFC 9110): gzip or deflate undone, at most `limit` bytes of
    it (more is a 413, as if sent so); `identity` or none, as it came. Any other coding is a 415. A body
    that is not compressed at all is taken as it came: API Gateway may have decompressed it already."""
    for coding in reversed([c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]):
        if coding == "identity":
            continue
        if coding not in _CODINGS:
            raise BodyError(415, "unsupported_media_type", f"Content-Encoding {coding[:40]!r} is not accepted: "
                            "send the body as it is, or gzip or deflate it")
        raw = _inflated(raw, coding, limit)
    return raw


def _inflated(raw: bytes, coding: str, limit: int) -> bytes:
    return _deflated(raw, limit) if coding == "deflate" else _gunzipped(raw, coding, limit)


def _deflated(raw: bytes, limit: int) -> bytes:
    """zlib's stream or a raw one. Deflate has no magic bytes: a body that is neither, or reads as the start of
    one only (a plain body can), is taken as it came."""
    import zlib
    for wbits in (_CODINGS["deflate"], -15):
        inflate = zlib.decompressobj(wbits)
        try:
            out = inflate.decompress(raw, limit + 1)
        except zlib.error:
            continue
        _within(out, inflate, limit)
        return out if inflate.eof else raw
    return raw


def _gunzipped(raw: bytes, coding: str, limit: int) -> bytes:
    import zlib
    if not raw.startswith(_GZIP):
        return raw
    out, rest = b"", raw
    while rest:                                      # gzip members written one after another are one body
        inflate = zlib.decompressobj(_CODINGS[coding])
        try:
            if not rest.startswith(_GZIP):
                raise zlib.error("not a member")
            out += inflate.decompress(rest, limit + 1 - len(out))
        except zlib.error:
            raise BodyError(400, "malformed_encoding", f"the body is not {coding} data as its Content-Encoding says") \
                from None
        _within(out, inflate, limit)
        if not inflate.eof:
            raise BodyError(400, "malformed_encoding", f"the body is not {coding} data as its Content-Encoding says: "
                            "it ends before its data does")
        rest = inflate.unused_data
    return out


def _within(out: bytes, inflate: Any, limit: int) -> None:
    if len(out) > limit or inflate.unconsumed_tail:
        raise BodyError(413, "too_large", f"body over {limit} bytes once decompressed")


# --- reading a body ----------------------------------------------------------------------------
_BOM = b"\xef\xbb\xbf"


class Sent(dict):
    """A body as read (a key sent twice keeps its last value), with `repeated`: each name sent more than
    once in the body, its person or its `data` (`id`, `user.id`, `data.user.id`), with every value it
    carried, in order — for rf_join to refuse the ones that say who joined where."""

    repeated: dict[str, list]

    def __init__(self, body: dict, repeated: dict[str, list]):
        super().__init__(body)
        self.repeated = repeated


class _Pairs(dict):
    """A JSON object as json.loads' object_pairs_hook sees it: its keys written twice, with their values."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        values: dict[str, list] = {}
        for key, value in pairs:
            values.setdefault(key, []).append(value)
        self.twice = {key: sent for key, sent in values.items() if len(sent) > 1}


# Where a body carries the person's fields (rf_join's places): a key sent twice elsewhere is no concern.
_PERSON_AT = ("", "user.", "data.", "data.user.")


def parse_json_object(raw: bytes, repeats: bool = False) -> dict:
    """A JSON object from UTF-8 bytes. The parser (pydantic-core's) refuses nesting deeper than
    200 levels, lone surrogates, NaN/Infinity and integers over 4300 digits by itself, each as a
    ValueError; a number too large for a float (which it reads as infinity) is refused here: nothing here recurses
    in Python. With `repeats`, a `Sent` whose `repeated` names the keys of the person's objects written twice (read
    again by json, once the body is known good)."""
    text = raw[len(_BOM):] if raw.startswith(_BOM) else raw
    try:
        body = from_json(text, allow_inf_nan=False)
    except ValueError as exc:
        raise BodyError(400, "malformed_json", f"the body is not JSON in UTF-8: {_short(exc)}") from None
    if not isinstance(body, dict):
        raise BodyError(400, "malformed_json", f"the body must be a JSON object, not {_json_type(body)}")
    infinite = _infinite(body)
    if infinite is not None:      # (1e400: read as infinity, the queue's message would say null, the field lost)
        raise BodyError(400, "malformed_json", f"the body is not JSON the bridge can read: {infinite}: "
                        "number out of range")
    if not repeats:
        return body
    if b"\\u" not in text and not any(text.count(name) > 1 for name in _WHO_QUOTED):
        return Sent(body, {})      # no name rf_join checks is written twice: no second read (the usual body)
    import json
    try:
        pairs = json.loads(text, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):     # what pydantic-core read, json may not: no repeats known
        return Sent(body, {})
    repeated: dict[str, list] = {}
    for prefix in _PERSON_AT:
        nodes: list = [pairs]          # every copy of the object at prefix (`user` written twice: both)
        for key in prefix.split(".")[:-1]:
            nodes = [v for n in nodes if isinstance(n, _Pairs) for v in _all(n, key) if isinstance(v, _Pairs)]
        sent: dict[str, list] = {}
        for node in nodes:
            for key in node:
                sent.setdefault(key, []).extend(_all(node, key))
        repeated.update({f"{prefix}{key}": values for key, values in sent.items() if len(values) > 1})
    return Sent(body, repeated)


def _infinite(body: dict) -> Optional[str]:
    """Where (a dotted name) the body holds a number too large for a float, or None. Walked, not recursed; each
    node knows its parent, and only the one found is named (a name per node made a long key over a long array
    one copy of the key per item: gigabytes from a body within the size limit)."""
    nodes: list[tuple[tuple, Any]] = [((), body)]      # ((key, (parent's key, (...))), value)
    while nodes:
        where, node = nodes.pop()
        if isinstance(node, float) and math.isinf(node):
            keys = []
            while where:
                key, where = where
                keys.append(str(key))
            named = ".".join(reversed(keys))
            return named if len(named) <= 80 else f"{named[:79]}…"       # (a key may be as long as the body)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        nodes.extend(((key, where), value) for key, value in items)
    return None


def _all(node: _Pairs, key: str) -> list:
    """Every value `key` was given in the object, in order (the last is the one kept)."""
    return node.twice.get(key) or ([node[key]] if key in node else [])


MAX_FORM_FIELDS = 1000
MAX_FORM_NESTING = 5
_BRACKETS = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)\Z")


def parse_form(raw: bytes, charset: Optional[str] = None) -> dict:
    """An application/x-www-form-urlencoded body as a dict. Bracketed names nest the way PHP and
    Rails write them: `user[email]=a` -> {"user": {"email": "a"}}; `meta[0][field]=x` -> a list
    when every key is a number; `tags[]=a&tags[]=b` -> a list. A name sent twice (`id=1&id=2`,
    `user[id]=1&user[id]=2`) keeps its last value: the `Sent` answered holds every value it carried
    (`repeated`, by dotted name), for rf_join to refuse an id sent twice with different values. A form
    that is not UTF-8 (also after %-decoding) is read in the Content-Type's `charset`, if it names one."""
    try:
        try:
            text, pairs = _form_pairs(raw, "utf-8")
        except UnicodeDecodeError:
            if charset is None:
                raise
            text, pairs = _form_pairs(raw, charset)
    except UnicodeError:           # (not text in it, or a lone surrogate: an escape codec or UTF-7 made one)
        raise BodyError(400, "malformed_form", f"the form is not UTF-8{f' nor {charset}' if charset else ''} "
                        "(also after %-decoding)") from None
    except ValueError as exc:
        raise BodyError(400, "malformed_form", f"the form is not readable: {_short(exc)}") from None
    if text.lstrip().startswith(("{", "[")):      # `curl -d '{...}'`: curl labels it a form
        raise BodyError(400, "malformed_form", "the body looks like JSON but was sent as a form (Content-Type: "
                        f"{FORM}, curl -d's default): send it with `Content-Type: application/json`")
    out: dict = {}
    sent: dict[str, list] = {}
    for name, value in pairs:
        if not name:
            raise BodyError(400, "malformed_form", "a field has an empty name (`=value`): send name=value pairs "
                            "joined by &")
        match = _BRACKETS.match(name)
        if not match:
            raise BodyError(400, "malformed_form", f"field name {name[:60]!r} has unbalanced brackets")
        path = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        if len(path) > MAX_FORM_NESTING + 1:
            raise BodyError(400, "malformed_form", f"field {name[:60]!r} nests deeper than {MAX_FORM_NESTING} levels")
        _put(out, path, value, name)
        if "" not in path:                                 # `tags[]` adds an item, never repeats one
            sent.setdefault(".".join(path), []).append(value)
    return Sent({k: _lists(v) for k, v in out.items()},        # (the form itself is an object, whatever its names)
                {name: values for name, values in sent.items() if len(values) > 1})


def _form_pairs(raw: bytes, charset: str) -> tuple[str, list[tuple[str, str]]]:
    """The form's text and pairs read in `charset`; UnicodeError when they are not text UTF-8 can hold."""
    text = raw.decode(charset)
    pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, encoding=charset, errors="strict",
                      max_num_fields=MAX_FORM_FIELDS)
    "".join(name + value for name, value in pairs).encode("utf-8")
    return text, pairs


def _put(node: dict, path: list[str], value: str, name: str) -> None:
    for i, key in enumerate(path):
        if key == "":                                      # `tags[]`: the next free index
            key = str(sum(1 for k in node if k.isdigit()))
        if i == len(path) - 1:
            if isinstance(node.get(key), dict):
                raise BodyError(400, "malformed_form", f"field {name[:60]!r} is both a value and a group")
            node[key] = value
            return
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise BodyError(400, "malformed_form", f"field {name[:60]!r} is both a value and a group")
        node = child


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _lists(v) for k, v in node.items()}
    if items and all(k.isascii() and k.isdigit() for k in items):     # (ASCII: "²" is a digit int() refuses)
        return [items[k] for k in sorted(items, key=int)]
    return items


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true or false",
            type(None): "null"}.get(type(value), "a number")


def describe(exc: ValidationError, limit: int = 3) -> str:
    """A validation error as one line that names each field: `data.item.email: must be text`.
    Input values are left out (they may be personal data)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else ("." if loc else "") + str(part)
        message = _MESSAGES.get(err["type"]) or err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc or '(body)'}: {message}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


_MESSAGES = {
    "missing": "required",
    "string_type": "must be text",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "is not one of the accepted values",
}


# --- shared field types ------------------------------------------------------------------------
_ID = ID          # the one rule for ids (domain/ids.py): settings name campaigns by it too
_id = as_id


Id = Annotated[str, BeforeValidator(_id)]
Text = Annotated[StrictStr, Field(max_length=1024)]
Email = Annotated[StrictStr, Field(max_length=320)]       # Intercom's contact email: read as Intercom holds it


_UNPRINTABLE = {"Cc": "a control character", "Cf": "an invisible character", "Zs": "a space",
                "Zl": "a line separator", "Zp": "a paragraph separator"}


def unprintable(text: str) -> Optional[str]:
    """The first character no email address can hold — a control character (a NUL), an invisible
    one (a zero-width space), or whitespace inside it — said with its code point and place; None if none."""
    for n, char in enumerate(text, 1):
        kind = _UNPRINTABLE.get(unicodedata.category(char))
        if kind:
            return f"{kind}, U+{ord(char):04X}, at character {n}"
    return None


def printable(text: str) -> str:
    """`text` without the characters `unprintable` names: how a refused email is kept for `explain` and
    `forget` (the address the operator can type)."""
    return "".join(char for char in text if unicodedata.category(char) not in _UNPRINTABLE)


def rf_email(value: str) -> str:
    """An RF person's email, refused (ValueError) if it holds a character no address can: the webhook's
    (`RFEmail`), and the one a join reads from Referral Factory's API."""
    found = unprintable(value)
    if found:
        raise ValueError(f"holds a character no email address can ({found}): fix the email in Referral Factory")
    return value


# A person's email as RF's webhook gives it (surrounding spaces are trimmed before): refused if it holds a
# character no address can, which would be masked, keyed and forgotten as another address.
RFEmail = Annotated[StrictStr, Field(max_length=320), AfterValidator(rf_email)]


def _scalar(value: Any) -> Any:
    if not isinstance(value, (str, int, float)):         # bool is an int
        raise ValueError("must be text, a number, or true or false")
    return value


Scalar = Annotated[Any, PlainValidator(_scalar)]


def _timestamp(value: Any) -> Any:
    """Intercom sends unix seconds (the envelope's `created_at`) and ISO-8601 texts (a contact's
    `updated_at`): a time qualification can read (domain.mapping.to_unix), or a refusal."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a unix time or an ISO-8601 text")
    if isinstance(value, str) and len(value) > 64:
        raise ValueError("is too long for a time")
    if isinstance(value, (int, float)) and not -1e13 < value < 1e13:   # seconds or milliseconds
        raise ValueError("is out of range for a unix time")
    if isinstance(value, str):
        try:
            to_unix(value)
        except (ValueError, OverflowError):
            raise ValueError("is not a time: send a unix time or an ISO-8601 text") from None
    return value


Timestamp = Annotated[Union[int, float, str], BeforeValidator(_timestamp)]


class AsSent(BaseModel):
    """A vendor's object: the fields the bridge reads are typed, all others kept. It dumps exactly
    the keys that were sent (no added nulls), so a dump is the object as the vendor sent it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_serializer(mode="wrap")
    def _as_sent(self, handler):
        data = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}

    def as_dict(self) -> dict:
        return self.model_dump()


# --- Intercom ------------------------------------------------------------------------------------
Change = Literal["changed", "merged", "deleted", "archived", "unarchived"]

# What each Intercom contact topic means for a link. Intake queues these topics and no others;
# qualification reads the change from here. Any other topic is answered 200 and ignored.
CONTACT_TOPICS: Mapping[str, Change] = MappingProxyType({
    "contact.user.created": "changed",
    "contact.user.updated": "changed",
    "contact.lead.created": "changed",
    "contact.lead.updated": "changed",
    "contact.lead.signed_up": "changed",
    "contact.lead.added_email": "changed",
    "contact.email.updated": "changed",
    "contact.subscribed": "changed",
    "contact.unsubscribed": "changed",
    "contact.user.tag.created": "changed",     # tag events carry no attributes: nothing to evaluate
    "contact.user.tag.deleted": "changed",
    "contact.lead.tag.created": "changed",
    "contact.lead.tag.deleted": "changed",
    "contact.merged": "merged",
    "contact.deleted": "deleted",
    "contact.archived": "archived",
    "contact.unarchive": "unarchived",
})


class ContactRef(AsSent):
    id: Id


class ContactItem(AsSent):
    """`data.item` of a contact notification: a full contact, or a stub `{type, id, deleted}`."""

    id: Id
    type: Optional[Text] = None
    email: Optional[Email] = None
    role: Optional[Text] = None
    merged_from: Optional[ContactRef] = None
    updated_at: Optional[Timestamp] = None
    custom_attributes: Optional[dict[str, Any]] = None


class _ContactData(BaseModel):
    item: ContactItem

    @model_validator(mode="before")
    @classmethod
    def _tagged(cls, data: Any) -> Any:
        """Tag topics carry `{type: contact_tag, tag, contact}`: the contact is the item."""
        item = data.get("item") if isinstance(data, dict) else None
        if isinstance(item, dict) and item.get("type") == "contact_tag":
            return {**data, "item": item.get("contact")}
        return data


class IntercomNotification(BaseModel):
    """Intercom's webhook envelope. Only the fields the bridge reads are checked; `data` is
    read as a contact only for the contact topics."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    app_id: Id
    topic: Annotated[StrictStr, Field(max_length=128)]
    id: Optional[Annotated[StrictStr, Field(max_length=256)]] = None   # null for `ping`
    created_at: Optional[Timestamp] = None
    data: Any = None

    @property
    def change(self) -> Optional[Change]:
        return CONTACT_TOPICS.get(self.topic)


class ContactNotification(IntercomNotification):
    """A notification about a contact (a topic of CONTACT_TOPICS)."""

    data: _ContactData

    @field_validator("topic")
    @classmethod
    def _contact_topic(cls, topic: str) -> str:
        if topic not in CONTACT_TOPICS:
            raise ValueError("is not a contact topic")
        return topic

    @property
    def contact(self) -> ContactItem:
        return self.data.item


def app_id_of(body: dict) -> Optional[str]:
    """The workspace whose secret verifies this body, if it names one in a usable shape."""
    value = body.get("app_id")
    return value if isinstance(value, str) and _ID.match(value) else None


def intercom_notification(body: dict) -> IntercomNotification:
    try:
        return IntercomNotification.model_validate(body)
    except ValidationError as exc:
        raise BodyError(400, "invalid_notification", describe(exc)) from None


def contact_notification(body: dict) -> ContactNotification:
    try:
        return ContactNotification.model_validate(body)
    except ValidationError as exc:
        if any(e["loc"][:3] == ("data", "item", "id") and e["type"] == "missing" for e in exc.errors()):
            raise BodyError(400, "no_contact", "data.item carries no contact id") from None
        raise BodyError(400, "invalid_notification", describe(exc)) from None


# --- Referral Factory ------------------------------------------------------------------------------
class RFPerson(AsSent):
    """RF's "user joins" body, read through the owner's field names (domain.people.normalise):
    the person as the mapping reads it. Fields the bridge reads are typed; custom fields
    (`meta.<field>`) may hold anything."""

    id: Id
    campaign_id: Id
    referrer_id: Optional[Id] = None
    type: Optional[Literal["lead", "referrer"]] = None
    email: Optional[RFEmail] = None
    first_name: Optional[Scalar] = None
    code: Optional[Scalar] = None
    url: Optional[Scalar] = None
    source: Optional[Scalar] = None
    signed_up_at: Optional[Scalar] = None
    qualified_at: Optional[Scalar] = None


# The fields that say who joined where: sent twice with different values, the join is refused (which
# person, which campaign?). Any other field (a `name` beside `first_name`, a `created_at` beside
# `signed_up_at`) is read from its first name, as docs/setup.md's table orders them: an owner's payload
# may well carry a full `name` beside `first_name`, and a join is never lost over a descriptive field.
WHO = ("id", "campaign_id", "email", "type", "referrer_id")
# As they stand in a JSON body (with the objects that hold them): a key written twice appears twice so,
# unless escaped (`\u`). parse_json_object reads a body again for its repeats only then.
_WHO_QUOTED = tuple(f'"{name}"'.encode() for name in
                    {"user", "data", *(alias for field in WHO for alias in ALIASES[field])})


def rf_join(body: dict) -> RFPerson:
    """RF's "user joins" webhook as a person: rf_person, after the checks only a webhook gets (an RF
    API user, as backfill reads it, is taken as RF sends it). What the owner's field names would
    let normalise read one way silently is refused, naming the field: a `data`, `user` or `meta`
    of the wrong shape, one of the WHO fields sent twice (under two names, beside and inside `user`, or
    under one name: the body's `repeated`) with different values, a `referrer_id` of true or false."""
    data = body.get("data")
    if _given(data) and not isinstance(data, dict):
        _invalid("data: must be an object (the user's fields)")
    where, top = ("data.", data) if isinstance(data, dict) else ("", body)
    user = top.get("user")
    if _given(user) and not isinstance(user, dict):
        _invalid(f"{where}user: must be an object (the user's fields)")
    places = [(where, top)] + ([(f"{where}user.", user)] if isinstance(user, dict) else [])
    for prefix, node in places:
        _meta_shape(f"{prefix}meta", node.get("meta"))
    repeated = getattr(body, "repeated", {})
    for field, aliases in ALIASES.items():
        if field not in WHO:
            continue
        sent = [(f"{prefix}{alias}", value) for prefix, node in places for alias in aliases
                if alias in node for value in repeated.get(f"{prefix}{alias}", [node[alias]]) if _given(value)]
        for name, value in sent:
            if field == "referrer_id" and isinstance(value, bool):
                _invalid(f"{name}: must be {ID_RULE}")
            if _comparable(field, value) != _comparable(field, sent[0][1]):
                _invalid(f"{field}: `{name}` is sent twice with different values: send one value" if name == sent[0][0]
                         else f"{field}: `{sent[0][0]}` and `{name}` differ: send one value")
    return rf_person(body)


def _given(value: Any) -> bool:
    return value is not None and value != ""


def _invalid(message: str) -> None:
    raise BodyError(400, "invalid_field", message)


def _meta_shape(name: str, meta: Any) -> None:
    if not _given(meta) or isinstance(meta, dict):
        return
    if not isinstance(meta, list):
        _invalid(f"{name}: must be a list of {{field, value}} or an object")
    for i, item in enumerate(meta):
        field = item.get("field") if isinstance(item, dict) else None
        if isinstance(field, bool) or not isinstance(field, (str, int)) or field == "":
            _invalid(f"{name}[{i}]: must be an object with a `field` name and a `value`")


def _comparable(field: str, value: Any) -> Any:
    """A value as the bridge reads it, so that the same value sent twice is not a conflict:
    7, 7.0 and "7"; "Ann@x.co" and "ann@x.co"; "lead" and "person_invited" (only WHO fields are
    compared)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (int, float, str)):
        return value
    text = str(value).strip()
    if field == "email" or field == "type":
        text = text.lower()
        return TYPES.get(text, text) if field == "type" else text
    return text


def rf_person(body: dict) -> RFPerson:
    person = normalise(body)
    if person.get("id") is None:
        raise BodyError(400, "missing_user_id", "no user id: send the RF user's id as `id`")
    if person.get("campaign_id") is None:
        raise BodyError(400, "missing_campaign_id", "no campaign id: send the campaign's id as `campaign_id`")
    try:
        return RFPerson.model_validate(person)
    except ValidationError as exc:
        raise BodyError(400, "invalid_field", describe(exc)) from None
