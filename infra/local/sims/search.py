"""Intercom contact-search query engine: ``compile_query`` turns a search ``query`` into a predicate.

Follows the documented rules: ``AND``/``OR`` groups nested at most 2 levels with at most 15
filters each; operators ``= != IN NIN < > <= >= ~ !~ ^ $``; string comparisons are
case-insensitive; date fields are matched by UTC calendar day and accept only ``= > <``
(``>`` starts at the next day, ``<`` before the day); ``tag_id`` accepts only ``= !=``.
``segment_id``/``tag_id`` values are sets of ids (membership tests).
"""
from __future__ import annotations

DAY = 86400
OPERATORS = {"=", "!=", "IN", "NIN", "<", ">", "<=", ">=", "~", "!~", "^", "$"}


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


def compile_query(q, get, is_date, depth=1):
    """A predicate ``contact -> bool``; ``get(contact, field)`` reads a field, ``is_date(field)``
    tells date fields. Raises SearchError when the query is invalid."""
    if not isinstance(q, dict):
        raise SearchError("query must be an object")
    op, value = q.get("operator"), q.get("value")
    if op in ("AND", "OR"):
        if depth > 2:
            raise SearchError("Maximum of 2 levels of nested filters")
        if not isinstance(value, list) or not value or len(value) > 15:
            raise SearchError(f"{op} needs a list of 1 to 15 filters")
        preds = [compile_query(sub, get, is_date, depth + 1) for sub in value]
        agg = all if op == "AND" else any
        return lambda c: agg(p(c) for p in preds)
    field = q.get("field")
    if not isinstance(field, str) or op not in OPERATORS:
        raise SearchError(f"Invalid filter: field={field!r} operator={op!r}")
    if op in ("IN", "NIN") and not isinstance(value, list):
        raise SearchError(f"{op} needs a list value")
    if is_date(field):
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
    return lambda c: _compare(get(c, field), op, value)
