"""`bridge pointers`: find, and with --apply clean, the contact and email pointers earlier versions left.

A one-off maintenance command: it walks every pointer of the table with a paginated scan (the pointers have no index
of their own; nothing else in the bridge scans, and doctor never runs this), reads the links they name, and judges
each reference (domain/pointers.py). With `apply`, a stale reference is taken off its pointer in a write that holds
only while the link still does not make it its own (a worker's write meanwhile is never undone: it is left, and said),
and a link written before `contact_workspace` existed records the workspace its contact's pointer is in. A dry run
writes nothing."""
from __future__ import annotations

from collections import Counter
from typing import Callable, Optional

from ..domain.pointers import CONTACT, DROP, PLACE, REPORT, Finding, Stale, judge, unplaced_candidate
from ..observability import mask_email
from ..ports.store import Store

PAGE = 500        # items the scan reads a page

Progress = Callable[[int, int], None]       # (pointers read, findings)

WHY = {
    Stale.ERASED: "her link is gone: `bridge forget` erased her, the pointer still names her",
    Stale.MOVED: "her link is on another contact (or none) now",
    Stale.ELSEWHERE: "her link's pointer of this contact is in another workspace",
    Stale.EMAIL_CHANGED: "her link has another email now",
    Stale.UNPLACED: "her link's contact pointer is here, in a workspace the link (written before it recorded one) "
                    "does not name",
    Stale.UNFINISHED: "her link is gone: an interrupted `bridge forget`, or an address she had before that an "
                      "earlier version kept: `bridge forget <this pointer's address>` finishes it; docs/operating.md, "
                      "Erasure, says how to read the address",
}
DONE = {DROP: "dropped", PLACE: "recorded on her link", REPORT: "left"}
WOULD = {DROP: "would drop", PLACE: "would record it on her link", REPORT: "left"}
REFUSED = "left: changed meanwhile (a worker's write), run again"


def sweep(store: Store, apply: bool = False, progress: Optional[Progress] = None) -> dict:
    after: Optional[str] = None
    read = references = 0
    findings: list[dict] = []
    outcomes: Counter[str] = Counter()
    while True:
        page = store.links.pointers(after, PAGE)
        read += len(page.pointers)
        # (the pointer in the workspace a link recording none assumes: does it name her too?)
        wanted = {(page.placed[ref].link.workspace, p.value) for p in page.pointers for ref in p.refs
                  if unplaced_candidate(p, page.placed.get(ref))}
        there = store.lookup.look_up(contacts=sorted(wanted)).by_contact if wanted else {}
        for pointer in page.pointers:
            for ref in sorted(pointer.refs):
                references += 1
                placed = page.placed.get(ref)
                held = placed is not None and ref in there.get((placed.link.workspace, pointer.value), frozenset())
                finding = judge(pointer, ref, placed, held)
                if finding is None:
                    continue
                outcome = _act(store, finding) if apply else WOULD[finding.action]
                outcomes[outcome] += 1
                findings.append(_view(finding, outcome))
        if progress:
            progress(read, len(findings))
        after = page.next
        if after is None:
            break
    by = Counter(f["stale"] for f in findings)
    unfinished = by[Stale.UNFINISHED.value]
    return {"dry_run": not apply, "pointers_read": read, "references_read": references,
            "found": {s.value: by[s.value] for s in Stale if by[s.value]},
            # (--apply's to write; an unfinished erasure is left for `bridge forget`, which finds her by it)
            "to_clean": len(findings) - unfinished, "erasures_unfinished": unfinished,
            "outcomes": dict(sorted(outcomes.items())), "changed_meanwhile": outcomes[REFUSED],
            "findings": findings}


def _act(store: Store, finding: Finding) -> str:
    if finding.action == REPORT:
        return DONE[REPORT]
    write = store.links.drop_reference if finding.action == DROP else store.links.place_contact
    return DONE[finding.action] if write(finding) else REFUSED


def _view(finding: Finding, outcome: str) -> dict:
    pointer = finding.pointer
    return {"pointer": pointer.kind, "workspace": pointer.workspace,
            **({"contact_id": pointer.value} if pointer.kind == CONTACT else {"email": mask_email(pointer.value)}),
            "campaign_id": finding.ref.campaign_id, "rf_user_id": finding.ref.rf_user_id,
            **({"link_contact_id": finding.read.contact_id, "link_workspace": finding.read.workspace}
               if finding.read is not None and pointer.kind == CONTACT else {}),
            "stale": finding.stale.value, "why": WHY[finding.stale], "outcome": outcome}

