"""The per-campaign settings document (product.md "The settings document"): its model,
and validation whose messages name the key and say how to fix it. Pure: no I/O. The model imports no other
module that reads it (rules, sync): what only the live workspace reveals is checked above them all
(domain/workspace_check.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from .ids import as_id, not_an_id
from .mapping import (MARKER_ATTRIBUTE, NOT_COMPARED, NOT_WRITABLE, NOT_WRITABLE_REASON, RF_FIELDS,
                      STANDARD_ATTRIBUTE_TYPES, UNWATCHABLE, WATCHABLE_ATTRIBUTE_TYPES, rf_field_known)

Action = Literal["nothing", "create_lead", "create_user"]


class SettingsError(ValueError):
    """The document is invalid; `problems` is a list of "key: what is wrong — how to fix" lines."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _custom(name: str) -> bool:
    return name.startswith("custom_attributes.") and len(name) > 18


def _check_target(to: str) -> str:
    if to in STANDARD_ATTRIBUTE_TYPES or _custom(to):
        return to
    raise ValueError(
        f"'{to}' is not an Intercom contact attribute — use a standard one "
        f"({', '.join(sorted(STANDARD_ATTRIBUTE_TYPES))}) or custom_attributes.<name>"
    )


def _check_watched(name: str) -> str:
    """A qualification rule may watch any attribute a contact carries and the contact search filters on,
    those Intercom sets itself too (mapping.WATCHABLE_ATTRIBUTE_TYPES)."""
    if name in WATCHABLE_ATTRIBUTE_TYPES or _custom(name):
        return name
    why = UNWATCHABLE.get(name, "it is not an Intercom contact attribute")
    raise ValueError(f"'{name}' cannot be watched: {why} — watch a standard attribute "
                     f"({', '.join(sorted(WATCHABLE_ATTRIBUTE_TYPES))}) or custom_attributes.<name>")


_SEPARATOR = "\n"     # a model validator's several problems travel in one ValueError, one a line


def _refuse(model: Any, problems: list[str]) -> Any:
    """Every independent problem a model validator finds, at once (parse_settings splits them)."""
    if problems:
        raise ValueError(_SEPARATOR.join(problems))
    return model


def _twice(rows: list, what: str) -> list[str]:
    seen: set[str] = set()
    problems = []
    for row in rows:
        if row.to in seen:
            problems.append(f"'{row.to}' is mapped twice — map each {what} at most once")
        seen.add(row.to)
    return problems


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
            raise ValueError(f"'{v}' is not a Referral Factory field — use {', '.join(RF_FIELDS)}, or "
                             "meta.<field> for a custom field")
        return v


class People(_Strict):
    action: Action = "nothing"
    duplicates: Literal["skip", "update"] = "update"
    fields: list[FieldMap] = []
    tag: Optional[str] = None

    @model_validator(mode="after")
    def _mapping(self) -> "People":
        problems = _twice(self.fields, "Intercom attribute")
        if self.action != "nothing" and not any(r.to == "email" and r.from_ for r in self.fields):
            problems.append("email is not mapped — add {from: email, to: email} to fields (Intercom needs an email)")
        return _refuse(self, problems)

    @property
    def role(self) -> Optional[str]:
        return {"create_lead": "lead", "create_user": "user"}.get(self.action)


Operator = Literal["equals", "is_set", "gte", "contains"]
NO_VALUE = ("is_set",)              # operators that compare with nothing: `value` is not needed


class Qualification(_Strict):
    attribute: str
    value: Any = None
    operator: Operator = "equals"
    initial_value: Any = None
    require_change: bool = True
    match: Literal["contact", "email"] = "contact"
    case_sensitive: bool = False     # "Yes" equals "yes" unless set

    @field_validator("attribute")
    @classmethod
    def _attr(cls, v: str) -> str:
        return _check_watched(v)

    @field_validator("initial_value")
    @classmethod
    def _written(cls, v: Any, info: ValidationInfo) -> Any:
        attribute = info.data.get("attribute")
        if v is not None and attribute is not None and not (attribute in STANDARD_ATTRIBUTE_TYPES or _custom(attribute)):
            raise ValueError(f"{attribute} is set by Intercom, not written by the bridge — remove initial_value")
        return v

    @model_validator(mode="after")
    def _value(self) -> "Qualification":
        if self.value is None and self.operator not in NO_VALUE:
            raise ValueError(f"value is missing — operator {self.operator} compares the attribute with it: add "
                             f"`value:` (or use operator: {NO_VALUE[0]}, which needs none)")
        if self.attribute == "role" and (self.operator, self.value) != ("equals", "user"):
            raise ValueError("role only changes from lead to user — use `value: user` (operator equals): the lead "
                             "qualifies when their contact becomes a user")
        return self


class SyncFieldMap(_Row):
    """Sync goes the other way: `from` an Intercom attribute (or a fixed `value`) `to` an RF field."""

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        if v not in ("email", "first_name") and not (v.startswith("meta.") and len(v) > 5):
            raise ValueError(f"'{v}' is not a Referral Factory field sync can set — use email, first_name or "
                             "meta.<field> (a custom campaign field)")
        return v

    @field_validator("from_")
    @classmethod
    def _from(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None or v in ("id", "role") else _check_target(v)


class Sync(_Strict):
    source: Literal["all", "leads", "users", "segment"] = "all"
    segment_id: Optional[str] = None
    mode: Literal["once", "ongoing"] = "once"
    fields: list[SyncFieldMap] = []
    referral_link_attribute: Optional[str] = None
    # An integer attribute: each referrer's count of leads the bridge saw join with them (docs/how-it-works.md,
    # Referral counts).
    referral_count_attribute: Optional[str] = None

    @field_validator("segment_id", mode="before")
    @classmethod
    def _segment_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("referral_link_attribute", "referral_count_attribute")
    @classmethod
    def _link(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else _check_target(v)

    @property
    def counts_only(self) -> bool:
        """A block that only keeps referral counts (no fields, no link attribute): no sync runs from it."""
        return bool(self.referral_count_attribute) and not self.fields and not self.referral_link_attribute

    @model_validator(mode="after")
    def _segment(self) -> "Sync":
        problems = []
        if self.source == "segment" and not self.segment_id:
            problems.append("source is segment but segment_id is missing — add segment_id (see GET /segments)")
        mapped = {r.to for r in self.fields}
        for name, source in (("email", "email"), ("first_name", "name")):
            if name not in mapped and not self.counts_only:
                problems.append(f"{name} is not mapped — add {{from: {source}, to: {name}}} to fields "
                                "(Referral Factory requires it)")
        if self.referral_count_attribute and self.referral_count_attribute == self.referral_link_attribute:
            problems.append(f"referral_count_attribute: {self.referral_count_attribute} is also the "
                            "referral_link_attribute — a count and a link cannot share one attribute: name an "
                            "integer attribute for the count")
        return _refuse(self, problems + _twice(self.fields, "Referral Factory field"))


class CampaignSettings(_Strict):
    campaign_id: str
    workspace: str
    leads: People = People()
    referrers: People = People()
    qualification: Optional[Qualification] = None
    sync: Optional[Sync] = None

    @field_validator("campaign_id", "workspace", mode="before")
    @classmethod
    def _id(cls, v: Any) -> Any:
        """The ids webhooks carry follow one rule (domain/ids.py): a campaign named otherwise would
        never receive a join, nor a workspace a notification."""
        try:
            return as_id(v)
        except ValueError:
            raise ValueError(not_an_id(v)) from None

    @model_validator(mode="after")
    def _counts_reach_someone(self) -> "CampaignSettings":
        """With no contact sync, a referrer's count goes to the contact their own join links."""
        if self.sync is not None and self.sync.counts_only and self.referrers.action == "nothing":
            raise ValueError(
                "sync.referral_count_attribute: the counts would be kept but never written — with no contact "
                "sync, a referrer's count goes to the contact their own join links, and referrers.action is "
                "nothing: set referrers.action to create_user or create_lead (with fields), or add a sync")
        return self

    @model_validator(mode="after")
    def _role_can_change(self) -> "CampaignSettings":
        q = self.qualification
        if q is not None and q.attribute == "role" and q.require_change and self.leads.action == "create_user":
            raise ValueError("qualification: every lead's contact is created a user (leads.action: create_user), so "
                             "its role never changes to user and nobody qualifies — create leads (leads.action: "
                             "create_lead), or set require_change: false")
        return self

    def people(self, is_lead: bool) -> People:
        return self.leads if is_lead else self.referrers

    def writes_initial_value(self) -> bool:
        """Is the rule's initial value written to new leads' contacts: only where leads get a contact, and not under
        a field the join maps to the rule's attribute (domain/join.plan; settings checks judge it only then)."""
        q = self.qualification
        return (q is not None and q.initial_value is not None and self.leads.action != "nothing"
                and not any(r.to == q.attribute for r in self.leads.fields))

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


_NAMES_KEY = re.compile(r"^[a-z_]+(?:\.[a-z_]+)*: ")


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
                for line in str(err["msg"]).removeprefix("Value error, ").split(_SEPARATOR):
                    # a check of the whole document names its key itself (`sync.referral_count_attribute: ...`)
                    named = not err["loc"] and _NAMES_KEY.match(line)
                    problems.append(line if named else f"{_loc(err['loc'])}: {line}")
                continue
            else:
                msg = _FIXES.get(kind, err["msg"])
            problems.append(f"{_loc(err['loc'])}: {msg}")
        raise SettingsError(problems) from None


def valid_or_none(doc: Any) -> Optional[CampaignSettings]:
    """Stored settings as they are read back: None when there are none (None) or they no longer parse."""
    try:
        return parse_settings(doc) if doc is not None else None
    except SettingsError:
        return None


# The topics to subscribe in Intercom's Developer Hub (docs/setup.md, "Setting up Intercom").
TOPICS = ("contact.lead.updated", "contact.user.updated", "contact.lead.signed_up", "contact.merged",
          "contact.deleted", "contact.archived")
# Besides, for contact sync's ongoing mode (a new contact to enrol), and for `match: email`: a duplicate contact created
# already at the target (a user an app creates at sign-up, beside the lead) and the lead's contact's email changed.
CREATED_TOPICS = ("contact.user.created", "contact.lead.created")
EMAIL_TOPICS = CREATED_TOPICS + ("contact.email.updated",)
TopicNeed = Literal["ongoing", "email"]


def needed_topics(settings: Optional[CampaignSettings]) -> dict[TopicNeed, tuple[str, ...]]:
    """The webhook topics a campaign's settings need besides TOPICS, by why: "ongoing" (contact sync in ongoing
    mode, not counts only: CREATED_TOPICS) and "email" (a rule with `match: email`: EMAIL_TOPICS). None (no settings,
    or settings that no longer parse) needs none. `bridge doctor` and the OAuth connected page both say these."""
    if settings is None:
        return {}
    sync, rule = settings.sync, settings.qualification
    needs: dict[TopicNeed, tuple[str, ...]] = {}
    if sync is not None and sync.mode == "ongoing" and not sync.counts_only:
        needs["ongoing"] = CREATED_TOPICS
    if rule is not None and rule.match == "email":
        needs["email"] = EMAIL_TOPICS
    return needs


def unworkable(settings: CampaignSettings) -> list[str]:
    """Problems the model lets through, so that settings stored before they were checked still read (a campaign
    whose stored settings no longer parse is switched off): `bridge settings check` and `apply` (--offline too)
    refuse them, and `bridge doctor` reports them of stored settings. One "key: what — fix" line each."""
    problems = [f"{section}.tag: {people.tag!r} is blank, and Intercom refuses a tag without a name — write the "
                "tag's name, or remove `tag`"
                for section, people in (("leads", settings.leads), ("referrers", settings.referrers))
                if people.tag is not None and not people.tag.strip() and people.action != "nothing"]
    q = settings.qualification
    if q is not None and q.operator not in NO_VALUE and isinstance(q.value, str) and not q.value.strip():
        problems.append(f"qualification.value: {q.value!r} is blank, and a blank value is no value: nothing meets "
                        f"it — write the value a lead's {q.attribute} has once they convert, or use operator: "
                        f"{NO_VALUE[0]} (without `value`)")
    if q is not None and q.operator in NO_VALUE and q.value is not None:
        problems.append(f"qualification.value: {q.value!r} is not compared: operator {q.operator} takes no value (it "
                        f"meets whatever {q.attribute} holds, on a true/false attribute true) — remove `value`, or use "
                        f"operator: equals to meet {q.value!r} only")
    if q is not None and q.attribute == MARKER_ATTRIBUTE:
        problems.append(f"qualification.attribute: {q.attribute} is the bridge's own marker, which the bridge writes "
                        "itself when it creates a contact (the RF person it is for), never a conversion — watch the "
                        "attribute your app or team sets when a lead converts")
    if q is not None and q.attribute in NOT_COMPARED:
        problems.append(f"qualification.attribute: {q.attribute} is {NOT_COMPARED[q.attribute]}, and a rule compares "
                        "a contact's value as it is: no value meets it as meant — watch another attribute (one your "
                        "app or team sets when a lead converts)")
    problems += [f"{key}: {name} cannot be written: {NOT_WRITABLE_REASON}, so each value would be lost — write "
                 "a custom attribute (custom_attributes.<name>) instead, or remove it" for key, name in _written(settings)
                 if name in NOT_WRITABLE]
    return problems + _link_over_code(settings)


def _link_over_code(settings: CampaignSettings) -> list[str]:
    """Contact sync writing each referrer's link where the campaign's own join mapping writes `code`, or their count
    where it writes `code` or the link (`url`): a contact both write to holds one over the other (as another campaign
    writing its links there: shared_attributes)."""
    sync = settings.sync
    if sync is None:
        return []
    kept = (("link", "referral_link_attribute", "a text attribute", "links", ("code",)),
            ("count", "referral_count_attribute", "a Number (integer) attribute", "counts", ("code", "url")))
    clashes = [(what, key, kind, plural, name, section, i, str(row.from_))
               for what, key, kind, plural, sources in kept if (name := getattr(sync, key))
               for section, people in (("leads", settings.leads), ("referrers", settings.referrers))
               if people.action != "nothing" for i, row in enumerate(people.fields)
               if row.from_ in sources and row.to == name]
    return [f"sync.{key}: {name} is also where {section}.fields[{i}] writes each person's referral {_MAPPED[source]} "
            f"(`from: {source}`) — a contact both write to gets the {what} over the {_MAPPED[source]}, or the "
            f"{_MAPPED[source]} over the {what}: create {kind} of its own for the {plural} and name it in sync.{key}, "
            f"or map `{source}` to another attribute"
            for what, key, kind, plural, name, section, i, source in clashes]


#: What a mapping row's own-value field writes, each person's referral ... (_link_over_code).
_MAPPED = {"code": "code", "url": "link"}


def _written(settings: CampaignSettings) -> list[tuple[str, str]]:
    """(key, attribute) of each attribute the settings write to contacts."""
    written = [(f"{section}.fields[{i}].to", row.to)
               for section, people in (("leads", settings.leads), ("referrers", settings.referrers))
               if people.action != "nothing" for i, row in enumerate(people.fields)]
    q, sync = settings.qualification, settings.sync
    if q is not None and settings.writes_initial_value():
        written.append(("qualification.initial_value", q.attribute))
    if sync is not None:
        written += [(f"sync.{key}", name) for key, name in (("referral_link_attribute", sync.referral_link_attribute),
                                                            ("referral_count_attribute", sync.referral_count_attribute))
                    if name]
    return written


LINKS, COUNTS = "referral link", "referral count"
_OWN = {LINKS: ("referral-link", "", "map `url` to it", "name it in sync.referral_link_attribute"),
        COUNTS: ("referral-count", ", a Number (integer) attribute", "", "name it in sync.referral_count_attribute")}


def own_attributes(settings: CampaignSettings) -> dict[str, tuple[str, set[str]]]:
    """The attributes the campaign writes values of its own to — each person's referral link (a join's
    mapping row `from: url`, contact sync's referral_link_attribute) and referral count —: attribute ->
    (LINKS | COUNTS, how the settings write it: "mapping" and/or "sync")."""
    written: list[tuple[str, Optional[str], str]] = [
        (LINKS, row.to, "mapping") for people in (settings.leads, settings.referrers) if people.action != "nothing"
        for row in people.fields if row.from_ == "url"]
    if settings.sync is not None:
        written += [(LINKS, settings.sync.referral_link_attribute, "sync"),
                    (COUNTS, settings.sync.referral_count_attribute, "sync")]
    own: dict[str, tuple[str, set[str]]] = {}
    for what, attribute, how in written:
        if attribute:
            own.setdefault(attribute, (what, set()))[1].add(how)
    return own


@dataclass(frozen=True)
class Shared:
    """An attribute campaign `campaign_id` writes its own values to (`what`, as `how` says) that another
    campaign of its workspace writes its own to too (`theirs`): a person in both gets one campaign's value
    over the other's."""

    campaign_id: str
    other: str
    attribute: str
    what: str                    # LINKS | COUNTS
    how: frozenset[str]          # "mapping" and/or "sync"
    theirs: str

    @property
    def said(self) -> str:
        return f"campaign {self.other} also writes its {self.theirs}s to {self.attribute}"

    @property
    def why(self) -> str:
        return f"a person in both campaigns gets one campaign's {self.what} over the other's"

    @property
    def fix(self) -> str:
        name, kind, mapped, named = _OWN[self.what]
        steps = " and ".join(step for step, how in ((mapped, "mapping"), (named, "sync")) if how in self.how)
        return f"create one {name} attribute per campaign (e.g. {self.attribute}_{self.campaign_id}{kind}) and {steps}"


def shared_attributes(settings: CampaignSettings, others: dict[str, CampaignSettings]) -> list[Shared]:
    """The attributes the campaign shares with the other campaigns of its workspace (`others`: by campaign
    id; the campaign itself, and campaigns of other workspaces, are left out): what `bridge doctor`
    reports and `bridge settings apply` warns of."""
    mine = own_attributes(settings)
    return [Shared(settings.campaign_id, other, attribute, mine[attribute][0], frozenset(mine[attribute][1]), what)
            for other, theirs in sorted(others.items())
            if other != settings.campaign_id and theirs.workspace == settings.workspace
            for attribute, (what, _) in sorted(own_attributes(theirs).items()) if attribute in mine]


def _alike(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.removeprefix("custom_attributes.").casefold())


def attribute_meant(name: str, attributes: dict[str, dict]) -> str:
    """For an attribute that does not exist: the attributes whose name or label (what Intercom's UI shows, and the
    hosted integration's dropdown) has its words, case and separators aside — "did you mean ...? ... else "."""
    wanted = _alike(name)
    found = [(full, attr.get("label")) for full, attr in sorted(attributes.items())
             if wanted and not attr.get("archived") and wanted in (_alike(full), _alike(str(attr.get("label") or "")))]
    if not found:
        return ""
    named = " or ".join(full + (f" (labelled {label!r} in Intercom)" if label else "") for full, label in found[:3])
    return f"did you mean {named}? The settings name an attribute by its name, not its label; else "
