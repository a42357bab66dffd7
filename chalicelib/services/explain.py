"""`bridge explain <email | RF user id | Intercom contact id>`: everything the bridge knows of one
person, across campaigns and workspaces, in time order — the joins received, what was done with
their contact and why, rule evaluations with the actual and expected values, changes seen on a
duplicate contact, qualification calls, failures and retries, and the webhooks about them that the
edge refused. Emails are masked; nothing here holds a secret. Reads only (no table scan)."""
from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from ..domain.advice import DUPLICATE, NOT_WRITTEN, RF_404, fields_not_written, refused_join, rf_token_refused
from ..domain.history import RETRY, Recorded, epoch
from ..domain.judge import DEAD_LETTER_DAYS, QUALIFYING_LETTERS, elsewhere, letter_gone, rf_deleted
from ..domain.link import MOVED_UNKNOWN, Link, LinkStatus, PersonRef
from ..domain.outage import outage_of
from ..domain.people import OTHER_CAMPAIGN, email_hash
from ..domain.qualification import QState
from ..domain.settings import CampaignSettings, valid_or_none
from ..domain.sync import ALREADY, NOT_IN_RF
from ..errors import (DISCONNECTED, BudgetSpent, Throttled, again_when, beside_fix, plan_restricted, refused_token_of,
                      waits)
from ..observability import mask_email, mask_emails
from ..ports import IntercomPort, Merged, Store
from ..ports.edge import UNKNOWN, RefusalSample, campaign_scope, workspace_scope
from ..ports.store import LedgerEntry, normal_email
from .dead_letters import no_campaign, replay_fix

class Reader(Protocol):
    @property
    def store(self) -> Store: ...
    @property
    def clock(self) -> Callable[[], float]: ...


@dataclass(frozen=True)
class Unasked:
    """Why Intercom could not be asked about a contact id no link names (away, limiting: the id may well be right)."""
    contact_id: str
    workspace: str
    reason: str
    # When to run explain again: once Intercom answers; in a minute, or later, when Intercom was not called (the
    # bridge's own budget held the call back, or AWS throttled the bridge's calls: errors.again_when).
    again: str = "once it answers"

    @property
    def first(self) -> str:
        """What the text's first line begins with (short: the reason, which may be long, is on a line of its own)."""
        return f"Intercom could not be asked about contact {self.contact_id} (workspace {self.workspace})"

    @property
    def fix(self) -> str:
        return f"{self.reason} — run `bridge explain` again {self.again}"


@dataclass
class Explanation:
    query: str
    people: list[Link] = field(default_factory=list)
    trail: list[dict] = field(default_factory=list)
    enrolled: list[dict] = field(default_factory=list)   # contact sync enrolled them (its ledger): no join needed
    # The query, an Intercom contact no link names, shares the email of these people (`duplicate_of`).
    duplicates: list[dict] = field(default_factory=list)
    unasked: Optional[Unasked] = None     # why Intercom could not be asked about such a contact now (away, limiting)

    @property
    def found(self) -> bool:
        return bool(self.people or self.trail or self.duplicates)

    def view(self) -> dict:
        u = self.unasked
        # The people's own emails as they gave them (then the query's), masked whatever their form; then any
        # other address.
        known = list(dict.fromkeys([p.email for p in self.people if p.email] + [self.query] * ("@" in self.query)))
        return mask_emails({"query": self.query, "found": self.found,
                       "people": [{"campaign_id": p.campaign_id, "rf_user_id": p.rf_user_id,
                                   "workspace": p.workspace, **p.view(), **_retrying_now(p, self.trail),
                                   **_discarded(p, self.trail),
                                   **_dead_lettered(p, self.trail), **_qualification_replayed(p, self.trail),
                                   **_qualification_not_applied(p, self.trail)}
                                  for p in self.people],
                       "trail": self.trail, **({"enrolled_by_sync": self.enrolled} if self.enrolled else {}),
                       **({"duplicate_of": self.duplicates} if self.duplicates else {}),
                       **({} if self.found else {"message": (f"{u.first}: {u.fix}. " if u else "")
                                                            + never_seen(self.query), "cases": list(NOT_SEEN),
                                                 **({"unasked": {"contact_id": u.contact_id, "workspace": u.workspace,
                                                                 "reason": u.reason}} if u else {})})},
                           known)


def _last_failure(link: Link, trail: list[dict], *also: str) -> Optional[dict]:
    """The person's last entry in `trail` that failed (or whose outcome is one of `also`), if any."""
    return next((e for e in reversed(trail) if (e.get("campaign_id"), e.get("rf_user_id")) == link.ref
                 and e["outcome"] in ("failed", *also)), None)


def _join_now(link: Link, trail: list[dict]) -> Optional[dict]:
    """A waiting join's last entry about its work (a try's wait, a retry, its dead letter): the link says
    `waiting` whatever the worker did with its try since (past the outage budget, it fails tries, then is
    dead-lettered). The worker's counted note of the waits is one: a join sent again after its letter that waits
    for the same outage writes no `join` note (services/join.py), only that."""
    return next((e for e in reversed(trail) if (e.get("campaign_id"), e.get("rf_user_id")) == link.ref and (
        e["event"] in ("join", "join_received", "waiting") or e["event"] == "dead_letter"
        and KIND_TOPICS.get(str((e.get("details") or {}).get("kind"))) == "join")), None)


def _retrying_now(link: Link, trail: list[dict]) -> dict:
    """A join between tries (failed, or waiting whose try failed since) or in a later try (in progress) whose
    last try failed and is tried again: the header says retrying, which try of how many, and when the next is due."""
    if link.status not in (LinkStatus.FAILED, LinkStatus.IN_PROGRESS, LinkStatus.WAITING):
        return {}
    last = _join_now(link, trail) if link.status is LinkStatus.WAITING else _last_failure(link, trail, "retrying")
    if last is None or last["outcome"] != "retrying":
        return {}
    retry = dict(last.get("retry") or {})
    if link.status is LinkStatus.IN_PROGRESS and isinstance(retry.get("try"), int):
        retry["under_way"] = retry["try"] + 1
    return {"status": "retrying", "retry": retry}


def _discarded(link: Link, trail: list[dict]) -> dict:
    """A failed person whose last failure ended with the operator discarding its dead letter (`bridge dlq
    discard`), or a waiting join whose letter was (its link still says `waiting`: failed, as its letter did):
    the header says discarded, not failed, nor waiting in the queue."""
    if link.status is LinkStatus.WAITING:
        last = _join_now(link, trail)
        return {"status": "failed", "discarded": True} if last is not None and (
            last["event"], last["outcome"]) == DISCARDED else {}
    last = _last_failure(link, trail) if link.status is LinkStatus.FAILED else None
    return {"discarded": True} if last is not None and last.get("discarded") else {}


def _dead_lettered(link: Link, trail: list[dict]) -> dict:
    """A waiting join whose work the worker gave up on since (a vendor's outage longer than BRIDGE_OUTAGE_HOURS,
    or the tries failed past it): its link still says `waiting`, but its letter is in the dead-letter queue, where nothing
    brings it back without a replay. The header says so, with the letter's reason and fix, as the person's
    history has them (its `dead_letter` entry: the queue is not read). A waiting or failed join whose letter the
    operator replayed since (`bridge dlq replay`) is back in the queue: the header says so until its next try."""
    last = _join_now(link, trail) if link.status in (LinkStatus.WAITING, LinkStatus.FAILED) else None
    if last is not None and (last["event"], last["outcome"]) == REPLAYED:
        return {"status": "replayed", "replayed_at": last["at"]}
    if link.status is not LinkStatus.WAITING or last is None or (last["event"], last["outcome"]) != (
            "dead_letter", "failed"):
        return {}
    return {"status": "dead_lettered", "dead_letter": {k: last[k] for k in ("at", "reason", "fix") if last.get(k)}}


def _qualification_replayed(link: Link, trail: list[dict]) -> dict:
    """A linked person whose qualification's letter (`intercom.contact`, `intercom.check`) the operator replayed
    is back in the queue: the header says so, not the failure the replay acts on, while the replay is the last
    thing written of the person (a try writes an evaluation, a qualification, a retry, a letter, or a note that
    it changed nothing) and the link is not qualified (a replay cannot undo that: it shows qualified)."""
    last = next((e for e in reversed(trail) if (e.get("campaign_id"), e.get("rf_user_id")) == link.ref), None)
    if link.status is not LinkStatus.LINKED or link.qualification == "qualified" or last is None or (
            last["event"], last["outcome"]) != REPLAYED or KIND_TOPICS.get(
            str((last.get("details") or {}).get("kind"))) != "qualification":
        return {}
    return {"qualification": "replayed", "replayed_at": last["at"]}


def _qualification_not_applied(link: Link, trail: list[dict]) -> dict:
    """An `unconfirmed` qualification whose PUT surely did not reach RF (the try that left it so wrote
    `not_applied`: RF refused it with a 429, the shared budget held it back): the header says it is not
    applied yet, not unconfirmed, which is said only when a PUT may have reached RF."""
    if link.qualification is not QState.UNCONFIRMED:
        return {}
    last = next((e for e in reversed(trail) if (e.get("campaign_id"), e.get("rf_user_id")) == link.ref
                 and e["event"] == "qualification" and e["outcome"] in ("unconfirmed", "not_applied")), None)
    return {"qualification_not_applied": True} if last is not None and last["outcome"] == "not_applied" else {}


def never_seen(query: str) -> str:
    """What explain says first of someone it has no record of (`message`); NOT_SEEN: what that may mean (`cases`)."""
    return f"no record of {mask_emails(query, query if '@' in query else None)} yet"


# Work the edge accepted is not recorded per person until a try of it ends (SQS cannot be searched, and the edge
# writes nothing per webhook): "no record yet" is all that is known. No trace is kept of someone forgotten: the
# backfill hint must not read as the fix for them. One case a line in the text (`cases` in `--json`), in this order.
NOT_SEEN = (
    "a webhook about them accepted in the last minutes may still wait in the work queue, or be on its first try "
    "(a join is found by email once a try of it ends; `bridge doctor CAMPAIGN` shows the queue)",
    "else the bridge has never seen them, or they were forgotten (`bridge forget`): no join, no contact, no history "
    "and no refused webhook names them here",
    "only if they joined before the campaign's settings existed or while webhooks were refused, `bridge backfill "
    "CAMPAIGN` sends them (a backfill would also bring a forgotten person back to Intercom)",
    "if their email changed in Intercom, explain finds them by the new one or by their RF user id",
    "if they are in Intercom only, check the email or id",
)


def explain(rt: Reader, query: str, intercom: Optional[Callable[[str], IntercomPort]] = None) -> Explanation:
    """`intercom(workspace)`: asked (one GET a workspace) about a contact id that no link names, for
    its email: a duplicate of a linked person's contact is said so (`duplicate_of`)."""
    store = rt.store
    query = query.strip()
    workspaces = sorted(store.connections.workspaces())
    campaigns = sorted(set().union(*(store.settings.campaigns(ws) for ws in workspaces)))
    emails: set[str] = {normal_email(query)} if "@" in query else set()
    rf_ids: set[str] = set() if "@" in query else {query}
    contacts: set[str] = set() if "@" in query else {query}
    people: dict[PersonRef, Link] = {}
    # Contact sync's ledger, by email (a query of each campaign's ledger): the contacts it enrolled or
    # skipped have no link, only their ledger entry (and, once enrolled, their history under their RF id).
    for c in campaigns:
        for email in sorted(emails):
            for synced in store.sync.with_email(c, email):
                contacts.add(synced.contact_id)
                rf_ids |= {synced.rf_user_id} if synced.rf_user_id else set()
    def linked() -> None:
        """What one identifier leads to (links by email, contact or RF id), then what those links name,
        until nothing new: any of a person's identifiers gives the same trail."""
        for _ in range(4):
            found = store.lookup.look_up(
                contacts=[(ws, c) for ws in workspaces for c in sorted(contacts)],
                emails=[(ws, e) for ws in workspaces for e in sorted(emails)],
                refs=[PersonRef(c, r) for c in campaigns for r in sorted(rf_ids)])
            before = (len(people), len(emails), len(contacts), len(rf_ids))
            for link in found.links.values():
                people[link.ref] = link
                emails.update([normal_email(link.email)] if link.email else [])
                contacts.update([link.contact_id] if link.contact_id else [])
                rf_ids.add(link.rf_user_id)
            if (len(people), len(emails), len(contacts), len(rf_ids)) == before:
                break
    linked()
    duplicates: list[dict] = []
    unasked: Optional[Unasked] = None
    if intercom is not None and not emails and query not in {p.contact_id for p in people.values()}:
        duplicates, unasked, survivor = _duplicate_of(store, intercom, workspaces, query)
        if survivor is not None:         # merged in Intercom: its person's link followed it to the survivor
            contacts.add(survivor)
            linked()
    # The ledger is keyed by contact: a referrer sync enrolled, asked about by RF id, is found by the contact their
    # history's sync entry names (a history read anyway, below).
    read: dict[PersonRef, list[Recorded]] = {}

    def history(ref: PersonRef) -> list[Recorded]:
        if ref not in read:
            read[ref] = store.history.entries(ref)
        return read[ref]
    contacts |= {str(named) for c in campaigns for r in sorted(rf_ids) for e in history(PersonRef(c, r))
                 if e.event == "sync" and (named := (e.details or {}).get("contact_id"))}
    # Contact sync's ledger, by Intercom contact id: a referrer it enrolled (their history is under their
    # RF id) or a contact it skipped (no RF id: the ledger holds the reason).
    trail: list[dict] = []
    enrolled_by_sync: list[tuple[str, LedgerEntry]] = []
    for c in campaigns:
        for synced in store.sync.entries(c, sorted(contacts)).values() if contacts else ():
            if synced.rf_user_id:
                rf_ids.add(synced.rf_user_id)
                if synced.outcome not in (NOT_IN_RF, ALREADY):
                    enrolled_by_sync.append((c, synced))
            elif synced.final:
                skipped = {"campaign_id": c, "rf_user_id": None, "at": synced.at or "", "event": "sync",
                           "outcome": "skipped",
                           "reason": mask_emails(f"skipped by {_by(synced.run)}: {synced.reason}", synced.email),
                           "details": {"contact_id": synced.contact_id}}
                if synced.outcome != "already_in_campaign":        # one already in RF's campaign: nothing to fix
                    skipped["fix"] = f"see `bridge sync report {c}`; fix the contact, then `bridge sync start {c}`"
                trail.append(skipped)
    refs = set(people) | {PersonRef(c, r) for c in campaigns for r in rf_ids}
    histories = {ref: history(ref) for ref in sorted(refs)}

    @functools.cache
    def token_app(workspace: str) -> Optional[str]:
        """Whose the workspace's token is (its connection's), read once: a refused token's one reconnect."""
        return conn.token_app if (conn := store.connections.workspace(workspace)) else None
    for d in duplicates:          # what the history of the person it duplicates says about this contact
        ref = PersonRef(d["campaign_id"], d["rf_user_id"])
        for entry in store.history.entries(ref) if ref not in refs else ():
            if query in f"{entry.event} {entry.reason} {entry.details}":
                trail.append(_with_fix({"campaign_id": ref.campaign_id, "rf_user_id": ref.rf_user_id,
                                        **_keyed(entry.view())}, None, token_app=token_app))
    for ref, entries in histories.items():
        for entry in entries:
            trail.append(_with_fix({"campaign_id": ref.campaign_id, "rf_user_id": ref.rf_user_id,
                                    **_keyed(entry.view())}, people.get(ref), token_app=token_app))
            kind = (entry.details or {}).get("type") if entry.event == "join_received" else None
            if ref in people and people[ref].kind is None and kind:      # a failed join's: as its webhook said
                people[ref] = dataclasses.replace(people[ref], kind=kind)
    # (already: their own join enrolled them; so did it, a join link of theirs with no "enrolled by" entry of
    # sync's in their history — RF's join webhook also comes for the users sync creates)
    enrolled = [{"campaign_id": c, "rf_user_id": synced.rf_user_id, "contact_id": synced.contact_id,
                 "run": synced.run}
                for c, synced in enrolled_by_sync
                if (ref := PersonRef(c, synced.rf_user_id or "")) not in people or any(
                    e.event == "sync" and (e.reason or "").startswith("enrolled by ") for e in histories[ref])]
    hashes = {email_hash(e) for e in emails}                  # an older version's samples (until they expire)
    # An email is kept as a digest, and what an unauthenticated body named: the ids behind them are the ones asked
    # about.
    digested: dict[str, dict] = {store.edge.digest("email", e): {} for e in emails} | {
        store.edge.digest("rf_user", r): {"rf_user_id": r} for r in rf_ids} | {
        store.edge.digest("contact", c): {"contact_id": c} for c in contacts}
    scopes = [campaign_scope(c) for c in campaigns] + [workspace_scope(w) for w in workspaces] + [UNKNOWN]
    for scope in scopes:
        for sample in store.edge.refusals(scope).samples:
            if _about(sample, hashes, rf_ids, contacts, digested):
                named = {k: v for d in (sample.rf_user_digest, sample.contact_digest) for k, v in
                         digested.get(d or "", {}).items()}
                trail.append(_with_fix(_refused(sample, scope, **named), None, sample))
    _against_settings(store, trail, people)
    trail = _replays_first(sorted(trail, key=lambda e: e["at"]))
    return Explanation(query, [people[r] for r in sorted(people)],
                       _letters_gone(_resolved(_replayed_by_reason(_retrying(trail))), people, rt.clock()),
                       enrolled, duplicates, unasked)


def _replays_first(trail: list[dict]) -> list[dict]:
    """A replay's note (the CLI's, stamped by its estimate of AWS's time, maybe ahead of the workers' clocks)
    comes before the entries of the try it sent (which name its letter: `replayed_from`), whatever their times
    say, and says a time no later than theirs: a copy that failed again at once is dead again, not back in the
    queue."""
    for note in [e for e in trail if (e["event"], e["outcome"]) == REPLAYED]:
        letter, who = (note.get("details") or {}).get("message_id"), (note.get("campaign_id"), note.get("rf_user_id"))
        first = next((n for n, e in enumerate(trail) if letter and (e.get("details") or {}).get("replayed_from")
                      == letter and (e.get("campaign_id"), e.get("rf_user_id")) == who), None)
        at = next(n for n, e in enumerate(trail) if e is note)
        if first is not None and first < at:
            del trail[at]
            trail.insert(first, {**note, "at": min(note["at"], trail[first]["at"])})
    return trail


def _retrying(trail: list[dict]) -> list[dict]:
    """A failed try the queue tries again (the worker's `retry` note follows it) is shown retrying: which
    try of how many and when the next is due, without a fix (nothing was dead-lettered: a replay finds
    nothing). A note whose try failed before it recorded anything stands for that try."""
    out: list[dict] = []
    for e in trail:
        if e["event"] != RETRY:
            out.append(e)
            continue
        d = e.get("details") or {}
        who = (e.get("campaign_id"), e.get("rf_user_id"))
        failed = next((f for f in reversed(out) if (f.get("campaign_id"), f.get("rf_user_id")) == who
                       and f["outcome"] == "failed" and f["event"] != "dead_letter"
                       and f.get("reason") == e.get("reason")), None)
        shown = failed if failed is not None else e
        shown.pop("fix", None)
        shown.update(outcome="retrying", reason=f"{e.get('reason')} ({retry_said(d)})",
                     retry={k: d[k] for k in ("try", "of", "next_try_at") if d.get(k) is not None})
        if failed is None:
            e.pop("details", None)
            out.append({**e, "event": KIND_TOPICS.get(str(d.get("kind")), RETRY)})
    return out


def retry_said(retry: dict) -> str:
    """"try 1 of 5 failed; the queue tries it again at about <time>"."""
    when = (f"at about {retry['next_try_at']}" if retry.get("next_try_at")
            else "once its visibility timeout ends (minutes)")
    return f"try {retry.get('try')} of {retry.get('of')} failed; the queue tries it again {when}"


# A counted entry kept once per key (LinkRepository.note_repeat's `event#key`): its event, and the key as a detail.
KEYED = {"workspace_moved": "workspace", "duplicate_contact": "contact_id", "left_contact": "contact_id"}


def _keyed(entry: dict) -> dict:
    event, _, key = entry["event"].partition("#")
    if not key:
        return entry
    return {**entry, "event": event, "details": {KEYED.get(event, "key"): key, **(entry.get("details") or {})}}


def _against_settings(store: Store, trail: list[dict], people: dict[PersonRef, Link]) -> None:
    """Entries whose meaning depends on the campaign's settings now (one read of a campaign's settings):
    a person left behind by a workspace move counts again once the campaign is
    back in their workspace (resolved), else the hint says how; a join RF sent again while the person's
    join stays ignored (action nothing) was not applied, and says what sends it."""
    stored: dict[str, Optional[CampaignSettings]] = {}

    def now(campaign: str) -> Optional[CampaignSettings]:
        if campaign not in stored:
            found = store.settings.get(campaign)
            stored[campaign] = valid_or_none(found.document if found is not None else None)
        return stored[campaign]

    # A person left behind by a move whose history does not say so yet (nothing about them came since, and
    # reconciliation's sweep leaves them out): said from the link and the settings now.
    told = {(e.get("campaign_id"), e.get("rf_user_id")) for e in trail if e["event"] == "workspace_moved"}
    for ref, person in people.items():
        moved = elsewhere(person, now(ref.campaign_id)) if person.status is LinkStatus.LINKED else None
        if moved is not None and (ref.campaign_id, ref.rf_user_id) not in told:
            trail.append({"campaign_id": ref.campaign_id, "rf_user_id": ref.rf_user_id,
                          "at": max((e["at"] for e in trail), default=""), "event": "workspace_moved",
                          "outcome": "not_qualified", "reason": moved.reason,
                          "details": {"workspace": moved.event.partition("#")[2]}})
    for e in trail:
        link = people.get(PersonRef(e.get("campaign_id") or "", e.get("rf_user_id") or ""))
        if link is None:
            continue
        c = link.campaign_id
        if e["event"] == "workspace_moved":
            settings = now(c)
            if settings is not None and settings.workspace == link.workspace:
                e["resolved"] = True
            else:
                e["hint"] = (f"to make them count, apply campaign {c} back to workspace {link.workspace} "
                             f"(`workspace: {link.workspace}`, `bridge settings apply`); nothing to do if the move "
                             "is intended")
        elif (e["event"], e["outcome"]) == ("join", "repeated") and link.status is LinkStatus.IGNORED:
            side = "referrers" if link.kind == "referrer" else "leads"
            e["reason"] = (f"the same join arrived again and was not applied: the person's join was ignored under "
                           f"`{side}.action: nothing`, and a repeat is not applied again")
            settings = now(c)
            action = settings.people(side == "leads").action if settings is not None else "nothing"
            e["hint"] = (f"`bridge backfill {c} --apply` sends it now ({side}.action is {action})"
                         if action != "nothing" else HINTS[("join", "ignored")].format(side=side, campaign=c))


CONTACT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")      # what may go into Intercom's path /contacts/{id}


def _duplicate_of(store: Store, intercom: Callable[[str], IntercomPort], workspaces: list[str],
                  query: str) -> tuple[list[dict], Optional[Unasked], Optional[str]]:
    """The people linked to another contact with this contact's email, in its own workspace only (a
    contact of another workspace says nothing of this one's people), each with whether the contact's
    changes count for them (the campaign's `qualification.match`; never for a link left behind by a
    workspace move), as the qualification judges them; and, found in no workspace, why Intercom could not be
    asked now in one (away or limiting: the id may well be right); and the contact Intercom merged it into, if it
    did (the links of a merged contact follow it there)."""
    unasked: Optional[Unasked] = None
    if not CONTACT_ID.fullmatch(query):
        return [], None, None
    for workspace in workspaces:
        try:
            contact = intercom(workspace).get_contact(query)
        except Merged as merged:
            if merged.canonical_id:
                return [], None, merged.canonical_id
            continue
        except Exception as exc:  # (not there, not connected...): nothing said of it, but of Intercom away
            if waits(exc) and unasked is None:
                # (held back by the bridge's own budget, or AWS throttling its calls: Intercom was not called)
                when = "once it answers" if not isinstance(exc, (BudgetSpent, Throttled)) else again_when(exc)
                unasked = Unasked(query, workspace, str(getattr(exc, 'reason', exc)), when)
            continue
        email = contact.get("email")
        if not email:
            return [], None, None
        found = store.lookup.look_up(emails=[(workspace, email)])
        return [_duplicate(store, query, workspace, email, link) for link in found.linked_to_email(workspace, email)
                if link.contact_id and link.contact_id != query], None, None
    return [], unasked, None


def _duplicate(store: Store, contact_id: str, workspace: str, email: str, link: Link) -> dict:
    stored = store.settings.get(link.campaign_id)
    settings = valid_or_none(stored.document if stored is not None else None)
    rule = settings.qualification if settings is not None else None
    said = {"contact_id": contact_id, "workspace": workspace, "email": mask_email(email),
            "campaign_id": link.campaign_id, "rf_user_id": link.rf_user_id, "kind": link.kind,
            "linked_contact_id": link.contact_id, "match": rule.match if rule is not None else None}
    if not link.is_lead:
        return {**said, "counts": False, "why": "only leads qualify: a referrer's contacts count for nothing"}
    if rule is None:
        return {**said, "counts": False, "why": f"campaign {link.campaign_id} has no qualification rule"}
    moved = elsewhere(link, settings)
    if moved is not None:
        return {**said, "counts": False, "why": moved.reason}
    if rule.match == "email":
        return {**said, "counts": True, "why": f"campaign {link.campaign_id} qualifies its leads on any contact "
                                               "with their email (qualification.match: email)"}
    return {**said, "counts": False,
            "why": f"campaign {link.campaign_id} qualifies its leads on their linked contact only "
                   "(qualification.match: contact)",
            "hint": "to count changes on contacts that share the lead's email, " + DUPLICATE}


def _by(run: int) -> str:
    """Which sync decided a ledger entry: a run, or (0) ongoing mode's webhook."""
    return f"sync run {run}" if run else "ongoing sync, by webhook"


# What to do about an entry that needs an action, where the entry itself does not say: (event, outcome) -> fix.
FIXES = {
    ("fields", "not_written"): NOT_WRITTEN,
    ("join", "failed"): "fix the cause named here, then `bridge dlq replay --campaign {campaign}`",
    ("dead_letter", "failed"): "fix the cause named here, then `bridge dlq replay --campaign {campaign}`",
    ("qualification", "failed"): "fix the cause at Referral Factory, then `bridge dlq replay --campaign {campaign}`",
}
# Routine entries: what the settings asked for, or a rule not met yet. Nothing is wrong, so no fix;
# a `hint` says which setting to change if this is not what the operator wants. (A rule not met
# needs neither: the entry shows the actual and expected values.)
HINTS = {
    ("contact", "skipped_existing"): "to write the mapped attributes to existing contacts too, set "
                                     "`{side}.duplicates: update` and apply the settings",
    ("join", "ignored"): "to send them, set `{side}.action` to create_lead or create_user, apply the settings, then "
                         "`bridge backfill {campaign} --apply` (it sends again each join ignored under action "
                         "nothing)",
    ("evaluation", "not_changed"): "the contact already had the target value at the lead's baseline (when the "
                                   "person joined, or when `bridge backfill --apply` took it), and the rule "
                                   "has `require_change: true`: it qualifies once the value changes away and back. "
                                   "To count a value held at joining, set `qualification.require_change: false` and "
                                   "apply the settings (`bridge settings apply`)",
    ("evaluation", "not_qualified"): "only leads (the person invited) qualify; referrers never do",
    ("contact", "kept"): "to replace the values an existing contact already has, add `overwrite: true` to their "
                         "rows of `{side}.fields` and apply the settings",
}

# An evaluation of a late notification about a contact the link left (Qualifier.evaluate_late), not changed.
LATE_NOT_CHANGED = ("a late notification of contact {contact}, which the link left (Intercom merged it, or it is "
                    "gone): judged against the baseline the link had on it, as it would have been had it come before "
                    "the move, it had the target value already. That contact changes no more; the contact the link "
                    "holds now qualifies the lead once it reaches the target against the baseline the link holds")


def _with_fix(entry: dict, link: Optional[Link], refused: Optional[RefusalSample] = None,
              token_app: Callable[[str], Optional[str]] = lambda workspace: None) -> dict:
    """`refused`: the edge's sample a `webhook_refused` entry tells of (its message says which field); `token_app`:
    whose a workspace's token is (a refused token's reconnect)."""
    details = entry.get("details") or {}
    why = "not_changed" if entry["event"] == "evaluation" and details.get("require_change") else entry["outcome"]
    if (entry["event"], why) == ("contact", "updated_existing") and details.get("kept"):   # values it had, kept
        why = "kept"
    # A counted repeat (the same join, notification... seen again) needs nothing done.
    fix = None if entry.get("count") else FIXES.get((entry["event"], why))
    hint = None if entry.get("count") else HINTS.get((entry["event"], why))
    if fix and (entry["event"], why) == ("fields", "not_written"):     # (doctor's words for those fields)
        fix = fields_not_written(details.get("errors") or [])
    if (entry["event"], why) == ("join", "ignored") and link is not None and link.status is not LinkStatus.IGNORED:
        hint = None         # sent again since (`bridge backfill`): the trail goes on with that join
    if entry["event"] == "webhook_refused":
        if str(details.get("scope", "")).startswith("workspace:") or (
                refused is not None and (refused.contact_id or refused.contact_digest)):   # Intercom's
            fix = "an Intercom notification about this contact was refused: see the message (`bridge doctor` names the fix)"
        else:
            fix = refused_join(entry["outcome"], [refused.message] if refused is not None else [])[1]
    side = "referrers" if link is not None and link.kind == "referrer" else "leads"
    for key, text in (("fix", fix), ("hint", hint)):
        if text:
            entry[key] = text.format(side=side, campaign=entry.get("campaign_id") or "CAMPAIGN")
    if hint and details.get("late_of_contact_id"):     # (a merged contact's: it changes no more)
        entry["hint"] = LATE_NOT_CHANGED.format(contact=details["late_of_contact_id"])
    reason = str(entry.get("reason") or "")
    nameless = entry["event"] == "dead_letter" and no_campaign(details.get("kind"))
    if fix and (DISCONNECTED in reason or RF_404 in reason or OTHER_CAMPAIGN in reason or nameless
                or plan_restricted(reason) or rf_token_refused(reason) or refused_token_of(reason) or outage_of(reason)):
        # `--campaign` would leave some behind (a disconnect's), or never reach it (its message names no
        # campaign); or a replay cannot help (discard), or RF's 404 may be the bridge's (its base URL), or
        # Intercom's plan refuses the API (not the token), or RF refuses the bridge's own token (not RF's data), or
        # Intercom a workspace's token (its letters, a notification's among them, go back by its reason),
        # or a vendor's outage outlasted the budget (nothing to fix: replay once it answers)
        entry["fix"] = replay_fix(reason, None if nameless else entry.get("campaign_id") or "CAMPAIGN",
                                  details.get("workspace"), token_app=token_app)
    return entry


COMMAND = "`bridge dlq "       # a replay's or a discard's command, in a fix


#: What `bridge backfill --apply` does for a failure whose dead letter SQS deleted, by the letter's topic.
BROUGHT_BACK = {"join": "sends the join again",
                "qualification": "checks the qualification again (Referral Factory asked first)"}


def _letters_gone(trail: list[dict], people: dict[PersonRef, Link], now: float) -> list[dict]:
    """A join's or a qualification's dead letter older than SQS keeps one (DEAD_LETTER_DAYS; none replayed or
    discarded since): SQS deleted it, and the replay its fixes named finds nothing. `bridge backfill --apply` sends
    the join again, or checks the qualification again as its replay would (a discard's fix: nothing is left to
    discard), once it does: a qualification's is gone as backfill tells it, by its link (letter_gone: its refusal's
    date, and not discarded); one whose lead backfill found deleted in Referral Factory (Link.rf_deleted_at) has
    nothing left to do."""
    letters: dict[tuple, Optional[dict]] = {}
    for e in trail:                 # (in time order: the person's last letter of each, unless replayed or discarded)
        topic = KIND_TOPICS.get(str((e.get("details") or {}).get("kind")))
        if e["event"] == "dead_letter" and topic in BROUGHT_BACK:
            letters[(e.get("campaign_id"), e.get("rf_user_id"), topic)] = e if e["outcome"] == "failed" else None
    gone = f"its dead letter is gone: SQS keeps one {DEAD_LETTER_DAYS} days"
    for (campaign, rf_user, topic), letter in letters.items():
        if letter is None or (epoch(letter["at"]) or now) > now - DEAD_LETTER_DAYS * 86400:
            continue
        link = people.get(PersonRef(str(campaign), str(rf_user)))
        deleted = topic == "qualification" and link is not None and rf_deleted(link)
        if topic == "qualification" and not deleted and (link is None or not letter_gone(link, now)):
            continue
        for e in trail:
            fix = e.get("fix") or ""
            if (e.get("campaign_id"), e.get("rf_user_id")) != (campaign, rf_user) or e["at"] > letter["at"] \
                    or COMMAND not in fix or (e is not letter and TOPICS.get(e["event"]) != topic):
                continue
            e["fix"] = (f"nothing left to do: deleted in Referral Factory (`bridge backfill {campaign} --apply` found "
                        f"it no longer listed, 404), and {gone}" if deleted else
                        f"nothing to discard: {gone}" if "dlq replay" not in fix else fix.split(COMMAND)[0]
                        + f"`bridge backfill {campaign} --apply` {BROUGHT_BACK[topic]} ({gone})")
    return trail


def _replayed_by_reason(trail: list[dict]) -> list[dict]:
    """A failure whose dead letter names no campaign (a qualification an Intercom notification made)
    is replayed, or discarded, as that letter is: by its reason, not by `--campaign`."""
    letters = [e for e in trail if e["event"] == "dead_letter" and no_campaign((e.get("details") or {}).get("kind"))]
    for e in trail:
        said = e.get("reason")
        if e["event"] != "dead_letter" and e["outcome"] == "failed" and e.get("fix") and said:
            letter = next((d for d in letters if d["at"] >= e["at"] and str(d.get("reason")).endswith(said)
                           and (d.get("campaign_id"), d.get("rf_user_id")) == (e.get("campaign_id"),
                                                                               e.get("rf_user_id"))), None)
            if letter is not None and "--campaign" in e["fix"] and COMMAND in letter.get("fix", ""):
                e["fix"] = e["fix"].split(COMMAND)[0] + letter["fix"][letter["fix"].index(COMMAND):]
    return trail


# What a later entry must be about to resolve a failure: its topic. Events not named here are their own.
TOPICS = {"join": "join", "join_received": "join", "contact": "join", "tag": "join", "webhook_refused": "join",
          "qualification": "qualification", "referral_count": "referral_count"}
KIND_TOPICS = {"rf.join": "join", **dict.fromkeys(QUALIFYING_LETTERS, "qualification"),
               "referral.count": "referral_count", "join.verify": "duplicate_check"}   # a dead letter's, by its kind


# What ends a failure: the same work done since. A join is done only by what a join writes when it
# is applied (the contact it reached, or the settings skipping it), never by Intercom's news of the
# contact (archived, merged, its role changed...): a join that created its contact and then failed
# keeps that contact, and the news comes for the failed link too. A qualification is done only once
# Referral Factory confirmed it (not `unconfirmed`, `resumed`, `not_checked`...). Other topics: any
# entry neither failed nor one of NEUTRAL.
DONE = {"join": {("join", "ignored"), ("join", "repeated"), ("contact", "created"), ("contact", "resumed"),
                 ("contact", "skipped_existing"), ("contact", "updated_existing"), ("tag", "tagged")},
        "qualification": {("qualification", "qualified")}}
DISCARDED = ("dead_letter", "discarded")     # ends any failure of its work: given up on by the operator
REPLAYED = ("dead_letter", "replayed")       # sent back by the operator: the fixes before it were acted on
NEUTRAL = ("waiting", "deferred", "in_progress_elsewhere", "retrying")   # neither failed nor done


def _resolved(trail: list[dict]) -> list[dict]:
    """A fix shows while it still applies: a failure followed, for the same person, by a success of
    the same work (the join linked, the qualification made) is marked `resolved` without its fix; one
    followed by a later try of the join (its `join_received`), or by the operator's replay of its dead letter,
    loses its fix (to that try's entries)."""
    topics = []
    failed: dict[tuple, str] = {}       # (campaign, person, reason) -> the topic of the failure said so
    for e in trail:
        who = (e.get("campaign_id"), e.get("rf_user_id"))
        topic = TOPICS.get(e["event"], e["event"])
        if e["event"] == "webhook_refused" and not (e.get("rf_user_id") and e.get("campaign_id")):
            topic = "webhook_refused"
        if e["event"] == "dead_letter":      # the work it stopped: named (newer entries), or the failure it ends
            reason = str(e.get("reason") or "")
            topic = KIND_TOPICS.get(str((e.get("details") or {}).get("kind")), "") or next(
                (t for (c, r, said), t in failed.items() if (c, r) == who and reason.endswith(said)), "dead_letter")
        elif e["outcome"] == "failed" and e.get("reason"):
            failed[(*who, e["reason"])] = topic
        topics.append((*who, topic))
    done: set[tuple] = set()
    discarded: set[tuple] = set()      # ended by the operator discarding its dead letter (`bridge dlq discard`)
    tried: set[tuple] = set()
    for e, key in reversed(list(zip(trail, topics))):
        failure = e["outcome"] == "failed" or e["event"] == "webhook_refused"
        if failure and e.get("fix") and key in done | tried:
            del e["fix"]
            if key in done:
                e["resolved"] = True
            if key in discarded:
                e["discarded"] = True
        elif e["event"] == "join_received" or (e["event"], e["outcome"]) == REPLAYED:
            tried.add(key)
        elif not failure and _done(e, key[-1]):
            if (e["event"], e["outcome"]) == DISCARDED and key not in done:     # not done since by other means
                discarded.add(key)
            done.add(key)
    return trail


def _done(entry: dict, topic: str) -> bool:
    if (entry["event"], entry["outcome"]) == DISCARDED:
        return True
    said = DONE.get(topic)
    return (entry["event"], entry["outcome"]) in said if said is not None else entry["outcome"] not in NEUTRAL


def _about(sample: RefusalSample, hashes: set[str], rf_ids: set[str], contacts: set[str], digested: dict) -> bool:
    if sample.email_hash and sample.email_hash in hashes:
        return True
    if {sample.email_digest, sample.rf_user_digest, sample.contact_digest} & digested.keys():
        return True
    if sample.contact_id and sample.contact_id in contacts:
        return True
    return bool(sample.rf_user_id and sample.rf_user_id in rf_ids)


def _refused(sample: RefusalSample, scope: str, rf_user_id: Optional[str] = None,
             contact_id: Optional[str] = None) -> dict:
    """`rf_user_id`, `contact_id`: the ids a digest of the sample is of (an unauthenticated body's)."""
    campaign = sample.campaign_id or (scope.split(":", 1)[1] if scope.startswith("campaign:") else None)
    return {"campaign_id": campaign, "rf_user_id": sample.rf_user_id or rf_user_id, "at": sample.at, "event": "webhook_refused",
            "outcome": sample.reason, "reason": f"the edge refused a webhook about this person: {sample.message}",
            "details": {k: v for k, v in (("scope", scope), ("email", sample.email_masked),
                                          ("contact_id", sample.contact_id or contact_id)) if v}}


# --- text -----------------------------------------------------------------------------------------
def _baseline(p: dict) -> str:
    """The lead's baseline, with the attribute it is a value of (a value alone says nothing once the rule
    moved to another attribute); a link stored before the bridge recorded the attribute shows the value. A
    referrer's none: referrers never qualify (her link keeps one all the same: "baseline ...=(no value)" read as if
    a rule were judged on her)."""
    of, value = p.get("baseline_of"), p.get("baseline")
    if p.get("kind") == "referrer":
        return ""
    if of == MOVED_UNKNOWN:
        return "; baseline not known (moved to an older contact)"
    if of:
        return f"; baseline {of}=" + ("(no value)" if value is None else repr(value))
    return f"; baseline {value!r}" if value is not None else ""


def as_text(explanation: Explanation) -> str:
    view = explanation.view()
    if not view["found"]:       # a short first line, then each case on its own indented line (as doctor's findings)
        # Intercom could not be asked: said first, and its reason (long, maybe: Intercom's own text) on a line of its own
        u = Unasked(**view["unasked"], again=explanation.unasked.again) if explanation.unasked and "unasked" in view \
            else None
        first = f"{u.first}; no record of it yet" if u else view["message"]
        return "\n".join([first + ":"] + [f"  - {case}" for case in ([u.fix] if u else []) + view["cases"]])
    lines = [f"{view['query']}:"]
    for p in view["people"]:
        letter = p.get("dead_letter")
        state = ("discarded (its dead letter, by the operator)" if p.get("discarded") else "dead-lettered" if letter
                 else f"replayed at {p['replayed_at']}: back in the queue" if p["status"] == "replayed"
                 else p["status"]) + (f", qualification {_qualification(p)}" if p.get("qualification") else "") + (
                 f" at {p['replayed_at']}: back in the queue" if p.get("qualification") == "replayed" else "")
        about = ", ".join(filter(None, (p.get("contact_role"), p.get("contact_state") and f"{p['contact_state']} in "
                                                                                           "Intercom")))
        contact = (f"Intercom contact {p['contact_id']}" + (f" ({about})" if about else "")
                   if p.get("contact_id") else "no Intercom contact" + ("" if p["status"] == "ignored" else " yet"))
        lines.append(f"  campaign {p['campaign_id']}, RF user {p['rf_user_id']} ({p.get('kind') or 'kind unknown'}, "
                     f"{p.get('email') or 'no email'}): {contact} in workspace {p['workspace']}; {state}"
                     + _baseline(p)
                     + (f" — {beside_fix(letter['reason'], letter.get('fix'))} (since {letter['at']}; the link "
                        "still says waiting)"
                        + (f"; fix: {letter['fix']}" if letter.get("fix") else "") if letter else
                        f" — {'it failed: ' if p.get('discarded') else ''}{p['reason']}"
                        if p.get("reason") and not p.get("replayed_at") else "")     # (a replay's: the trail says why)
                     + (" (waits in the queue, without using up a try)" if p["status"] == "waiting" else "")
                     + (f" ({_under_way(p['retry'])})" if "retry" in p else ""))
    for e in view.get("enrolled_by_sync", []):
        if not any(p["campaign_id"] == e["campaign_id"] and p["rf_user_id"] == e["rf_user_id"] for p in view["people"]):
            how = f"contact sync (run {e['run']})" if e["run"] else "ongoing contact sync (by webhook)"
            lines.append(f"  campaign {e['campaign_id']}, RF user {e['rf_user_id']}: enrolled by {how} from Intercom "
                         f"contact {e['contact_id']}, not by a join")
    for d in view.get("duplicate_of", []):
        lines.append(f"  Intercom contact {d['contact_id']} ({d['email']}, workspace {d['workspace']}) is linked to "
                     f"nobody: it shares the email of {d.get('kind') or 'person'} RF user {d['rf_user_id']} of "
                     f"campaign {d['campaign_id']} (linked to contact {d['linked_contact_id']}); its changes "
                     + ("count" if d["counts"] else "do not count") + f" for them — {d['why']}")
        if d.get("hint"):
            lines.append(f"{'':4}hint: {d['hint']}")
    if not view["people"] and not view.get("enrolled_by_sync") and not view.get("duplicate_of"):
        lines.append("  no link: no join of theirs was applied")
    lines.append("")
    # The same entry again and again in a row (a join received at each try) is said once, with how many times.
    said: list[tuple[tuple[str, str, list[str]], int, str, str]] = []    # (entry's text, times, first at, last at)
    for e in view["trail"]:
        text, times = _entry_text(e), max(1, e.get("count") or 1)
        if said and said[-1][0] == text:
            _, before, first, _ = said[-1]
            said[-1] = (text, before + times, first, e["at"])
        else:
            said.append((text, times, e["at"], e["at"]))
    for (head, tail, below), times, first, last in said:
        again = "" if times == 1 else f" (x{times})" if first == last else f" (x{times}, the last at {last})"
        lines.append(f"{first}  {head}{again}{tail}")
        lines += [f"{'':26}{line}" for line in below]
    return "\n".join(lines)


def _qualification(person: dict) -> str:
    return "not applied yet" if person.get("qualification_not_applied") else person["qualification"]


def _entry_text(e: dict) -> tuple[str, str, list[str]]:
    """An entry as the text says it, but for its time and count: its line (before, after where a count
    goes) and the lines below it."""
    # (a contact sync skipped, or a refusal naming no one, has no RF user: its campaign alone)
    who = f"{e.get('campaign_id') or '?'}" + (f"#{e['rf_user_id']}" if e.get("rf_user_id") else "")
    head = f"{who:<14} {e['event']}: {e['outcome']}" + (f" — {beside_fix(e['reason'], e.get('fix'))}"
                                                        if e.get("reason") else "")
    tail = (" (resolved since: discarded by the operator)" if e.get("discarded") else " (resolved since)") \
        if e.get("resolved") else ""
    inline, below = _details(e.get("details") or {})
    if inline:
        tail += "  " + ", ".join(inline)
    return head, tail, below + [f"{key}: {e[key]}" for key in ("fix", "hint") if e.get(key)]


def _under_way(retry: dict) -> str:
    if retry.get("under_way"):
        return f"try {retry['under_way']} of {retry.get('of')} under way; try {retry.get('try')} failed"
    return retry_said(retry)


def _details(details: dict) -> tuple[list[str], list[str]]:
    """An entry's details as text, never cut: values on the entry's line (`k=v`), and each object of
    a list (e.g. the field errors) on its own line below it."""
    inline, below = [], []
    for k, v in details.items():
        if v is None or v in ([], {}, ""):                     # not known (a join's type), or nothing (none
            continue                                           # fetched from RF): not "None", nor "[]"
        if k == "run" and v == 0:                              # a sync entry's: ongoing sync's webhook, no run
            inline.append("by webhook")
        elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
            below += [f"{k}:"] + [f"  - {_item(x)}" for x in v]
        elif isinstance(v, list):
            inline.append(f"{k}=[{', '.join(_item(x) for x in v)}]")
        else:
            inline.append(f"{k}={_item(v)}")
    return inline, below


def _item(value: Any) -> str:
    if isinstance(value, dict):
        if "to" in value and "reason" in value:                # a field error: where, from what, why
            source = f" ({value['source']})" if value.get("source") else ""
            return f"{value['to']}{source}: {value['reason']}"
        return ", ".join(f"{k}={_item(v)}" for k, v in value.items())
    return value if isinstance(value, str) else repr(value)


__all__ = ["NOT_SEEN", "Explanation", "as_text", "explain", "mask_email", "never_seen"]
