"""Decisions for a person joining a campaign: which settings apply, what to send to
Intercom, what to do with a duplicate, which baseline to remember. Pure: no I/O."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Optional

from . import rules
from .link import MOVED_UNKNOWN, Link
from .mapping import (MARKER_NAME, REFUSED_BY_INTERCOM, ContactPayload, FieldError, attribute_value, build_payload,
                      is_empty)
from .settings import CampaignSettings, People


@dataclass(frozen=True)
class Plan:
    kind: str                      # "lead" | "referrer"
    people: People
    payload: ContactPayload
    initial_attribute: Optional[str] = None   # written on creation only, never over an existing value

    @property
    def role(self) -> Optional[str]:
        return self.people.role

    def create_body(self, marker: str) -> dict:
        """The new contact: the mapped attributes, the role, and our marker (which RF person we
        created it for), so that it can be found and recognised if the create's answer is lost."""
        body = self.payload.body(role=self.role)
        body["custom_attributes"] = {**body.get("custom_attributes", {}), MARKER_NAME: marker}
        return body

    def update_body(self, existing: dict) -> dict:
        """What "update the existing contact to mark them as referred" writes: the mapped attributes
        the contact has no value for yet, and those whose mapping row says `overwrite: true`. Never
        the email (it is how we found them), the role, the qualification's initial value (the
        contact already has a real one), nor a value the contact already has."""
        overwrite = {r.to for r in self.people.fields if r.overwrite}
        without = ("email",) + ((self.initial_attribute,) if self.initial_attribute else ())
        keep = [name for name, value in self.payload.attributes.items()
                if name not in without and attribute_value(existing, name) != value
                and (name in overwrite or is_empty(attribute_value(existing, name)))]
        return ContactPayload({name: self.payload.attributes[name] for name in keep}).body()


@dataclass(frozen=True)
class Skip:
    outcome: str      # history outcome, e.g. "ignored"
    reason: str


def plan(settings: CampaignSettings, person: dict, attributes: dict[str, dict]) -> Plan | Skip:
    kind = person.get("type")
    if kind not in ("lead", "referrer"):
        return Skip("failed", "Referral Factory did not say whether this person is a lead or a referrer")
    people = settings.people(kind == "lead")
    if people.action == "nothing":
        section = "leads" if kind == "lead" else "referrers"
        return Skip("ignored", f"{section}.action is nothing: no contact is created for {section}")
    q = settings.qualification
    extra = {q.attribute: q.initial_value} if kind == "lead" and q is not None and settings.writes_initial_value() \
        else {}
    payload = build_payload(people.fields, person, attributes, extra)
    if not payload.email:
        reason = next((e.reason for e in payload.errors if e.to == "email"), "the email could not be mapped")
        return Skip("failed", f"{reason}: Intercom needs an email to create or find the contact")
    return Plan(kind=kind, people=people, payload=payload, initial_attribute=next(iter(extra), None))


def converted(settings: CampaignSettings) -> list[str]:
    """The attributes a join under `settings` may write, converted to their types (plan): its people's fields', and
    the rule's when its initial value is written."""
    names = [row.to for people in (settings.leads, settings.referrers) if people.action != "nothing"
             for row in people.fields]
    q = settings.qualification
    return names + [q.attribute] if q is not None and settings.writes_initial_value() else names


@dataclass(frozen=True)
class Replan:
    """A refused write planned again with the attribute list read again: the new plan, and the
    attributes it writes otherwise (converted to another type, or no longer convertible)."""

    plan: Plan
    changed: tuple[str, ...]


def replan(settings: CampaignSettings, person: dict, old: Plan, fresh: dict[str, dict]) -> Optional[Replan]:
    """Intercom refused a write planned with an attribute list older than `fresh`: the plan made with
    `fresh`, when it writes something else; None when it writes the same (the list does not explain
    the refusal: writing again would be refused again). A value is the same only with the same type
    too (True == 1 in Python, not in an Intercom attribute). A custom attribute `fresh` does not list
    (archived or deleted since: the list leaves them out) has no type Intercom says: no change."""
    again = plan(settings, person, fresh)
    if not isinstance(again, Plan):
        return None
    before, after = old.payload.attributes, again.payload.attributes
    changed = tuple(sorted(name for name in set(before) | set(after)
                           if (name in fresh or not name.startswith("custom_attributes."))
                           and (name not in before or name not in after
                                or (type(before[name]), before[name]) != (type(after[name]), after[name]))))
    return Replan(again, changed) if changed else None


_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")


def refused_attributes(plan_: Plan, answer: Any) -> dict[str, str]:
    """The mapped attributes of `plan_` that Intercom's 400 `answer` (its error list) refuses, each with
    Intercom's words: an error's `field` names one, or its message quotes a custom attribute's name
    ("Custom attribute 'plan' is archived"). Empty when an error names none of them (the write is refused
    as a whole), or names the email: a contact is never written without it, nor without our marker,
    which is no mapped attribute."""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    written = set(plan_.payload.attributes) - {"email"}
    refused: dict[str, str] = {}
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            return {}
        message = str(error.get("message") or error.get("code") or "")
        field = str(error.get("field") or "")
        names = {field, f"custom_attributes.{field}"} if field else {
            f"custom_attributes.{quoted}" for pair in _QUOTED.findall(message) for quoted in pair if quoted}
        if not names & written:
            return {}
        refused.update(dict.fromkeys(sorted(names & written), message))
    return refused


def without(plan_: Plan, refused: dict[str, str]) -> Plan:
    """The plan without the attributes Intercom refused, each said as a field not written, with Intercom's words."""
    sources = {row.to: f"from {row.from_}" if row.from_ else "fixed value" for row in plan_.people.fields}
    payload = ContactPayload({k: v for k, v in plan_.payload.attributes.items() if k not in refused}, [
        *plan_.payload.errors, *(FieldError(to, sources.get(to, "fixed value"), f"{REFUSED_BY_INTERCOM}: {message}")
                                 for to, message in refused.items())])
    return replace(plan_, payload=payload)


def duplicate_action(plan_: Plan, existing: dict) -> Optional[dict]:
    """The update to send to an existing contact, or None to leave it untouched (skip, or nothing
    left to write)."""
    if plan_.people.duplicates == "skip":
        return None
    return plan_.update_body(existing) or None


def baseline(settings: CampaignSettings, contact: dict) -> Any:
    """The qualifying attribute's value when the person joined."""
    q = settings.qualification
    return None if q is None else attribute_value(contact, q.attribute)


def baseline_of(settings: CampaignSettings) -> Optional[str]:
    """The attribute a baseline recorded under the settings is a value of (Link.baseline_of)."""
    return settings.qualification.attribute if settings.qualification is not None else None


def created_baseline(settings: CampaignSettings, plan_: Plan) -> Any:
    """The baseline of a contact the bridge creates: the value the create writes (mapped, the rule's
    initial value, or the role), never what the contact became since."""
    q = settings.qualification
    if q is None:
        return None
    return plan_.role if q.attribute == "role" else plan_.payload.attributes.get(q.attribute)


def marker(campaign_id: str, rf_user_id: str) -> str:
    """Our marker's value on a contact we create for this person."""
    return f"{campaign_id}#{rf_user_id}"


def _created(contact: dict) -> float:
    try:
        return float(contact.get("created_at") or 0)
    except (TypeError, ValueError):
        return 0.0


def _live(contacts: Iterable[dict]) -> list[dict]:
    return [c for c in contacts if not c.get("archived")]


def ours(contacts: Iterable[dict], marker_value: str) -> Optional[dict]:
    """The contact the bridge created for this person (our marker on it), the oldest if several."""
    mine = [c for c in _live(contacts) if attribute_value(c, f"custom_attributes.{MARKER_NAME}") == marker_value]
    return min(mine, key=_created) if mine else None


def pick_existing(contacts: Iterable[dict]) -> Optional[dict]:
    """Among contacts sharing the email, prefer a user over a lead, then the oldest."""
    live = _live(contacts)
    if not live:
        return None
    return sorted(live, key=lambda c: (c.get("role") != "user", _created(c)))[0]


@dataclass(frozen=True)
class Duplicate:
    """A contact the bridge created turned out to duplicate `target`, which search did not show yet
    when the person joined: `merge` ours into it (Intercom merges a lead into a user only), or move
    the link to it."""

    target: dict
    merge: bool


def duplicate_of(ours_: dict, contacts: Iterable[dict], duplicates: str) -> Optional[Duplicate]:
    """`contacts`: those with our contact's email, as search shows them once it has caught up. Only
    a contact created before ours counts: one made later is not what the join missed."""
    older = [c for c in _live(contacts) if c.get("id") != ours_.get("id") and _created(c) <= _created(ours_)]
    target = pick_existing(older)
    if target is None:
        return None
    merge = duplicates == "update" and ours_.get("role") == "lead" and target.get("role") == "user"
    return Duplicate(target, merge)


def moved_baseline(settings: CampaignSettings, link: Link, target: dict, *, hidden_by_search: bool = False
                   ) -> dict[str, Any]:
    """What a lead's link records of its baseline when it moves to `target`, another contact of the person's
    (the one its contact was merged into, an older duplicate, the contact with its email once its own is
    gone), as LinkRepository.move takes it: nothing when its own still holds (no rule, or `target` was made
    after the person joined: the contact they had then was the link's); `target`'s value when it existed then
    and has not changed since (its value then: updated in an earlier second than her join's, by Intercom's whole
    seconds; one of that second may be her change after joining); else MOVED_UNKNOWN: its value then is not known (a merge
    changes the survivor), and under require_change the lead is not qualified by itself
    (judge.baseline_known). Not the link's own baseline for a contact that existed when the person joined
    (it may have had the target all along), but for one `hidden_by_search`: `target` is a contact Intercom's search did not
    show yet when the person joined (the bridge made its own; the late duplicate check found it, or the contact the
    bridge made was merged into it: merged_unseen): made at most
    a few minutes before the join, it is the person arriving, not a contact of long standing, and its value
    then is taken as the link's, as the bridge took it before (what it changed to since is theirs since joining);
    its value is used when it has not changed since."""
    q, joined = settings.qualification, rules.event_time(link.joined_at)
    if q is None or not link.is_lead:
        return {}
    created, updated = rules.event_time(target.get("created_at")), rules.event_time(target.get("updated_at"))
    # (Intercom's times are whole seconds: one made, or changed, in the second the person joined is taken as made, or
    # changed, after it: a value of that second may be a change she made after joining, never her value then)
    if joined is not None and created is not None and created >= math.floor(joined):
        return {}
    if joined is not None and updated is not None and updated < math.floor(joined):
        return {"baseline": baseline(settings, target), "baseline_of": q.attribute}
    return {} if hidden_by_search or merged_unseen(link, target) else {"baseline": None, "baseline_of": MOVED_UNKNOWN}


def records_left(settings: Optional[CampaignSettings], link: Link, taken: dict[str, Any]) -> bool:
    """A lead's link moving to another contact of the person's as its own is gone (a merge, a 410 or 404), or as the
    duplicate check moves it past her lead left in Intercom (LinkRepository.move's `stays`), records what
    it held on the contact it leaves (LinkRepository.move's `left`) under a rule, whether it takes the other's baseline
    (`taken`: moved_baseline) or keeps its own: a notification of the contact left, of an event from before the move,
    delivered after it, is judged against what the link held on it, as it would have been in order, under `match:
    contact` too (it was the person's contact then: not a duplicate, never counted there)."""
    return bool(taken) or (settings is not None and settings.qualification is not None and link.is_lead)


def merged_unseen(link: Link, target: dict) -> bool:
    """The contact the person's join created (`link.contact_created`) was merged into `target`, which has their email:
    a contact search did not show when they joined (or the join would have used it), as the late duplicate check
    finds it, whoever merged them (that check, whose answer was lost, or the team). moved_baseline's
    `hidden_by_search`. (One under another address may be of long standing: not this.)"""
    return link.contact_created and bool(link.email) and \
        (target.get("email") or "").strip().lower() == (link.email or "").strip().lower()


def time_number(value: Any) -> Optional[float]:
    """An Intercom time (a number, or its text) as a number; None when there is none or it is no number."""
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
