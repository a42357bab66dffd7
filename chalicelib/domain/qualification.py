"""Qualification as a state machine: the states of a lead's qualification and the transitions the
store allows (judge.py says what a contact's value means for a link). Pure: no I/O.

    (join) ──> PENDING ──rule met, claim──> QUALIFYING ──RF yes──> QUALIFIED (final)
                                             │    ^   └──RF no (4xx)──> FAILED ──replay──> QUALIFYING
              RF's answer lost (Uncertain),  │    │ claim: ask RF first (GET the user),
              RF busy, or the worker died    v    │ and send the PUT only if RF says no
                                           UNCONFIRMED

Every first claim asks RF before its PUT (one GET): a qualification is a reward, and whether RF
holds the lead qualified already is RF's to say. Once a worker decided to qualify, the decision sticks: a try that cannot finish leaves the referral
UNCONFIRMED (never back to PENDING, where only a new sighting of the target could restart it), and
whoever resumes it — the message's retry, or reconciliation — asks Referral Factory before sending
anything when a PUT may have reached RF (a qualification is a reward: such a PUT is never sent blindly
again). RF's "no" holds while no PUT went out since (`Link.rf_said_no`): a try whose PUT the budget
held back is resumed without asking again. A QUALIFYING link whose claim's lease ran out (its worker
died) is resumed asking first."""
from __future__ import annotations

from enum import StrEnum
from typing import Mapping, Optional


class QState(StrEnum):
    PENDING = "pending"          # waiting for the contact to reach the target
    QUALIFYING = "qualifying"    # a worker holds the claim and is asking RF
    UNCONFIRMED = "unconfirmed"  # the rule was met, RF has not confirmed: whoever resumes asks RF first
    QUALIFIED = "qualified"      # RF confirmed it: final
    FAILED = "failed"            # RF refused it (a 4xx): final until a replay


#: Where a qualification may go from each state (None: a lead that has just joined).
TRANSITIONS: Mapping[Optional[QState], frozenset[QState]] = {
    None: frozenset({QState.PENDING}),
    QState.PENDING: frozenset({QState.QUALIFYING}),
    QState.QUALIFYING: frozenset({QState.QUALIFIED, QState.FAILED, QState.UNCONFIRMED,
                                  QState.QUALIFYING}),         # the last: a takeover after the lease
    QState.UNCONFIRMED: frozenset({QState.QUALIFYING}),        # a claim that asks RF first
    QState.FAILED: frozenset({QState.QUALIFYING}),             # by a replay only
    QState.QUALIFIED: frozenset(),
}
#: How a claim ends: qualified, failed, or left unconfirmed for a retry.
ENDINGS = TRANSITIONS[QState.QUALIFYING] - {QState.QUALIFYING}
#: Decided, not finished: reconciliation finishes these once their lease ran out (overdue).
UNFINISHED = frozenset({QState.QUALIFYING, QState.UNCONFIRMED})


def open_states(replay: bool) -> frozenset[QState]:
    """The states in which a contact's value still matters. A replay may retry a failed qualification
    (and only a replay: a 4xx is not retried on every webhook and reconciliation run)."""
    return frozenset({QState.PENDING, QState.QUALIFYING, QState.UNCONFIRMED} | ({QState.FAILED} if replay else set()))


def claimable(replay: bool) -> frozenset[QState]:
    """The states a claim may be taken from at once; a QUALIFYING one only once its lease ran out."""
    return open_states(replay) - {QState.QUALIFYING}


def ask_rf_first(previous: Optional[QState], rf_said_no: Optional[bool] = None) -> bool:
    """Must a claim taken from `previous` ask RF whether the user is qualified before sending the PUT?
    Yes for a link's first claim (from PENDING): RF may hold them qualified already, which the bridge
    cannot know (a lead who qualified before the bridge was installed, then backfilled; a lead the
    bridge forgot, whose earlier PUT reached RF, and who joined again, whatever contact they have
    now). Yes when an earlier try may have sent it: its worker died mid-call, or it was left
    unconfirmed after a PUT that may have reached RF. Not when it was left unconfirmed with RF's "not
    qualified" still true (`rf_said_no`: RF was asked, or never sent anything, and no PUT went out
    since). Yes for a replay of a FAILED one: RF refused the PUT, and may have been set right by hand
    since (the owner qualified the lead in RF, then replayed)."""
    if previous is QState.UNCONFIRMED:
        return not rf_said_no
    return previous in UNFINISHED or previous in (QState.PENDING, QState.FAILED)


def may_have_qualified(previous: Optional[QState], rf_said_no: Optional[bool]) -> bool:
    """May a PUT of an earlier try (its claim taken from `previous`) have qualified the user in RF, with
    no "no" from RF since? Its worker died mid-call (a takeover), or it was left unconfirmed after a
    PUT that may have reached RF. (Not a FAILED one's: RF refused it.)"""
    return previous is QState.QUALIFYING or (previous is QState.UNCONFIRMED and not rf_said_no)
