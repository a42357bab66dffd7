"""Reconciliation: a lost webhook must not lose a qualification, and no link stays unfinished. Each
run queues, for the worker (which holds the API tokens and the shared budgets):

1. the overdue links (the store's `overdue` index, never a scan): a join whose worker died holding
   its claim is queued again (a join message with just the person: the join reads the rest from RF,
   and resumes with the contact an earlier try created); a qualification left unconfirmed, or whose
   worker died, gets a check that finishes it, asking RF first. Each one's history says so;
2. one search of changed contacts per connected workspace with campaigns (qualification/changes.py):
   its cost grows with the contacts that changed, not with the leads that wait;
3. a check of the next pending leads, oldest first, one contact read each — only those younger than
   RECONCILE_SWEEP_DAYS (older ones still qualify by webhook and by the search of changes), resuming
   where the last run stopped."""
from __future__ import annotations

from typing import Optional

from pydantic import ValidationError

from ..domain.history import Entry, iso
from ..domain.link import LinkStatus, Overdue
from ..domain.qualification import UNFINISHED
from ..messages import ChangesMessage, CheckMessage, JoinMessage
from ..observability import count, logger
from ..ports import WorkQueue
from ..webhooks import RFPerson
from .deps import Stack

DAY = 86400


def reconcile(rt: Stack[WorkQueue], limit: Optional[int] = None) -> dict:
    limit = limit or rt.config.reconcile_per_run
    now = rt.clock()
    overdue = _overdue(rt, now, limit)
    changes = _changes(rt, now)
    checks, round_complete, paused = _sweep(rt, now, limit)
    rt.queue.send_many(overdue + changes + checks)
    count("ReconciliationChecksQueued", len(checks))
    summary: dict = {"queued": len(checks), "round_complete": round_complete, "searches": len(changes),
                     "overdue": len(overdue)}
    if paused:
        summary["paused_workspaces"] = paused
    logger.info("reconciliation queued its work", extra=summary)
    return summary


def sweep_bound(rt: Stack[WorkQueue]) -> str:
    """The pending index's position from which leads are still swept one by one."""
    return iso(rt.clock() - rt.config.reconcile_sweep_days * DAY)


def past_sweep_age(rt: Stack[WorkQueue]) -> int:
    """How many pending leads joined longer than RECONCILE_SWEEP_DAYS ago: no longer read one by one
    (they qualify by webhook and by the search of changed contacts). For `doctor`: it reads their
    index entries to count them, so it is not for every run."""
    return rt.store.links.count_pending(before=sweep_bound(rt))


def _overdue(rt: Stack[WorkQueue], now: float, limit: int) -> list[dict]:
    out = []
    for late in rt.store.links.overdue(now, limit):
        queued = _finish(late, now)
        if queued is None:
            continue
        message, entry = queued
        out.append(message)
        rt.store.history.append(late.link.ref, [entry])
    if out:
        count("ReconciliationOverdueLinks", len(out))
        logger.warning("reconciliation found unfinished links", extra={"overdue": len(out)})
    return out


def _finish(late: Overdue, now: float) -> Optional[tuple[dict, Entry]]:
    """The message that finishes an overdue link, and the history entry that names it."""
    link, since = late.link, iso(late.lease_until)
    details = {"status": link.status.value, "qualification": link.qualification and link.qualification.value,
               "lease_ended_at": since, "overdue_seconds": round(now - late.lease_until)}
    if link.status is LinkStatus.IN_PROGRESS:
        message = JoinMessage(campaign_id=link.campaign_id, rf_user_id=link.rf_user_id,
                              person=RFPerson(id=link.rf_user_id, campaign_id=link.campaign_id)).wire()
        return message, Entry("reconciliation", "stuck_join", (
            f"the join was still in progress when its claim's lease ended at {since} (the worker holding it "
            "died): queued again; it reads the person from Referral Factory and resumes with what the "
            "earlier try recorded"), details)
    if link.qualification in UNFINISHED:
        message = CheckMessage(campaign_id=link.campaign_id, rf_user_id=link.rf_user_id,
                               workspace=link.workspace).wire()
        why = ("Referral Factory had not confirmed it" if link.qualification.value == "unconfirmed"
               else "the worker qualifying it died")
        return message, Entry("reconciliation", "stuck_qualification", (
            f"the qualification was still {link.qualification.value} at {since} ({why}): queued a check that "
            "asks Referral Factory first and finishes it"), details)
    return None


def _changes(rt: Stack[WorkQueue], now: float) -> list[dict]:
    """One search of changed contacts per connected workspace that has campaigns."""
    out = []
    for workspace in sorted(rt.store.connections.workspaces()):
        conn = rt.store.connections.workspace(workspace)
        if conn is None or conn.status != "active" or "token" not in conn.secrets:
            continue
        if not rt.store.settings.campaigns(workspace):
            continue
        out.append(ChangesMessage(workspace=workspace, at=now,
                                  lookback=rt.config.reconcile_sweep_days * DAY).wire())
    return out


def _sweep(rt: Stack[WorkQueue], now: float, limit: int) -> tuple[list[dict], bool, list[str]]:
    """Checks of the next pending leads younger than the sweep's age, oldest first (and the
    disconnected workspaces whose leads were left out)."""
    bound = iso(now - rt.config.reconcile_sweep_days * DAY)
    cursor = rt.store.cursor.get()
    page = rt.store.links.pending(cursor if cursor and cursor > bound else bound, limit)
    checks = []
    # A disconnected workspace's leads are not checked: each check would only add a dead letter
    # every run. They are checked again once the workspace is connected.
    paused = {ws for ws in {link.workspace for link in page.links}
              if (conn := rt.store.connections.workspace(ws)) is not None and conn.status == "disconnected"}
    for link in page.links:
        if link.contact_id and not link.contact_state and link.workspace not in paused:
            try:
                checks.append(CheckMessage(campaign_id=link.campaign_id, rf_user_id=link.rf_user_id,
                                           workspace=link.workspace).wire())
            except ValidationError as exc:   # a link stored by an older, laxer intake: it cannot be checked
                logger.error("link cannot be checked", extra={"campaign_id": link.campaign_id,
                                                              "rf_user_id": link.rf_user_id, "reason": str(exc)})
    round_complete = len(page.links) < limit
    rt.store.cursor.set(None if round_complete else page.position)
    return checks, round_complete, sorted(paused)
