"""Qualification as a state machine: the states of a lead's qualification and the transitions the
store allows (judge.py says what a contact's value means for a link). Pure: no I/O.

    (join) ──> PENDING ──claim──> QUALIFYING ──RF yes──> QUALIFIED (final)
                  ^                  │  │
                  └──RF busy (5xx)───┘  └──RF no (4xx)──> FAILED ──replay──> QUALIFYING

A QUALIFYING link whose claim's lease ran out (its worker died) may be claimed again."""
from __future__ import annotations

from enum import StrEnum
from typing import Mapping, Optional


class QState(StrEnum):
    PENDING = "pending"          # waiting for the contact to reach the target
    QUALIFYING = "qualifying"    # a worker holds the claim and is asking RF
    QUALIFIED = "qualified"      # RF confirmed it: final
    FAILED = "failed"            # RF refused it (a 4xx): final until a replay


#: Where a qualification may go from each state (None: a lead that has just joined).
TRANSITIONS: Mapping[Optional[QState], frozenset[QState]] = {
    None: frozenset({QState.PENDING}),
    QState.PENDING: frozenset({QState.QUALIFYING}),
    QState.QUALIFYING: frozenset({QState.QUALIFIED, QState.FAILED, QState.PENDING,
                                  QState.QUALIFYING}),         # the last: a takeover after the lease
    QState.FAILED: frozenset({QState.QUALIFYING}),             # by a replay only
    QState.QUALIFIED: frozenset(),
}
#: How a claim ends: qualified, failed, or released for a retry.
ENDINGS = TRANSITIONS[QState.QUALIFYING] - {QState.QUALIFYING}


def open_states(replay: bool) -> frozenset[QState]:
    """The states in which a contact's value still matters. A replay may retry a failed qualification
    (and only a replay: a 4xx is not retried on every webhook and reconciliation run)."""
    return frozenset({QState.PENDING, QState.QUALIFYING} | ({QState.FAILED} if replay else set()))


def claimable(replay: bool) -> frozenset[QState]:
    """The states a claim may be taken from at once; a QUALIFYING one only once its lease ran out."""
    return open_states(replay) - {QState.QUALIFYING}


def allowed(current: Optional[QState], to: QState, replay: bool = False) -> bool:
    if current is QState.FAILED and to is QState.QUALIFYING:
        return replay
    return to in TRANSITIONS[current]
