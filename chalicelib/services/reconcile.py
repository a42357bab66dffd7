"""Reconciliation: a lost webhook must not lose a qualification. Every run queues a check of
the next pending leads (oldest first, through the store's pending index — never a scan); the
worker reads each contact within the shared Intercom budget and evaluates the rule."""
from __future__ import annotations

from typing import Optional

from pydantic import ValidationError

from ..messages import CheckMessage
from ..observability import count, logger
from ..ports import WorkQueue
from .deps import Stack


def reconcile(rt: Stack[WorkQueue], limit: Optional[int] = None) -> dict:
    limit = limit or rt.config.reconcile_per_run
    page = rt.store.links.pending(rt.store.cursor.get(), limit)
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
    rt.queue.send_many(checks)
    finished_round = len(page.links) < limit
    rt.store.cursor.set(None if finished_round else page.position)
    count("ReconciliationChecksQueued", len(checks))
    logger.info("reconciliation queued checks", extra={"queued": len(checks), "round_complete": finished_round})
    out = {"queued": len(checks), "round_complete": finished_round}
    return {**out, "paused_workspaces": sorted(paused)} if paused else out
