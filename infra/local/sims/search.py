"""Intercom contact-search query engine: ``compile_query`` turns a search ``query`` into a predicate.

Follows the documented rules: ``AND``/``OR`` groups nested at most 2 levels with at most 15
filters each; operators ``= != IN NIN < > <= >= ~ !~ ^ $``; string comparisons are
case-insensitive; date fields are matched by UTC calendar day and accept only ``= > <``
(``>`` starts at the next day, ``<`` before the day); ``tag_id`` accepts only ``= !=``.
``segment_id``/``tag_id`` values are sets of ids (membership tests). Only the "Accepted Fields" are
searched (``FIELDS``, and ``custom_attributes.<name>``), each with a value of its type ("otherwise the
query will fail"): ``~ !~ ^ $`` compare text, ``< > <= >=`` numbers and dates; ``role`` accepts user or lead.
"""
from __future__ import annotations

DAY = 86400
OPERATORS = {"=", "!=", "IN", "NIN", "<", ">", "<=", ">=", "~", "!~", "^", "$"}
_DATES = ("created_at signed_up_at updated_at last_seen_at last_contacted_at last_replied_at "
          "last_email_opened_at last_email_clicked_at ios_last_seen_at android_last_seen_at")
_TEXTS = ("id role name avatar email email_domain phone formatted_phone external_id language_override browser "
          "browser_language os location.country location.region location.city ios_app_version ios_device "
          "ios_app_device ios_os_version ios_app_name ios_sdk_version android_app_version android_device "
          "android_app_name andoid_sdk_version segment_id tag_id owner_id")    # (andoid_: as the documentation spells it)
#: The contact fields search accepts, with their types (the OpenAPI description's "Accepted Fields").
FIELDS = {**dict.fromkeys(_TEXTS.split(), "string"), **dict.fromkeys(_DATES.split(), "date"),
          **dict.fromkeys(("unsubscribed_from_emails", "marked_email_as_spam", "has_hard_bounced"), "boolean")}
_FITS = {"string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
         "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
         "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}


def field_type(field, custom_type=lambda name: None):
    """The type a search of ``field`` takes ("any": not checked), None when search does not accept it.
    ``custom_type(full_name)``: a custom attribute's data type (None: unknown, "any")."""
    if isinstance(field, str) and field.startswith("custom_attributes.") and len(field) > 18:
        return custom_type(field) or "any"
    return FIELDS.get(field)


class SearchError(ValueError):
    pass


def norm(x):
    return x.lower() if isinstance(x, str) else x


def _num(x):
    if isinstance(x, bool) or x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _compare(v, op, value):
    """One filter on a field value; `v` is a set for segment_id/tag_id."""
    if isinstance(v, set):
        wanted = {str(x) for x in value} if isinstance(value, list) else {str(value)}
        hit = bool(v & wanted)
        return hit if op in ("=", "IN") else (not hit if op in ("!=", "NIN") else False)
    v = norm(v)
    value = [norm(x) for x in value] if isinstance(value, list) else norm(value)
    if op in ("=", "!=", "IN", "NIN"):
        hit = v in value if op in ("IN", "NIN") else v == value
        return hit if op in ("=", "IN") else not hit
    if op in ("~", "!~", "^", "$"):
        s, t = (v if isinstance(v, str) else ""), str(value)
        return {"~": t in s, "!~": t not in s, "^": s.startswith(t), "$": s.endswith(t)}[op]
    a, b = _num(v), _num(value)
    if a is None or b is None:
        return False
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def _check(field, kind, op, value):
    """Raise SearchError when a non-date field cannot be searched with ``op`` and ``value``."""
    if kind is None:
        raise SearchError(f"'{field}' is not a searchable contact field")
    if op in ("~", "!~", "^", "$") and kind not in ("string", "any"):
        raise SearchError(f"Operator {op} is not supported on {kind} field {field}")
    if op in ("<", ">", "<=", ">=") and kind not in ("integer", "float", "any"):
        raise SearchError(f"Operator {op} is not supported on {kind} field {field}")
    fits = _FITS.get(kind, lambda v: True)
    for v in value if isinstance(value, list) else [value]:
        if not fits(v) or (field == "role" and norm(v) not in ("user", "lead")):
            raise SearchError(f"{field} does not accept {v!r}" + (": user or lead" if field == "role" else
                                                                   f" (it takes a {kind})"))


def compile_query(q, get, type_of, depth=1):
    """A predicate ``contact -> bool``; ``get(contact, field)`` reads a field, ``type_of(field)``
    its search type (``field_type``). Raises SearchError when the query is invalid."""
    if not isinstance(q, dict):
        raise SearchError("query must be an object")
    op, value = q.get("operator"), q.get("value")
    if op in ("AND", "OR"):
        if depth > 2:
            raise SearchError("Maximum of 2 levels of nested filters")
        if not isinstance(value, list) or not value or len(value) > 15:
            raise SearchError(f"{op} needs a list of 1 to 15 filters")
        preds = [compile_query(sub, get, type_of, depth + 1) for sub in value]
        agg = all if op == "AND" else any
        return lambda c: agg(p(c) for p in preds)
    field = q.get("field")
    if not isinstance(field, str) or op not in OPERATORS:
        raise SearchError(f"Invalid filter: field={field!r} operator={op!r}")
    if op in ("IN", "NIN") and not isinstance(value, list):
        raise SearchError(f"{op} needs a list value")
    kind = type_of(field)
    if kind in ("date", "datetime"):
        if op not in ("=", ">", "<"):
            raise SearchError(f"Operator {op} is not supported on date field {field}")
        day = _num(value)
        if day is None:
            raise SearchError(f"{field} needs a unix timestamp")
        day = int(day) // DAY * DAY
        test = {"=": lambda v: day <= v < day + DAY, ">": lambda v: v >= day + DAY,
                "<": lambda v: v < day}[op]
        return lambda c: (v := _num(get(c, field))) is not None and test(v)
    if field == "tag_id" and op not in ("=", "!="):
        raise SearchError("tag_id supports only = and !=")
    _check(field, kind, op, value)
    return lambda c: _compare(get(c, field), op, value)
