"""Use case: reconciliation by change. Ask Intercom which of a workspace's contacts changed since its
last search and may meet one of its campaigns' targets (domain/changes.py), and judge the pending
leads linked to them, with the contact as search returned it. A run costs one search call per 150
changed contacts, however many leads are pending; a lost webhook is caught by the next run."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Optional

from ...domain import rules as rule_values
from ...domain.changes import changes_query
from ...domain.judge import Sighting, holds_back, searched_before_view
from ...domain.link import Link
from ...domain.mapping import attribute_type, attribute_value
from ...domain.qualification import QState
from ...domain.settings import CampaignSettings, Qualification
from ...errors import REFUSED_TOKEN, Deferred, TokenRefused, WorkError, refused_reason
from ...messages import ChangesMessage
from ...observability import count, logger
from ...ports import Found
from ...ports.store import Cursor
from ..deps import WorkDeps
from ..moved import valid_campaigns
from .checks import check_link, judged_lead
from .contact_events import duplicate_then

OVERLAP = 3600.0            # each search starts this long before the last one did (search lags)
PER_PAGE = 150              # Intercom's largest page
PAGE_TIME_MS = 20_000       # no page is asked for with less of the worker's time left: the search goes on in
                            # another message


def cursor_name(workspace: str) -> str:
    return f"changes#{workspace}"


def start_name(workspace: str) -> str:
    """Where the workspace's searches start until one succeeded (then `cursor_name` says)."""
    return f"changes#{workspace}#start"


def back_name(workspace: str) -> str:
    """A rule change (`settings apply`) that may qualify values the workspace's contacts reached before it, under
    the rule it replaced: the next search looks back to the oldest pending lead, and clears it when it completes
    (never moving `cursor_name` back: a search running meanwhile would move it on again)."""
    return f"changes#{workspace}#back"


def failed_name(workspace: str) -> str:
    """The workspace's latest failed search: when it was asked and failed, and why (`bridge doctor` says it
    while the queue still tries it, before any dead letter)."""
    return f"changes#{workspace}#failed"


def latest_failure(cursor: Cursor, workspace: str, last: Optional[str]) -> dict:
    """The workspace's latest failed search (failed_name), if asked after the last that succeeded (`last`, as
    cursor_name holds it); else {}."""
    tried: dict = json.loads(cursor.get(failed_name(workspace)) or "{}")
    return tried if tried and (last is None or tried["asked"] > float(last)) else {}


def token_refused(cursor: Cursor, workspace: str) -> bool:
    """Whether Intercom refused the workspace's token (or the API to its plan) to its latest search, and none
    succeeded since: every call of the workspace fails so, until it is reconnected (a search then succeeds)."""
    return bool(latest_failure(cursor, workspace, cursor.get(cursor_name(workspace))).get("refused"))


def on_changes(message: ChangesMessage, deps: WorkDeps, _context: object = None) -> str:
    try:
        return _search(message, deps)
    except WorkError as exc:
        if isinstance(exc, Deferred):       # waiting (for the rate budget) is not failing
            raise
        failed = _unreplayed(exc)
        deps.cursor.set(json.dumps({"asked": message.at, "at": deps.clock(), "vendor": failed.outage,
                                    "reason": failed.reason, "refused": _refuses_every_call(failed)}),
                        failed_name(message.workspace))
        raise failed


def _unreplayed(exc: WorkError) -> WorkError:
    """Intercom's refusal of the token as a search's failure: its reason without the replay a refusal advises (a
    search is never replayed: the next that succeeds covers its window, as doctor and `dlq list` say its letter)."""
    if not isinstance(exc, TokenRefused):
        return exc
    return TokenRefused(refused_reason(exc.answer, exc.workspace, replay=False), exc.workspace, exc.token_app,
                        exc.answer, status=exc.status, message=exc.message, body=exc.body)


def _refuses_every_call(exc: WorkError) -> bool:
    """Intercom's refusal of the workspace's token (401, revoked), or of the API to its plan (403): not one
    lead's, nor Referral Factory's (the search goes on past a lead RF refuses)."""
    return exc.status in REFUSED_TOKEN and exc.reason.startswith("Intercom answered")


def _search(message: ChangesMessage, deps: WorkDeps) -> str:
    ws = message.workspace
    campaigns = valid_campaigns(deps.settings, ws)   # (an invalid one is said when its leads are checked one by one)
    targets = [(c.qualification, attribute_type(c.qualification.attribute,
                                                deps.apis.attributes(ws, (c.qualification.attribute,))))
               for c in campaigns.values() if c.qualification is not None]
    if not targets:
        _done_looking_back(deps, message)
        return "no_rules"
    last = deps.cursor.get(cursor_name(ws))
    since = message.since
    if since is None:
        since = (float(last) if last else _first_start(deps, message)) - OVERLAP
        if message.back_to is not None:         # a rule change: from the oldest pending lead too
            since = min(since, message.back_to - OVERLAP)
    query = changes_query(targets, since)
    intercom, after, pages = deps.apis.intercom(ws), message.cursor, 0
    seen: set[str] = set()
    while True:
        contacts, after = intercom.search_contacts(query, starting_after=after, per_page=PER_PAGE)
        pages += 1
        fresh = [c for c in contacts if c.get("id") and c["id"] not in seen]   # pages may repeat a record
        seen.update(c["id"] for c in fresh)
        _judge(ws, fresh, campaigns, deps)
        if not after:
            break
        if deps.remaining_ms() < PAGE_TIME_MS and deps.queue is not None:
            # The worker's time runs out: the rest of the search in a message of its own (the starting
            # point moves when its last page is done), not the whole search again from its first page.
            deps.queue.send(message.model_copy(update={"since": since, "cursor": after}).wire())
            logger.info("reconciliation's search of changed contacts goes on in another message", extra={
                "workspace": ws, "contacts": len(seen), "pages": pages})
            return "continued"
    if not last or float(last) < message.at:
        deps.cursor.set(repr(message.at), cursor_name(ws))
    _done_looking_back(deps, message)
    count("ReconciliationContactsSearched", len(seen))
    logger.info("reconciliation searched changed contacts", extra={"workspace": ws, "contacts": len(seen),
                                                                   "pages": pages})
    return "done"


def _done_looking_back(deps: WorkDeps, message: ChangesMessage) -> None:
    """The rule change this search looked back for is done with, unless another was made since (its marker
    stays, for the next search)."""
    if message.rule_change is not None:
        deps.cursor.clear(back_name(message.workspace), message.rule_change)


def _first_start(deps: WorkDeps, message: ChangesMessage) -> float:
    """Before any search of the workspace succeeded: `lookback` before the earliest one asked, kept before
    it searches. A failed first search's window stays the next one's (not moved on to `lookback` before the
    next one's time, past changes it was to find), so the search that succeeds covers it, and a failed
    search is rightly said superseded by the cursor (dead_letters.marked)."""
    start = message.at - message.lookback
    kept = deps.cursor.get(start_name(message.workspace))
    if kept is not None and float(kept) <= start:
        return float(kept)
    deps.cursor.set(repr(start), start_name(message.workspace))
    return start


def _judge(ws: str, contacts: list[dict], campaigns: dict[str, CampaignSettings], deps: WorkDeps) -> None:
    """One batched read for the page, then each waiting lead linked to a contact, or sharing its email, is judged with
    the contact as search found it. Linked to it: one found from before the link's view of it (searched_before_view) is
    judged, under `match: email`, as the duplicate of hers it was then when it was one (duplicate_then), else read again
    (check_link), as one judge would hold back (holds_back) is. Sharing its email: her contact then, shown from before
    the duplicate check's move left it in Intercom (Link.stayed_at), is judged late, as hers then, under either `match`;
    any other, with `match: email`, as a duplicate's value; with `match: contact`, one meeting the target has the lead's
    own contact read (check_link: it may have been merged into this one, the webhook lost)."""
    if not contacts:
        return
    found = deps.lookup.look_up(contacts=[(ws, c["id"]) for c in contacts],
                                emails=[(ws, c["email"]) for c in contacts if c.get("email")])
    for contact in contacts:
        seen = Sighting(contact, "reconciliation (changed contacts)", rule_values.event_time(contact.get("updated_at")),
                        current=True)
        direct = set()
        for link in found.linked_to_contact(ws, contact["id"]):
            rule = _waiting_rule(link, campaigns)
            if rule is None:
                continue
            direct.add(link.ref)
            stale = searched_before_view(link, seen)
            then = duplicate_then(link, campaigns[link.campaign_id], contact, replace(seen, current=False)) \
                if stale else None
            if then is not None:
                # `match: email`: the search shows the contact from before the link moved to it, when it was a
                # duplicate of hers: judged as one, against what the link held then (as its late notification is).
                late = Sighting(contact, f"{seen.via} (from before the link moved to it: a duplicate then)", seen.when,
                                duplicate=contact["id"])
                judged_lead(deps, link, lambda: deps.qualifier.evaluate_late(link, then, campaigns[link.campaign_id],
                                                                             late), duplicate=contact["id"])
                continue
            if stale or holds_back(link, rule, lambda name: attribute_type(name, deps.apis.attributes(ws, (name,))),
                                   attribute_value(contact, rule.attribute), seen.when):
                # At the target, found by a search older than what armed the link (by Intercom's clocks: the
                # notification's, made after the change it told): the search may show the contact from before that
                # change, or a return to the target made before its notification. Or any value older than the
                # link's view of the contact (its move there, or the take of its baseline: searched_before_view):
                # not hers then, or not a change from what was taken. Its read, now, tells.
                judged_lead(deps, link, lambda: check_link(link, campaigns[link.campaign_id], deps, replay=False))
                continue
            judged_lead(deps, link, lambda: deps.qualifier.evaluate(link, campaigns[link.campaign_id], seen, note=False))
        for link in _by_email(found, ws, contact, direct):
            rule = _waiting_rule(link, campaigns)
            if rule is None:
                continue
            stayed = link.stayed_at(contact["id"], seen.when)
            if stayed is not None:
                # Her contact then, which the duplicate check's move left in Intercom (LinkRepository.move's `stays`),
                # shown as it was before the move: judged as hers then, against what the link held on it, under
                # either `match`, as its late notification is (contact_events._same_email); not as a duplicate's
                # against the link's state since, armed maybe by the check's sighting of the contact it moved to
                # (that qualified her on a value she had had all along).
                late = Sighting(contact, f"{seen.via} (from before the link left it in Intercom)", seen.when)
                judged_lead(deps, link, lambda: deps.qualifier.evaluate_late(link, stayed, campaigns[link.campaign_id],
                                                                             late))
                continue
            if rule.match == "email":
                duplicate = Sighting(seen.contact, seen.via, seen.when, duplicate=contact["id"], current=True)
                judged_lead(deps, link, lambda: deps.qualifier.evaluate(link, campaigns[link.campaign_id], duplicate,
                                                                  note=False), duplicate=contact["id"])
            elif _meets(rule, contact, deps, ws):
                # Another contact with the lead's email meets the target: the lead's own contact may
                # have been merged into it (the webhook lost). Read the lead's own contact to know.
                judged_lead(deps, link, lambda: check_link(link, campaigns[link.campaign_id], deps, replay=False))


def _by_email(found: Found, ws: str, contact: dict, done: set) -> list[Link]:
    return [link for link in found.linked_to_email(ws, contact.get("email"))
            if link.ref not in done and link.contact_id != contact["id"]]


def _waiting_rule(link: Link, campaigns: dict[str, CampaignSettings]) -> Optional[Qualification]:
    """The rule of a lead that waits for its contact (a decided one is finished through the overdue
    index, a settled one needs nothing), or whose failed qualification may still lack its letter (the search
    that failed it stopped before sending it: judged again, it fails again and sends it)."""
    settings = campaigns.get(link.campaign_id)
    if settings is None or not link.final or not link.is_lead or not (
            link.qualification is QState.PENDING or link.owes_letter):
        return None
    return settings.qualification


def _meets(rule: Qualification, contact: dict, deps: WorkDeps, ws: str) -> bool:
    data_type = attribute_type(rule.attribute, deps.apis.attributes(ws, (rule.attribute,)))
    return rule_values.matches(rule, data_type, attribute_value(contact, rule.attribute))
