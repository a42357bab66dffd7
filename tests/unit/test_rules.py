import pytest

from chalicelib.domain.rules import arms, evaluate, event_time, matches
from chalicelib.domain.settings import Qualification


def rule(**kw):
    return Qualification.model_validate({"attribute": "custom_attributes.x", "value": "Yes", **kw})


@pytest.mark.parametrize("dtype,target,value,met", [
    ("string", "Yes", "yes", True), ("string", "Yes", " Yes ", True), ("string", "Yes", "No", False),
    ("boolean", True, "true", True), ("boolean", "true", True, True), ("boolean", True, False, False),
    ("integer", 10, 10.0, True), ("float", "10", 10, True), ("float", 10.5, "10.5", True),
    ("string", "Yes", None, False), ("date", "2024-03-01", 1709251200, True),
])
def test_typed_comparison(dtype, target, value, met):
    assert matches(rule(value=target), dtype, value) is met


@pytest.mark.parametrize("operator,target,value,met", [
    ("equals", 12345678901234567, 12345678901234568, False), ("equals", "12345678901234567", "12345678901234567", True),
    ("equals", 12345678901234567, "12345678901234567", True), ("gte", 12345678901234568, 12345678901234567, False),
    ("gte", "12345678901234567", 12345678901234568, True)])
def test_whole_numbers_past_what_a_float_holds_compare_exactly(operator, target, value, met):
    """Two account numbers 1 apart are two values (as floats they are one)."""
    assert matches(rule(operator=operator, value=target), "integer", value) is met


def test_case_sensitive_when_configured():
    assert not matches(rule(case_sensitive=True), "string", "yes")


def test_other_operators():
    assert matches(rule(operator="is_set", value=None), "string", "anything")
    assert not matches(rule(operator="is_set", value=None), "string", "")
    assert not matches(rule(operator="is_set", value=None), "string", "  ")    # blank, as `duplicates: update` sees it
    # a boolean attribute (a checkbox): ticked is set; unticked (false, as Intercom keeps it) and never set are not
    assert matches(rule(operator="is_set", value=None), "boolean", True)
    assert not matches(rule(operator="is_set", value=None), "boolean", False)
    assert not matches(rule(operator="is_set", value=None), "boolean", None)
    # ... also when the type is not known yet (a list read before the attribute was created: taken as text)
    assert not matches(rule(operator="is_set", value=None), "string", False)
    assert matches(rule(operator="is_set", value=None), "string", True)
    assert matches(rule(operator="is_set", value=None), "string", "false")   # text a contact holds is set
    assert matches(rule(operator="gte", value=100), "integer", "150")
    assert not matches(rule(operator="gte", value=100), "integer", 99)
    assert matches(rule(operator="contains", value="pro"), "string", "Pro plan")


def test_reaching_the_target_qualifies_and_says_actual_and_expected():
    e = evaluate(rule(), "string", "Yes", baseline="No", armed=False)
    assert e.met and e.as_details() == {"actual": "Yes", "expected": "Yes", "met": True}


def test_baseline_already_at_target_does_not_qualify_until_a_change_is_seen():
    e = evaluate(rule(), "string", "Yes", baseline="Yes", armed=False)
    assert not e.met and "already met 'Yes' at the lead's baseline" in e.reason
    assert evaluate(rule(), "string", "Yes", baseline="Yes", armed=True).met
    assert evaluate(rule(require_change=False), "string", "Yes", baseline="Yes", armed=False).met


def test_not_met_says_why_and_arms():
    e = evaluate(rule(), "string", "No", baseline="No", armed=False)
    assert not e.met and e.reason == "custom_attributes.x is 'No', which does not meet 'Yes'"
    assert arms(rule(), "string", "No") and not arms(rule(), "string", "yes")


def test_event_times_accept_unix_and_iso():
    assert event_time(1692131388) == 1692131388
    assert event_time("2023-08-15T20:29:47.988+00:00") == 1692131387
    assert event_time(None) is None and event_time("soon") is None
