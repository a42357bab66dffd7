"""Contact events delivered out of order, through the worker's real registry, on both stores: the in-memory twin
and the DynamoDB store (moto server). A fixed sample of the orders the review's permutation runs tried on both
twins (merges, reconciliation checks and searches, notifications too large to queue whole): each ends as in-order
delivery does, with one qualification PUT at most, so the twins cannot drift apart on who is qualified."""
from __future__ import annotations

from typing import Optional

import pytest

from chalicelib.domain.qualification import QState
from tests.unit.scenario import changes, check, event, joined, link_of, run, world
from tests.unit.test_contact_events import thin

Event = tuple[str, str, int]          # (contact "A" the lead she joined on, "B" a user with her email; value; seconds)


def outcome(work) -> tuple[bool, int]:
    qualified = link_of(work).qualification in (QState.QUALIFIED, QState.UNCONFIRMED)
    return qualified, sum(1 for c in work.apis.rf_.calls if c.startswith("qualify"))


def after_merge(work, base: str, evs: list[Event], merge: Optional[tuple[str, int, str]], order: tuple[int, ...],
                last: Optional[str]) -> tuple[bool, int]:
    """Everything happened before any delivery: the lead's (and the user's) notifications, the merge (`merge`:
    A "kept" or "taken" into B, at T+seconds, B's value then; its notification is the last index), delivered in
    `order`, then `last`: a reconciliation "check" of her, a "changes" search, or nothing."""
    _, a = joined(work, signed_up=base)
    t = int(work.clock())
    contacts = {"A": a}
    if merge:
        kept, at, b_value = merge
        b = work.apis.intercom_.add("ann@example.com", role="user", signed_up=b_value)
        made = t + 1 if kept == "kept" else 1             # made after she joined (kept), or long before (taken)
        b.update(created_at=made, updated_at=made)
        contacts["B"] = b
    msgs = [event(dict(contacts[c], custom_attributes={"signed_up": v}, updated_at=t + dt),
                  "contact.user.updated" if c == "B" else "contact.lead.updated", f"e{n}", created_at=t + dt)
            for n, (c, v, dt) in enumerate(evs)]
    if merge:
        survivor = dict(b, custom_attributes={"signed_up": b_value}, updated_at=made)
        msgs.append(event(survivor, "contact.merged", "m", created_at=t + at, merged_from={"type": "contact",
                                                                                            "id": a["id"]}))
    for name, contact in contacts.items():
        mine = [(dt, v) for c, v, dt in evs if c == name]
        if mine:
            dt, v = max(mine, key=lambda e: e[0])
            contact["custom_attributes"]["signed_up"], contact["updated_at"] = v, t + dt
    if merge:
        work.apis.intercom_.merge(a["id"], b["id"])
    work.clock.now = t + 1000
    for i in order:
        run(work, msgs[i])
    if last == "check":
        run(work, check())
    elif last == "changes":
        run(work, changes(work, at=t))
    return outcome(work)


def meanwhile(work, base: str, evs: list[tuple[str, int]], at: int, kind: str, order: tuple, thin_one: Optional[int]
              ) -> tuple[bool, int]:
    """The lead's notifications (one of them, `thin_one`, too large to queue whole) and a reconciliation `kind`
    ("check" of her, or "changes" search) at T+`at` ("C" in `order`), delivered in `order`: the contact shows the
    value of the latest change delivered so far, as Intercom would by then."""
    _, a = joined(work, signed_up=base)
    t = int(work.clock())
    msgs = [event(dict(a, custom_attributes={"signed_up": v}, updated_at=t + dt), "contact.lead.updated", f"e{n}",
                  created_at=t + dt) for n, (v, dt) in enumerate(evs)]
    now = 0
    for i in order:
        now = max(now, at if i == "C" else evs[i][1])
        happened = [(dt, v) for v, dt in evs if dt <= now]
        dt, v = max(happened) if happened else (None, base)
        a["custom_attributes"]["signed_up"], a["updated_at"] = v, (t + dt if dt is not None else a["created_at"])
        work.clock.now = t + now + 1
        if i == "C":
            run(work, check() if kind == "check" else changes(work, at=t))
        else:
            run(work, thin(msgs[i]) if i == thin_one else msgs[i])
    return outcome(work)


QUALIFIED, NOT = (True, 1), (False, 0)

AFTER_MERGE = [   # (baseline, events, merge, order, last, as in order)
    ("No", [("A", "Yes", 10), ("B", "No", 20)], ("kept", 15, "Yes"), (2, 1, 0), None, QUALIFIED),
    ("No", [("A", "No", 10), ("B", "Yes", 20)], ("taken", 15, "No"), (1, 2, 0), "check", QUALIFIED),
    ("Yes", [("A", "Yes", 10), ("A", "No", 20), ("B", "Yes", 30)], ("kept", 25, "No"), (3, 2, 0, 1), "changes",
     QUALIFIED),
    ("No", [("A", "No", 10), ("A", "No", 20), ("B", "No", 30)], ("taken", 25, "Yes"), (2, 3, 1, 0), "check", NOT),
]

MEANWHILE = [     # (baseline, events, reconciliation at, kind, order, the thin one, as in order)
    ("No", [("Yes", 10), ("No", 20)], 15, "check", ("C", 1, 0), 1, QUALIFIED),
    ("Yes", [("No", 10), ("Yes", 20), ("No", 30)], 25, "changes", (0, "C", 1, 2), 2, QUALIFIED),
    ("No", [("No", 10), ("No", 20), ("Yes", 30)], 35, "check", ("C", 2, 0, 1), 1, QUALIFIED),
    ("Yes", [("Yes", 10), ("No", 20)], 25, "changes", (1, "C", 0), 1, NOT),
]


@pytest.mark.parametrize("base,evs,merge,order,last,expected", AFTER_MERGE)
def test_notifications_delivered_out_of_order_after_a_merge_end_as_in_order(store, clock, base, evs, merge, order,
                                                                           last, expected):
    assert after_merge(world(clock=clock, store=store), base, evs, merge, order, last) == expected


@pytest.mark.parametrize("base,evs,at,kind,order,thin_one,expected", MEANWHILE)
def test_notifications_delivered_out_of_order_around_a_reconciliation_end_as_in_order(store, clock, base, evs, at,
                                                                                     kind, order, thin_one, expected):
    assert meanwhile(world(clock=clock, store=store), base, evs, at, kind, order, thin_one) == expected
