"""Decisions for a person joining a campaign: which settings apply, what to send to
Intercom, what to do with a duplicate, which baseline to remember. Pure: no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .mapping import ContactPayload, attribute_value, build_payload
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

    def create_body(self) -> dict:
        return self.payload.body(role=self.role)

    def update_body(self) -> dict:
        """What "update the existing contact to mark them as referred" writes: the mapped
        attributes, never the email (it is how we found them), the role, nor the
        qualification's initial value (the contact already has a real one)."""
        without = ("email",) + ((self.initial_attribute,) if self.initial_attribute else ())
        return self.payload.body(without=without)


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
    extra = {}
    q = settings.qualification
    if kind == "lead" and q is not None and q.initial_value is not None and not any(
            r.to == q.attribute for r in people.fields):
        extra[q.attribute] = q.initial_value
    payload = build_payload(people.fields, person, attributes, extra)
    if not payload.email:
        reason = next((e.reason for e in payload.errors if e.to == "email"), "the email could not be mapped")
        return Skip("failed", f"{reason}: Intercom needs an email to create or find the contact")
    return Plan(kind=kind, people=people, payload=payload, initial_attribute=next(iter(extra), None))


def duplicate_action(plan_: Plan) -> Optional[dict]:
    """The update to send to an existing contact, or None to leave it untouched (skip)."""
    if plan_.people.duplicates == "skip":
        return None
    body = plan_.update_body()
    return body or None


def baseline(settings: CampaignSettings, contact: dict) -> Any:
    """The qualifying attribute's value when the person joined."""
    q = settings.qualification
    return None if q is None else attribute_value(contact, q.attribute)


def pick_existing(contacts: list[dict]) -> Optional[dict]:
    """Among contacts sharing the email, prefer a user over a lead, then the oldest."""
    live = [c for c in contacts if not c.get("archived")]
    if not live:
        return None
    return sorted(live, key=lambda c: (c.get("role") != "user", str(c.get("created_at") or "")))[0]
