"""Reading webhook bodies: every way a body can be wrong is a BodyError (a 4xx that names the
field), and real bodies are read exactly as they were sent."""
import gzip
import zlib
from pathlib import Path

import pytest

from chalicelib import webhooks
from chalicelib.webhooks import BodyError

REAL = Path(__file__).resolve().parents[1] / "contracts/intercom/webhooks/contact.user.updated.json"


def refused(call, *args) -> BodyError:
    with pytest.raises(BodyError) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize("raw,why", [
    (b"[" * 100_000, "recursion limit exceeded"),            # Python's json raises RecursionError here
    (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "recursion limit exceeded"),
    (b'{"a": NaN}', "expected value"),
    (b'{"a": 1' + b"0" * 5000 + b"}", "number out of range"),
    (b'{"a": "\\ud800"}', "hex escape"),                     # a lone surrogate
    (b'{"a": "\xff"}', "invalid unicode code point"),
    ('{"a": 1}'.encode("utf-16"), "expected value"),
    (b"{} {}", "trailing characters"),
    (b"", "EOF"),
])
def test_unreadable_json_is_a_400_whatever_it_is(raw, why):
    error = refused(webhooks.parse_json_object, raw)
    assert (error.status, error.code) == (400, "malformed_json") and why in error.message


@pytest.mark.parametrize("raw,where", [(b'{"a": 1e400}', "a"), (b'{"a": {"b": [1, -1E+400]}}', "a.b.1"),
                                       (b'{"a": 1' + b"0" * 400 + b'.5}', "a")])
def test_a_number_too_large_for_a_float_is_refused_as_nan_is_not_read_as_infinity(raw, where):
    """Read as infinity, it became null in the queue's message: a field read from RF instead, or not written."""
    error = refused(webhooks.parse_json_object, raw)
    assert (error.status, error.code) == (400, "malformed_json")
    assert error.message == f"the body is not JSON the bridge can read: {where}: number out of range"


def test_looking_for_a_number_too_large_takes_memory_of_the_bodys_size_not_of_its_keys_times_its_items():
    """The walk named every node as it went: a 256 KB body of one long key over a long array took gigabytes."""
    import tracemalloc
    key = "k" * 20_000
    raw = b'{"%s": [%s1e400]}' % (key.encode(), b"0," * 5_000)
    tracemalloc.start()
    try:
        error = refused(webhooks.parse_json_object, raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.message.endswith(f"{key[:79]}…: number out of range") and peak < 5_000_000   # (was 100 MB)


@pytest.mark.parametrize("raw,what", [(b"[]", "an array"), (b'"x"', "a string"), (b"1e400", "a number"),
                                      (b"null", "null"), (b"true", "true or false")])
def test_a_body_must_be_an_object(raw, what):
    assert refused(webhooks.parse_json_object, raw).message == f"the body must be a JSON object, not {what}"


def test_json_nested_199_deep_and_a_utf8_bom_are_read():
    deep = webhooks.parse_json_object(b'{"a":' + b"[" * 198 + b"]" * 198 + b"}")["a"]
    for _ in range(197):
        [deep] = deep
    assert deep == []
    assert webhooks.parse_json_object(b"\xef\xbb\xbf{\"a\": 1}") == {"a": 1}


@pytest.mark.parametrize("header,media", [(None, "application/json"), ("", "application/json"),
                                          (" ", "application/json"),
                                          ("Application/JSON; charset=UTF-8", "application/json"),
                                          ("application/x-www-form-urlencoded", webhooks.FORM),
                                          ("text/plain,application/xml", "text/plain"),
                                          (";;;", ""), ("; charset=utf-8", ""), ("json", ""),  # no type/subtype:
                                          ("application/", ""), ("a b/json", "")])              # accepted nowhere
def test_media_type_of_a_content_type_header(header, media):
    assert webhooks.media_type(header) == media


def test_json_media_types():
    assert all(webhooks.is_json(m) for m in ("application/json", "text/plain", "application/vnd.api+json"))
    assert not any(webhooks.is_json(m) for m in (webhooks.FORM, "multipart/form-data", "application/xml"))


def test_a_form_reads_into_the_same_fields_as_json_with_php_style_nesting():
    raw = (b"id=7&campaign_id=42&email=ann%40example.com&first_name=Ann+Lee&referrer_id="
           b"&user[code]=c7&meta[0][field]=company&meta[0][value]=Acme&meta[1][field]=size&meta[1][value]=10"
           b"&tags[]=a&tags[]=b")
    assert webhooks.parse_form(raw) == {
        "id": "7", "campaign_id": "42", "email": "ann@example.com", "first_name": "Ann Lee", "referrer_id": "",
        "user": {"code": "c7"}, "meta": [{"field": "company", "value": "Acme"}, {"field": "size", "value": "10"}],
        "tags": ["a", "b"]}


@pytest.mark.parametrize("raw,why", [
    (b"a=%ff", "not UTF-8"),
    (b"a[b=1", "unbalanced brackets"),
    (b'{"id": 7, "campaign_id": 42}', "the body looks like JSON but was sent as a form (Content-Type: "
                                      "application/x-www-form-urlencoded, curl -d's default): send it with "
                                      "`Content-Type: application/json`"),
    (b' [{"id": 7}]', "the body looks like JSON"),
    (b"&&&=&==", "a field has an empty name (`=value`): send name=value pairs joined by &"),
    (b"a" + b"[x]" * 6 + b"=1", "nests deeper than 5 levels"),
    (b"a=1&a[b]=2", "both a value and a group"),
    (b"a[b]=1&a=2", "both a value and a group"),
    (b"&".join(b"f%d=1" % i for i in range(1001)), "not readable"),
])
def test_a_broken_form_is_a_400(raw, why):
    error = refused(webhooks.parse_form, raw)
    assert (error.status, error.code) == (400, "malformed_form") and why in error.message


def test_the_real_intercom_payload_reads_as_sent():
    body = webhooks.parse_json_object(REAL.read_bytes())
    notification = webhooks.contact_notification(body)
    assert notification.app_id == "vne310wv" and notification.change == "changed"
    assert notification.contact.as_dict() == body["data"]["item"]      # all 60-odd fields, nulls included


def notification(**over):
    body = {"type": "notification_event", "app_id": "ws1", "id": "notif_1", "topic": "contact.lead.updated",
            "created_at": 1, "data": {"type": "notification_event_data", "item": {"type": "contact", "id": "c1"}}}
    body.update(over)
    return body


@pytest.mark.parametrize("over,code,message", [
    ({"topic": ["contact.lead.updated"]}, "invalid_notification", "topic: must be text"),
    ({"topic": None}, "invalid_notification", "topic: must be text"),
    ({"data": ["x"]}, "invalid_notification", "data: must be an object"),
    ({"data": {"item": ["x"]}}, "invalid_notification", "data.item: must be an object"),
    ({"data": {"item": {"type": "contact"}}}, "no_contact", "data.item carries no contact id"),
    ({"data": {"item": {"id": {"id": "c1"}}}}, "invalid_notification", "data.item.id: must be a number"),
    ({"data": {"item": {"id": "c1", "email": 5}}}, "invalid_notification", "data.item.email: must be text"),
    ({"data": {"item": {"id": "c1", "merged_from": "c2"}}}, "invalid_notification", "data.item.merged_from: must be"),
    ({"data": {"item": {"id": "c1", "custom_attributes": []}}}, "invalid_notification",
     "data.item.custom_attributes: must be an object"),
    ({"data": {"item": {"id": "c1", "updated_at": True}}}, "invalid_notification", "data.item.updated_at: must be"),
    ({"created_at": 10**20}, "invalid_notification", "created_at: is out of range for a unix time"),
    ({"created_at": "x"}, "invalid_notification", "created_at: is not a time"),
    ({"data": {"item": {"id": "c1", "updated_at": "yesterday"}}}, "invalid_notification",
     "data.item.updated_at: is not a time: send a unix time or an ISO-8601 text"),
    ({"data": {"item": {"id": "c1", "updated_at": "2023-13-01T00:00:00Z"}}}, "invalid_notification",
     "data.item.updated_at: is not a time"),
    ({"id": 5}, "invalid_notification", "id: must be text"),
    ({"data": {"item": {"type": "contact_tag", "contact": ["c9"]}}}, "invalid_notification", "data.item: must be"),
])
def test_a_signed_notification_of_the_wrong_shape_is_a_400_naming_the_field(over, code, message):
    body = notification(**over)
    with pytest.raises(BodyError) as caught:
        webhooks.intercom_notification(body)
        webhooks.contact_notification(body)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert caught.value.message.startswith(message)


def test_an_rf_email_is_read_trimmed_and_may_hold_any_letter():
    person = webhooks.rf_person({"id": 7, "campaign_id": 42, "email": " José@Example.com\n"})
    assert person.email == "José@Example.com"


def test_an_intercom_contacts_email_is_intercoms_a_control_character_in_it_is_read_as_sent():
    """Not the bridge's to refuse: the notification is read (and matches no person's email)."""
    read = webhooks.contact_notification(notification(data={"item": {"id": "c1", "email": "z\u0000@example.com"}}))
    assert read.contact.as_dict()["email"] == "z\u0000@example.com"


def test_tag_topics_carry_their_contact_and_other_topics_are_not_read_as_contacts():
    tagged = webhooks.contact_notification(notification(topic="contact.user.tag.created", data={
        "item": {"type": "contact_tag", "tag": {"id": "1"}, "contact": {"type": "contact", "id": "c9"}}}))
    assert tagged.contact.as_dict() == {"type": "contact", "id": "c9"}
    other = webhooks.intercom_notification(notification(topic="conversation.user.created", data=[1, 2]))
    assert other.change is None                            # ignored, whatever its data


@pytest.mark.parametrize("body,app_id", [({"app_id": "vne310wv"}, "vne310wv"), ({"app_id": ["vne310wv"]}, None),
                                         ({"app_id": "a/b"}, None), ({"app_id": "x" * 129}, None), ({}, None)])
def test_only_an_app_id_of_a_usable_shape_is_looked_up(body, app_id):
    assert webhooks.app_id_of(body) == app_id


def test_an_rf_body_is_read_through_the_owners_field_names():
    person = webhooks.rf_person({"user_id": 7.0, "campaign": 42, "user_email": "a@b.co", "referrer_id": "",
                                 "company": "Acme", "meta": [{"field": "size", "value": [1, 2]}]})
    assert person.as_dict() == {"id": "7", "campaign_id": "42", "email": "a@b.co", "referrer_id": None,
                                "type": "referrer", "meta.size": [1, 2], "meta.company": "Acme"}


@pytest.mark.parametrize("body,code,message", [
    ({"campaign_id": 42}, "missing_user_id", "no user id"),
    ({"id": "", "campaign_id": 42}, "missing_user_id", "no user id"),
    ({"id": 7}, "missing_campaign_id", "no campaign id"),
    ({"id": {"v": 7}, "campaign_id": 42}, "invalid_field", "id: must be a number, or text"),
    ({"id": 7.5, "campaign_id": 42}, "invalid_field", "id: must be a number"),
    ({"id": True, "campaign_id": 42}, "invalid_field", "id: must be a number, or text"),
    ({"id": 7, "campaign_id": False}, "invalid_field", "campaign_id: must be a number, or text"),
    ({"id": "7/../8", "campaign_id": 42}, "invalid_field", "id: must be a number"),
    ({"id": 10**200, "campaign_id": 42}, "invalid_field", "id: must be a number"),
    ({"id": 7, "campaign_id": [42]}, "invalid_field", "campaign_id: must be"),
    ({"id": 7, "campaign_id": 42, "referrer_id": {"id": 3}}, "invalid_field", "referrer_id: must be"),
    ({"id": 7, "campaign_id": 42, "email": ["a@b.co"]}, "invalid_field", "email: must be text"),
    ({"id": 7, "campaign_id": 42, "email": "z\u0000@example.com"}, "invalid_field",
     "email: holds a character no email address can (a control character, U+0000, at character 2): fix the email"),
    ({"id": 7, "campaign_id": 42, "email": "ann smith@example.com"}, "invalid_field",
     "email: holds a character no email address can (a space, U+0020, at character 4)"),
    ({"id": 7, "campaign_id": 42, "email": "ann\u200b@example.com"}, "invalid_field",
     "email: holds a character no email address can (an invisible character, U+200B"),
    ({"id": 7, "campaign_id": 42, "email": "ann@exa\tmple.com"}, "invalid_field", "email: holds a character"),
    ({"id": 7, "campaign_id": 42, "first_name": {"en": "Ann"}}, "invalid_field",
     "first_name: must be text, a number, or true or false"),
])
def test_an_rf_body_of_the_wrong_shape_is_a_400_naming_the_field(body, code, message):
    error = refused(webhooks.rf_person, body)
    assert (error.status, error.code) == (400, code) and error.message.startswith(message)


@pytest.mark.parametrize("created_at,updated_at", [
    (1692131388, "2023-08-15T20:29:47.988+00:00"),        # as Intercom sends them (the real payload)
    (1692131388, 1692131387), (1692131388000, "2025-07-21T14:44:35.000Z"), ("1692131388", "2023-08-15")])
def test_the_times_intercom_sends_are_accepted(created_at, updated_at):
    body = notification(created_at=created_at, data={"item": {"id": "c1", "updated_at": updated_at}})
    read = webhooks.contact_notification(body)
    assert (read.created_at, read.contact.updated_at) == (created_at, updated_at)   # kept as sent


@pytest.mark.parametrize("body,message", [
    ({"id": 1, "campaign_id": 42, "referrer_id": False}, "referrer_id: must be a number, or text"),
    ({"id": 1, "campaign_id": 42, "user": {"referrer_id": True}}, "user.referrer_id: must be a number, or text"),
    ({"id": 1, "campaign": 43, "campaign_id": 42}, "campaign_id: `campaign_id` and `campaign` differ: send one value"),
    ({"id": 1, "user_id": 2, "campaign_id": 42}, "id: `id` and `user_id` differ"),
    ({"id": 1, "campaign_id": 42, "user": {"id": 2}}, "id: `id` and `user.id` differ"),
    ({"id": 1, "campaign_id": 42, "email": "a@b.co", "user_email": "c@d.co"}, "email: `email` and `user_email` differ"),
    ({"id": 1, "campaign_id": 42, "type": "lead", "user_type": "person_referring"}, "type: `type` and `user_type`"),
    ({"user": [1]}, "user: must be an object"),
    ({"user": "7", "campaign_id": 42}, "user: must be an object"),
    ({"data": [{"id": 1}]}, "data: must be an object"),
    ({"data": {"user": 5}}, "data.user: must be an object"),
    ({"id": 1, "campaign_id": 42, "meta": "company=Acme"}, "meta: must be a list of {field, value} or an object"),
    ({"id": 1, "campaign_id": 42, "meta": [["company", "Acme"]]}, "meta[0]: must be an object with a `field`"),
    ({"id": 1, "campaign_id": 42, "meta": [{"value": "Acme"}]}, "meta[0]: must be an object with a `field`"),
    ({"id": 1, "campaign_id": 42, "user": {"meta": 3}}, "user.meta: must be a list"),
])
def test_an_rf_webhook_read_one_way_silently_before_is_refused_naming_the_field(body, message):
    refused_naming(body, message)


def refused_naming(body: dict, message: str) -> None:
    """rf_join refuses `body` with a 400 `invalid_field` whose message begins with `message`."""
    error = refused(webhooks.rf_join, body)
    assert (error.status, error.code) == (400, "invalid_field") and error.message.startswith(message), error.message


@pytest.mark.parametrize("body,read", [
    ({"id": 1, "campaign": 42.0, "campaign_id": "42"}, {"id": "1", "campaign_id": "42"}),   # the same value twice
    ({"id": 1, "campaign_id": 42, "user": {"id": "1", "email": "Ann@B.co"}, "email": "ann@b.co "},
     {"id": "1", "campaign_id": "42", "email": "Ann@B.co"}),
    ({"id": 1, "campaign_id": 42, "type": "lead", "user_type": "person_invited", "referrer_id": None},
     {"id": "1", "campaign_id": "42", "type": "lead", "referrer_id": None}),
    # A descriptive field under two names with different values is read from its first name (a full
    # `name` beside `first_name` is a likely payload): never a lost join.
    ({"id": 1, "campaign_id": 42, "created_at": "2024-01-01T00:00:00Z", "signed_up_at": 1704067200},
     {"id": "1", "campaign_id": "42", "signed_up_at": 1704067200}),
    ({"id": 1, "campaign_id": 42, "first_name": "Ann", "name": "Ann Smith"},
     {"id": "1", "campaign_id": "42", "first_name": "Ann"}),
    ({"id": 1, "campaign_id": 42, "signed_up_at": "2024-01-01", "created_at": "2024-01-02"},
     {"id": "1", "campaign_id": "42", "signed_up_at": "2024-01-01"}),
    ({"id": 1, "campaign_id": 42, "campaign": None, "user": None, "meta": "", "data": None},
     {"id": "1", "campaign_id": "42"}),                 # null and "" are "not sent", as for ids
    ({"data": {"user": {"id": 3, "campaign_id": 4, "meta": []}}}, {"id": "3", "campaign_id": "4"}),
    ({"id": 1, "campaign_id": 42, "meta": [{"field": 12, "value": "Acme"}]},     # a field named by a number
     {"id": "1", "campaign_id": "42", "meta.12": "Acme"}),
    ({"id": 1, "campaign_id": 42, "meta": [{"field": 0, "value": "Acme"}]},      # ... 0 too
     {"id": "1", "campaign_id": "42", "meta.0": "Acme"}),
])
def test_an_rf_webhook_with_one_value_per_field_is_read(body, read):
    assert webhooks.rf_join(body).as_dict() == read


def parsed(raw: bytes, form: bool) -> dict:
    """A raw RF body read as the edge reads a form, or JSON (keys written twice kept)."""
    return webhooks.parse_form(raw) if form else webhooks.parse_json_object(raw, repeats=True)


@pytest.mark.parametrize("raw,form,message", [
    (b"id=1&id=2&campaign_id=42", True, "id: `id` is sent twice with different values: send one value"),
    (b"id=1&campaign_id=42&user[email]=a@b.co&user[email]=c@d.co", True, "email: `user.email` is sent twice"),
    (b"id=1&campaign_id=42&referrer_id=5&referrer_id=6", True, "referrer_id: `referrer_id` is sent twice"),
    (b'{"id": 1, "campaign_id": 42, "campaign_id": 43}', False, "campaign_id: `campaign_id` is sent twice"),
    (b'{"campaign_id": 42, "user": {"id": 1, "id": 2}}', False, "id: `user.id` is sent twice"),
    (b'{"data": {"user": {"id": 1, "campaign_id": 4, "email": "a@b.co", "email": "c@d.co"}}}', False,
     "email: `data.user.email` is sent twice"),
    # A person object written twice with different ids: in JSON as in the form `user[id]=1&user[id]=2`.
    (b"campaign_id=42&user[id]=1&user[id]=2", True, "id: `user.id` is sent twice with different values"),
    (b'{"campaign_id": 42, "user": {"id": 1}, "user": {"id": 2}}', False,
     "id: `user.id` is sent twice with different values"),
    (b'{"data": {"id": 1, "campaign_id": 42}, "data": {"id": 2, "campaign_id": 42}}', False,
     "id: `data.id` is sent twice with different values"),
    (b'{"data": {"user": {"id": 1, "campaign_id": 42}}, "data": {"user": {"id": 1, "campaign_id": 43}}}', False,
     "campaign_id: `data.user.campaign_id` is sent twice with different values"),
])
def test_an_id_sent_twice_under_one_name_with_different_values_is_refused_not_read_by_its_last(raw, form, message):
    """docs/setup.md: which person joined where would be a guess (the last value was read before)."""
    refused_naming(parsed(raw, form), message)


@pytest.mark.parametrize("raw,form,read", [
    (b"id=1&id=1&campaign_id=42&name=Ann&name=Bo", True, {"id": "1", "campaign_id": "42", "first_name": "Bo"}),
    (b'{"id": 1, "id": "1", "campaign_id": 42, "name": "Ann", "name": "Bo"}', False,
     {"id": "1", "campaign_id": "42", "first_name": "Bo"}),
    (b'{"id": 1, "campaign_id": 42, "meta": {"a": 1, "a": 2}, "x": {"id": 1, "id": 2}}', False,
     {"id": "1", "campaign_id": "42", "meta.a": 2, "meta.x": {"id": 2}}),
])
def test_the_same_id_twice_or_another_field_twice_under_one_name_is_read(raw, form, read):
    assert webhooks.rf_join(parsed(raw, form)).as_dict() == read


def test_an_rf_api_user_is_read_as_rf_sends_it():
    """backfill reads RF's own users through rf_person: the webhook's checks are not RF's rules."""
    person = webhooks.rf_person({"id": 7, "campaign_id": 42, "referrer_id": False,
                                 "created_at": "2024-01-01", "signed_up_at": "2024-01-02"})
    assert person.as_dict() == {"id": "7", "campaign_id": "42", "referrer_id": None, "type": "referrer",
                                "signed_up_at": "2024-01-02"}


def _raw_deflate(body: bytes) -> bytes:
    deflate = zlib.compressobj(wbits=-15)
    return deflate.compress(body) + deflate.flush()


@pytest.mark.parametrize("body", [b'{"a":1}', b'{"id": 7, "campaign_id": 42}', b"id=7&campaign_id=42", b"[]"])
def test_a_body_labelled_deflate_that_is_not_deflate_data_is_taken_as_it_came(body):
    """As one labelled gzip (API Gateway may have decompressed it already): a short one read as raw deflate ran out
    before its data's end, and was refused 400 malformed_encoding."""
    assert webhooks.decoded("deflate", body, 1000) == body


@pytest.mark.parametrize("coding,sent,status", [
    ("gzip", lambda b: gzip.compress(b[:5]) + gzip.compress(b[5:]), None),      # two members: one body
    ("deflate", _raw_deflate, None),                                           # without zlib's header
    ("gzip, identity", gzip.compress, None),
    ("GZIP", lambda b: b, None),                                               # decompressed already (API Gateway)
    ("gzip", lambda b: gzip.compress(b) + b"junk", 400),
    ("compress", lambda b: b, 415),
])
def test_a_content_coding_is_undone_or_refused_with_its_status(coding, sent, status):
    body = b'{"id": 7, "campaign_id": 42}'
    if status is None:
        assert webhooks.decoded(coding, sent(body), 1000) == body
    else:
        assert refused(webhooks.decoded, coding, sent(body), 1000).status == status
