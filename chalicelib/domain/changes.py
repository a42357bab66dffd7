"""Reconciliation by change: which contacts to ask Intercom for — those changed since a time, at one
of the workspace's qualification targets — as one contact search query. Pure: no I/O.

Intercom matches dates by calendar day, in the workspace's own timezone: `updated_at > v` starts at
the midnight after `v`'s day, wherever that midnight falls. So `v = since - 1 day` always starts at or
before `since`, whatever the timezone, and the caller overlaps runs to catch contacts that search
had not indexed yet (it lags, and has been reported to miss updates near the day boundary).

A rule that search cannot express exactly (is_set, a float or a date, or more targets than one query
holds) makes the query ask for every changed contact instead: the judge decides anyway, the filter
only saves calls."""
from __future__ import annotations

from typing import Any, Iterable, Optional

from .mapping import ConversionError, convert
from .settings import Qualification

DAY = 86400
MAX_GROUP = 15              # filters per AND/OR group (Intercom's limit)

#: rule operator -> search operator, by the attribute's data type.
_OPERATORS = {
    # text: "contains" for `equals` too, since the rule compares text without the spaces around it (rules._typed):
    # "= Yes" would miss a contact holding " Yes" that the rule qualifies (the judge still decides).
    "string": {"equals": "~", "contains": "~"},
    "boolean": {"equals": "="},
    "integer": {"equals": "=", "gte": ">="},
}


def changed_since(since: float) -> dict:
    """Contacts whose updated_at is at or after `since` (and some before: day granularity)."""
    return {"field": "updated_at", "operator": ">", "value": int(since) - DAY}


def target_filter(rule: Qualification, data_type: str) -> Optional[dict]:
    """The search filter of contacts whose attribute may meet the rule, or None when search cannot say."""
    operator = "=" if rule.attribute == "role" else _OPERATORS.get(data_type, {}).get(rule.operator)   # lead | user
    if operator is None:
        return None
    try:
        value: Any = convert(rule.value, data_type)
    except ConversionError:
        return None
    if isinstance(value, str):
        value = value.strip() or None       # blank: no value, which no contact meets (rules._typed)
    if isinstance(value, float) or value is None:
        return None
    return {"field": rule.attribute, "operator": operator, "value": value}


def changes_query(rules: Iterable[tuple[Qualification, str]], since: float) -> dict:
    """One query: contacts changed since `since` that may meet one of `rules` (each with its
    attribute's data type). Two levels at most: OR of (changed AND target)."""
    changed = changed_since(since)
    targets: list[dict] = []
    for rule, data_type in rules:
        target = target_filter(rule, data_type)
        if target is None:
            return changed
        if target not in targets:
            targets.append(target)
    if not targets or len(targets) > MAX_GROUP:
        return changed
    groups = [{"operator": "AND", "value": [changed, target]} for target in targets]
    return groups[0] if len(groups) == 1 else {"operator": "OR", "value": groups}
