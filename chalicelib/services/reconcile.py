"""Reconciliation: a lost webhook must not lose a qualification, and no link stays unfinished. Each
run queues, for the worker (which holds the API tokens and the shared budgets):

1. the overdue links (the store's `overdue` index, never a scan): a join whose worker died holding
   its claim is queued again (a join message with just the person: the join reads the rest from RF,
   and resumes with the contact an earlier try created); a qualification left unconfirmed, or whose
   worker died, gets a check that finishes it (asking RF first where a PUT may have reached it). Each one's history says so. The link
   then leaves the index for RECONCILE_RETRY_SECONDS (`requeue`), so that the next runs do not queue
   it again while its message still waits in the queue; if it is still unfinished after that, it is
   queued again. Marked before it is sent (of two runs at once, one queues it); a run that fails before its
   message is sent (the send, or a later link's mark) puts it back (`unqueue`): due at the next run;
2. one search of changed contacts per connected workspace with campaigns (qualification/changes.py):
   its cost grows with the contacts that changed, not with the leads that wait (after a rule change that may
   meet values already reached, once from the oldest pending lead);
3. a check of the next pending leads, oldest first, one contact read each — only those younger than
   RECONCILE_SWEEP_DAYS (older ones still qualify by webhook and by the search of changes), and not
   those linked in a workspace their campaign left (never judged there), resuming where the last run
   stopped. A round over them begins at most once per RECONCILE_RETRY_SECONDS:
   when they fit in one run, the next runs do not check them all again while the last round's
   checks still wait in the queue;
4. the write of each referral count an erasure (`bridge forget`) lowered, once, a minute after it
   (LinkRepository.counts_owed: the erasure marked it in its own write, so a forget stopped before it
   asked, or whose send failed, is repaired): made only if Intercom lacks the count (the forget's own
   ask usually wrote it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, partial
from typing import Optional

from pydantic import ValidationError

from ..domain.history import Entry, epoch, iso
from ..domain.link import LinkStatus, Overdue
from ..domain.qualification import UNFINISHED
from ..domain.settings import valid_or_none
from ..messages import ChangesMessage, CheckMessage, JoinMessage
from ..observability import count, logger
from ..ports import NotSent, WorkQueue
from ..ports.store import PENDING_SWEEP, SWEEP_ROUND, Connection
from ..webhooks import RFPerson, describe
from .deps import Stack
from .qualification.changes import back_name, token_refused
from .referral_count import messages as count_messages

DAY = 86400


def reconcile(rt: Stack[WorkQueue], limit: Optional[int] = None) -> dict:
    limit = limit or rt.config.reconcile_per_run
    now = rt.clock()
    retry_at = now + rt.config.reconcile_retry
    overdue: list[tuple[Overdue, dict]] = []
    try:            # (each overdue link is marked as it is added: whatever keeps its message from being sent...)
        _overdue(rt, now, limit, retry_at, overdue)
        changes = _changes(rt, now)
        sweep = _sweep(rt, now, limit)
        owed = rt.store.links.counts_owed(now, limit)
        rt.queue.send_many([m for _, m in overdue] + changes + sweep.checks +
                           count_messages({ref for ref, _ in owed}, unless_written=True))
    except Exception as exc:
        _unqueue(rt, overdue, retry_at, exc)
        raise
    for position, name in sweep.cursor:          # once its checks are queued: a failed send repeats the page
        rt.store.cursor.set(position, name)
    for ref, due in owed:                        # (likewise: asked again by the next run)
        rt.store.links.count_asked(ref, due)
    count("ReconciliationChecksQueued", len(sweep.checks))
    summary: dict = {"queued": len(sweep.checks), "round_complete": sweep.round_complete,
                     "searches": len(changes), "overdue": len(overdue)}
    if sweep.next_round_at is not None:
        summary["next_round_at"] = iso(sweep.next_round_at)
    if sweep.paused:
        summary["paused_workspaces"] = sweep.paused
    if owed:
        summary["referral_count_writes"] = len(owed)
    logger.info("reconciliation queued its work", extra=summary)
    return summary


def sweep_bound(rt: Stack[WorkQueue]) -> str:
    """The pending index's position from which leads are still swept one by one."""
    return iso(rt.clock() - rt.config.reconcile_sweep_days * DAY)


def past_sweep_age(rt: Stack[WorkQueue], limit: Optional[int] = None) -> int:
    """How many pending leads joined longer than RECONCILE_SWEEP_DAYS ago, up to `limit`: no longer read one by one
    (they qualify by webhook and by the search of changed contacts). For `doctor`: it reads their
    index entries to count them, so it is not for every run."""
    return rt.store.links.count_pending(before=sweep_bound(rt), limit=limit)


def _overdue(rt: Stack[WorkQueue], now: float, limit: int, retry_at: float, out: list[tuple[Overdue, dict]]) -> None:
    """The overdue links and the messages that finish them, into `out`. Each link is requeued first (one conditional
    write with its history entry), then added: a link claimed, finished or queued by another run since it was read is
    left to them."""
    for late in rt.store.links.overdue(now, limit):
        queued = _finish(late, now, retry_at)
        if queued is None:
            continue
        message, entry = queued
        if rt.store.links.requeue(late, retry_at, [entry]):
            out.append((late, message))
    if out:
        count("ReconciliationOverdueLinks", len(out))
        logger.warning("reconciliation found unfinished links", extra={"overdue": len(out)})


def _unqueue(rt: Stack[WorkQueue], overdue: list[tuple[Overdue, dict]], retry_at: float, exc: Exception) -> None:
    """The overdue links whose messages were not sent (the queue's refusals: NotSent names them; any other failure,
    of the send or before it: all of them) are due again, for the next run, not after RECONCILE_RETRY_SECONDS."""
    refused = {id(m): reason for m, reason in exc.refused} if isinstance(exc, NotSent) else None
    for late, message in overdue:
        if refused is None or id(message) in refused:
            why = (f"the run failed ({type(exc).__name__}) before the queue took it" if refused is None else
                   f"the work queue did not take it ({refused[id(message)]})")
            rt.store.links.unqueue(late, retry_at, [Entry("reconciliation", "not_queued", (
                f"the message that finishes it was not sent: {why}; the next run queues it again"))])


def _finish(late: Overdue, now: float, retry_at: float) -> Optional[tuple[dict, Entry]]:
    """The message that finishes an overdue link, and the history entry that names it."""
    link, since, times = late.link, iso(late.lease_until), late.requeued + 1
    details = {"status": link.status.value, "qualification": link.qualification and link.qualification.value,
               "lease_ended_at": since, "overdue_seconds": round(now - late.lease_until), "queued": times,
               "retry_at": iso(retry_at)}
    again = (f"; if it is still unfinished at {iso(retry_at)}, reconciliation queues it again"
             " (until then, the message queued now has its chance to run)")
    if link.status is LinkStatus.IN_PROGRESS:
        message = JoinMessage(campaign_id=link.campaign_id, rf_user_id=link.rf_user_id,
                              person=RFPerson(id=link.rf_user_id, campaign_id=link.campaign_id)).wire()
        stuck = (f"the join was still in progress when its claim's lease ended at {since} (the worker holding it "
                 "died)") if times == 1 else (
                 f"the join is still in progress ({late.requeued} join(s) queued since its claim's lease ended "
                 f"at {since} did not finish it)")
        return message, Entry("reconciliation", "stuck_join", (
            f"{stuck}: queued again; it reads the person from Referral Factory and resumes with what the "
            f"earlier try recorded{again}"), details)
    if link.qualification in UNFINISHED:
        message = CheckMessage(campaign_id=link.campaign_id, rf_user_id=link.rf_user_id,
                               workspace=link.workspace).wire()
        why = ("Referral Factory had not confirmed it" if link.qualification.value == "unconfirmed"
               else "the worker qualifying it died")
        stuck = f"the qualification was still {link.qualification.value} at {since} ({why})" if times == 1 else (
            f"the qualification is still {link.qualification.value} ({why} at {since}; {late.requeued} check(s) "
            "queued since did not finish it)")
        return message, Entry("reconciliation", "stuck_qualification", (
            f"{stuck}: queued a check that finishes it (asking Referral Factory first where its answer is not "
            f"known){again}"), details)
    return None


def searchable(conn: Optional[Connection]) -> bool:
    """Whether reconciliation searches the workspace's changed contacts: it is connected, with its token
    (a disconnected one waits for the reconnect)."""
    return conn is not None and conn.status == "active" and "token" in conn.secrets


def _changes(rt: Stack[WorkQueue], now: float) -> list[dict]:
    """One search of changed contacts per connected workspace that has campaigns. After a rule change that may
    qualify values contacts reached before it (the workspace's marker: `settings apply`), the search looks back
    to the oldest pending lead too (one read of the pending index): a lead older than the sweep's
    age, whose contact reached the new target under the old one, is found only so."""
    out, oldest = [], cache(partial(_oldest_pending, rt))      # (the same for every workspace: read once, if asked)
    for workspace in sorted(rt.store.connections.workspaces()):
        if not searchable(rt.store.connections.workspace(workspace)):
            continue
        if not rt.store.settings.campaigns(workspace):
            continue
        rule_change = rt.store.cursor.get(back_name(workspace))
        out.append(ChangesMessage(workspace=workspace, at=now, lookback=rt.config.reconcile_sweep_days * DAY,
                                  rule_change=rule_change,
                                  back_to=oldest() if rule_change is not None else None).wire())
    return out


def _oldest_pending(rt: Stack[WorkQueue]) -> Optional[float]:
    """When the oldest pending lead was placed in the pending index (it joined, or backfill took its baseline:
    its contact was written then, or its value then is its baseline): None when no lead waits."""
    first = rt.store.links.pending(None, 1).position
    return epoch(first.split("#", 1)[0]) if first is not None else None


@dataclass
class _Sweep:
    checks: list[dict] = field(default_factory=list)
    round_complete: bool = True
    paused: list[str] = field(default_factory=list)       # workspaces whose leads were left out (disconnected,
                                                          # or their token refused)
    cursor: list[tuple[Optional[str], str]] = field(default_factory=list)   # (position, name) to write
    next_round_at: Optional[float] = None                 # no round runs: the next one begins then


def _sweep(rt: Stack[WorkQueue], now: float, limit: int) -> _Sweep:
    """Checks of the next pending leads younger than the sweep's age, oldest first. Between rounds,
    a new one begins once the last one began RECONCILE_RETRY_SECONDS ago: its checks had their
    chance to run."""
    bound = iso(now - rt.config.reconcile_sweep_days * DAY)
    cursor = rt.store.cursor.get()
    out = _Sweep()
    if cursor is None:
        began = rt.store.cursor.get(SWEEP_ROUND)
        if began is not None and now < float(began) + rt.config.reconcile_retry:
            out.next_round_at = float(began) + rt.config.reconcile_retry
            return out
        out.cursor.append((repr(now), SWEEP_ROUND))
    page = rt.store.links.pending(cursor if cursor and cursor > bound else bound, limit)
    # A disconnected workspace's leads are not checked: each check would only add a dead letter
    # every run. They are checked again once the workspace is connected. Nor while Intercom refuses its
    # token (revoked: the app uninstalled): its search of changed contacts, still queued each run, tells
    # when a reconnect made it work again.
    paused = {ws for ws in {link.workspace for link in page.links}
              if (conn := rt.store.connections.workspace(ws)) is not None
              and (conn.status == "disconnected" or token_refused(rt.store.cursor, ws))}
    # Nor are leads linked in a workspace their campaign left (`settings apply --move-workspace`): they are
    # never judged there (Qualifier.moved_away), so a check would only note that again. One settings read
    # per campaign of the page.
    stored = {c: rt.store.settings.get(c) for c in sorted({link.campaign_id for link in page.links})}
    now_in = {c: s.workspace if s is not None else None for c, s in stored.items()}
    # Nor are the leads of a campaign with no rule now (its settings deleted, or its rule turned off): nothing judges
    # them. They stay in the index: settings applied again with a rule make the next round check them (a lead that met
    # the rule meanwhile, its webhook judged under none, qualifies so). Invalid settings are the check's to say.
    ruleless = {c for c, s in stored.items()
                if s is None or ((valid := valid_or_none(s.document)) is not None and valid.qualification is None)}
    for link in page.links:
        # A qualification under way (its claim's lease runs, or it is overdue) is the overdue
        # index's: a check from here would be the same work queued twice.
        if link.qualification in UNFINISHED:
            continue
        if now_in.get(link.campaign_id, link.workspace) not in (None, link.workspace) or link.campaign_id in ruleless:
            continue
        if link.contact_id and not link.contact_state and link.workspace not in paused:
            try:
                out.checks.append(CheckMessage(campaign_id=link.campaign_id, rf_user_id=link.rf_user_id,
                                               workspace=link.workspace).wire())
            except ValidationError as exc:   # a link stored by an older, laxer intake: it cannot be checked
                logger.error("link cannot be checked", extra={"campaign_id": link.campaign_id,
                                                              "rf_user_id": link.rf_user_id, "reason": describe(exc)})
    out.round_complete = len(page.links) < limit
    out.cursor.append((None if out.round_complete else page.position, PENDING_SWEEP))
    out.paused = sorted(paused)
    return out
