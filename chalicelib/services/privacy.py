"""Erasure: `bridge forget <email>` removes a person from everything the bridge keeps.

No table scan: the workspaces index names every workspace ever connected or configured; the
`EMAIL#<workspace>#<email>` pointers lead to the person's links (every campaign), and each link to
its history and its contact pointer. Dead letters about the person are deleted from the
dead-letter queue, and the edge's samples of refused webhooks about them from its log. Safe to
repeat: the pointers of the email given go last (one her link took since it was read goes with the
link), so an interrupted run is finished by running it again. It reads the work queue's count first
and warns while work waits there (a join of theirs would link them again)."""
from __future__ import annotations

from collections import Counter
from typing import Any

from ..domain.link import PersonRef
from ..domain.people import email_hash
from ..observability import mask_email
from ..ports import DeadLetterQueue, NotSent, ReceivedLetter
from ..ports.edge import UNKNOWN, RefusalSample, campaign_scope, fields_scope, workspace_scope
from .dead_letters import APPROXIMATE, CUT, HOLDERS, body_of, holding
from .deps import Stack
from .referral_count import messages as count_messages

Erasing = Stack[DeadLetterQueue]


FORGET_SECONDS = 300    # dead letters held while forget reads them (each visible again at once after)


#: Said when messages wait in the work queue as `forget` runs (docs/operating.md, "Erasure").
QUEUED = ("{n} message(s) wait in the work queue: one may be this person's and bring them back — run `bridge forget` "
          "again once it is empty")


def forget(rt: Erasing, email: str) -> dict:
    email = email.strip().lower()
    # Read first: the work waiting as the erasure starts (a join of theirs there links them again);
    # the count writes the erasure queues itself are not counted.
    queued: int | str = rt.queue.work_count() if rt.config.queue_url else "not checked: BRIDGE_QUEUE_URL is not set"
    workspaces = sorted(rt.store.connections.workspaces())
    found = rt.store.lookup.look_up(emails=[(ws, email) for ws in workspaces])
    links = [link for _, link in sorted(found.links.items())
             if (link.email or "").strip().lower() == email]   # a pointer never erases someone else
    people: list[dict] = []
    history = pointer_count = 0
    lowered: set[PersonRef] = set()
    for link in links:
        done = rt.store.links.erase(link)
        # The contact the link held as it was erased: a worker may have moved it since it was read (a merge
        # followed, a join finished elsewhere); the one read is named too, as the link's former contact.
        # A contact an earlier try recorded in another workspace (the campaign moved since) is named with it: its
        # notifications and refusals are that workspace's.
        held = done.contact_id or link.contact_id
        held_in = done.contact_workspace or link.workspace
        people.append({"campaign_id": link.campaign_id, "rf_user_id": link.rf_user_id,
                       "workspace": link.workspace, "contact_id": held,
                       **({"contact_workspace": held_in} if held and held_in != link.workspace else {}),
                       **({"former_contact_id": link.contact_id} if link.contact_id not in (None, held) else {})})
        history += done.entries
        pointer_count += done.pointers
        lowered |= {done.lowered} if done.lowered else set()
    # A run interrupted after deleting a link (the given email's pointers go last) may have left its history and
    # count: a person the pointers name whose link is gone was being erased (links go only here).
    for ref in sorted(set[PersonRef]().union(*found.by_email.values()) - set(found.links)):
        history += _erase_unlinked(rt, ref)
    ledger = 0
    erased = {(p["campaign_id"], p["rf_user_id"]) for p in people}
    listed = [(ws, c) for ws in workspaces for c in rt.store.settings.campaigns(ws)]
    campaigns = sorted({c for _, c in listed})
    # A sync ledger entry names no workspace: the campaign's, unless it moved (listed under several).
    times = Counter(c for _, c in listed)
    workspace_of = {c: ws for ws, c in listed if times[c] == 1}
    for campaign_id in campaigns:
        # Contact sync's ledger: by the email, and by the contacts of the people erased (an entry may keep the
        # email their contact had before it changed in Intercom).
        contacts = sorted(c for _, c in _contacts([p for p in people if p["campaign_id"] == campaign_id]))
        for entry in rt.store.sync.forget(campaign_id, email, contacts):
            ledger += 1
            if entry.rf_user_id:    # (erased with her link too: a sync note held to this entry until now)
                history += _erase_unlinked(rt, PersonRef(campaign_id, entry.rf_user_id))
            if entry.rf_user_id and (campaign_id, entry.rf_user_id) not in erased:
                erased.add((campaign_id, entry.rf_user_id))
                people.append({"campaign_id": campaign_id, "rf_user_id": entry.rf_user_id,
                               **({"workspace": workspace_of[campaign_id]} if campaign_id in workspace_of else {}),
                               "contact_id": entry.contact_id})
    recounted = _recount(rt, lowered - {PersonRef(*p) for p in erased})
    refused = forget_samples(rt, email, people, [campaign_scope(c) for c in campaigns]
                             + [workspace_scope(w) for w in workspaces] + [UNKNOWN])
    fields = forget_samples(rt, email, people, [fields_scope(c) for c in campaigns])   # doctor's fields not written
    dead: int | str = "not checked: BRIDGE_DLQ_URL is not set"
    hidden, cut = 0, False
    if rt.config.dlq_url:
        dead, hidden, cut = forget_dead_letters(rt, email, {(p["campaign_id"], p["rf_user_id"]) for p in people},
                                           _contacts(people))
    for workspace, _ in sorted(found.by_email):
        rt.store.lookup.forget_email(workspace, email)
        pointer_count += 1
    return {"email": mask_email(email), "workspaces_searched": len(workspaces), "links": len(people),
            "history_entries": history, "pointers": pointer_count, "sync_ledger_entries": ledger,
            "referral_counts_rewritten": recounted, "refused_webhook_samples": refused,
            "field_error_samples": fields, "dead_letters": dead,
            "queued_work": queued,
            **({"dead_letters_not_seen": f"about {hidden} more were not read ({CUT}): run `bridge forget` again"}
               if cut else
               {"dead_letters_not_seen": f"about {hidden} more were hidden by another command ({HOLDERS}) and not "
                                         f"looked at: run `bridge forget` again when it ends ({APPROXIMATE})"} if hidden else {}),
            "people": people,
            "not_erased_here": "Intercom and Referral Factory keep their own copies of this person: erase them "
                               "there too (the contact ids and RF user ids above). The bridge keeps nothing that "
                               "recognises them: while they are in Referral Factory, a join of theirs or `bridge "
                               "backfill CAMPAIGN --apply` brings them back"}


def _contacts(people: list[dict]) -> set[tuple[Any, str]]:
    """(workspace, contact id) of each contact the people erased held: theirs (in the workspace of the try that
    recorded it), and a former one (a link a worker moved as it was erased)."""
    held = {(p.get("contact_workspace") or p.get("workspace"), p["contact_id"]) for p in people if p.get("contact_id")}
    return held | {(p.get("workspace"), p["former_contact_id"]) for p in people if p.get("former_contact_id")}


def _erase_unlinked(rt: Erasing, ref: PersonRef) -> int:
    """The history and (as a referrer) the count of someone with no link: how many entries."""
    rt.store.links.forget_referrals(ref)
    return rt.store.history.erase(ref)


def _recount(rt: Erasing, referrers: set[PersonRef]) -> int | str:
    """A lead erased took themselves off their referrer's count (LinkRepository.erase, for whom the
    stored link counted): the count is written to the referrer's contact again, by the worker (one
    referral.count message each, 10 a send). The erasure marked each count as owing its write, so a run
    that stops before this send (killed, a failed send) is repaired by reconciliation, which asks
    again; so are the messages SQS refused in a batch (the others were sent): it says how many."""
    if referrers and not rt.config.queue_url:
        return f"{len(referrers)}, not yet written to Intercom: BRIDGE_QUEUE_URL is not set (reconciliation's next " \
               "run writes it)"
    try:
        rt.queue.send_many(count_messages(referrers))
    except NotSent as refused:
        return f"{len(referrers)}, {len(refused.refused)} of them not yet written to Intercom: {refused} " \
               "(reconciliation's next run writes them)"
    return len(referrers)


def forget_samples(rt: Erasing, email: str, people: list[dict], scopes: list[str]) -> int:
    """Delete the edge's samples in `scopes` about the person (refused webhooks, the scopes `explain` reads;
    fields joins could not write, doctor's): by their email's digest (or the bare hash an older version kept,
    until those samples expire), or by the RF user id or contact id of
    someone erased here, in the same campaign or workspace (or their digests: an unauthenticated body's; a
    notification's contact, in any scope).
    The counters stay: they hold nobody."""
    edge = rt.store.edge
    hashed, digested = email_hash(email), edge.digest("email", email)
    erased = {(p["campaign_id"], p["rf_user_id"]) for p in people}
    erased_digests = {(c, edge.digest("rf_user", r)) for c, r in erased}
    contacts = _contacts(people)
    contact_digests = {edge.digest("contact", c) for _, c in contacts}     # an unsigned notification's, any scope

    def about(scope: str):
        def match(sample: RefusalSample) -> bool:
            campaign = sample.campaign_id or (scope.split(":", 1)[1] if scope.startswith("campaign:") else None)
            workspace = scope.split(":", 1)[1] if scope.startswith("workspace:") else None
            return (sample.email_hash == hashed or (campaign, sample.rf_user_id) in erased
                    or (workspace, sample.contact_id) in contacts or sample.email_digest == digested
                    or (campaign, sample.rf_user_digest) in erased_digests
                    or (sample.contact_digest is not None and sample.contact_digest in contact_digests))
        return match
    return sum(edge.forget(scope, about(scope)) for scope in scopes)


def _mentions(value: Any, email: str) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == email
    if isinstance(value, dict):
        return any(_mentions(v, email) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, email) for v in value)
    return False


def _about(body: Any, email: str, people: set, contacts: set) -> bool:
    if not isinstance(body, dict):
        return False
    if (str(body.get("campaign_id")), str(body.get("rf_user_id"))) in people:
        return True
    item = body["item"] if isinstance(body.get("item"), dict) else {}
    if (body.get("workspace"), item.get("id")) in contacts:
        return True
    return _mentions(body, email)


def forget_dead_letters(rt: Erasing, email: str, people: set, contacts: set) -> tuple[int, int, bool]:
    """Delete dead letters about the person; the others are visible again at once (and so are all,
    however it ends). (deleted, about how many more another command held hidden — or, cut, the scan
    did not read: not looked at — and whether it was cut)."""
    deleted = 0

    def about_them(m: ReceivedLetter) -> bool:          # deleted as soon as received (holding's `take`)
        nonlocal deleted
        body = body_of(m)
        hit = _about(body, email, people, contacts) or (isinstance(body, str) and email in body.lower())
        deleted += hit
        return hit
    with holding(rt, FORGET_SECONDS, take=about_them) as (_, _, not_seen, cut, _):
        pass
    return deleted, not_seen, cut
