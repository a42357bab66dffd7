"""Builders for the use cases' unit tests: a worker over the store's in-memory twin and fake APIs,
a campaign with a qualification rule, leads already joined, and the messages Intercom causes (a contact
changed, reconciliation's search of the changes)."""
from __future__ import annotations

import json
from typing import Any, Optional

from chalicelib.domain.history import Entry
from chalicelib.domain.link import JoinResult, Link, LinkStatus, PersonRef
from chalicelib.domain.qualification import QState
from chalicelib.messages import ChangesMessage, CheckMessage, ContactMessage
from chalicelib.services.worker import handle_batch
from chalicelib.ports import Store
from tests.fakes import FakeClock, FakeWork

WS = "ws"
RULE = {"attribute": "custom_attributes.signed_up", "value": "Yes", "initial_value": "No"}


def settings(rule: Optional[dict] = RULE, **leads: Any) -> dict:
    doc = {"campaign_id": "42", "workspace": WS,
           "leads": {"action": "create_lead", "duplicates": "update",
                     "fields": [{"from": "email", "to": "email"}, {"from": "first_name", "to": "name"}], **leads},
           "referrers": {"action": "create_user", "duplicates": "skip", "fields": [{"from": "email", "to": "email"}]}}
    return {**doc, "qualification": rule} if rule else doc


def world(doc: Optional[dict] = None, clock: Optional[FakeClock] = None, store: Optional[Store] = None) -> FakeWork:
    """The worker on the store's in-memory twin, or on `store` (made on `clock`: the contract tests' on both)."""
    work = FakeWork(clock=clock, store=store)
    work.store.settings.put("42", settings() if doc is None else doc, WS)
    work.apis.intercom_.attributes = {"custom_attributes.signed_up": {"data_type": "string"}}
    return work


def joined(work: FakeWork, user: str = "7", email: str = "ann@example.com", signed_up: Any = "No",
           kind: str = "lead", pending: bool = True, role: str = "lead", workspace: str = WS,
           baseline_of: Optional[str] = None, campaign: str = "42", contact: Optional[dict] = None
           ) -> tuple[Link, dict]:
    """A person whose join was applied: their contact in Intercom (`contact`: one linked already, in another
    campaign), their link in the store."""
    contact = contact or work.apis.intercom_.add(email, role=role, signed_up=signed_up)
    claim = work.store.links.claim(PersonRef(campaign, user), workspace)
    assert claim is not None
    work.store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind=kind, email=email, contact_id=contact["id"],
                                              contact_role=role, baseline=signed_up, baseline_of=baseline_of,
                                              qualification=QState.PENDING if pending and kind == "lead" else None),
                            [Entry("join_received", "received")])
    work.clock.now += 10
    return link_of(work, user, campaign), contact


def made(work: FakeWork, contact: dict, before_the_join: bool = False) -> dict:
    """The contact was made now, after the person joined (the fake numbers contacts it makes from 1), or
    long before, and changed now (its value when they joined is not known)."""
    now = int(work.clock())
    contact.update(created_at=now - 86_400 if before_the_join else now, updated_at=now)
    return contact


def link_of(work: FakeWork, user: str = "7", campaign: str = "42") -> Link:
    link = work.store.links.get(PersonRef(campaign, user))
    assert link is not None
    return link


def history(work: FakeWork, user: str = "7") -> list[tuple[str, str]]:
    return [(e.event, e.outcome) for e in work.store.history.entries(PersonRef("42", user))]


def reasons(work: FakeWork, user: str = "7") -> list[str]:
    return [e.reason or "" for e in work.store.history.entries(PersonRef("42", user))]


def event(contact: dict, topic: str = "contact.lead.updated", notification: Optional[str] = "n1",
          created_at: Optional[float] = None, replayed_from: Optional[str] = None, **item: Any) -> dict:
    return ContactMessage(workspace=WS, topic=topic, notification_id=notification, created_at=created_at,
                          item={**contact, **item}, replayed_from=replayed_from).wire()


def check(user: str = "7", replayed_from: Optional[str] = None) -> dict:
    return CheckMessage(campaign_id="42", rf_user_id=user, workspace=WS, replayed_from=replayed_from).wire()


def records(*bodies: Any, receives: int = 1) -> list[dict]:
    return [{"messageId": f"m{n}", "receiptHandle": f"rh{n}", "attributes": {"ApproximateReceiveCount": str(receives)},
             "body": b if isinstance(b, str) else json.dumps(b)} for n, b in enumerate(bodies)]


def run(work: FakeWork, *bodies: Any, receives: int = 1) -> dict:
    """One SQS batch through the worker's real registry (`receives`: the try each record is on)."""
    return handle_batch(records(*bodies, receives=receives), work)


def set_value(work: FakeWork, contact: dict, value: Any) -> dict:
    contact["custom_attributes"]["signed_up"] = value
    return contact


def changed(work: FakeWork, contact: dict, value: Any, at: Optional[float] = None) -> dict:
    """The contact changed in Intercom (its webhook lost)."""
    set_value(work, contact, value)
    contact["updated_at"] = int(at if at is not None else work.clock())
    return contact


def changes(work: FakeWork, at: Optional[float] = None) -> dict:
    return ChangesMessage(workspace=WS, at=at if at is not None else work.clock()).wire()
