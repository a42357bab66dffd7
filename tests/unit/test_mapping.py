import pytest

from chalicelib.domain.mapping import (STANDARD_ATTRIBUTE_TYPES, WATCHABLE_ATTRIBUTE_TYPES, ConversionError,
                                       attribute_type, build_payload, convert, to_unix)
from chalicelib.domain.settings import FieldMap


@pytest.mark.parametrize("value,dtype,expected", [
    ("12.50", "float", 12.5), (3, "float", 3.0), ("10", "integer", 10), ("10.0", "integer", 10), (7.0, "integer", 7),
    ("Yes", "boolean", True), ("false", "boolean", False), (1, "boolean", True),
    ("2024-03-01", "date", 1709251200), ("2024-03-01T10:00:00Z", "date", 1709287200),
    ("2024-03-01T12:00:00+02:00", "datetime", 1709287200), (1709287200, "date", 1709287200),
    (1709287200000, "date", 1709287200), ("1709287200", "date", 1709287200),
    (42, "string", "42"), (True, "string", "true"), (2.0, "string", "2"),
])
def test_values_convert_to_the_intercom_type(value, dtype, expected):
    assert convert(value, dtype) == expected


@pytest.mark.parametrize("value,dtype,why", [
    ("ten", "integer", "not a number"), ("10.5", "integer", "not a whole number"), (True, "float", "boolean"),
    ("maybe", "boolean", "not true or false"), ("next tuesday", "date", "not a date"),
    ("x" * 256, "string", "too long (256 characters, Intercom allows 255)"), ("nan", "float", "finite"),
])
def test_unconvertible_values_say_why(value, dtype, why):
    with pytest.raises(ConversionError, match=why.replace("(", r"\(").replace(")", r"\)")):
        convert(value, dtype)


def test_iso_dates_without_zone_are_utc():
    assert to_unix("2024-03-01T00:00:00") == 1709251200


ATTRS = {"custom_attributes.score": {"data_type": "float"}, "custom_attributes.joined": {"data_type": "date"},
         "custom_attributes.vip": {"data_type": "boolean"}}


def rows(*pairs):
    return [FieldMap.model_validate(p) for p in pairs]


def test_payload_maps_dynamic_fixed_meta_and_types():
    person = {"email": " Ann@Example.COM ", "first_name": "Ann", "code": "ab12", "meta.score": "9.5",
              "signed_up_at": "2024-03-01T10:00:00Z"}
    payload = build_payload(rows({"from": "email", "to": "email"}, {"from": "first_name", "to": "name"},
                                 {"from": "meta.score", "to": "custom_attributes.score"},
                                 {"from": "signed_up_at", "to": "custom_attributes.joined"},
                                 {"value": "yes", "to": "custom_attributes.vip"}), person, ATTRS)
    assert payload.errors == []
    assert payload.body(role="lead") == {"email": "Ann@Example.COM", "name": "Ann", "role": "lead",
                                         "custom_attributes": {"score": 9.5, "joined": 1709287200, "vip": True}}


def test_unconvertible_value_is_recorded_not_dropped_silently():
    payload = build_payload(rows({"from": "email", "to": "email"},
                                 {"from": "meta.score", "to": "custom_attributes.score"}),
                            {"email": "a@b.co", "meta.score": "lots"}, ATTRS)
    assert payload.body() == {"email": "a@b.co"}
    [err] = payload.errors
    assert (err.to, err.source, err.reason) == ("custom_attributes.score", "from meta.score", "'lots' is not a number")


def test_absent_optional_field_is_not_written_and_missing_email_is_an_error():
    payload = build_payload(rows({"from": "email", "to": "email"}, {"from": "code", "to": "name"}), {}, ATTRS)
    assert payload.body() == {}
    assert [e.to for e in payload.errors] == ["email"]


@pytest.mark.parametrize("value", [float("inf"), 1e300, "9" * 400, -1e14])
def test_a_number_too_large_for_a_date_is_a_conversion_error_not_a_crash(value):
    with pytest.raises(ConversionError, match="out of range for a date"):
        to_unix(value)


@pytest.mark.parametrize("value", ["12345678901234567", 12345678901234567, " 9007199254740993 ", "-9007199254740993"])
def test_a_whole_number_past_what_a_float_holds_is_written_as_sent(value):
    """An RF id or account number mapped to a Number attribute: rounding it through a float would write another
    number (12345678901234568), silently."""
    assert convert(value, "integer") == int(str(value).strip())


@pytest.mark.parametrize("value,kind", [(["gold", "silver"], "a list"), ({"plan": "gold"}, "an object")])
def test_a_list_or_an_object_is_no_text_and_is_recorded_not_written_as_python_shows_it(value, kind):
    """An RF custom field holding several values: Intercom would show `['gold', 'silver']` (Python's own
    rendering) as the contact's text. Recorded as not converted, as any value that has no text of its own."""
    with pytest.raises(ConversionError, match=f"is {kind}, not text"):
        convert(value, "string")
    payload = build_payload(rows({"from": "email", "to": "email"}, {"from": "meta.plans", "to": "custom_attributes.plans"}),
                            {"email": "a@b.co", "meta.plans": value}, {"custom_attributes.plans": {"data_type": "string"}})
    assert payload.body() == {"email": "a@b.co"}
    [err] = payload.errors
    assert err.to == "custom_attributes.plans" and err.reason.endswith(f"is {kind}, not text")


# The OpenAPI type of what the bridge writes (and reads) as each of its types: a date is UNIX seconds.
_OPENAPI = {"string": "string", "integer": "integer", "boolean": "boolean", "date": "integer"}


@pytest.mark.parametrize("value,dtype", [
    (["x" * 100] * 2000, "string"), ({"k": "x" * 200_000}, "string"), ("x" * 200_000, "integer"),
    ("9" * 5000, "integer"), ("x" * 200_000, "float"), ("x" * 200_000, "boolean"), ("x" * 200_000, "date"),
    ("1" * 200_000, "date")])
def test_a_long_value_that_cannot_be_converted_is_quoted_cut_short_in_its_reason(value, dtype):
    """A webhook field may be as long as its body (256 KB): the reason, kept in the join's history, quotes
    80 characters of it, not the whole."""
    with pytest.raises(ConversionError) as raised:
        convert(value, dtype)
    reason = str(raised.value)
    assert len(reason) < 160 and repr(value)[:79] + "…" in reason


@pytest.mark.parametrize("schema", ["create_contact_request", "update_contact_request", "contact"])
def test_the_standard_attributes_have_the_types_intercoms_openapi_file_gives(schema):
    """What the bridge writes (and the type a rule's value is read and searched as) is what Intercom 2.16
    takes: owner_id is a string there, in every one of them. (avatar reads as an object on a contact.)"""
    from tests.support.intercom_contract import load_spec
    properties = load_spec()["components"]["schemas"][schema]["properties"]
    types = STANDARD_ATTRIBUTE_TYPES if schema != "contact" else WATCHABLE_ATTRIBUTE_TYPES
    assert {name: _OPENAPI[t] for name, t in types.items() if name in properties and name != "avatar"} == {
        name: properties[name]["type"] for name in types if name in properties and name != "avatar"}


@pytest.mark.parametrize("schema", ["create_contact_request", "update_contact_request"])
def test_each_standard_attribute_a_mapping_may_write_is_a_field_of_intercoms_create_and_update_requests(schema):
    """language_override is on a contact, but neither request has it: Intercom keeps no value sent there. Any other
    standard attribute a mapping may name and a request lacks would be lost the same way."""
    from chalicelib.domain.mapping import NOT_WRITABLE
    from tests.support.intercom_contract import load_spec
    properties = set(load_spec()["components"]["schemas"][schema]["properties"])
    assert (set(STANDARD_ATTRIBUTE_TYPES) - properties, set(NOT_WRITABLE) & properties) == (set(NOT_WRITABLE), set())


def test_a_value_mapped_to_an_attribute_intercoms_api_does_not_write_is_recorded_not_sent():
    payload = build_payload(rows({"from": "email", "to": "email"}, {"value": "fr", "to": "language_override"},
                                 {"from": "first_name", "to": "language_override"}), {"email": "a@b.co"}, {})
    assert payload.body() == {"email": "a@b.co"}
    [err] = payload.errors            # (an absent field is not written, as any: no error)
    assert (err.to, err.source, err.kind) == ("language_override", "fixed value", "not written by Intercom's API")
    assert err.reason == "Intercom's contact create and update requests have no such field (its API does not write it)"


def test_the_contact_gets_the_email_as_typed_and_the_bridge_knows_it_in_lower_case():
    """What the person typed in RF is what their contact shows; searches, pointers and duplicate checks ignore case."""
    payload = build_payload(rows({"from": "email", "to": "email"}), {"email": " Ann.Smith@Example.com\n"}, {})
    assert payload.body() == {"email": "Ann.Smith@Example.com"}
    assert payload.email == "ann.smith@example.com"


def test_owner_id_is_text_whatever_the_workspace_lists_it_as():
    """Intercom's list of data attributes may call owner_id an integer: its API still takes (and searches) text."""
    assert attribute_type("owner_id", {"owner_id": {"data_type": "integer"}}) == "string"
    assert build_payload(rows({"from": "meta.owner", "to": "owner_id"}), {"meta.owner": 321},
                         {"owner_id": {"data_type": "integer"}}).body() == {"owner_id": "321"}
    from chalicelib.domain.changes import target_filter
    from chalicelib.domain.settings import Qualification
    assert target_filter(Qualification(attribute="owner_id", value=321), attribute_type("owner_id", {})) == {
        "field": "owner_id", "operator": "~", "value": "321"}         # (the search of changed contacts)
