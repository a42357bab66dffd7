"""Contract check of outgoing Intercom HTTP requests.

Every request our code sends to Intercom can be checked against Intercom's
official OpenAPI 3.0.1 description (API version 2.16) with::

    errors = validate_request(method, path, query, headers, body)
    assert errors == []

What is checked:

* the path matches a path template of the spec (concrete paths win over
  templated ones, e.g. ``/contacts/search`` before ``/contacts/{contact_id}``)
  and the method is defined for it;
* path, query and header parameters: required ones are present, all values
  are deserialised (OpenAPI ``simple``/``form`` styles) and schema-checked;
  header names are case-insensitive;
* query parameters the operation does not declare are errors, unless listed
  in ``UNDECLARED_QUERY_PARAMS`` (documented by Intercom, missing in the spec);
* ``Intercom-Version`` is always required (project policy, the spec marks it
  optional) and must equal the version the spec describes (``info.version``);
* the body: ``Content-Type`` must be one the operation accepts, JSON bodies
  are validated against the requestBody schema (OpenAPI 3.0 semantics:
  ``$ref`` siblings ignored, ``nullable``, ``readOnly`` properties must not be
  sent); operations without a requestBody must not get a body.

Requests in ``NOT_IN_SPEC`` are accepted without any validation.

The answers a simulator of Intercom gives are checked the same way with
``validate_response(method, path, status, headers, body)``: a status the
operation documents (or any error status), the body against that status's
schema (readOnly properties allowed, as answers carry them), Intercom's error
list for errors, and its rate-limit headers.

Implementation: the YAML is loaded once per process (``yaml.CSafeLoader``),
schemas are converted lazily from OpenAPI 3.0 to JSON Schema draft 4 and
served to ``jsonschema`` through a ``referencing`` registry; operations and
their validators are compiled on first use and cached.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import yaml
from jsonschema import Draft4Validator, validators
from jsonschema.exceptions import ValidationError, best_match, relevance
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

__all__ = [
    "ANSWER_HEADERS",
    "NOT_IN_SPEC",
    "REQUIRED_HEADERS",
    "SPEC_ENV_VAR",
    "UNDECLARED_QUERY_PARAMS",
    "load_spec",
    "spec_path",
    "validate_request",
    "validate_response",
]

SPEC_ENV_VAR = "INTERCOM_OPENAPI_SPEC"
_DEFAULT_SPEC = (
    Path(__file__).resolve().parents[1] / "contracts/intercom/api.intercom.io-2.16.yaml"
)

#: (METHOD, concrete path) pairs our code calls that the spec does not describe.
#: They are accepted without any validation.
#: The authorize page (GET and POST /oauth) is the admin's browser talking to Intercom's web app, not an API call.
NOT_IN_SPEC: frozenset[tuple[str, str]] = frozenset({("POST", "/auth/eagle/token"), ("GET", "/oauth"),
                                                     ("POST", "/oauth")})

#: Headers every request to a spec operation must carry (project policy).
#: The spec declares ``Intercom-Version`` as optional (the workspace default
#: applies when absent), but our client pins it, so its absence is a bug.
REQUIRED_HEADERS: tuple[str, ...] = ("Intercom-Version",)

#: Query parameters Intercom documents but the spec does not declare,
#: keyed by (METHOD, path template) -> {name: OpenAPI schema}.
#: GET /contacts: cursor pagination, see
#: https://developers.intercom.com/docs/build-an-integration/learn-more/rest-apis/pagination-cursor
#: ("per_page ... Default is 50. Max is 150."); the operation description
#: itself refers to it, but the parameters are not declared.
UNDECLARED_QUERY_PARAMS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("GET", "/contacts"): {
        "per_page": {"type": "integer", "minimum": 1, "maximum": 150},
        "starting_after": {"type": "string"},
    },
}

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_URN = "urn:intercom-openapi:"
_URN_ANSWER = "urn:intercom-openapi-answer:"
_MAX_MSG = 240


# --------------------------------------------------------------------------
# spec loading
# --------------------------------------------------------------------------


def spec_path() -> Path:
    """Path of the OpenAPI document (env var ``INTERCOM_OPENAPI_SPEC`` wins)."""
    override = os.environ.get(SPEC_ENV_VAR)
    return Path(override) if override else _DEFAULT_SPEC


def load_spec() -> dict[str, Any]:
    """The parsed OpenAPI document, loaded once per process and path."""
    return _contract(str(spec_path())).doc


def _spec_for(path: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, "rb") as fh:
            doc = yaml.load(fh, Loader=loader)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Intercom OpenAPI spec not found at {path}; it ships in "
            f"tests/contracts/intercom/ (or set {SPEC_ENV_VAR})"
        ) from None
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.0"):
        raise ValueError(f"{path} is not an OpenAPI 3.0 document")
    return doc


_CONTRACTS: dict[str, "_Contract"] = {}
_LOAD_LOCK = threading.Lock()  # simulators call validate_request from server threads


def _contract(path: str) -> "_Contract":
    contract = _CONTRACTS.get(path)
    if contract is None:
        with _LOAD_LOCK:
            contract = _CONTRACTS.get(path)
            if contract is None:
                contract = _CONTRACTS[path] = _Contract(_spec_for(path))
    return contract


# --------------------------------------------------------------------------
# OpenAPI 3.0 schema -> JSON Schema draft 4
# --------------------------------------------------------------------------

_SCHEMA_MAPS = ("properties", "patternProperties")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_ONE = ("items", "additionalProperties", "not")
_DROPPED = frozenset(
    {
        "nullable",
        "readOnly",
        "writeOnly",
        "discriminator",
        "xml",
        "externalDocs",
        "example",
        "examples",
        "deprecated",
        "description",
        "title",
    }
)


def _ref_uri(ref: str, answer: bool = False) -> str:
    """Local ``#/json/pointer`` refs become one registry resource each (one for requests, one for answers)."""
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    return (_URN_ANSWER if answer else _URN) + quote(ref[1:], safe="")


def _convert(schema: Any, answer: bool = False) -> Any:
    """Convert one OpenAPI 3.0 Schema Object to draft 4: request-side, or for an `answer` (where readOnly
    properties are what the server sends, and their `required` holds)."""
    if not isinstance(schema, dict):
        return schema  # e.g. additionalProperties: true
    if "$ref" in schema:  # OAS 3.0: siblings of $ref are ignored
        return {"$ref": _ref_uri(schema["$ref"], answer)}
    if schema.get("readOnly") is True and not answer:
        # "SHOULD NOT be sent as part of the request": any value is an error.
        return {"readOnly": True}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED or key.startswith("x-"):
            continue
        if key in _SCHEMA_MAPS:
            out[key] = {name: _convert(sub, answer) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS:
            out[key] = [_convert(sub, answer) for sub in value]
        elif key in _SCHEMA_ONE:
            out[key] = [_convert(s, answer) for s in value] if isinstance(value, list) else _convert(value, answer)
        else:
            out[key] = value
    props = schema.get("properties") or {}
    if out.get("required") and not answer:
        # readOnly + required: "the required will take effect on the response only"
        required = [
            name
            for name in out["required"]
            if not (isinstance(props.get(name), dict) and props[name].get("readOnly") is True)
        ]
        if required:
            out["required"] = required
        else:
            del out["required"]
    if schema.get("nullable") is True:
        # OAS 3.0.1: "Allows sending a null value for the defined schema."
        # (applied also when there is no sibling `type`, e.g. oneOf + nullable)
        simple_type = isinstance(out.get("type"), str) and not any(
            k in out for k in ("allOf", "anyOf", "oneOf", "not")
        )
        if simple_type:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


def _read_only(validator: Any, value: Any, instance: Any, schema: Any) -> Iterable[ValidationError]:
    if value is True:
        yield ValidationError("is a readOnly property and must not be sent in a request")


def _required(validator: Any, schema: Any) -> frozenset[str]:
    for _ in range(50):
        if not (isinstance(schema, dict) and "$ref" in schema):
            break
        schema = validator._resolver.lookup(schema["$ref"]).contents
    return frozenset(schema.get("required", ())) if isinstance(schema, dict) else frozenset()


_ONE_OF = Draft4Validator.VALIDATORS["oneOf"]


def _one_of(validator: Any, one_of: Any, instance: Any, schema: Any) -> Iterable[ValidationError]:
    """oneOf, with the spec's overlapping alternatives told apart by what they require: a body that
    matches several is the one alternative whose required properties include every other match's
    (e.g. POST /tags: {name, users} is tag_multiple_users_request, although create_or_update_tag_request,
    which requires only `name` and allows other properties, matches it too). Matches that require the
    same properties (tag_company_request and untag_company_request) stay ambiguous: an error."""
    matched = [alt for alt in one_of if validator.evolve(schema=alt).is_valid(instance)]
    if len(matched) > 1:
        required = [_required(validator, alt) for alt in matched]
        widest = max(required, key=len)
        if all(r < widest for r in required if r is not widest) and required.count(widest) == 1:
            return
    yield from _ONE_OF(validator, one_of, instance, schema)


_RequestValidator = validators.extend(Draft4Validator, {"readOnly": _read_only, "oneOf": _one_of})


# --------------------------------------------------------------------------
# compiled operations
# --------------------------------------------------------------------------


@dataclass
class _Param:
    name: str
    location: str  # path | query | header
    required: bool
    style: str
    explode: bool
    kind: str | None  # declared "type" (after following $refs) for deserialisation
    item_kind: str | None
    object_keys: frozenset[str]
    validator: Any


@dataclass
class _Operation:
    method: str
    template: str
    params: list[_Param]
    body_required: bool = False
    has_body: bool = False
    media: dict[str, Any] = field(default_factory=dict)  # media type -> validator|None

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


class _Contract:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.version = str(doc.get("info", {}).get("version", ""))
        self._resources: dict[str, Resource] = {}
        self.registry: Registry = Registry(retrieve=self._retrieve)  # type: ignore[call-arg]
        self._index: dict[int, list[tuple[tuple[int, ...], str, list[str | None]]]] = {}
        for template in doc.get("paths", {}):
            segs = template.split("/")
            pattern = [None if re.fullmatch(r"\{[^{}]+\}", s) else s for s in segs]
            # literal segments beat templated ones, leftmost first
            specificity = tuple(0 if s is None else 1 for s in pattern)
            self._index.setdefault(len(segs), []).append((specificity, template, pattern))
        for candidates in self._index.values():
            candidates.sort(key=lambda c: c[0], reverse=True)
        self._ops: dict[tuple[str, str], _Operation | None] = {}
        self._answers: dict[tuple[str, str, int], tuple[bool, Any, dict[str, Any]]] = {}
        self._version_validator = None

    # -- $ref plumbing ---------------------------------------------------

    def pointer(self, ref: str) -> Any:
        node: Any = self.doc
        for part in ref.lstrip("#").split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def deref(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            node = self.pointer(node["$ref"])
            seen += 1
            if seen > 50:
                raise ValueError("$ref cycle")
        return node

    def _retrieve(self, uri: str) -> Resource:
        resource = self._resources.get(uri)
        if resource is None:
            prefix = next((p for p in (_URN, _URN_ANSWER) if uri.startswith(p)), None)
            if prefix is None:
                from referencing.exceptions import NoSuchResource

                raise NoSuchResource(ref=uri)
            target = self.pointer("#" + unquote(uri[len(prefix):]))
            resource = DRAFT4.create_resource(_convert(target, answer=prefix == _URN_ANSWER))
            self._resources[uri] = resource
        return resource

    def validator(self, oas_schema: Any, answer: bool = False) -> Any:
        return _RequestValidator(_convert(oas_schema, answer), registry=self.registry)

    def answer_validator(self, op: "_Operation", status: int) -> tuple[bool, Any, dict[str, Any]]:
        """(documented, body validator or None, declared headers) of one answer status of an operation; a status
        the operation does not document is checked against the shared error schema."""
        key = (op.template, op.method, status)
        if key not in self._answers:
            responses = self.deref(self.deref(self.doc["paths"][op.template])[op.method.lower()].get("responses") or {})
            raw = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
            documented = raw is not None
            raw = self.deref(raw) if documented else {}
            schema = ((raw.get("content") or {}).get("application/json") or {}).get("schema")
            if not documented and status >= 400:
                schema = {"$ref": "#/components/schemas/error"}
            headers = {name: self.deref(h) for name, h in (raw.get("headers") or {}).items()}
            self._answers[key] = (documented, None if schema is None else self.validator(schema, answer=True), headers)
        return self._answers[key]

    # -- lookup ------------------------------------------------------------

    def match(self, path: str) -> tuple[str, dict[str, str]] | None:
        return _match_cached(self, path)

    def _match(self, path: str) -> tuple[str, dict[str, str]] | None:
        segs = path.split("/")
        for _, template, pattern in self._index.get(len(segs), ()):
            values: dict[str, str] = {}
            for seg, pat, tseg in zip(segs, pattern, template.split("/")):
                if pat is None:
                    if not seg:
                        break
                    values[tseg[1:-1]] = unquote(seg)
                elif seg != pat:
                    break
            else:
                return template, values
        return None

    def methods(self, template: str) -> list[str]:
        item = self.deref(self.doc["paths"][template])
        return [m.upper() for m in _METHODS if m in item]

    def operation(self, template: str, method: str) -> _Operation | None:
        key = (template, method)
        if key not in self._ops:
            self._ops[key] = self._compile(template, method)
        return self._ops[key]

    def version_validator(self) -> Any:
        if self._version_validator is None:
            schemas = self.doc.get("components", {}).get("schemas", {})
            base = {"$ref": "#/components/schemas/intercom_version"} if "intercom_version" in schemas else {"type": "string"}
            self._version_validator = self.validator(base)
        return self._version_validator

    def _compile(self, template: str, method: str) -> _Operation | None:
        item = self.deref(self.doc["paths"][template])
        raw = item.get(method.lower())
        if raw is None:
            return None
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for p in list(item.get("parameters", [])) + list(raw.get("parameters", [])):
            p = self.deref(p)
            merged[(p["name"].lower() if p["in"] == "header" else p["name"], p["in"])] = p
        params = [self._param(p) for p in merged.values() if p["in"] in ("path", "query", "header")]
        for name, schema in UNDECLARED_QUERY_PARAMS.get((method, template), {}).items():
            if (name, "query") not in merged:
                params.append(self._param({"name": name, "in": "query", "schema": schema}))
        op = _Operation(method=method, template=template, params=params)
        body = self.deref(raw.get("requestBody"))
        if body:
            op.has_body = True
            op.body_required = bool(body.get("required"))
            for media_type, content in (body.get("content") or {}).items():
                schema = (content or {}).get("schema")
                op.media[media_type.lower()] = self.validator(schema) if schema is not None else None
        return op

    def _param(self, p: dict[str, Any]) -> _Param:
        location = p["in"]
        schema = p.get("schema") or {}
        resolved = self.deref(schema)
        kind = resolved.get("type")
        items = self.deref(resolved.get("items") or {})
        keys: set[str] = set(resolved.get("properties") or {})
        for combinator in _SCHEMA_LISTS:
            for sub in resolved.get(combinator) or []:
                keys.update((self.deref(sub).get("properties") or {}))
        style = p.get("style") or ("form" if location == "query" else "simple")
        explode = p.get("explode", style == "form")
        return _Param(
            name=p["name"],
            location=location,
            required=bool(p.get("required")) or location == "path",
            style=style,
            explode=bool(explode),
            kind=kind,
            item_kind=items.get("type"),
            object_keys=frozenset(keys),
            validator=self.validator(schema),
        )


@functools.lru_cache(maxsize=4096)
def _match_cached(contract: _Contract, path: str) -> tuple[str, dict[str, str]] | None:
    return contract._match(path)


# --------------------------------------------------------------------------
# value helpers
# --------------------------------------------------------------------------

_INT = re.compile(r"-?\d+")


def _coerce(raw: str, kind: str | None) -> Any:
    """Deserialise one wire string; leave it as is when it does not parse,
    so the schema check reports the mismatch."""
    if kind == "integer" and _INT.fullmatch(raw):
        return int(raw)
    if kind == "number":
        try:
            return int(raw) if _INT.fullmatch(raw) else float(raw)
        except ValueError:
            return raw
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


def _normalize_query(query: Mapping[str, Any] | None, errors: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in (query or {}).items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool):
                errors.append(
                    f"query parameter {key!r}: pass wire strings, not Python bool {v!r} "
                    "(it would be sent as 'True'/'False'; the spec expects 'true'/'false')"
                )
                continue
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            elif isinstance(v, (int, float)):
                v = str(v)
            elif v is None:
                errors.append(f"query parameter {key!r}: value is None")
                continue
            out.setdefault(str(key), []).append(v)
    return out


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_MSG else text[: _MAX_MSG - 3] + "..."


def _where(root: str, path: Iterable[Any]) -> str:
    out = root
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _ref_name(schema: Any) -> str:
    if isinstance(schema, dict) and "$ref" in schema:
        return unquote(schema["$ref"][len(_URN):]).rsplit("/", 1)[-1]
    return "inline schema"


_NULL_BRANCH = {"type": "null"}
_by_relevance = relevance


def _relevance(err: ValidationError) -> tuple:
    return (err.schema == _NULL_BRANCH, *_by_relevance(err))


def _describe(validator: Any, err: ValidationError, root: str) -> str:
    where = _where(root, err.absolute_path)
    if err.validator in ("oneOf", "anyOf"):
        branches = err.validator_value
        if err.validator == "oneOf" and not err.context:
            names = [
                _ref_name(s) if _ref_name(s) != "inline schema" else f"alternative #{i}"
                for i, s in enumerate(branches)
                if validator.evolve(schema=s).is_valid(err.instance)
            ]
            return f"{where}: matches more than one oneOf alternative ({', '.join(names)}), which the spec forbids"
        msg = f"{where}: does not match any {err.validator} alternative"
        # ignore the {"type": "null"} branch added for `nullable`: when the
        # value is not null, the interesting errors are in the other branch
        candidates = [c for c in err.context if c.schema != _NULL_BRANCH] or err.context
        if candidates:
            best = best_match(candidates, key=_relevance)
            msg += f"; closest: {_where(root, best.absolute_path)}: {_shorten(best.message)}"
        return msg
    return f"{where}: {_shorten(err.message)}"


def _flatten(errors: Iterable[ValidationError]) -> list[ValidationError]:
    """Look through oneOf/anyOf wrappers with a single real alternative
    (``oneOf: [$ref]``, or the null branch added for ``nullable``)."""
    out: list[ValidationError] = []
    for err in errors:
        if err.validator in ("oneOf", "anyOf") and err.context:
            real = [b for b in err.validator_value if b != _NULL_BRANCH]
            if len(real) == 1:
                out += _flatten(c for c in err.context if c.schema != _NULL_BRANCH)
                continue
        out.append(err)
    return out


def _schema_errors(validator: Any, instance: Any, root: str) -> list[str]:
    errs = sorted(_flatten(validator.iter_errors(instance)), key=lambda e: [str(p) for p in e.absolute_path])
    return [_describe(validator, e, root) for e in errs]


# --------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------


def validate_request(
    method: str,
    path: str,
    query: dict,
    headers: dict,
    body: bytes,
) -> list[str]:
    """Validate one outgoing request against Intercom's OpenAPI description.

    ``path`` is the URL path (a full URL or a path with ``?query`` is accepted
    too; its query is merged into ``query``). ``query`` maps names to wire
    values: ``str`` or a list of ``str`` (as ``urllib.parse.parse_qs`` gives);
    ints are stringified. ``headers`` names are case-insensitive. ``body`` is
    the raw request body (``b""``/``None`` for none).

    Returns human-readable errors; an empty list means the request is valid.
    """
    method = method.upper()
    errors: list[str] = []
    query_values = _normalize_query(query, errors)
    if "://" in path or "?" in path:
        parts = urlsplit(path)
        path = parts.path or "/"
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            query_values.setdefault(key, []).append(value)
    if (method, path) in NOT_IN_SPEC:
        return []

    contract = _contract(str(spec_path()))
    matched = contract.match(path)
    if matched is None:
        return [f"{method} {path}: path is not in the Intercom OpenAPI spec ({spec_path().name})"]
    template, path_values = matched
    op = contract.operation(template, method)
    if op is None:
        allowed = ", ".join(contract.methods(template))
        return [
            f"{method} {path}: method {method} is not defined for {template} "
            f"in the Intercom OpenAPI spec (defined: {allowed})"
        ]

    header_values: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        header_values[str(key).lower()] = str(value)

    errors = [f"{op.label}: {e}" for e in errors]
    errors += [f"{op.label}: {e}" for e in _check_params(op, path_values, query_values, header_values)]
    errors += [f"{op.label}: {e}" for e in _check_policy_headers(contract, op, header_values)]
    errors += [f"{op.label}: {e}" for e in _check_body(op, header_values, body)]
    return errors


def _check_params(
    op: _Operation,
    path_values: dict[str, str],
    query: dict[str, list[str]],
    headers: dict[str, str],
) -> list[str]:
    errors: list[str] = []
    consumed: set[str] = set()
    for p in op.params:
        label = f"{p.location} parameter {p.name!r}"
        if p.location == "path":
            raws = [path_values[p.name]] if p.name in path_values else []
        elif p.location == "header":
            raws = [headers[p.name.lower()]] if p.name.lower() in headers else []
        elif p.kind == "object" and p.explode and p.style == "form":
            present = {k: query[k][-1] for k in p.object_keys if k in query}
            consumed.update(present)
            if not present:
                if p.required:
                    errors.append(f"missing required {label} (one of: {', '.join(sorted(p.object_keys))})")
                continue
            errors += _schema_errors(p.validator, present, label)
            continue
        else:
            raws = query.get(p.name, [])
            consumed.add(p.name)

        if not raws:
            if p.required:
                errors.append(f"missing required {label}")
            continue
        if p.kind == "array":
            if p.explode or p.location != "query":
                parts = raws if p.location == "query" else raws[0].split(",")
            else:
                parts = [item for raw in raws for item in raw.split(",")]
            value: Any = [_coerce(item, p.item_kind) for item in parts]
        else:
            if len(raws) > 1:
                errors.append(f"{label} given {len(raws)} times but is not an array")
            value = _coerce(raws[-1], p.kind)
        errors += _schema_errors(p.validator, value, label)

    for name in query:
        if name not in consumed:
            errors.append(
                f"query parameter {name!r} is not declared by the spec for this operation "
                "(if Intercom documents it, add it to UNDECLARED_QUERY_PARAMS)"
            )
    return errors


def _check_policy_headers(contract: _Contract, op: _Operation, headers: dict[str, str]) -> list[str]:
    errors: list[str] = []
    declared = {p.name.lower(): p for p in op.params if p.location == "header"}
    for name in REQUIRED_HEADERS:
        key = name.lower()
        if key not in headers:
            if not (key in declared and declared[key].required):  # else already reported
                errors.append(f"missing header {name!r} (required by project policy)")
            continue
        if key == "intercom-version":
            value = headers[key]
            if key not in declared:  # not declared by this operation: check the shared schema
                errors += _schema_errors(contract.version_validator(), value, "header parameter 'Intercom-Version'")
            if contract.version and value != contract.version:
                errors.append(
                    f"header 'Intercom-Version' is {value!r} but requests are validated "
                    f"against the {contract.version} spec; send {contract.version!r}"
                )
    return errors


def _check_body(op: _Operation, headers: dict[str, str], body: bytes | str | None) -> list[str]:
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not body:
        if op.has_body and op.body_required:
            return ["request body is required but none was sent"]
        return []
    if not op.has_body:
        return [f"operation defines no request body but {len(body)} bytes were sent"]
    content_type = headers.get("content-type")
    if not content_type:
        return ["request body sent without a Content-Type header"]
    media = content_type.split(";", 1)[0].strip().lower()
    if media in op.media:
        validator = op.media[media]
    else:
        wildcard = [m for m in op.media if m in (f"{media.split('/')[0]}/*", "*/*")]
        if not wildcard:
            return [f"Content-Type {media!r} is not accepted (spec allows: {', '.join(op.media)})"]
        validator = op.media[wildcard[0]]
    if validator is None:
        return []
    if not (media == "application/json" or media.endswith("+json")):
        return []  # only JSON bodies are schema-checked
    try:
        instance = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"request body is not valid JSON: {exc}"]
    return _schema_errors(validator, instance, "body")


# --------------------------------------------------------------------------
# answers (what a simulator of Intercom answers)
# --------------------------------------------------------------------------

#: Headers every answer of a spec operation carries (docs/external-apis: Intercom's rate-limit headers), but a server
#: error's (a 502 or 503 may be a proxy's, not Intercom's application's).
ANSWER_HEADERS: tuple[str, ...] = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


_SHAPES: set[str] = set()
_SHAPES_MAX = 10_000


def _shape(value: Any) -> Any:
    """A value's structure: its keys and their JSON types, not their values (a list: the shapes of its items)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(_shape(v), sort_keys=True) for v in value})
    return type(value).__name__


def _unseen_shapes(label: str, items: list[Any]) -> list[int]:
    """Of an answer's items (a list's, or the one object answered), those whose shape no answer of the same operation
    and status had yet: a page of 150 contacts the simulator builds alike costs one check of a contact, not 150, and a
    thousand updates of contacts a few (the suite is near CI's time limit). Values are not told apart: an enum the
    simulator breaks only in some answers of a shape already seen goes unnoticed."""
    out = []
    with _LOAD_LOCK:
        for i, item in enumerate(items):
            shape = label + json.dumps(_shape(item), sort_keys=True)
            if shape not in _SHAPES:
                if len(_SHAPES) < _SHAPES_MAX:
                    _SHAPES.add(shape)
                out.append(i)
    return out


def validate_response(method: str, path: str, status: int, headers: Mapping[str, Any], body: bytes | None) -> list[str]:
    """Validate one answer to a request against Intercom's OpenAPI description, as `validate_request` does the
    request: the status must be one the operation documents (any error status is allowed, as Intercom answers
    404, 409, 429... where the spec is silent), the body must fit the schema of that status (an error status the
    operation does not document: the shared `error` schema, `type` "error.list"), JSON as declared, with the
    declared headers' schemas and Intercom's rate-limit headers (not on a 5xx). A request the spec does not describe (or
    describes no operation for) is not checked here: `validate_request` reports it.

    Returns human-readable errors; an empty list means the answer is one Intercom could give."""
    method = method.upper()
    path = urlsplit(path).path or "/"
    if (method, path) in NOT_IN_SPEC:
        return []
    contract = _contract(str(spec_path()))
    matched = contract.match(path)
    op = contract.operation(matched[0], method) if matched else None
    if op is None:
        return []
    label = f"{op.label} answered {status}"
    documented, validator, declared = contract.answer_validator(op, status)
    if not documented and status < 400:
        return [f"{label}: the spec documents no such answer"]
    names = {str(k).lower(): str(v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in headers.items()}
    errors = [f"{label}: missing header {h!r}" for h in ANSWER_HEADERS if h.lower() not in names and status < 500]
    for name, header in declared.items():
        if name.lower() in names:
            errors += [f"{label}: {e}" for e in _schema_errors(
                contract.validator(header.get("schema") or {}, answer=True), names[name.lower()], f"header {name!r}")]
    if validator is None:
        return errors
    media = names.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return errors + [f"{label}: Content-Type is {media or 'missing'!r}, not 'application/json'"]
    try:
        instance = json.loads(body or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return errors + [f"{label}: body is not valid JSON: {exc}"]
    if status >= 400 and isinstance(instance, dict) and instance.get("type") != "error.list":
        errors.append(f"{label}: an error's body.type is {instance.get('type')!r}, not 'error.list'")
    items = instance.get("data") if isinstance(instance, dict) else None
    kept = _unseen_shapes(label, items if isinstance(items, list) else [instance])
    if isinstance(items, list):      # the list itself, with those of its items of a shape not checked yet
        instance = {**instance, "data": [items[i] for i in kept]}
    elif not kept:
        return errors
    for e in _schema_errors(validator, instance, "body"):
        if isinstance(items, list):  # (the index the item has in the answer, not among those checked)
            e = re.sub(r"^body\.data\[(\d+)\]", lambda m: f"body.data[{kept[int(m.group(1))]}]", e)
        errors.append(f"{label}: {e}")
    return errors
