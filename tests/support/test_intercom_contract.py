"""Tests of the Intercom OpenAPI request contract checker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import intercom_contract as ic
from .intercom_contract import NOT_IN_SPEC, validate_request, validate_response

HEADERS = {
    "Authorization": "Bearer tok",
    "Intercom-Version": "2.16",
    "Accept": "application/json",
    "Content-Type": "application/json",
}
GET_HEADERS = {k: v for k, v in HEADERS.items() if k != "Content-Type"}


def body(obj) -> bytes:
    return json.dumps(obj).encode()


def check(method, path, payload=None, query=None, headers=None):
    raw = b"" if payload is None else body(payload)
    if headers is None:
        headers = HEADERS if payload is not None else GET_HEADERS
    return validate_request(method, path, query or {}, headers, raw)


def assert_error(errors, *fragments):
    assert errors, "expected a contract violation"
    text = "\n".join(errors)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


# --------------------------------------------------------------------------
# the spec itself
# --------------------------------------------------------------------------


def test_spec_is_found_relative_to_the_repository():
    expected = Path(ic.__file__).resolve().parents[1] / "contracts/intercom/api.intercom.io-2.16.yaml"
    assert expected.is_file(), "the OpenAPI file ships with the repository"
    assert ic._DEFAULT_SPEC == expected


def test_spec_describes_version_2_16_and_allows_it_in_the_header():
    spec = ic.load_spec()
    assert spec["info"]["version"] == "2.16"
    version_schema = spec["components"]["schemas"]["intercom_version"]
    assert version_schema["type"] == "string"
    assert "2.16" in version_schema["enum"]


def test_spec_is_loaded_once_per_process():
    assert ic.load_spec() is ic.load_spec()


# --------------------------------------------------------------------------
# requests the bridge sends
# --------------------------------------------------------------------------

VALID = [
    pytest.param(
        "POST",
        "/contacts",
        {
            "role": "lead",
            "email": "a@b.com",
            "name": "Ann",
            "custom_attributes": {"referral_code": "abc", "score": 1.5},
        },
        None,
        id="create-contact",
    ),
    pytest.param(
        "PUT",
        "/contacts/6762f0d51bb69f9f2193bb7f",
        {"custom_attributes": {"referral_code": "abc", "score": 1.5, "vip": True, "cleared": None, "n": 3}},
        None,
        id="update-contact",
    ),
    pytest.param("GET", "/contacts/6762f0d51bb69f9f2193bb7f", None, None, id="get-contact"),
    pytest.param(
        "POST",
        "/contacts/search",
        {"query": {"field": "email", "operator": "=", "value": "a@b.com"}, "pagination": {"per_page": 50}},
        None,
        id="search-single",
    ),
    pytest.param(
        "POST",
        "/contacts/search",
        {
            "query": {
                "operator": "AND",
                "value": [
                    {"field": "email", "operator": "=", "value": "a@b.com"},
                    {"field": "role", "operator": "=", "value": "lead"},
                ],
            },
            "pagination": {"per_page": 50, "starting_after": "WzE3MDAwMDAwMDAwMDAsIjY3Il0="},
        },
        None,
        id="search-nested",
    ),
    pytest.param(
        "POST",
        "/contacts/search",
        {
            "query": {
                "operator": "AND",
                "value": [
                    {"operator": "AND", "value": [{"field": "role", "operator": "=", "value": "lead"}]},
                    {
                        "operator": "OR",
                        "value": [
                            {"field": "email", "operator": "=", "value": "a@b.com"},
                            {"field": "external_id", "operator": "IN", "value": ["1", "2"]},
                        ],
                    },
                ],
            },
            "sort": {"field": "created_at", "order": "ascending"},
        },
        None,
        id="search-two-level",
    ),
    pytest.param(
        "POST",
        "/contacts/search",
        {"query": {"field": "custom_attributes.referral_code", "operator": "=", "value": None}},
        None,
        id="search-null-value",
    ),
    pytest.param("GET", "/contacts", None, {"per_page": "150", "starting_after": "x"}, id="list-contacts"),
    pytest.param("POST", "/contacts/merge", {"from": "x", "into": "y"}, None, id="merge"),
    pytest.param("GET", "/data_attributes", None, {"model": "contact"}, id="data-attributes"),
    pytest.param("GET", "/segments", None, {"include_count": "true"}, id="segments"),
    pytest.param("POST", "/tags", {"name": "Referred"}, None, id="create-tag"),
    pytest.param("POST", "/contacts/6762f0d51bb69f9f2193bb7f/tags", {"id": "123"}, None, id="tag-contact"),
]


@pytest.mark.parametrize("method, path, payload, query", VALID)
def test_requests_the_bridge_sends_are_valid(method, path, payload, query):
    assert check(method, path, payload, query) == []


def test_header_names_are_case_insensitive():
    headers = {"intercom-version": "2.16", "CONTENT-TYPE": "application/json; charset=utf-8"}
    assert validate_request("post", "/contacts/merge", {}, headers, body({"from": "x", "into": "y"})) == []


def test_query_may_be_given_in_the_path_or_as_a_full_url_or_as_lists():
    assert check("GET", "/contacts?per_page=150&starting_after=x") == []
    assert check("GET", "https://api.intercom.io/data_attributes?model=contact") == []
    assert check("GET", "/contacts", query={"per_page": ["150"], "starting_after": ["x"]}) == []
    assert check("GET", "/contacts", query={"per_page": 150}) == []


def test_not_in_spec_allowlist_is_accepted_without_validation():
    assert ("POST", "/auth/eagle/token") in NOT_IN_SPEC
    form = b"code=abc&client_id=1&client_secret=s"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert validate_request("POST", "/auth/eagle/token", {}, headers, form) == []
    # only that exact method + path
    assert_error(validate_request("GET", "/auth/eagle/token", {}, {}, b""), "/auth/eagle/token", "not in the Intercom OpenAPI spec")


def test_path_params_are_percent_decoded_and_concrete_paths_win():
    assert check("GET", "/contacts/abc%2Fdef") == []
    # /contacts/search is a concrete path, so it is never taken as /contacts/{contact_id}
    assert_error(check("GET", "/contacts/search"), "GET is not defined for /contacts/search", "(defined: POST)")


# --------------------------------------------------------------------------
# violations are caught
# --------------------------------------------------------------------------


def test_unknown_path():
    assert_error(check("GET", "/contacts/abc/referrals"), "/contacts/abc/referrals", "not in the Intercom OpenAPI spec")
    assert_error(check("GET", "/contacts/"), "/contacts/", "not in the Intercom OpenAPI spec")


def test_unknown_method_for_a_known_path():
    assert_error(check("PATCH", "/contacts/abc", {"name": "x"}), "PATCH is not defined for /contacts/{contact_id}", "GET, PUT, DELETE")
    assert_error(check("DELETE", "/contacts/search"), "DELETE is not defined for /contacts/search")


def test_missing_intercom_version_header():
    headers = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    assert_error(check("POST", "/contacts/merge", {"from": "x", "into": "y"}, headers=headers), "missing header 'Intercom-Version'")
    assert_error(check("GET", "/contacts/abc", headers={}), "missing header 'Intercom-Version'")


def test_intercom_version_must_be_allowed_by_the_spec_and_match_it():
    errors = check("GET", "/contacts/abc", headers={"Intercom-Version": "3.0"})
    assert_error(errors, "header parameter 'Intercom-Version'", "is not one of", "send '2.16'")
    # allowed by the spec's enum, but this is the 2.16 contract
    assert_error(check("GET", "/contacts/abc", headers={"Intercom-Version": "2.15"}), "send '2.16'")


@pytest.mark.parametrize(
    "method, path, payload, fragments",
    [
        ("POST", "/contacts", {"role": 5, "email": "a@b.com"}, ["body.role", "5 is not of type 'string'"]),
        ("POST", "/contacts", {"email": None}, ["body.email", "None is not of type 'string'"]),
        ("POST", "/contacts", {"name": "only a name"}, ["does not match any"]),
        ("PUT", "/contacts/abc", {"custom_attributes": ["a"]}, ["body.custom_attributes", "is not of type 'object'"]),
        (
            "POST",
            "/contacts/search",
            {"query": {"field": "email", "operator": "=", "value": "a@b.com"}, "pagination": {"per_page": "x"}},
            ["body.pagination.per_page", "'x' is not of type 'integer'"],
        ),
        ("POST", "/contacts/search", {"query": {"field": "email", "operator": "==", "value": "a"}}, ["body.query"]),
        ("POST", "/contacts/search", {"pagination": {"per_page": 5}}, ["'query' is a required property"]),
        ("POST", "/contacts/merge", {"from": "x"}, ["'into' is a required property"]),
        ("POST", "/contacts/merge", {"from": "x", "into": 7}, ["body.into", "7 is not of type 'string'"]),
        ("POST", "/tags", {"name": 1}, ["body"]),
        ("POST", "/contacts/abc/tags", {"id": 123}, ["body.id", "123 is not of type 'string'"]),
        ("POST", "/contacts/abc/tags", {}, ["'id' is a required property"]),
    ],
)
def test_wrong_bodies(method, path, payload, fragments):
    assert_error(check(method, path, payload), *fragments)


def test_body_errors_name_the_operation():
    errors = check("POST", "/contacts", {"role": 5})
    assert errors[0].startswith("POST /contacts: ")
    errors = check("PUT", "/contacts/abc", {"role": 5})
    assert errors[0].startswith("PUT /contacts/{contact_id}: body.role")


def test_query_parameters_are_checked():
    assert_error(check("GET", "/data_attributes", query={"model": "user"}), "query parameter 'model'", "'user' is not one of")
    assert_error(check("GET", "/segments", query={"include_count": "yes"}), "query parameter 'include_count'", "not of type 'boolean'")
    assert_error(check("GET", "/segments", query={"include_count": True}), "pass wire strings")
    assert_error(check("GET", "/contacts", query={"per_page": "151"}), "151 is greater than the maximum of 150")
    assert_error(check("GET", "/contacts", query={"per_page": "ten"}), "'ten' is not of type 'integer'")
    assert_error(check("GET", "/contacts", query={"page": "2"}), "query parameter 'page' is not declared")
    assert_error(check("GET", "/segments", query={"model": "contact"}), "query parameter 'model' is not declared")


def test_required_query_parameters():
    assert check("GET", "/events", query={"type": "user", "email": "a@b.com"}) == []
    assert_error(check("GET", "/events", query={"email": "a@b.com"}), "missing required query parameter 'type'")
    assert_error(check("GET", "/events", query={"type": "user"}), "missing required query parameter 'filter'")


def test_body_framing():
    # requestBody.required is not set for most operations (merge included): no body is valid
    assert check("POST", "/contacts/merge", headers=HEADERS) == []
    assert_error(
        validate_request("GET", "/contacts/abc", {}, HEADERS, b'{"x": 1}'),
        "defines no request body",
    )
    assert_error(
        validate_request("POST", "/contacts/merge", {}, GET_HEADERS, body({"from": "x", "into": "y"})),
        "without a Content-Type",
    )
    form = {**HEADERS, "Content-Type": "application/x-www-form-urlencoded"}
    assert_error(validate_request("POST", "/contacts/merge", {}, form, b"from=x&into=y"), "'application/x-www-form-urlencoded' is not accepted")
    assert_error(validate_request("POST", "/contacts/merge", {}, HEADERS, b"{not json"), "not valid JSON")


# --------------------------------------------------------------------------
# quirks of the 2.16 spec the client must respect (documented, not loosened)
# --------------------------------------------------------------------------


def test_quirk_search_value_cannot_be_a_float():
    """single_filter_search_request.value is string|integer|boolean|array of string|integer."""
    assert_error(check("POST", "/contacts/search", {"query": {"field": "custom_attributes.score", "operator": ">", "value": 1.5}}), "body.query")
    assert check("POST", "/contacts/search", {"query": {"field": "custom_attributes.score", "operator": ">", "value": "1.5"}}) == []


def test_quirk_search_group_cannot_mix_filters_and_groups():
    """multiple_filter_search_request.value is oneOf(array of groups, array of filters)."""
    mixed = {
        "query": {
            "operator": "AND",
            "value": [
                {"field": "role", "operator": "=", "value": "lead"},
                {"operator": "OR", "value": [{"field": "email", "operator": "=", "value": "a@b.com"}]},
            ],
        }
    }
    assert_error(check("POST", "/contacts/search", mixed), "body.query")
    empty_group = {"query": {"operator": "AND", "value": []}}
    assert_error(check("POST", "/contacts/search", empty_group), "body.query")


def test_quirk_post_tags_overlapping_alternatives_are_told_apart_by_what_they_require():
    """POST /tags is oneOf(create_or_update, tag_company, untag_company, tag_multiple_users), and
    create_or_update_tag_request (only `name` required, extra properties allowed) matches every
    tagging body too. The checker reads a body that matches several as the one alternative whose
    required properties include the others': {name, users} is "Tag Multiple Users". Alternatives
    that require the same properties (tag and untag companies) remain ambiguous."""
    assert check("POST", "/tags", {"name": "Referred", "id": "17"}) == []
    assert check("POST", "/tags", {"name": "Referred", "users": [{"id": "1"}, {"id": "2"}]}) == []
    assert_error(check("POST", "/tags", {"name": "Referred", "companies": [{"id": "1"}]}), "more than one oneOf alternative")


def test_quirk_contact_tag_id_must_be_a_string():
    """The spec's own examples send {"id": 81}; the schema says string."""
    spec = ic.load_spec()
    examples = spec["paths"]["/contacts/{contact_id}/tags"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert examples["successful"]["value"] == {"id": 81}
    assert_error(check("POST", "/contacts/abc/tags", examples["successful"]["value"]), "81 is not of type 'string'")


def test_quirk_spec_does_not_reject_unknown_body_properties():
    # no additionalProperties: false anywhere relevant: typos are NOT caught
    assert check("POST", "/contacts", {"email": "a@b.com", "custom_attribute": {"x": 1}}) == []
    assert check("POST", "/contacts", {"role": "visitor"}) == []  # role is a free string in the spec


# --------------------------------------------------------------------------
# OpenAPI 3.0 semantics, on a small spec (also covers the env var override)
# --------------------------------------------------------------------------

MINI_SPEC = """
openapi: 3.0.1
info: {title: mini, version: '9.9'}
paths:
  /things/{thing_id}:
    parameters:
    - {name: thing_id, in: path, required: true, schema: {type: integer}}
    put:
      parameters:
      - {name: Intercom-Version, in: header, schema: {$ref: '#/components/schemas/intercom_version'}}
      - {name: tags, in: query, schema: {type: array, items: {type: integer}}, style: form, explode: false}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/thing'}
      responses:
        '200':
          content:
            application/json:
              schema: {$ref: '#/components/schemas/thing'}
components:
  schemas:
    intercom_version: {type: string, enum: ['9.9']}
    thing:
      type: object
      required: [id, name]
      properties:
        id: {type: string, readOnly: true}
        name: {type: string, nullable: true}
        kind: {type: string, enum: [a, b], nullable: true}
        value:
          nullable: true
          oneOf: [{type: string}, {type: integer}]
        parent: {$ref: '#/components/schemas/thing_ref', description: ignored sibling, type: integer}
    thing_ref: {type: object, properties: {id: {type: string}}}
"""


@pytest.fixture
def mini_spec(tmp_path, monkeypatch):
    path = tmp_path / "mini.yaml"
    path.write_text(MINI_SPEC)
    monkeypatch.setenv(ic.SPEC_ENV_VAR, str(path))
    return path


def test_env_var_overrides_the_spec_location(mini_spec):
    assert ic.spec_path() == mini_spec
    assert ic.load_spec()["info"]["title"] == "mini"
    assert_error(check("GET", "/contacts/abc", headers={"Intercom-Version": "9.9"}), "not in the Intercom OpenAPI spec")


def test_openapi_30_semantics(mini_spec):
    h = {"Intercom-Version": "9.9", "Content-Type": "application/json"}

    def put(payload, path="/things/1", query=None):
        return validate_request("PUT", path, query or {}, h, body(payload))

    # required + readOnly: not required in requests; nullable with type, enum and oneOf
    assert put({"name": None, "kind": None, "value": None, "parent": {"id": "p"}}) == []
    assert put({"name": "n", "kind": "a", "value": 3}, query={"tags": "1,2,3"}) == []
    assert_error(put({"name": "n", "kind": "c"}), "body.kind", "'c' is not one of")
    assert_error(put({"name": "n", "value": 1.5}), "body.value", "does not match any")
    # readOnly properties must not be sent
    assert_error(put({"id": "1", "name": "n"}), "body.id", "readOnly")
    # siblings of $ref are ignored
    assert_error(put({"name": "n", "parent": 5}), "body.parent", "is not of type 'object'")
    # path-level parameters, typed path parameters, array query parameters
    assert_error(put({"name": "n"}, path="/things/abc"), "path parameter 'thing_id'", "'abc' is not of type 'integer'")
    assert_error(put({"name": "n"}, query={"tags": "1,x"}), "query parameter 'tags'", "'x' is not of type 'integer'")
    assert_error(validate_request("PUT", "/things/1", {}, h, b""), "request body is required")
    # a header the operation does not declare is still required and checked against the version
    assert_error(validate_request("PUT", "/things/1", {}, {"Content-Type": "application/json"}, body({"name": "n"})), "missing header 'Intercom-Version'")


# --------------------------------------------------------------------------
# answers
# --------------------------------------------------------------------------

RATE = {"X-RateLimit-Limit": "1666", "X-RateLimit-Remaining": "1665", "X-RateLimit-Reset": "1700000010",
        "Content-Type": "application/json"}


@pytest.fixture
def fresh_shapes(monkeypatch):
    """Answers of a shape checked before are not checked again: each test starts with none seen."""
    monkeypatch.setattr(ic, "_SHAPES", set())


def answer(method, path, status, payload, headers=None):
    return validate_response(method, path, status, RATE if headers is None else headers,
                             payload if isinstance(payload, bytes) else body(payload))


ERROR = {"type": "error.list", "request_id": "7c8b5a3e-0f1d-4d59-9a59-1b2f8f8d4d1e",
         "errors": [{"code": "not_found", "message": "User Not Found"}]}


def test_answers_intercom_gives_are_valid(fresh_shapes):
    contact = {"type": "contact", "id": "6762f0d51bb69f9f2193bb7f", "role": "lead", "email": "ann@example.com", "created_at": 1}
    assert answer("GET", "/contacts/6762f0d51bb69f9f2193bb7f", 200, contact) == []
    assert answer("POST", "/contacts/search", 200, {"type": "list", "data": [contact], "total_count": 1, "pages": {
        "type": "pages", "page": 1, "per_page": 150, "total_pages": 1}}) == []
    # error statuses the operation does not document (404, 409, 429) are Intercom's error list
    assert answer("GET", "/contacts/x", 404, ERROR) == []
    assert answer("POST", "/contacts", 409, {**ERROR, "errors": [{"code": "conflict", "message": "id=1"}]}) == []
    assert answer("GET", "/contacts/x", 410, ERROR, {**RATE, "Link": '</contacts/y>; rel="canonical"'}) == []
    assert validate_response("POST", "/auth/eagle/token", 200, {}, b"{}") == []     # not in the spec: not checked


@pytest.mark.parametrize("method, path, status, payload, headers, fragments", [
    ("GET", "/contacts/x", 200, {"type": "contact", "id": 7}, None, ["answered 200", "body.id", "not of type 'string'"]),
    ("POST", "/contacts", 201, {"type": "contact"}, None, ["answered 201", "documents no such answer"]),
    ("GET", "/contacts/x", 404, {"type": "error.list", "errors": [{"message": "gone"}]}, None,
     ["answered 404", "body.errors[0]", "'code' is a required property"]),
    ("GET", "/contacts/x", 429, {"type": "error", "errors": [{"code": "rate_limit_exceeded"}]}, None,
     ["body.type is 'error', not 'error.list'"]),
    ("GET", "/contacts/x", 404, ERROR, {"Content-Type": "application/json"}, ["missing header 'X-RateLimit-Reset'"]),
    ("GET", "/me", 200, b"<html>", {**RATE, "Content-Type": "text/html"}, ["Content-Type is 'text/html'"]),
    ("GET", "/me", 200, b"{", None, ["body is not valid JSON"]),
])
def test_wrong_answers(fresh_shapes, method, path, status, payload, headers, fragments):
    assert_error(answer(method, path, status, payload, headers), *fragments)


def test_a_list_checks_each_shape_of_item_once_and_names_the_item_as_answered(fresh_shapes):
    good = {"type": "contact", "id": "a", "role": "user"}
    page = {"type": "list", "data": [good, {**good, "id": "b"}, {**good, "id": 3}], "total_count": 3}
    assert_error(answer("POST", "/contacts/search", 200, page), "body.data[2].id", "not of type 'string'")
    assert answer("POST", "/contacts/search", 200, page) == []      # (the same shapes again: not checked)
    assert_error(answer("POST", "/contacts/search", 200, {**page, "data": [{**good, "email": 5}]}), "body.data[0].email")


def test_answers_may_carry_read_only_properties(mini_spec, fresh_shapes):
    h = {**RATE}
    assert validate_response("PUT", "/things/1", 200, h, body({"id": "1", "name": "n"})) == []
    assert_error(validate_response("PUT", "/things/1", 200, h, body({"name": "n"})), "'id' is a required property")


# --------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------


def test_validation_after_warm_up_reuses_what_the_first_compiled(monkeypatch):
    """Counted, not timed (timings are the bench's): the spec is read, and each operation's and the
    version's validators are compiled, once; later validations only run them."""
    search = body(
        {
            "query": {
                "operator": "AND",
                "value": [
                    {"field": "email", "operator": "=", "value": "a@b.com"},
                    {"field": "role", "operator": "=", "value": "lead"},
                ],
            },
            "pagination": {"per_page": 50},
        }
    )
    create = body({"role": "lead", "email": "a@b.com", "name": "Ann", "custom_attributes": {"referral_code": "abc"}})
    calls = [
        ("POST", "/contacts/search", {}, HEADERS, search),
        ("POST", "/contacts", {}, HEADERS, create),
        ("GET", "/contacts/6762f0d51bb69f9f2193bb7f", {}, GET_HEADERS, b""),
        ("GET", "/contacts", {"per_page": "150", "starting_after": "x"}, GET_HEADERS, b""),
    ]
    for call in calls:
        assert validate_request(*call) == []
    compiled: list[str] = []
    for name in ("_compile", "validator"):
        real = getattr(ic._Contract, name)
        monkeypatch.setattr(ic._Contract, name, lambda *a, _real=real, _name=name: compiled.append(_name) or _real(*a))
    monkeypatch.setattr(ic, "_spec_for", lambda path: compiled.append("spec") or {})
    for _ in range(3):
        for call in calls:
            assert validate_request(*call) == []
    assert compiled == []


def test_concurrent_first_use_is_safe(mini_spec):
    """Simulators validate from server threads: the first load/compile may race."""
    from concurrent.futures import ThreadPoolExecutor

    h = {"Intercom-Version": "9.9", "Content-Type": "application/json"}
    ic._CONTRACTS.pop(str(mini_spec), None)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: validate_request("PUT", f"/things/{i}", {}, h, body({"name": "n"})), range(64)))
    assert results == [[]] * 64
    assert len([k for k in ic._CONTRACTS if k == str(mini_spec)]) == 1
