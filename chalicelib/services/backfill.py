"""`bridge backfill CAMPAIGN`: apply the campaign's current settings to the people who joined before
they existed, or while webhooks were refused or lost. Reads the campaign's people from Referral
Factory page by page (through the shared rate limiter, following RF's link to each next page:
rf_people.pages), each person of the campaign their own campaign_id names (RF may list every
campaign's: the others are counted apart and ignored), compares them with the links the bridge
keeps (one batched read per page), and — with `apply` — queues a join for each person the bridge
has not applied, exactly as the webhook would: the same join pipeline, so the same settings,
duplicate handling, limits and history. Idempotent: an applied join is final, so a second run
finds nobody to send. A dry run (the default) sends nothing: it counts, and names whom it would
send or count (RF id, email masked), for review before `apply`.

A join the settings ignored (`action: nothing` then: the only reason a join is ignored) is applied
under the current settings once their action for the person's side creates a contact: the run
reopens their link (LinkRepository.reopen_ignored_many: it waits, with why in its history), then
queues their join, which the worker claims as any waiting join's (a second run sends it again while
it waits: a repeat is harmless, the join's exactly-one-contact rules hold). Whom it counted for
already, it counts for still, not twice.

In a campaign that keeps referral counts, a lead whose join was applied before the setting (their
link is final and counted for nobody) is counted for their RF referrer here, once, the page's leads
in one batched write (LinkRepository.count_applied_many), and each referrer whose count grew gets it
written back (one `referral.count` message each, after each page, like the joins). So, once the pages are
read, is each referrer whose count the campaign keeps and Intercom may not hold in the campaign's attribute
(after `referral_count_attribute` changed, every kept count: also of a referrer RF lists no lead of any
more). A run with `apply` that completes pays the count backfill the settings owed when it began
(ports.store.CountBackfill: `doctor` stops reporting it); a dry run, or a run that stops or fails part-way,
leaves it owed.

A lead linked before the campaign's qualification rule (under none, or a rule on another attribute), or moved
since to an older contact, has no known value of its attribute from when they joined (domain/judge.takes_baseline):
the bridge never qualifies them by itself. A run with `apply` reads each one's contact now and takes its value as their baseline
(one contact read and one write each): they wait for qualification from then on, and, under
require_change, one already at the target qualifies only once its value changes away and back: said apart
(HELD), as the bridge cannot tell one that reached the target after joining (a reward owed) from one there
before.

A lead whose qualification RF refused (a 4xx: failed, only a replay reopens it) longer ago than SQS keeps its dead
letter (domain/judge.letter_gone) can no longer be replayed: a run with `apply` queues a check of the lead marked as a
replay, what its letter's replay would do (qualification/checks.on_check): RF is asked first, then sent the PUT only
if it says no; a refusal that still holds fails it again, with RF's reason, in a dead letter of its own (which a
next run leaves to `bridge dlq replay` for as long as SQS keeps it). One whose letter the operator discarded (`bridge
dlq discard`: given up on for good) is left as it is. Such a lead RF no longer lists (the campaign's refused leads read
once the pages are, one query: SCAN_LIMIT links at most) is asked about (one call each): RF answering 404, it was
deleted there, and a run with `apply` marks its link so (Link.rf_deleted_at, with an entry in its history): never
checked again, nor counted by `doctor`, and `explain` says it; RF answering for it, it is checked again as a listed one
is; RF not answering, it is left for a next run."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Protocol, Sequence

from ..domain import people as people_
from ..domain.advice import TAKE_BASELINES, how_many
from ..domain.history import RECHECKED, Entry
from ..domain.judge import DEAD_LETTER_DAYS, letter_discarded, letter_gone, takes_baseline
from ..domain.link import MOVED_UNKNOWN, Link, LinkStatus, PersonRef
from ..domain.mapping import attribute_type, attribute_value
from ..domain.qualification import QState
from ..domain.rules import matches
from ..domain.settings import CampaignSettings, SettingsError, parse_settings
from ..domain.sync import NOT_IN_RF, count_attribute, counted_referrer
from ..errors import Permanent, WorkError, rf_answered, rf_campaign_fix
from ..observability import mask_email, mask_emails
from ..messages import CheckMessage, JoinMessage
from ..ports import IntercomPort, Merged, MessageTooLarge, NotFound, Store, WorkQueue
from ..webhooks import BodyError, RFPerson, rf_person
from . import rf_people
from .ingest import queued_whole_or_thin
from .referral_count import messages as count_messages


# outcomes
LINKED = "already linked"
IGNORED = "already applied: nothing to do by the settings"
IN_PROGRESS = "being joined right now"
# A join whose last try had to wait: its message is in the queue, or was dead-lettered before a try came
# (a batched read that failed each time): sent again, as a repeat is harmless while it still waits.
WAITING = "waiting (in the queue, or dead-lettered before its next try): joined again"
RETRY = "failed earlier: joined again"
MISSING = "not in the bridge: joined"
# Enrolled by contact sync, whose join (RF sends one for the users sync creates, and it links them)
# has not reached the bridge yet, or was lost: backfill sends it, as it sends any missing join.
SYNCED = "enrolled by contact sync, not linked yet: joined"
NOTHING = "nothing to do (the settings' action is nothing)"
UNREADABLE = "unreadable in Referral Factory"
EXAMPLES = 20       # people the text names of an outcome (and `unreadable` of those RF lists unreadably)
COUNTED = "already applied: counted now for their referrer"     # (linked or ignored, before the count's setting)
# A lead whose value when it joined is not known under the rule: linked before it (under none, or one on another
# attribute), or moved since to an older contact (judge.takes_baseline).
BASELINE = "baseline not known under the qualification rule: its value now taken as its baseline"
# ... already at the target when read, under require_change: never qualified by itself unless it changes away and back
HELD = ("baseline not known under the qualification rule: already at the target now, taken as its baseline — qualified "
        "only after a change away and back: check in Intercom whether they reached it after joining, and qualify them "
        "in Referral Factory if so")
NOT_TAKEN = "baseline not known under the qualification rule: its contact could not be read, no baseline taken (run again)"
# A lead whose qualification RF refused, its dead letter gone (letter_gone): checked again, as its letter's replay would.
RECHECK = (f"qualification refused by Referral Factory, its dead letter gone (SQS keeps one {DEAD_LETTER_DAYS} days): "
           "checked again (Referral Factory asked first)")
# ... and no longer listed by RF, which answered 404 for it: deleted there, nothing left to check (Link.rf_deleted_at)
RF_DELETED = (f"qualification refused by Referral Factory, its dead letter gone (SQS keeps one {DEAD_LETTER_DAYS} days), "
              "and deleted in Referral Factory (not listed, 404): marked so, never checked again (`doctor` no longer "
              "counts it)")
# ... not listed, and RF could not be asked about it: left for a next run
RF_UNASKED = (f"qualification refused by Referral Factory, its dead letter gone (SQS keeps one {DEAD_LETTER_DAYS} "
              "days), not listed by Referral Factory, which could not be asked about it: left as it is (run again)")
ACTS = (WAITING, RETRY, MISSING, SYNCED, COUNTED, BASELINE, HELD, NOT_TAKEN, RECHECK, RF_DELETED, RF_UNASKED)   # outcomes that act on people (and Reopened)

Uncounted = tuple[PersonRef, PersonRef]     # a lead applied without counting, and the referrer they count for


@dataclass(frozen=True)
class Reopened:
    """A join ignored under `action: nothing`, whose side's action now creates (`action`): sent again."""
    action: str

    def said(self, applied: bool) -> str:
        return f"ignored under action nothing, now {self.action}: " + ("joined again" if applied else
                                                                         "would be joined again")


Outcome = str | Reopened
Classified = tuple[Outcome, Optional[JoinMessage], Optional[Uncounted]]


class Backfilling(Protocol):
    @property
    def store(self) -> Store: ...
    @property
    def queue(self) -> WorkQueue: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    def rf(self) -> Any: ...                           # ports.apis.CampaignPeople
    def intercom(self, workspace: str) -> IntercomPort: ...
    def attributes(self, workspace: str, naming: Iterable[str] = ()) -> dict[str, dict]: ...   # as ports.apis.Apis's


class BackfillError(Exception):
    """A clear refusal (the campaign has no settings, ...)."""


@dataclass
class Result:
    campaign_id: str
    applied: bool
    read: int = 0
    queued: int = 0
    # people RF listed whose own campaign_id is not the campaign's (RF may list every campaign's): ignored
    other_campaigns: int = 0
    counted: int = 0                 # leads counted for their referrer now (referral counts)
    count_writes: int = 0            # referral.count messages queued: one per referrer whose count grew
    outcomes: Counter = field(default_factory=Counter)
    # who RF listed unreadably, and why (email masked): the first EXAMPLES (outcomes counts them all)
    unreadable: list[dict] = field(default_factory=list)
    # whom each outcome that acts on people (ACTS, Reopened) sends or counts, all of them (email masked)
    people: dict[Outcome, list[dict]] = field(default_factory=dict)

    def view(self) -> dict:
        dry = {RETRY: "failed earlier: would be joined again", MISSING: "not in the bridge: would be joined",
               SYNCED: "enrolled by contact sync, not linked yet: would be joined",
               WAITING: "waiting (in the queue, or dead-lettered before its next try): would be joined again",
               COUNTED: "already applied: would be counted for their referrer",
               BASELINE: "baseline not known under the qualification rule: its value now would be taken as its baseline",
               RECHECK: RECHECK.replace("checked again", "would be checked again"),
               RF_DELETED: RF_DELETED.replace("marked so, never", "would be marked so, then never")}

        def said(k: Outcome) -> str:
            return k.said(self.applied) if isinstance(k, Reopened) else k if self.applied else dry.get(k, k)
        order = [k for k, _ in self.outcomes.most_common()]
        return {"campaign_id": self.campaign_id, "dry_run": not self.applied, "people_in_rf": self.read,
                "other_campaigns_ignored": self.other_campaigns,
                "queued": self.queued, "counted": self.counted, "count_writes_queued": self.count_writes,
                "outcomes": {said(k): self.outcomes[k] for k in order},
                "people": {said(k): self.people[k] for k in order if k in self.people},
                "unreadable": self.unreadable, "unreadable_more": self.outcomes[UNREADABLE] - len(self.unreadable)}


def backfill(rt: Backfilling, campaign_id: str, apply: bool = False,
             progress: Optional[Callable[[int, Optional[int], int], None]] = None) -> Result:
    """`progress(read, total, queued)` is called after each page."""
    stored = rt.store.settings.get(str(campaign_id))
    if stored is None:
        raise BackfillError(f"campaign {campaign_id} has no settings here: apply them first (`bridge settings apply`)")
    try:
        settings = parse_settings(stored.document)
    except SettingsError as exc:
        raise BackfillError(f"the stored settings of campaign {campaign_id} are invalid: {'; '.join(exc.problems)}")
    result = Result(str(campaign_id), apply)
    asked: set[PersonRef] = set()          # referrers whose count write this run asked for (once is enough)
    synced: Optional[set[str]] = None      # the RF ids contact sync enrolled (its ledger, read once if needed)
    would_send = 0                          # joins a dry run would send (an apply's are result.queued)
    listed = 0                              # people RF listed, of any campaign (the progress's, against its total)
    pages = 0                               # pages of RF's list read
    seen: set[str] = set()                  # the RF ids read so far (_unseen)
    walk = rf_people.pages(rt.rf(), result.campaign_id)
    while True:
        try:
            page = next(walk, None)
        except WorkError as exc:        # e.g. RF blocked this IP: said with what to do, as doctor says it
            raise BackfillError(f"Referral Factory could not list the people of campaign {result.campaign_id} "
                                f"(page {pages + 1}): {rf_answered(exc)} — " + rf_campaign_fix(
                                    exc, result.campaign_id, f"`bridge backfill {result.campaign_id}`")) from None
        if page is None:
            break
        pages += 1
        users = _unseen(page.people, seen)
        result.other_campaigns += page.listed - len(page.people)
        listed += page.listed
        links = rt.store.links.get_many(PersonRef(result.campaign_id, str(u.get("id"))) for u in users)
        read = [_read(user) for user in users]
        classified = [_classify(user, person, links, settings) for user, person in zip(users, read)]
        if any(outcome == MISSING for outcome, _, _ in classified):
            synced = _synced(rt, result.campaign_id) if synced is None else synced
            classified = [(SYNCED, message, lead) if outcome == MISSING and message and message.rf_user_id in synced
                          else (outcome, message, lead) for outcome, message, lead in classified]
        if apply:
            classified = _reopened(rt, classified, links)
        baselines = _baselines(rt, settings, links, apply)
        uncounted = [u for _, _, u in classified if u is not None]
        counted = _count(rt, uncounted) if apply and uncounted else set()
        grown = {referrer for lead, referrer in uncounted if lead in counted}
        to_send: list[JoinMessage] = []
        checks = _rechecks(rt.store, links, rt.clock(), apply)
        for user, person, (outcome, message, lead) in zip(users, read, classified):
            base: tuple[Outcome, Optional[str]] = (outcome, None)
            if outcome == LINKED and isinstance(person, RFPerson):
                ref = PersonRef(result.campaign_id, person.id)
                base = (RECHECK, None) if ref in checks else baselines.get(ref, base)
            # (one counted now whose baseline is held at the target, or not taken, is said as such: to check)
            counted_now = lead is not None and (not apply or lead[0] in counted) and base[0] not in (HELD, NOT_TAKEN,
                                                                                                      RECHECK)
            outcome, why = (COUNTED, None) if counted_now else base
            if isinstance(person, RFPerson) and (outcome in ACTS or isinstance(outcome, Reopened)):
                _said(result, outcome, person.id, person.email, why, lead if counted_now else None)
            else:
                result.outcomes[outcome] += 1
                if isinstance(person, BodyError) and len(result.unreadable) < EXAMPLES:
                    result.unreadable.append(unreadable(user, person))
            if message is not None:
                to_send.append(message)
        would_send += len(to_send) + len(checks)
        result.read += len(users)
        result.counted += len(counted)
        if apply and (to_send or grown or checks):
            _send(rt, to_send, grown, set(), list(checks.values()))
            asked |= grown
            result.queued += len(to_send) + len(checks)
            result.count_writes += len(grown)
        if progress:
            progress(listed, page.total, result.queued if apply else would_send)
    if not result.read:
        _campaign_exists(rt, result.campaign_id)
    rechecks = _unlisted(rt, result, seen, apply)
    attribute = count_attribute(settings)
    owed = _owed(rt, result.campaign_id, asked, attribute) if apply and attribute else set()
    if apply and (rechecks or owed):    # one send: the unlisted leads' checks and the counts owed
        _send(rt, [], set(), owed, rechecks)
        result.queued += len(rechecks)
        result.count_writes += len(owed)
    if apply and stored.count_backfill is not None:
        rt.store.settings.count_backfilled(result.campaign_id, stored.count_backfill)
    return result


@dataclass(frozen=True)
class Unknown:
    """The campaign's linked leads that are never qualified by themselves until `--apply` takes their baselines
    (domain/judge.takes_baseline), as `settings apply` and `doctor` say them: what, and the fix; `complete`:
    False when the read stopped at SCAN_LIMIT joins, having found fewer (n may be 0)."""
    what: str
    fix: str
    n: int
    complete: bool


def unknown_baselines(store: Store, settings: CampaignSettings, limit: int) -> Optional[Unknown]:
    """Counted up to `limit` (one bounded query): those linked before the campaign had a rule, and, while
    require_change holds, those waiting with a baseline of another attribute (without it, the baseline does
    not matter: they qualify). None: the campaign has no rule."""
    rule = settings.qualification
    if rule is None:
        return None
    found, complete = store.links.unbaselined(settings.campaign_id, settings.workspace, rule.attribute, limit)
    n = found.get(None, 0) + (found.get(QState.PENDING, 0) if rule.require_change else 0)
    who = how_many(n, sum(found.values()) >= limit, "linked lead", "linked leads")
    return Unknown(f"{who} joined before the qualification rule on {rule.attribute} (under no rule, or a rule on "
                   "another attribute), or moved since to an older contact: their value then is not known, so they "
                   "are not qualified automatically",
                   TAKE_BASELINES.format(campaign=settings.campaign_id) + (
                       " (one already at the target then qualifies only once its value changes away and back: require_change)"
                       if rule.require_change else ""), n, complete)


def _unseen(users: list[dict], seen: set[str]) -> list[dict]:
    """The page's people not read before by this run (each added to `seen`): RF's pages are offsets into its
    list, which people joining meanwhile push down, so the last of one page may be listed again on the next.
    Each person is read, said and sent once."""
    out = []
    for user in users:
        who = people_.normalise(user).get("id")
        if isinstance(who, str):          # (one without a readable id is said unreadable each time RF lists them)
            if who in seen:
                continue
            seen.add(who)
        out.append(user)
    return out


def _synced(rt: Backfilling, campaign_id: str) -> set[str]:
    """The RF ids of the referrers contact sync enrolled in the campaign (one query of its ledger): in RF
    already, and known to the bridge by their ledger entry (their join links them)."""
    return {e.rf_user_id for e in rt.store.sync.ledger(campaign_id) if e.rf_user_id and e.outcome != NOT_IN_RF}


def _campaign_exists(rt: Backfilling, campaign_id: str) -> None:
    """RF lists no people for a campaign it does not know: a campaign none of whose people RF listed is asked
    about (one call),
    so that a wrong id is said, as `doctor` says it, rather than counted as nobody to send."""
    try:
        rt.rf().get_campaign(campaign_id)
    except WorkError as exc:
        raise BackfillError(f"Referral Factory could not show campaign {campaign_id}: {rf_answered(exc)} — "
                            + rf_campaign_fix(exc, campaign_id, f"`bridge backfill {campaign_id}`")) from None


def _read(user: dict) -> RFPerson | BodyError:
    """The person RF listed, or why the bridge cannot read them (webhooks.rf_person, as a join reads them)."""
    try:
        return rf_person(user)
    except BodyError as exc:
        return exc


def unreadable(user: dict, error: BodyError) -> dict:
    """Whom RF listed so that the bridge cannot read them (their RF id as RF gave it, else their email,
    masked), and what in RF's answer it cannot read (`error`'s reason: the field, never its value)."""
    person = people_.normalise(user)
    reason = error.message.split(":", 1)[0] if error.code == "missing_user_id" else error.message
    who = person.get("id")
    return {"rf_user_id": None if who in (None, "") else mask_emails(str(who)),
            "email": mask_email(person["email"]) if person.get("email") else None, "reason": reason}


def _said(result: Result, outcome: Outcome, rf_user_id: str, email: Optional[str], why: Optional[str] = None,
          counted: Optional[Uncounted] = None) -> None:
    """An outcome that acts on someone (ACTS, Reopened): counted, and whom it acts on named, as the CLI shows people:
    their RF id and email masked (and, a lead counted now, the referrer they count for; `why`, what was not done)."""
    result.outcomes[outcome] += 1
    result.people.setdefault(outcome, []).append({
        "rf_user_id": rf_user_id, "email": mask_email(email) if email else None,
        **({"referrer_id": counted[1].rf_user_id} if counted else {}), **({"reason": why} if why else {})})


def _classify(user: dict, person: RFPerson | BodyError, links: dict, settings: CampaignSettings) -> Classified:
    # (a join backfill queues carries no `received_at`: no webhook came, and the seconds since the run queued it are
    # no delay of the bridge's: JoinDelaySeconds leaves them out, as it does reconciliation's joins)
    if isinstance(person, BodyError):
        return UNREADABLE, None, None
    campaign_id = person.campaign_id
    link = links.get(PersonRef(campaign_id, person.id))
    if link is not None and link.status is LinkStatus.LINKED:
        return LINKED, None, _uncounted(settings, person, link)
    kind = people_.normalise(user).get("type") or (link.kind if link is not None else None)
    if link is not None and link.status is LinkStatus.IGNORED:
        action = settings.people(kind == "lead").action if kind in ("lead", "referrer") else "nothing"
        if action == "nothing":
            return IGNORED, None, _uncounted(settings, person, link)
        message = JoinMessage(campaign_id=campaign_id, rf_user_id=person.id, person=person)
        return Reopened(action), message, None
    if link is not None and link.status is LinkStatus.IN_PROGRESS:
        return IN_PROGRESS, None, None
    if kind in ("lead", "referrer") and settings.people(kind == "lead").action == "nothing":
        return NOTHING, None, None
    message = JoinMessage(campaign_id=campaign_id, rf_user_id=person.id, person=person)
    waiting = link is not None and link.status is LinkStatus.WAITING
    return (WAITING if waiting else RETRY if link is not None else MISSING), message, None


def _reopened(rt: Backfilling, classified: list[Classified], links: dict[PersonRef, Link]) -> list[Classified]:
    """The page's ignored joins to send again, reopened first (one batched write), so that the worker
    claims them: one whose link changed meanwhile (applied, or reopened by another run) is not sent by
    this run (said as being joined)."""
    ignored = [(message.person_ref, outcome.action) for outcome, message, _ in classified
               if message is not None and isinstance(outcome, Reopened)]
    if not ignored:
        return classified
    whys = [(ref, _why(ref, action, links[ref])) for ref, action in ignored]
    answers = rt.store.links.reopen_ignored_many([(ref, why, [Entry("join", "resent", why)]) for ref, why in whys])
    lost = {ref for (ref, _), done in zip(ignored, answers) if not done}
    return [(IN_PROGRESS, None, None) if message is not None and message.person_ref in lost else (outcome, message, lead)
            for outcome, message, lead in classified]


def _why(ref: PersonRef, action: str, link: Link) -> str:
    side = "referrers" if link.kind == "referrer" else "leads"
    return (f"sent again by `bridge backfill {ref.campaign_id} --apply`: the join was ignored under {side}.action "
            f"nothing, and the settings now say {action}")


def _baselines(rt: Backfilling, settings: CampaignSettings, links: dict[PersonRef, Link],
               apply: bool) -> dict[PersonRef, tuple[Outcome, Optional[str]]]:
    """The page's leads linked (in the campaign's workspace) before its qualification rule: each one's outcome
    (and why its baseline was not taken). With `apply`, each one's contact is read now (one call each) and its
    value of the rule's attribute becomes the lead's baseline, the lead waiting for qualification from then on
    (LinkRepository.take_baselines): a lead changed meanwhile (qualified, or taken by another run) is left as
    it is, said as linked. Under require_change, one whose value meets the rule is said apart (HELD)."""
    rule = settings.qualification
    leads = [link for link in links.values() if rule is not None and takes_baseline(link, rule)
             and link.workspace == settings.workspace and link.contact_id]
    if not apply or rule is None:
        return {link.ref: (BASELINE, None) for link in leads}
    out: dict[PersonRef, tuple[Outcome, Optional[str]]] = {}
    try:                                    # the attribute's type, to tell those apart: once (its list is kept a while)
        types = rt.attributes(settings.workspace, (rule.attribute,)) if leads and rule.require_change else {}
    except WorkError as exc:
        return {link.ref: (NOT_TAKEN, exc.reason) for link in leads}
    for link in leads:
        try:
            contact = rt.intercom(link.workspace).get_contact(str(link.contact_id))
            read_at = rt.clock()        # (the value read followed every change before: what dates her baseline)
        except (Merged, NotFound, WorkError) as exc:
            out[link.ref] = (NOT_TAKEN, exc.reason if isinstance(exc, WorkError) else f"Intercom's contact "
                             f"{link.contact_id}: {exc}" if isinstance(exc, Merged) else
                             f"Intercom no longer has contact {link.contact_id}")
            continue
        value = attribute_value(contact, rule.attribute)
        held = rule.require_change and matches(rule, attribute_type(rule.attribute, types), value)
        before = "under no rule" if link.qualification is None else f"its baseline was a value of {link.baseline_of}"
        then = (f"the lead's link moved to contact {link.contact_id}, older than its join and changed since"
                if link.baseline_of == MOVED_UNKNOWN else
                f"the lead joined before the qualification rule on {rule.attribute} ({before})")
        # Taken as soon as read (one write each, as a page's were), dated by the read's answer (Link.baseline_at; not
        # its start: a read retried over seconds follows the changes made meanwhile): a change she made before it is
        # none after the value taken; one made after it, even before the take is written, is judged.
        taken = (link, value, rule.attribute, [Entry("qualification", "baseline_taken", (
            f"`bridge backfill {link.campaign_id} --apply`: {then}, so its value then is not known; it is "
            f"{'empty' if value in (None, '') else repr(value)} now, " + (
                "already at the target, taken as its baseline: qualified only after a change away and back "
                "(require_change) — check in Intercom whether it reached the target after joining, and qualify it in "
                "Referral Factory if so" if held else
                "taken as its baseline: the lead waits for qualification from now on")),
            {"baseline": value, "contact_id": link.contact_id})])
        done, = rt.store.links.take_baselines([taken], read_at=read_at)
        out[link.ref] = ((HELD if held else BASELINE) if done else LINKED, None)
    return out


def _uncounted(settings: CampaignSettings, person: RFPerson, link: Link) -> Optional[Uncounted]:
    """A lead whose join was applied (final) before the campaign kept referral counts counts for
    their referrer (RF says who) as their join would now: None for anyone else, or one counted."""
    referrer = None if link.counted_for else counted_referrer(
        settings, {"type": person.type, "referrer_id": person.referrer_id})
    return (link.ref, PersonRef(link.campaign_id, referrer)) if referrer else None


def _count(rt: Backfilling, uncounted: list[Uncounted]) -> set[PersonRef]:
    """Count the page's leads now, in one batched write: those counted (not those counted meanwhile,
    by another run or their join, nor those whose link changed or was erased)."""
    try:
        answers = rt.store.links.count_applied_many([(lead, referrer.rf_user_id, [Entry(
            "referral_count", "counted", f"counted for referrer {referrer.rf_user_id} by `bridge backfill "
            f"{lead.campaign_id} --apply` (the join was applied before the campaign kept referral counts)",
            {"referrer_id": referrer.rf_user_id})]) for lead, referrer in uncounted])
    except BaseException:
        # Stopped mid-page (Ctrl-C, DynamoDB failing): some of the page's leads may be counted. Each of
        # their referrers asks for the write, of the count kept, unless Intercom holds it already.
        rt.queue.send_many(count_messages({referrer for _, referrer in uncounted}, unless_written=True))
        raise
    return {lead for (lead, _), counted in zip(uncounted, answers) if counted}


def _owed(rt: Backfilling, campaign_id: str, asked: set[PersonRef], attribute: str) -> set[PersonRef]:
    """The referrers whose count the campaign keeps and Intercom may not hold (a run that stopped before asking
    for the write, a failed send, a count written to the attribute the settings named before), whether or not RF
    still lists a lead of theirs: asked again, each only when the count written is not the count kept, in the
    campaign's attribute (one query of the campaign's counts, once the walk is done), and not asked already by
    this run. A count of 0 never written owes nothing (sync enrolled her; no lead counted yet)."""
    return {r for r, kept in rt.store.links.referrals_in(campaign_id).items()
            if not kept.held(attribute) and (kept.n or kept.written is not None)} - asked


def _rechecks(store: Store, links: dict[PersonRef, Link], now: float, apply: bool) -> dict[PersonRef, CheckMessage]:
    """The page's leads whose refused qualification's dead letter is gone (letter_gone: not one the operator
    discarded, `bridge dlq discard`: that reward given up on for good): a check of each, marked as a replay (the
    letter's own would be), which finishes the qualification (RF asked first). A run again before it is worked
    queues it again: harmless, one claim qualifies, and the other finds it done. A refusal recorded before links
    kept the discard (Link.refused_at unset) is told by its history; `apply` writes a discard found there onto the
    link, where doctor and later webhooks read it, and where it outlives the history."""
    gone = [link for link in links.values() if letter_gone(link, now, listed=True)]     # (RF lists them: not deleted)
    discarded = [link.ref for link in gone
                 if link.refused_at is None and letter_discarded(store.history.entries(link.ref))]
    if apply and discarded:
        store.links.discard_refusals(discarded)
    return {link.ref: CheckMessage(campaign_id=link.campaign_id, rf_user_id=link.rf_user_id, workspace=link.workspace,
                                   replayed_from=RECHECKED) for link in gone if link.ref not in discarded}


def _unlisted(rt: Backfilling, result: Result, seen: set[str], apply: bool) -> list[CheckMessage]:
    """The campaign's leads whose refused qualification's dead letter is gone (letter_gone) and whom RF did not list
    (`seen`: the whole walk's): each asked about (one call): deleted there (404), marked so with `apply`
    (LinkRepository.rf_deleted, one write each: one changed meanwhile, e.g. checked again, is left as it is); RF
    answering for it (its list skipped it: its pages are offsets, which a deletion meanwhile shifts), checked again as
    a listed one is; RF not answering, left for a next run. The checks to send (with `apply`; the caller sends them
    with the counts owed, in one send)."""
    now = rt.clock()
    refused, _ = rt.store.links.refused_in(result.campaign_id)
    unlisted = [link for link in refused if link.rf_user_id not in seen and letter_gone(link, now)]
    deleted: list[Link] = []
    answered: dict[PersonRef, Link] = {}
    for link in unlisted:
        try:
            rt.rf().get_user(link.rf_user_id)
        except WorkError as exc:
            if isinstance(exc, Permanent) and exc.status == 404:
                deleted.append(link)
            else:
                _said(result, RF_UNASKED, link.rf_user_id, link.email, exc.reason)
            continue
        answered[link.ref] = link
    checks = _rechecks(rt.store, answered, now, apply) if answered else {}
    marked = rt.store.links.rf_deleted([(link, [Entry("qualification", "deleted_in_rf", (
        f"`bridge backfill {link.campaign_id} --apply`: Referral Factory no longer lists this lead, and answered 404 "
        f"for it: deleted in Referral Factory, so its refused qualification (its dead letter gone) is never checked "
        "again"))]) for link in deleted]) if apply and deleted else [True] * len(deleted)
    for link, done in zip(deleted, marked):
        if done:
            _said(result, RF_DELETED, link.rf_user_id, link.email)
    for ref in checks:
        _said(result, RECHECK, answered[ref].rf_user_id, answered[ref].email)
    return list(checks.values()) if apply else []


def _send(rt: Backfilling, joins: list[JoinMessage], grown: set[PersonRef], owed: set[PersonRef],
          checks: Sequence[CheckMessage] = ()) -> None:
    # The counts first: a join a failed send left out is found again by the next run.
    counts = count_messages(grown) + count_messages(owed, unless_written=True) + [c.wire() for c in checks]
    try:
        try:
            rt.queue.send_many(counts + [join.wire() for join in joins])
        except MessageTooLarge:     # a person too large to queue whole (none was sent): the page's joins one by one,
            rt.queue.send_many(counts)      # theirs thin, as the webhook's (the worker reads what it left out from RF)
            for join in joins:
                queued_whole_or_thin(rt.queue, join)
    except Exception as exc:
        if not grown:
            raise BackfillError(f"the messages could not be queued ({exc}): run backfill again, which sends what "
                                "is still missing (a join queued twice is harmless: it makes one contact)") from exc
        # The leads counted stay counted: a run again does not count them twice, and asks for the write.
        raise BackfillError(f"the messages could not be queued ({exc}); the counts of referrer(s) "
                            f"{', '.join(r.rf_user_id for r in sorted(grown))} grew and are kept: run backfill "
                            "again, which asks for their writes to Intercom (and queues the joins)") from exc
