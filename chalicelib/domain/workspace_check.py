"""The settings against the live workspace (`bridge settings apply` refuses what this finds, `bridge doctor`
reports it): the attributes they name, the values and the rule they give, and the sync block (domain/sync.check_sync).
Above the settings, the rules and sync, which read the settings' model. Pure: no I/O."""
from __future__ import annotations

from typing import Any, Optional

from .mapping import (NOT_WRITABLE, WATCHABLE_ATTRIBUTE_TYPES, ConversionError, attribute_type, convert,
                      rf_field_type, type_unsupported)
from .rules import matches
from .settings import NO_VALUE, CampaignSettings, Qualification, attribute_meant
from .sync import check_sync


def check_against_workspace(settings: CampaignSettings, attributes: dict[str, dict],
                            segments: Optional[list[dict]] = None) -> list[str]:
    """Problems only the live workspace can reveal, every one at once: attributes that do not exist,
    are archived or read-only; values that do not fit the attribute's type; a rule's operator that
    cannot compare that type; the sync block's attributes and segment (the same checks as `sync start`).
    `attributes` maps full_name -> Intercom data attribute (as listed by GET /data_attributes);
    `segments`: the workspace's segments, when the sync block reads one (None: not checked).
    `bridge settings apply` refuses what this finds, and `bridge doctor` reports it."""
    problems: list[str] = []
    sections = [("leads", settings.leads), ("referrers", settings.referrers)]
    for section, people in sections:
        if people.action == "nothing":
            continue
        for i, row in enumerate(people.fields):
            key = f"{section}.fields[{i}].to"
            attr = attributes.get(row.to)
            if row.to in NOT_WRITABLE:          # (`unworkable` says so)
                continue
            if attr is None:
                problems.append(f"{key}: {row.to} does not exist in workspace {settings.workspace} — "
                                f"{attribute_meant(row.to, attributes)}create it in Intercom (Settings > Data > People) or fix "
                                "the name")
                continue
            if attr.get("archived"):
                problems.append(f"{key}: {row.to} is archived in Intercom — unarchive it or map another attribute")
            if attr.get("api_writable") is False:
                problems.append(f"{key}: {row.to} is read-only in Intercom — map a writable attribute")
            dtype = attribute_type(row.to, attributes)      # (the type each join converts to)
            unsupported = type_unsupported(dtype)
            if unsupported:         # whatever the source: no value converts to it
                problems.append(f"{key}: {row.to}: {unsupported} — map it to a text, number, decimal, true/false "
                                "or date attribute (those are the types the bridge converts to)")
            elif row.value is not None:
                unfit = value_unfit(row.value, dtype, row.to, "value", "change the value or the attribute")
                if unfit:
                    problems.append(f"{section}.fields[{i}].value: {unfit}")
                elif section == "leads" and settings.qualification and row.to == settings.qualification.attribute:
                    problems += _created_meeting(settings.qualification, dtype, row.value,
                                                 f"leads.fields[{i}].value", "map no value to it")
            elif not _compatible(rf_field_type(row.from_ or ""), dtype):
                problems.append(
                    f"{section}.fields[{i}]: {row.from_} is {rf_field_type(row.from_ or '')} but {row.to} is "
                    f"{dtype} — map it to a {rf_field_type(row.from_ or '')} attribute"
                )
            elif row.from_ in OWN_VALUES and options_of(attr):    # (as sync.referral_link_attribute is refused one)
                problems.append(
                    f"{section}.fields[{i}]: {row.from_} is each person's own {OWN_VALUES[row.from_]} but {row.to} is "
                    f"a list in Intercom ({_listed(options_of(attr))}), not a text attribute — map it to a Text attribute")
    q = settings.qualification
    if q is not None:
        if q.attribute not in attributes and q.attribute not in WATCHABLE_ATTRIBUTE_TYPES:
            problems.append(f"qualification.attribute: {q.attribute} does not exist in workspace "
                            f"{settings.workspace} — {attribute_meant(q.attribute, attributes)}create it in Intercom or fix "
                            "the name")
        else:       # (a standard attribute is on every contact, listed by the workspace or not)
            problems += rule_problems(q, attribute_type(q.attribute, attributes),
                                      written=settings.writes_initial_value())
    if settings.sync is not None:
        problems += check_sync(settings, attributes, segments)
    return problems


_KIND = {"string": "a text attribute", "integer": "a whole-number attribute", "float": "a decimal attribute",
         "boolean": "a true/false attribute", "date": "a date attribute", "datetime": "a date attribute"}


def value_unfit(value: Any, data_type: str, attribute: str, key: str, fix: str) -> Optional[str]:
    """Why `value` (from the settings) cannot be written to or compared with an attribute of
    `data_type`, as "what — fix"; None when it fits. A boolean fits only a true/false attribute:
    YAML turns an unquoted Yes into true, which no text attribute ever equals."""
    if isinstance(value, bool) and data_type != "boolean":
        word = "Yes" if value else "No"
        return (f"{str(value).lower()} is a boolean, but {attribute} is {_KIND.get(data_type, data_type)} — YAML "
                f"reads unquoted Yes/No, true/false and on/off as booleans: quote the text, e.g. {key}: \"{word}\"")
    try:
        convert(value, data_type)
    except ConversionError as exc:
        return f"{exc} — {fix}"
    return None


def rule_problems(q: Qualification, data_type: str, written: bool) -> list[str]:
    """Does the rule fit its attribute's type: its value and initial value, and its operator. `written`: the initial
    value is written to new leads' contacts (not with `leads.action: nothing`, nor under a field mapped there)."""
    problems = []
    for key, val in (("value", q.value), ("initial_value", q.initial_value)):
        if val is None or (key == "value" and q.operator in NO_VALUE):
            continue
        unfit = value_unfit(val, data_type, q.attribute, key, f"use a value of type {data_type}")
        if unfit:
            problems.append(f"qualification.{key}: {unfit}")
        elif key == "initial_value" and written:
            problems += _created_meeting(q, data_type, val, "qualification.initial_value", "remove initial_value")
    kind = _KIND.get(data_type, data_type)
    if q.operator == "gte" and data_type not in ("integer", "float", "date", "datetime"):
        others = "equals or contains" if data_type == "string" else "equals"      # contains: text only (below)
        problems.append(f"qualification.operator: gte compares numbers or dates, but {q.attribute} is {kind} — use "
                        f"{others}, or a number or date attribute")
    if q.operator == "contains" and data_type != "string":
        problems.append(f"qualification.operator: contains looks for text, but {q.attribute} is {kind} — use equals "
                        "(or gte for a number or a date)")
    return problems


def _created_meeting(q: Qualification, data_type: str, value: Any, key: str, or_else: str) -> list[str]:
    """A value every lead's contact is created with (the rule's initial_value, a fixed value mapped to its
    attribute) that meets the rule: nobody qualifies under require_change, everybody at once without it."""
    if not matches(q, data_type, value):
        return []
    rule = "is set" if q.operator in NO_VALUE else f"{q.operator} {q.value!r}"
    return [f"{key}: {value!r} meets the rule itself ({q.attribute} {rule}) — write the value a lead has before "
            f"converting, one that does not meet the rule, or {or_else}"]


def boolean_text_warnings(settings: CampaignSettings, attributes: dict[str, dict]) -> list[str]:
    """The values given a true/false (checkbox) attribute as something other than true or false (a boolean, or that
    text) which the bridge reads as one (mapping.convert: "Yes", "off", 1...), as "key: what — fix" lines: a fixed
    field `value` a join writes there (not under `action: nothing`), then the rule's value or initial value.
    Warnings, not problems: such a value works as read ("Yes" is written, and meets, as a ticked box), and a refusal
    would stop `settings apply` of settings that run and have doctor call their campaign broken; the warning is for
    the operator who wrote the text for a text attribute. Said by `bridge settings apply` and `bridge doctor`, after
    check_against_workspace (a text no boolean is read from is a problem there)."""
    given: list[tuple[str, str, Any]] = [
        (f"{section}.fields[{i}].value", row.to, row.value)
        for section, people in (("leads", settings.leads), ("referrers", settings.referrers))
        if people.action != "nothing" for i, row in enumerate(people.fields)
        if row.value is not None and row.to not in NOT_WRITABLE]
    q = settings.qualification
    if q is not None:
        given += [(f"qualification.{key}", q.attribute, val)
                  for key, val in (("value", None if q.operator in NO_VALUE else q.value),
                                   ("initial_value", q.initial_value)) if val is not None]
    warnings = []
    for key, attribute, val in given:
        if attribute_type(attribute, attributes) != "boolean" or isinstance(val, bool) or (
                isinstance(val, str) and val.strip().lower() in ("true", "false")):
            continue
        try:
            read = str(convert(val, "boolean")).lower()
        except ConversionError:
            continue
        name = key.rpartition(".")[2]
        warnings.append(f"{key}: {val!r} on the true/false attribute {attribute} is read as {read} — write "
                        f"{name}: {read} to say so (if {attribute} was to hold the text {str(val)!r}, it is a "
                        "true/false attribute in Intercom, not a text one)")
    return warnings


def _compatible(rf_type: str, dtype: str) -> bool:
    if rf_type == "any" or dtype == "string":
        return True
    return rf_type == "date" and dtype in ("date", "datetime")


SHOWN_OPTIONS = 5       # a list attribute's options a warning names
#: RF fields whose value is each person's own, never one of a list attribute's options.
OWN_VALUES = {"url": "referral link", "code": "referral code"}


def options_of(attr: Optional[dict]) -> list[str]:
    """A list attribute's options (Intercom lists them as text; a request to make one gives `{value}`s): [] for
    any other attribute, or one that is not text (Intercom's list attributes are)."""
    if not attr or attr.get("data_type", "string") != "string" or not isinstance(attr.get("options"), list):
        return []
    values = (o.get("value") if isinstance(o, dict) else o for o in attr["options"])
    return [str(v) for v in values if v is not None]


def _listed(options: list[str]) -> str:
    named = ", ".join(repr(o) for o in options[:SHOWN_OPTIONS])
    return named + (f" and {len(options) - SHOWN_OPTIONS} more" if len(options) > SHOWN_OPTIONS else "")


def option_warnings(settings: CampaignSettings, attributes: dict[str, dict]) -> list[str]:
    """Values the settings give a list attribute (a text attribute with options in Intercom, the dropdown its UI
    sets) that are none of its options, as "key: what — fix" lines: a fixed `value` or the rule's `initial_value`
    written there (Intercom's API may refuse it: the field is then not written, said in each person's history),
    and a rule that no option meets (a contact set from the list never qualifies). Warnings, not problems: values
    may reach a contact through the API too. `bridge settings apply` says them (and stores the settings), `bridge
    doctor` reports them. Checked after check_against_workspace: the values fit the attribute's type."""
    warnings: list[str] = []

    def written(key: str, value: Any, name: str) -> None:
        options = options_of(attributes.get(name))
        try:
            text = convert(value, "string")
        except ConversionError:
            return
        if options and text not in options:
            warnings.append(f"{key}: {text!r} is not one of the options of the list attribute {name} in Intercom "
                            f"({_listed(options)}) — use one of them, or add it to the list in Intercom")

    for section, people in (("leads", settings.leads), ("referrers", settings.referrers)):
        if people.action != "nothing":
            for i, row in enumerate(people.fields):
                if row.value is not None:
                    written(f"{section}.fields[{i}].value", row.value, row.to)
    q = settings.qualification
    if q is not None:
        options = options_of(attributes.get(q.attribute))
        if options and q.operator not in NO_VALUE and not any(matches(q, "string", o) for o in options):
            rule = f"{q.operator} {q.value!r}"
            warnings.append(f"qualification.value: no option of the list attribute {q.attribute} in Intercom "
                            f"({_listed(options)}) meets the rule ({rule}) — a contact set from the list never "
                            "qualifies: use one of its options as the value, or add the value to the list in Intercom")
        if q.initial_value is not None and settings.writes_initial_value():
            written("qualification.initial_value", q.initial_value, q.attribute)
    return warnings
