"""Qualification rules: does this contact's attribute value qualify the referral? Pure."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from .mapping import ConversionError, convert
from .settings import Qualification


@dataclass(frozen=True)
class Evaluation:
    met: bool
    actual: Any
    expected: Any
    reason: str
    unchanged: bool = False           # met, but already when the person joined (require_change holds it back)
    baseline: Any = None

    def as_details(self) -> dict:
        held = {"baseline": self.baseline, "require_change": True} if self.unchanged else {}
        return {"actual": self.actual, "expected": self.expected, "met": self.met, **held}


def _typed(value: Any, data_type: str, case_sensitive: bool) -> Any:
    if value is None:
        return None
    try:
        out = convert(value, data_type)
    except ConversionError:
        out = value
    if isinstance(out, str):
        out = out.strip()
        if not out:             # blank: no value (as `duplicates: update` sees it, mapping.is_empty)
            return None
        if not case_sensitive:
            out = out.casefold()
    return out


def matches(rule: Qualification, data_type: str, value: Any) -> bool:
    actual = _typed(value, data_type, rule.case_sensitive)
    if rule.operator == "is_set":
        # `value is False`: Intercom sends a JSON false only for a boolean attribute (an unticked box), whatever type
        # `data_type` says: a worker's attribute list read before the attribute was created names none, taken as
        # text, where false would read "false", set (a false qualification).
        return value is not False and actual is not None and actual is not False
    if actual is None:
        return False
    expected = _typed(rule.value, data_type, rule.case_sensitive)
    if rule.operator == "equals":
        return actual == expected         # (Python compares an int with an int or a float exactly)
    if rule.operator == "contains":
        return str(expected) in str(actual)
    if rule.operator == "gte":
        try:
            return _number(actual) >= _number(expected)
        except (TypeError, ValueError):
            return False
    return False


def _number(value: Any) -> int | float:
    """A number as it is (a whole number past 2**53 stays exact), anything else as a float."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else float(value)


def evaluate(rule: Qualification, data_type: str, value: Any, baseline: Any, armed: bool) -> Evaluation:
    """`baseline`: the value when the person joined. `armed`: a value not meeting the rule has
    been seen since they joined (so reaching the target now *is* a change)."""
    expected = "is set" if rule.operator == "is_set" else (
        rule.value if rule.operator == "equals" else f"{rule.operator} {rule.value!r}")
    if not matches(rule, data_type, value):
        return Evaluation(False, value, expected, f"{rule.attribute} is {value!r}, which does not meet {expected!r}")
    if rule.require_change and matches(rule, data_type, baseline) and not armed:
        return Evaluation(False, value, expected,
                          f"{rule.attribute} already met {expected!r} at the lead's baseline ({baseline!r}: its "
                          "value when the person joined, or when `bridge backfill --apply` took it); require_change "
                          "is true, so only a change to the target qualifies",
                          unchanged=True, baseline=baseline)
    return Evaluation(True, value, expected, f"{rule.attribute} is {value!r}: meets {expected!r}")


def key(rule: Qualification) -> str:
    """What decides whether a value meets the rule: its attribute, operator, value and case. A value that
    missed one target may meet another, so a link's `armed` holds under the rule of its key only."""
    return json.dumps([rule.attribute, rule.operator, rule.value, rule.case_sensitive], default=str)


def replaced(rule: Optional[Qualification], was: Qualification) -> bool:
    """Settings with `rule` (None: none) replace the stored rule `was` by one another value may meet (`key`):
    the rule links stored before they named it were judged under is recorded on them first
    (LinkRepository.stamp_rule), or `rule` would take their baseline, and `armed`, as its own."""
    return rule is None or key(rule) != key(was)


def meets_more(rule: Optional[Qualification], was: Optional[Qualification]) -> bool:
    """Whether `rule`, replacing `was`, may qualify a pending lead by a value their contact reached under `was`
    (judged then, not met): another target (`key`), `require_change` turned off (a value at the baseline now
    counts), or `match` turned to email (a duplicate's value now counts). A rule where there was none does not:
    the leads linked before it are not qualified automatically (docs/how-it-works.md, Qualification: Baseline)."""
    if rule is None or was is None:
        return False
    return (key(rule) != key(was) or (was.require_change and not rule.require_change)
            or (was.match, rule.match) == ("contact", "email"))


def arms(rule: Qualification, data_type: str, value: Any) -> bool:
    """Seeing this value later lets a return to the target count as a change."""
    return not matches(rule, data_type, value)


def event_time(value: Any) -> Optional[float]:
    """Intercom timestamps come as unix numbers or ISO-8601 strings."""
    if value is None or value == "":
        return None
    try:
        return float(convert(value, "date"))
    except ConversionError:
        return None
