"""Contact events delivered out of order, through the worker's real registry, on both stores: the in-memory twin
and the DynamoDB store (moto server). A fixed sample of the orders the review's permutation runs tried on both
twins (merges, reconciliation checks and searches, notifications too large to queue whole): each ends as in-order
delivery does, with one qualification PUT at most, so the twins cannot drift apart on who is qualified."""
from __future__ import annotations

import pytest

from tests.orders import merge_play, reconcile_play
from tests.unit.scenario import world

# The plays are `make orders`' (tests/orders.py): its merge families' (her lead "A" and a user "B" with her
# email change, A is merged into B "kept" (B made after she joined) or "taken" (before), everything before any
# delivery, then a reconciliation "check", a "changes" search or nothing) and its check / search / thin families'
# (each item delivered after it happened, the contact showing the latest change delivered so far).


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
    kept, at, b_value = merge
    assert merge_play(base, evs, kept, at, b_value, last)(world(clock=clock, store=store), order) == expected


@pytest.mark.parametrize("base,evs,at,kind,order,thin_one,expected", MEANWHILE)
def test_notifications_delivered_out_of_order_around_a_reconciliation_end_as_in_order(store, clock, base, evs, at,
                                                                                     kind, order, thin_one, expected):
    play = reconcile_play(base, evs, at, kind, None, thin_one)
    assert play(world(clock=clock, store=store), tuple(len(evs) if i == "C" else i for i in order)) == expected
