"""The per-campaign settings document (product.md "The settings document"): its model,
and validation whose messages name the key and say how to fix it. Pure: no I/O."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .mapping import MARKER_ATTRIBUTE, STANDARD_ATTRIBUTE_TYPES, rf_field_known

Action = Literal["nothing", "create_lead", "create_user"]


class SettingsError(ValueError):
    """The document is invalid; `problems` is a list of "key: what is wrong — how to fix" lines."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _check_target(to: str) -> str:
    if to in STANDARD_ATTRIBUTE_TYPES or (to.startswith("custom_attributes.") and len(to) > 18):
        return to
    raise ValueError(
        f"'{to}' is not an Intercom contact attribute — use a standard one "
        f"({', '.join(sorted(STANDARD_ATTRIBUTE_TYPES))}) or custom_attributes.<name>"
    )


class _Row(_Strict):
    from_: Optional[str] = Field(None, alias="from")
    value: Any = None
    to: str

    @model_validator(mode="after")
    def _one_source(self) -> "_Row":
        if (self.from_ is None) == (self.value is None):
            raise ValueError("give exactly one of `from` (a Referral Factory field) or `value` (a fixed value)")
        return self


class FieldMap(_Row):
    """A join mapping row: `from` an RF field (or a fixed `value`) `to` an Intercom attribute.
    `overwrite`: with `duplicates: update`, also replace a value the existing contact already has
    (by default only empty fields are filled)."""

    overwrite: bool = False

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        if v == MARKER_ATTRIBUTE:
            raise ValueError(f"'{v}' is the bridge's own marker (which RF person a contact was created for) — "
                             "map another attribute")
        return _check_target(v)

    @field_validator("from_")
    @classmethod
    def _from(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not rf_field_known(v):
            raise ValueError(
                f"'{v}' is not a Referral Factory field — use email, first_name, code, url, source, id, "
                "signed_up_at, referrer_name, referrer_email, referrer_code, campaign_name, or meta.<field> "
                "for a custom field"
            )
        return v


class People(_Strict):
    action: Action = "nothing"
    duplicates: Literal["skip", "update"] = "update"
    fields: list[FieldMap] = []
    tag: Optional[str] = None

    @model_validator(mode="after")
    def _mapping(self) -> "People":
        seen: set[str] = set()
        for row in self.fields:
            if row.to in seen:
                raise ValueError(f"'{row.to}' is mapped twice — map each Intercom attribute at most once")
            seen.add(row.to)
        if self.action != "nothing" and not any(r.to == "email" and r.from_ for r in self.fields):
            raise ValueError("email is not mapped — add {from: email, to: email} to fields (Intercom needs an email)")
        return self

    @property
    def role(self) -> Optional[str]:
        return {"create_lead": "lead", "create_user": "user"}.get(self.action)


class Qualification(_Strict):
    attribute: str
    value: Any
    operator: Literal["equals", "is_set", "gte", "contains"] = "equals"
    initial_value: Any = None
    require_change: bool = True
    match: Literal["contact", "email"] = "contact"
    case_sensitive: bool = False     # "Yes" equals "yes" unless set

    @field_validator("attribute")
    @classmethod
    def _attr(cls, v: str) -> str:
        return _check_target(v)


class SyncFieldMap(_Row):
    """Sync goes the other way: `from` an Intercom attribute (or a fixed `value`) `to` an RF field."""

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        if not rf_field_known(v):
            raise ValueError(f"'{v}' is not a Referral Factory field — use email, first_name or meta.<field>")
        return v


class Sync(_Strict):
    source: Literal["all", "leads", "users", "segment"] = "all"
    segment_id: Optional[str] = None
    mode: Literal["once", "ongoing"] = "once"
    fields: list[SyncFieldMap] = []
    referral_link_attribute: Optional[str] = None

    @model_validator(mode="after")
    def _segment(self) -> "Sync":
        if self.source == "segment" and not self.segment_id:
            raise ValueError("source is segment but segment_id is missing — add segment_id (see GET /segments)")
        return self


class CampaignSettings(_Strict):
    campaign_id: str
    workspace: str
    leads: People = People()
    referrers: People = People()
    qualification: Optional[Qualification] = None
    sync: Optional[Sync] = None

    @field_validator("campaign_id", "workspace", mode="before")
    @classmethod
    def _str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("sync")
    @classmethod
    def _sync_not_built(cls, v: Optional[Sync]) -> Optional[Sync]:
        if v is not None:     # accepted, it would silently do nothing
            raise ValueError("contact sync is not built yet — remove the sync block (it would do nothing); "
                             "keep it aside until a release that syncs contacts")
        return v

    def people(self, is_lead: bool) -> People:
        return self.leads if is_lead else self.referrers

    def to_document(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_FIXES = {
    "extra_forbidden": "unknown key — remove it or check its spelling",
    "missing": "required — add it",
    "string_type": "must be text — quote it",
    "bool_type": "must be true or false",
    "list_type": "must be a list of rows",
}


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("from" if part == "from_" else str(part))
    return out or "(document)"


def parse_settings(doc: Any) -> CampaignSettings:
    """Validate a settings document (already parsed from YAML/JSON)."""
    if not isinstance(doc, dict):
        raise SettingsError(["(document): must be a mapping of keys (campaign_id, workspace, leads, ...)"])
    try:
        return CampaignSettings.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            kind = err["type"]
            if kind == "literal_error":
                msg = f"{err['msg'].lower()} (got {err.get('input')!r})"
            elif kind == "value_error":
                msg = str(err["msg"]).removeprefix("Value error, ")
            else:
                msg = _FIXES.get(kind, err["msg"])
            problems.append(f"{_loc(err['loc'])}: {msg}")
        raise SettingsError(problems) from None


def check_against_workspace(settings: CampaignSettings, attributes: dict[str, dict]) -> list[str]:
    """Problems only the live workspace can reveal: attributes that do not exist, are archived
    or read-only, and values whose type cannot be converted. `attributes` maps full_name ->
    Intercom data attribute (as listed by GET /data_attributes)."""
    from .mapping import ConversionError, convert, rf_field_type

    problems: list[str] = []
    sections = [("leads", settings.leads), ("referrers", settings.referrers)]
    for section, people in sections:
        if people.action == "nothing":
            continue
        for i, row in enumerate(people.fields):
            key = f"{section}.fields[{i}].to"
            attr = attributes.get(row.to)
            if attr is None:
                problems.append(f"{key}: {row.to} does not exist in workspace {settings.workspace} — "
                                "create it in Intercom (Settings > Data > People) or fix the name")
                continue
            if attr.get("archived"):
                problems.append(f"{key}: {row.to} is archived in Intercom — unarchive it or map another attribute")
            if attr.get("api_writable") is False:
                problems.append(f"{key}: {row.to} is read-only in Intercom — map a writable attribute")
            dtype = attr.get("data_type", "string")
            if row.value is not None:
                try:
                    convert(row.value, dtype)
                except ConversionError as exc:
                    problems.append(f"{section}.fields[{i}].value: {exc} — change the value or the attribute")
            elif not _compatible(rf_field_type(row.from_ or ""), dtype):
                problems.append(
                    f"{section}.fields[{i}]: {row.from_} is {rf_field_type(row.from_ or '')} but {row.to} is "
                    f"{dtype} — map it to a {rf_field_type(row.from_ or '')} attribute"
                )
    q = settings.qualification
    if q is not None:
        attr = attributes.get(q.attribute)
        if attr is None:
            problems.append(f"qualification.attribute: {q.attribute} does not exist in workspace "
                            f"{settings.workspace} — create it in Intercom or fix the name")
        else:
            for key, val in (("value", q.value), ("initial_value", q.initial_value)):
                if val is None or (key == "value" and q.operator == "is_set"):
                    continue
                try:
                    convert(val, attr.get("data_type", "string"))
                except ConversionError as exc:
                    problems.append(f"qualification.{key}: {exc} — use a value of type {attr.get('data_type')}")
    return problems


def _compatible(rf_type: str, dtype: str) -> bool:
    if rf_type == "any" or dtype == "string":
        return True
    return rf_type == "date" and dtype in ("date", "datetime")
