"""Use case: people joined a campaign. Apply its settings: create or find each person's Intercom
contact, link it to the RF person, and record every decision in the person's history.

A batch of joins is applied together, in steps: what can be asked once for the whole batch is
asked once (one contact search for every email, one tag call for every new contact), and the
per-person steps (claim, Referral Factory's fields, create or update, finish) run at once. Each
person fails alone: a failure is recorded on their link and raised for their message only.

At most one contact per person: every contact the bridge creates carries our marker (the RF
person it was created for). A try whose create got no answer (a timeout, a 5xx, a crash) leaves
that said on the link (`uncertain_since`); the next try looks for the marker before creating, and
waits (a deferral, not a failure) while Intercom's search may still be catching up. A lead it
created is looked at again once search has caught up (`VerifyMessage`, services/duplicates.py)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, TypeVar

from ..domain import join as decide
from ..domain import people
from ..domain.history import REPLAYED, Entry, iso
from ..domain.link import LEAD, REFERRER, FoundContact, JoinClaim, JoinResult, Link, LinkStatus, PersonRef
from ..domain import rules
from ..domain.judge import Kept, Sighting, baseline_known, kept_for_join, released
from ..domain.latency import delay
from ..domain.mapping import MARKER_DESCRIPTION, MARKER_NAME, REFUSED_BY_INTERCOM, attribute_value
from ..domain.outage import unavailable, waits_again
from ..domain.qualification import QState
from ..domain.settings import CampaignSettings
from ..domain.sync import count_attribute, counted_referrer
from ..errors import Deferred, Disconnected, Permanent, TokenRefused, Transient, unforeseen, waits
from ..messages import CheckMessage, JoinMessage, VerifyMessage
from ..observability import count, logger, mask_email, seconds
from ..ports import Apis, Conflict, Found, IntercomPort, Merged, NotFound
from ..ports.edge import SAMPLES, RefusalSample, fields_scope
from ..webhooks import printable, rf_email
from .concurrency import Runner
from .deps import WorkDeps, stored_settings
from .qualification.qualifier import campaign_user, qualified_at
from .referral_count import messages as count_messages

T = TypeVar("T")


@dataclass(frozen=True)
class Known:
    """What a failed try records: the email, the contact it was working with (with its baseline),
    and since when a contact it created may exist unseen."""

    email: Optional[str]
    contact_id: Optional[str] = None
    baseline: Any = None
    uncertain_since: Optional[float] = None
    baseline_of: Optional[str] = None        # the attribute `baseline` is a value of (Link.baseline_of)
    found: bool = False                      # `contact_id` existed: the try found it, and held it (Link.contact_found)
    kind: Optional[str] = None               # held with it (the person's; a notification arms a lead's only)
    role: Optional[str] = None               # (the contact's)
    found_at: Optional[float] = None         # when the try that found it, and read its baseline, began (Link.found_at)

    def kept(self) -> dict[str, Any]:
        """What the link keeps of it when a try ends without the join (failed, waiting, or ignored since): the
        next try resumes with the contact and its baseline (and when the try that found it read that), or looks for
        a create whose answer was never seen."""
        return {"contact_id": self.contact_id, "baseline": self.baseline, "baseline_of": self.baseline_of,
                "uncertain_since": self.uncertain_since, "contact_found": self.found, "contact_role": self.role,
                "found_at": self.found_at if self.found else None}


@dataclass(frozen=True)
class Person:
    """The person as the mapping reads them, and what had to be read from Referral Factory."""

    values: dict[str, Any]
    fetched: tuple[str, ...] = ()
    rf_user: Optional[dict] = None        # RF's own answer for them, when read (before the webhook's values win)

    @property
    def email(self) -> Optional[str]:
        return (self.values.get("email") or "").lower() or None

    def received(self, message: JoinMessage) -> Entry:
        """What the try read of the person; a replay says so (and which dead letter it was), as does a join too
        large to queue (its largest fields left out, read from Referral Factory)."""
        replayed_from = message.replayed_from
        said = [f"too large to queue ({message.too_large} bytes): its {message.left_out} largest field(s) left out, "
                "read from Referral Factory"] if message.too_large else []
        return Entry("join_received", "received", "; ".join(said + ([REPLAYED] if replayed_from else [])) or None, {
            "type": self.values.get("type"), "fetched_from_referral_factory": list(self.fetched),
            **({"replayed_from": replayed_from} if replayed_from else {})})


@dataclass(frozen=True)
class Reached:
    """The contact the join ends with, how, and its history."""

    contact: dict
    outcome: str                 # created | updated | linked
    baseline: Any
    baseline_of: Optional[str]   # the attribute `baseline` is a value of (an earlier try's, when resumed with it)
    entries: tuple[Entry, ...] = ()
    resumed: bool = False        # an earlier try created or found it: webhooks may have come meanwhile


@dataclass(frozen=True)
class Existing:
    """A contact with the person's email that existed, as read, and its baseline: what `_mark` writes to. `held`:
    recorded on the link already (an earlier try found it), with that baseline. `resumed`: an earlier try found it,
    or the contact Intercom merged into it since (webhooks may have come meanwhile)."""

    contact: dict
    found_by: str
    baseline: Any
    baseline_of: Optional[str]
    held: bool = False
    resumed: bool = False


@dataclass(eq=False)
class Attempt:
    """One message's join, as it goes through the batch's steps."""

    message: JoinMessage
    link: Optional[Link]                       # as the batch read it, before our claim
    settings: Optional[CampaignSettings] = None
    claim: Optional[JoinClaim] = None
    known: Known = Known(None)
    person: Optional[Person] = None
    plan: Optional[decide.Plan] = None
    reached: Optional[Reached] = None
    existing: Optional[Existing] = None        # found, not written to yet (_hold, then _mark)
    entries: list[Entry] = field(default_factory=list)       # before the contact's own entries
    tagged: list[Entry] = field(default_factory=list)        # after them
    found: list[dict] = field(default_factory=list)          # the batch's search: contacts with its email
    recorded: dict[str, str] = field(default_factory=dict)   # those of them the bridge's records named: id -> which
    ignored: Optional[JoinResult] = None                     # the settings create no contact for them
    outcome: Optional[str] = None              # created | updated | linked | ignored | repeat
    error: Optional[Exception] = None
    sent_create: bool = False                  # POST /contacts went out and its answer is not known
    rf_qualified_at: Optional[str] = None      # RF, asked at the join, holds the lead qualified already
    began: float = 0.0                         # before this try read the attribute list (a list read since is fresh)
    read_again: bool = False                   # a refused write read the list again (at most once a try)
    merged_into: Optional[str] = None          # the tag step met the contact merged into this one (a signup)
    kept: Optional[Kept] = None                # a change to the target the link kept for this finish (as read)

    @property
    def active(self) -> bool:
        return self.outcome is None and self.error is None

    @property
    def ref(self) -> PersonRef:
        return self.message.person_ref

    @property
    def workspace(self) -> str:
        assert self.settings is not None
        return self.settings.workspace

    @property
    def marker(self) -> str:
        return decide.marker(*self.ref)

    @property
    def judged(self) -> bool:
        """A lead of a campaign with a qualification rule: her link waits for it (pending)."""
        return self.person is not None and self.person.values.get("type") == LEAD and \
            self.settings is not None and self.settings.qualification is not None


def process_joins(messages: Sequence[JoinMessage], deps: WorkDeps, links: dict[PersonRef, Link],
                  documents: dict[str, dict], runner: Runner) -> list[Any]:
    """`links` and `documents`: what the worker's batched read found. Returns, per message, its
    outcome (created, updated, linked, ignored, repeat) or the exception it failed with. The same
    person twice in a batch: the second waits for the first (and is then a repeat)."""
    attempts = [Attempt(m, links.get(m.person_ref)) for m in messages]
    _read_ignored_again(attempts, deps)
    for n, wave in enumerate(_turns(attempts, lambda a: a.ref)):
        if n:   # a repeat within the batch: see what the first left (its writes, just made: a consistent read)
            _read_again(wave, deps)
        _apply(wave, deps, documents, runner)
    return [a.error if a.error is not None else a.outcome for a in attempts]


def _read_ignored_again(attempts: list[Attempt], deps: WorkDeps) -> None:
    """A join the batched read shows ignored may have been reopened since (`bridge backfill --apply`
    reopens it, then queues it): that read may not show the reopening yet. The ignored are read again,
    consistently, before their joins are called repeats (rare: one small read when there are any)."""
    ignored = [a for a in attempts if a.link is not None and a.link.status is LinkStatus.IGNORED]
    if ignored:
        _read_again(ignored, deps)


def _read_again(attempts: list[Attempt], deps: WorkDeps) -> None:
    """The attempts' links as they are now (one consistent read)."""
    fresh = deps.links.get_many((a.ref for a in attempts), consistent=True)
    for attempt in attempts:
        attempt.link = fresh.get(attempt.ref)


def _apply(attempts: list[Attempt], deps: WorkDeps, documents: dict[str, dict], runner: Runner) -> None:
    for attempt in attempts:
        _guard(attempt, lambda a: _begin(a, deps, documents.get(a.message.campaign_id)))
    to_claim = _active(attempts)
    claims = _prepare(attempts, deps, runner, lambda: _claims(to_claim, deps))
    _claimed(to_claim, claims, deps)
    for turn in _turns(_active(attempts), lambda a: (a.workspace, a.plan and a.plan.payload.email)):
        # People sharing an email take turns: the contact one creates is the other's existing one
        # (search cannot show it yet).
        _each(turn, runner, lambda a: _reach(a, deps))
        _hold(turn, deps)
        _each([a for a in turn if a.existing is not None], runner, lambda a: _mark(a, deps))
        for attempt in turn:
            if attempt.active and attempt.reached is not None and attempt.reached.outcome == "created":
                for other in _active(attempts):
                    if other.workspace == attempt.workspace:
                        other.found.append(attempt.reached.contact)
    tags: dict[tuple[str, str], list[Attempt]] = {}
    for attempt in _active(attempts):
        if attempt.plan is not None and attempt.reached is not None and attempt.plan.people.tag \
                and attempt.reached.outcome != "linked":
            tags.setdefault((attempt.workspace, attempt.plan.people.tag), []).append(attempt)
    created = [a for a in _active(attempts) if a.reached is not None and a.reached.outcome == "created"]

    def tag_all() -> None:
        for (workspace, tag), group in tags.items():
            _together(group, lambda: _tag(deps.apis.intercom(workspace), tag, group))

    # The new leads' verifications are queued while they are tagged: both before the links are written.
    runner.both(lambda: _together(created, lambda: _verify_later(created, deps)), tag_all)
    _finish(attempts, deps)
    _follow_later(attempts, deps)
    looks = [a for a in attempts if _looks_again(a) or _repeated_released(a)]
    try:
        finished = deps.links.get_many([a.ref for a in looks], consistent=True) if looks else {}
    except Exception as exc:
        for attempt in looks:
            _failed_after(attempt, exc)
        looks = []
    for attempt in looks:
        try:
            if attempt.outcome == "repeat":
                _repeated_evaluation(attempt, deps, finished.get(attempt.ref))
            else:
                _resumed_evaluation(attempt, deps, finished.get(attempt.ref))
        except Exception as exc:
            _failed_after(attempt, exc)
    _count_later(attempts, deps)


def _failed_after(attempt: Attempt, exc: Exception) -> None:
    """A step after the join was done failed: the failure is the message's (tried again, the join is
    then a repeat, which takes the step again where it must)."""
    attempt.outcome = None
    _fail(attempt, exc)


def _prepare(attempts: list[Attempt], deps: WorkDeps, runner: Runner,
             claim: Callable[[], dict[Attempt, Any]]) -> dict[Attempt, Any] | Exception:
    """Everything before the first write to Intercom that needs no claim: the attributes, each
    person's fields (from RF where the webhook lacked them) and plan, and one search per workspace.
    The claims (`claim`: one write for the batch; its answer, or its exception, is returned) and the read of
    the bridge's records of the emails are made while Intercom searches, which takes far longer: after the
    rate budget's slots for the batch's calls are taken, so that neither holds the search back."""
    began = deps.clock()
    for attempt in attempts:
        attempt.began = began
    for workspace, group in _by_workspace(attempts).items():     # read once, before the steps run at once
        named = [name for a in group if a.settings is not None for name in decide.converted(a.settings)]
        _together(group, lambda: deps.apis.attributes(workspace, named))
    _each(attempts, runner, lambda a: _plan(a, deps))
    searches: list[tuple[str, list[Attempt]]] = []
    for workspace, group in _by_workspace(attempts).items():
        planned = [a for a in group if a.plan is not None]
        if planned:
            _together(planned, lambda: deps.apis.ensure_attribute(workspace, MARKER_NAME, MARKER_DESCRIPTION))
            searches.append((workspace, planned))

    def search() -> None:
        for workspace, planned in searches:
            found: list[dict] = []
            _together(planned, lambda: found.extend(_search(deps.apis.intercom(workspace), planned)))
            for attempt in planned:
                attempt.found = list(found)
    for workspace, planned in searches:
        # (a search, a create or an update each, and a tag call: a batch of new leads' calls; a client that cannot
        # be made fails them here, as their search would)
        _together(_active(planned), lambda: deps.apis.intercom(workspace).ahead(len(planned) + 2))
    emails = sorted(_emails(attempts))
    claimed_and_read, _ = runner.both(lambda: runner.both(
        claim, lambda: deps.lookup.look_up(emails=emails) if emails else None), search)
    if isinstance(claimed_and_read, Exception):      # (the two have their own answers: not expected)
        claimed_and_read = (claimed_and_read, claimed_and_read)
    claims, records = claimed_and_read
    _recorded(attempts, deps, records)
    return claims


def _emails(attempts: list[Attempt]) -> set[tuple[str, str]]:
    """The (workspace, email) each planned join looks for."""
    return {(a.workspace, email) for a in _active(attempts)
            if a.plan is not None and (email := str(a.plan.payload.email))}


def _recorded(attempts: list[Attempt], deps: WorkDeps, records: Optional[Found] | Exception) -> None:
    """The emails search did not show: the bridge's own records of them (`records`, read with the search:
    one read for the batch), in the same workspace only. A contact another campaign's link names for the
    email may be too new for search (made seconds ago, in another batch): read (following a merge; a contact
    gone is no longer there), it is found as search would have shown it. Such a link is only a hint: a contact
    Intercom will not show for good (merged with no survivor named, a 4xx) is left, said in the history, and
    the join goes on as if search had found nothing; only a failure worth another try fails the try (a failed
    read fails the joins whose email search did not show, and only them)."""
    missed: dict[tuple[str, str], list[Attempt]] = {}
    for attempt in _active(attempts):
        email = str(attempt.plan.payload.email) if attempt.plan is not None else ""
        if email and not _with_email(attempt.found, email):
            missed.setdefault((attempt.workspace, email), []).append(attempt)
    if not missed or records is None:
        return
    if isinstance(records, Exception):
        for attempt in (a for group in missed.values() for a in group):
            _fail(attempt, records)
        return
    for (workspace, email), group in missed.items():
        named = {link.contact_id: link.ref for link in records.linked_to_email(workspace, email)
                 if link.contact_id and link.ref not in {a.ref for a in group}}
        for contact_id, ref in named.items():
            pointer = f"the bridge's link of user {ref.rf_user_id} in campaign {ref.campaign_id}"
            contact = _together(group, lambda: _hint(deps.apis.intercom(workspace), contact_id, pointer, group))
            if contact is None:
                continue
            for attempt in _active(group):
                attempt.found.append(contact)
                attempt.recorded[str(contact["id"])] = f"{pointer}: Intercom's search did not show it yet"


def _hint(intercom: IntercomPort, contact_id: str, pointer: str, group: list[Attempt]) -> Optional[dict]:
    """The contact a link of another campaign names, or None when it cannot be used for good (gone, merged with
    no survivor named, refused): then said in each attempt's history. A token refused, a workspace disconnected
    or a failure worth another try is raised (the join could not create either)."""
    try:
        return _find(intercom, contact_id)
    except (TokenRefused, Disconnected):
        raise
    except (Permanent, Merged) as exc:
        reason = exc.reason if isinstance(exc, Permanent) else str(exc)
        for attempt in _active(group):
            attempt.entries.append(Entry("contact", "hint_unusable", f"contact {contact_id}, named by {pointer}, "
                                         f"cannot be used ({reason}): looked for as if search had found nothing, "
                                         "and created if nothing else is found"))
        return None


def _with_email(contacts: list[dict], email: str) -> list[dict]:
    return [c for c in contacts if (c.get("email") or "").lower() == email]


# --- running the steps ----------------------------------------------------------------------------

def _turns(attempts: list[Attempt], key: Any) -> list[list[Attempt]]:
    """The attempts in turns: the first with each key, then the second with each key, ..."""
    turns: list[list[Attempt]] = []
    seen: dict[Any, int] = {}
    for attempt in attempts:
        n = seen[key(attempt)] = seen.get(key(attempt), -1) + 1
        if n == len(turns):
            turns.append([])
        turns[n].append(attempt)
    return turns


def _active(attempts: list[Attempt]) -> list[Attempt]:
    return [a for a in attempts if a.active]


def _by_workspace(attempts: list[Attempt]) -> dict[str, list[Attempt]]:
    groups: dict[str, list[Attempt]] = {}
    for attempt in _active(attempts):
        groups.setdefault(attempt.workspace, []).append(attempt)
    return groups


def _guard(attempt: Attempt, step: Any) -> None:
    if not attempt.active:
        return
    try:
        step(attempt)
    except Exception as exc:
        _fail(attempt, exc)


def _each(attempts: list[Attempt], runner: Runner, step: Any) -> None:
    """A per-person step for every active attempt, at once; a failure stays with its person."""
    active = _active(attempts)
    for attempt, result in zip(active, runner.each(step, active)):
        if isinstance(result, Exception):
            _fail(attempt, result)


def _together(group: list[Attempt], step: Callable[[], T]) -> Optional[T]:
    """One call for the whole group: its answer; its failure is every member's (None)."""
    try:
        return step()
    except Exception as exc:
        for attempt in _active(group):
            _fail(attempt, exc)
        return None


def _fail(attempt: Attempt, exc: Exception) -> None:
    """The join failed: what is known is recorded on the link when the batch finishes (so that the
    next try resumes with our contact, and `bridge forget` finds a failed join too), and the failure
    goes back to the worker."""
    attempt.error = exc
    if isinstance(exc, Permanent):
        exc.about(*attempt.ref)


# --- the steps ------------------------------------------------------------------------------------

def _begin(attempt: Attempt, deps: WorkDeps, document: Optional[dict]) -> None:
    attempt.settings = stored_settings(attempt.message.campaign_id, document)
    if attempt.settings is None:
        raise Permanent(f"campaign {attempt.message.campaign_id} has no settings — apply them with "
                        "`bridge settings apply`")
    if attempt.link is not None and attempt.link.final:
        attempt.outcome = _repeat(deps, attempt.ref)
    email = people.given_email(attempt.message.person.as_dict())
    link = attempt.link
    if link is None:
        attempt.known = Known(email)
        return
    since = link.uncertain_since
    if since is not None and link.status is LinkStatus.IN_PROGRESS:
        since += deps.links.lease  # a try that died: it may have created the contact until its lease ran out
    rule = attempt.settings.qualification
    attempt.kept = kept_for_join(link, rule) if rule is not None else None
    held = link.contact_found      # (the kind and role a hold recorded with its contact)
    attempt.known = Known(email, link.contact_id, link.baseline, since, link.baseline_of, held,
                          kind=link.kind if held else None, role=link.contact_role if held else None,
                          found_at=link.found_at if held else None)


def _claims(attempts: list[Attempt], deps: WorkDeps) -> dict[Attempt, Any]:
    # Each as this batch read it (what the try goes on from): a try in between makes it wait, and read again.
    answers = deps.links.claim_many([(a.ref, a.workspace) for a in attempts],
                                    read={a.ref: a.link for a in attempts}) if attempts else []
    return dict(zip(attempts, answers))


def _claimed(attempts: list[Attempt], claims: dict[Attempt, Any] | Exception, deps: WorkDeps) -> None:
    for attempt in attempts:
        answer = claims if isinstance(claims, Exception) else claims[attempt]
        if isinstance(answer, Exception):            # another worker holds it: nothing of ours to record
            attempt.error, attempt.outcome = answer, None
        elif answer is None:                         # already applied: a repeat
            attempt.error, attempt.outcome = None, _repeat(deps, attempt.ref)
        else:
            attempt.claim = answer


def _plan(attempt: Attempt, deps: WorkDeps) -> None:
    assert attempt.settings is not None
    person = attempt.person = _person(attempt.settings, attempt.message, deps.apis)
    email = person.values.get("email")
    if isinstance(email, str):       # the webhook's was checked as it came; one read from RF by the same rule
        try:
            rf_email(email)
        except ValueError as exc:
            # kept as the address without the character: the one `bridge explain` and `bridge forget` are given
            attempt.known = dataclasses.replace(attempt.known, email=printable(email).lower() or None)
            raise Permanent(f"Referral Factory's email for this person {exc}") from None
    attempt.known = dataclasses.replace(attempt.known, email=person.email)
    plan = decide.plan(attempt.settings, person.values,
                       deps.apis.attributes(attempt.workspace, decide.converted(attempt.settings)))
    if isinstance(plan, decide.Skip):
        if plan.outcome == "failed":
            raise Permanent(plan.reason)
        # An earlier try's contact (made or found, with its baseline), or its create whose answer was never seen, is
        # kept on the link (the action turned to `nothing` since): a join `bridge backfill --apply` sends again once
        # the action creates resumes with it, as any retry does, not a second contact nor a baseline taken now.
        attempt.ignored = JoinResult(LinkStatus.IGNORED, kind=person.values.get("type"), email=person.email,
                                     reason=plan.reason, counts_for=_counts_for(attempt, attempt.settings, person.values),
                                     **attempt.known.kept())
        attempt.entries = [_received(attempt), Entry("join", "ignored", plan.reason)]
        attempt.outcome = "ignored"
        return
    attempt.plan = plan
    # A try that fails from here is recorded under the email the contact is made or found with, as the one that
    # links it (_result): the link's email pointer is made once, not left under RF's for `bridge forget` to miss.
    attempt.known = dataclasses.replace(attempt.known, email=plan.payload.email)
    attempt.entries = [_received(attempt), *_field_errors(plan)]
    _qualified_in_rf(attempt, person, attempt.settings, deps)


def _search(intercom: IntercomPort, group: list[Attempt]) -> list[dict]:
    """One search for the whole group: the contacts with their emails, and those carrying their
    markers (a contact an earlier try created, even if its email changed since)."""
    emails = [str(a.plan.payload.email) for a in group if a.plan is not None]
    markers = [a.marker for a in group if a.plan is not None]
    return intercom.search(emails, markers) if emails else []


def _reach(attempt: Attempt, deps: WorkDeps) -> None:
    """The contact this join ends with: the one an earlier try created (resumed), an existing one
    (skip or update), or a new one."""
    assert attempt.settings is not None and attempt.plan is not None
    settings, plan, found = attempt.settings, attempt.plan, attempt.found
    intercom = deps.apis.intercom(attempt.workspace)
    email = str(plan.payload.email)
    unseen = attempt.known.uncertain_since is not None      # a try may have created a contact it never saw
    if attempt.known.contact_id:
        contact = _find(intercom, attempt.known.contact_id)
        if contact is not None and attempt.known.found:
            merged = "" if str(contact["id"]) == attempt.known.contact_id else \
                f" as contact {attempt.known.contact_id}, merged into it since,"
            _found(attempt, intercom, contact, f"an earlier try, which found it{merged} and then failed", read=True)
            return
        if contact is not None:
            attempt.reached = _resumed(contact, attempt.known.baseline, attempt.known.baseline_of,
                                       "an earlier try created this contact and then failed; resuming with it")
            return
        attempt.entries.append(Entry("contact", "vanished", f"contact {attempt.known.contact_id}, "
                                     f"{'found' if attempt.known.found else 'created'} by an earlier try, no longer "
                                     "exists; starting over"))
        attempt.known = dataclasses.replace(attempt.known, contact_id=None, uncertain_since=None, found=False,
                                            kind=None, role=None, found_at=None)
    mine = decide.ours(found, attempt.marker)
    if mine is not None and not unseen:
        # Made for this person before the bridge's record of them (their link erased, e.g. by `bridge
        # forget`): a contact that existed before this join, like any other.
        _found(attempt, intercom, mine, "our marker: the bridge created it for this person before, and has kept no "
               "record of them since (e.g. `bridge forget`)")
        return
    if mine is not None:
        contact = _find(intercom, str(mine["id"])) or mine
        # (recorded with the value it was made with: a try that fails after this resumes with both, as after a create)
        baseline, of = decide.created_baseline(settings, plan), decide.baseline_of(settings)
        attempt.known = dataclasses.replace(attempt.known, contact_id=str(contact["id"]), baseline=baseline,
                                            baseline_of=of)
        attempt.reached = _resumed(contact, baseline, of, "an earlier try created this contact (it carries our marker) "
                                   "but never saw Intercom's answer; resuming with it")
        return
    existing = decide.pick_existing(_with_email(found, email))
    if existing is not None:
        recorded = attempt.recorded.get(str(existing["id"]))
        _found(attempt, intercom, existing, recorded or "email search", read=bool(recorded))
        return
    _wait_if_unsure(attempt, deps)
    attempt.reached = _create(attempt, deps, intercom)


def _resumed(contact: dict, baseline: Any, baseline_of: Optional[str], why: str) -> Reached:
    """The baseline of a contact we created is what we created it with, not what it became since."""
    return Reached(contact, "created", baseline, baseline_of,
                   (Entry("contact", "resumed", why, {"contact_id": contact["id"]}),),
                   resumed=True)


def _wait_if_unsure(attempt: Attempt, deps: WorkDeps) -> None:
    """An earlier try may have created the contact unseen: until Intercom's search has had time to
    show it, creating again could make a second one. Wait (a deferral: not a failed try)."""
    since = attempt.known.uncertain_since
    if since is None:
        return
    until, now = since + deps.search_lag(), deps.clock()
    if now >= until:
        return
    raise Deferred(f"an earlier try may have created this contact without seeing Intercom's answer, and "
                   f"Intercom's search may not show it yet: looking again after {iso(until)} before creating "
                   "one", retry_after=until - now)


def _create(attempt: Attempt, deps: WorkDeps, intercom: IntercomPort) -> Optional[Reached]:
    """The contact created; None when Intercom's 409 names one with the email (then `attempt.existing`)."""
    assert attempt.settings is not None and attempt.plan is not None
    settings = attempt.settings

    def send(plan_: decide.Plan) -> dict:
        attempt.sent_create = True
        try:
            return intercom.create_contact(plan_.create_body(attempt.marker))
        except (Permanent, Deferred):
            attempt.sent_create = False      # refused, or never sent: no contact was made (before any re-read)
            raise
    try:
        created = _written_or_again(attempt, deps, send)
    except Conflict as conflict:
        attempt.sent_create = False
        if not conflict.contact_id:
            raise Permanent(f"Intercom reported a conflict without a contact id: {conflict}") from None
        if conflict.archived:       # Intercom shows it nowhere (search, read) until someone unarchives it
            raise Permanent(f"contact {conflict.contact_id} has this email and is archived in Intercom (its 409 on "
                            "create): unarchive it in Intercom, then replay") from None
        existing = _get(intercom, conflict.contact_id)
        _found(attempt, intercom, existing, "409 conflict on create (search had not caught up)", read=True)
        return None
    attempt.sent_create = False
    plan = attempt.plan                  # as written: planned again if the list was read again
    baseline, of = decide.created_baseline(settings, plan), decide.baseline_of(settings)
    attempt.known = dataclasses.replace(attempt.known, contact_id=str(created["id"]), baseline=baseline,
                                        baseline_of=of, uncertain_since=None)
    return Reached(created, "created", baseline, of, (Entry(
        "contact", "created", f"no contact with this email existed; created a {plan.role}",
        {"contact_id": created["id"], "role": created.get("role"), "attributes": sorted(plan.payload.attributes)}),))


def _found(attempt: Attempt, intercom: IntercomPort, existing: dict, found_by: str, read: bool = False) -> None:
    """A contact with this email exists: read it as it is now (search lags updates too; `read`: it was just
    read). Its baseline is its value now, unless an earlier try found it and held the value it had then (the
    person may have changed it since: a change after they joined); the contact Intercom merged it into since takes
    it as a merge's link does (join.moved_baseline). One held while the campaign had no rule holds no value: under
    a rule since, its value now (a held None would be taken as the rule's, and a value at the target all along
    would qualify)."""
    assert attempt.settings is not None
    contact = existing if read else _get(intercom, str(existing["id"]))
    known, of = attempt.known, decide.baseline_of(attempt.settings)
    if known.found and (known.baseline_of is not None or of is None):
        same = known.contact_id == str(contact["id"])
        moved = {} if same or attempt.link is None else decide.moved_baseline(attempt.settings, attempt.link, contact)
        attempt.existing = Existing(contact, found_by, moved.get("baseline", known.baseline),
                                    moved.get("baseline_of", known.baseline_of), held=same, resumed=True)
        return
    attempt.existing = Existing(contact, found_by, decide.baseline(attempt.settings, contact), of)


def _hold(attempts: list[Attempt], deps: WorkDeps) -> None:
    """The contacts found (that existed), with their baselines, recorded on the links before anything is written
    to them (one write for the batch): a try that dies or fails after it resumes with the value each had when found,
    not what the person made it since, and a notification meanwhile finds the link (a change away arms it). Each with
    when this try began (its claim, JoinClaim.at: every read of the contact it made followed it), which bounds the
    values judged as changes after that baseline (Link.found_at, joined_since). A contact held already (an earlier
    try found it, and this one resumes its baseline) is not held again: the link keeps that try's time. A change to
    the target the link kept for the join's finish on the contact it held (Attempt.kept: her held contact merged into
    another, or gone and another of hers found) is hers: the hold carries it to the contact found, in its own write
    (FoundContact.kept_at), so that no later write's failure loses it (_resumed_evaluation judges it; judge's guards
    hold there: a baseline not known does not qualify her). Held to what the link held as this try read it: a change
    kept on that contact since (a notification between the read and the hold) makes it Busy, nothing written: the
    join waits, and its retry reads it and carries it (FoundContact.held_read)."""
    todo: list[Attempt] = []
    held: list[tuple[JoinClaim, FoundContact]] = []
    for a in _active(attempts):
        if a.existing is not None and not a.existing.held and a.claim is not None:
            todo.append(a)
            rule, kept, found_id, read = a.settings.qualification if a.settings is not None else None, a.kept, \
                str(a.existing.contact["id"]), a.link
            carried = kept is not None and rule is not None
            # (another contact of hers held as read: a keep there after the read makes the hold wait, FoundContact.
            # held_read; the claim held to that read, so what it held then is what the link held at the claim)
            other = read is not None and read.contact_found and read.contact_id not in (None, found_id)
            held.append((a.claim, FoundContact(found_id, a.person.values.get("type") if a.person
                                               else None, a.existing.contact.get("role"), a.existing.baseline,
                                               a.existing.baseline_of, found_at=a.claim.at,
                                               kept_at=kept.held_at if kept is not None and carried else None,
                                               kept_since=kept.armed_at if kept is not None and carried else None,
                                               kept_by=rules.key(rule) if rule is not None and carried else None,
                                               held_read=(read.held_at, read.held_by) if read is not None and other
                                               else None)))
    answers = _together(todo, lambda: deps.links.hold_found(held)) if held else None
    for attempt, (claim, found), lost in zip(todo, held, answers or []):
        if lost is not None:
            _fail(attempt, lost)
            continue
        attempt.claim = dataclasses.replace(claim, created_at=None)      # the link is no longer the claim's alone
        attempt.known = dataclasses.replace(attempt.known, contact_id=found.contact_id, baseline=found.baseline,
                                            baseline_of=found.baseline_of, found=True, kind=found.kind, role=found.role,
                                            found_at=found.found_at)


def _mark(attempt: Attempt, deps: WorkDeps) -> None:
    attempt.reached = _marked(attempt, deps)


def _marked(attempt: Attempt, deps: WorkDeps) -> Reached:
    """The contact found (`attempt.existing`, held): leave it untouched (skip) or mark it as referred without
    replacing what it already has (update)."""
    assert attempt.settings is not None and attempt.plan is not None and attempt.existing is not None
    plan, existing = attempt.plan, attempt.existing
    intercom = deps.apis.intercom(attempt.workspace)
    contact, baseline, of, resumed = existing.contact, existing.baseline, existing.baseline_of, existing.resumed
    same = (contact.get("email") or "").lower() == str(plan.payload.email)
    found = f"a {contact.get('role')} {'with this email ' if same else ''}already exists (found by {existing.found_by})"
    ids = {"contact_id": contact["id"], "role": contact.get("role")}
    if plan.people.duplicates == "skip":
        return Reached(contact, "linked", baseline, of, (Entry(
            "contact", "skipped_existing", f"{found}; duplicates is skip, so it was left untouched and linked", ids),),
            resumed=resumed)

    def send(plan_: decide.Plan) -> tuple[dict, dict]:
        body = decide.duplicate_action(plan_, contact) or {}     # nothing to write: no call
        return (intercom.update_contact(str(contact["id"]), body) if body else contact), body
    updated, update = _written_or_again(attempt, deps, send)
    plan = attempt.plan
    written = set(_written(update))
    kept = sorted(name for name in _written(plan.update_body({}))
                  if name not in written and attribute_value(contact, name) != plan.payload.attributes[name])
    held = {"kept": kept} if kept else {}    # values the contact had, not the mapping's (`overwrite: true` replaces them)
    if not update:     # every mapped field already has a value (or Intercom refused it): only the tag marks them
        tagged = bool(plan.people.tag)
        refused = [e.to for e in plan.payload.errors if e.reason.startswith(REFUSED_BY_INTERCOM)]
        every = f"Intercom refused {', '.join(refused)} (fields not written) and it already has a value for every " \
            "other" if refused else "it already has a value for every"
        return Reached(contact, "updated" if tagged else "linked", baseline, of, (Entry(
            "contact", "updated_existing", f"{found}; duplicates is update, but {every} mapped field (kept): "
            f"{'only the tag is added' if tagged else 'nothing to write'}; linked", {**ids, **held}),), resumed=resumed)
    details: dict[str, Any] = {"contact_id": contact["id"], "attributes": sorted(written), **held}
    return Reached(updated, "updated", baseline, of, (Entry(
        "contact", "updated_existing", f"{found}; duplicates is update, so it was marked as referred (fields it "
        "already had were kept) and linked", details),), resumed=resumed)


def _written_or_again(attempt: Attempt, deps: WorkDeps, send: Callable[[decide.Plan], T]) -> T:
    """Send a contact write as planned. Refused by Intercom (400: a value of the wrong type, an attribute
    archived or unknown), when the attribute list it was converted with is older than this try: the list is
    read again (once a try: one call, kept for the other containers), and when that changes what the plan
    writes (a type changed in Intercom's UI, an attribute created without an apply), the write is planned
    again and sent again. A refusal that names mapped attributes (domain/join.refused_attributes) is sent
    again without them, each said as a field not written with Intercom's words: one call more a refusal.
    Otherwise the refusal stands, with Intercom's reason. Only a refusal is sent again: the write was not
    applied (a lost answer is never a Permanent)."""
    assert attempt.plan is not None
    healed = False
    while True:          # each time round takes an attribute out, or reads the list (once): it ends
        try:
            written = send(attempt.plan)
        except Permanent as refused:
            if refused.status != 400:
                raise
            if not attempt.read_again and _planned_again(attempt, deps, refused):
                healed = True
                continue
            left_out = decide.refused_attributes(attempt.plan, refused.body)
            if not left_out:
                raise
            _planned(attempt, decide.without(attempt.plan, left_out))
            continue
        if healed:
            count("StaleAttributeWritesHealed")     # written with the fresh list: not counted when refused again
        return written


def _planned_again(attempt: Attempt, deps: WorkDeps, refused: Permanent) -> bool:
    assert attempt.settings is not None and attempt.plan is not None and attempt.person is not None
    attempt.read_again = True
    fresh = deps.apis.attributes_again(attempt.workspace, attempt.began)
    again = decide.replan(attempt.settings, attempt.person.values, attempt.plan, fresh)
    if again is None:
        return False
    _planned(attempt, again.plan, Entry(
        "attributes", "read_again", "attribute types changed in Intercom: read again; the contact was written "
        "with the types Intercom has now", {"attributes": list(again.changed), "refused": refused.reason}))
    return True


def _planned(attempt: Attempt, plan: decide.Plan, *entries: Entry) -> None:
    """The join writes `plan` now: its fields not written said again (each counted once)."""
    assert attempt.plan is not None
    before = set(attempt.plan.payload.errors)          # counted when first planned
    attempt.plan = plan
    attempt.entries = [*(e for e in attempt.entries if e.event != "fields"), *entries,
                       *_field_errors(plan, counted=before)]


def _written(body: dict) -> list[str]:
    return [k for k in body if k != "custom_attributes"] + [
        f"custom_attributes.{k}" for k in body.get("custom_attributes", {})]


def _tag(intercom: IntercomPort, tag: str, group: list[Attempt]) -> None:
    live = [a for a in _active(group) if a.reached is not None]
    try:
        intercom.tag_contacts([str(a.reached.contact["id"]) for a in live if a.reached is not None], tag)
    except NotFound:
        # One of them is gone since it was found or made (a lead Intercom merged into the user the person signed
        # up as), and Intercom tagged none: each is tagged alone, and nobody else's join fails for it.
        for attempt in live:
            _together([attempt], lambda: _tag_alone(intercom, tag, attempt))
        return
    for attempt in live:
        attempt.tagged.append(Entry("tag", "tagged", details={"tag": tag}))


def _tag_alone(intercom: IntercomPort, tag: str, attempt: Attempt) -> None:
    """The person's contact, or the user Intercom merged it into since (the merge's notification, or
    reconciliation following the 410, moves the link there). One gone for good (that user too) is not tagged, and the
    history says so; one Intercom still shows fails the try (the 404 was not about it: the retry tags it)."""
    assert attempt.reached is not None
    made = str(attempt.reached.contact["id"])
    if _tagged(intercom, made, tag):
        attempt.tagged.append(Entry("tag", "tagged", details={"tag": tag}))
        return
    try:
        intercom.get_contact(made)
    except Merged as merged:
        if merged.canonical_id and _tagged(intercom, merged.canonical_id, tag):      # (not when that user is gone too)
            attempt.tagged.append(Entry("tag", "tagged", f"contact {made} was merged into {merged.canonical_id} since "
                                        "the join made or found it: that contact is tagged",
                                        {"tag": tag, "contact_id": merged.canonical_id}))
            attempt.merged_into = merged.canonical_id
            return
        if merged.canonical_id and _shows(intercom, merged.canonical_id):     # (a user just made, as a lead may be)
            raise _refused(merged.canonical_id)
    except NotFound:
        pass
    else:
        raise _refused(made)
    attempt.tagged.append(Entry("tag", "not_tagged", f"Intercom would not tag contact {made} (404): it is gone since "
                                "the join made or found it", {"tag": tag}))


def _shows(intercom: IntercomPort, contact_id: str) -> bool:
    try:
        intercom.get_contact(contact_id)
    except (NotFound, Merged):
        return False
    return True


def _refused(contact_id: str) -> Transient:
    """A contact whose tag Intercom answered 404 and which it still shows: the 404 was not about it being gone (a
    contact just made, not yet seen by its tags), so the join is tried again, and the retry tags it."""
    return Transient(f"Intercom would not tag contact {contact_id} (404), which it still shows: tagged on the next try")


def _tagged(intercom: IntercomPort, contact_id: str, tag: str) -> bool:
    """The contact is tagged; False when Intercom answers 404 (gone, or not seen by its tags)."""
    try:
        intercom.tag_contacts([contact_id], tag)
    except NotFound:
        return False
    return True


def _finish(attempts: list[Attempt], deps: WorkDeps) -> None:
    """Every claimed join of the batch ends in one write: linked, ignored, or failed with what is
    known (the contact it created and its baseline, or since when a contact may exist unseen)."""
    done = [(a, a.claim, *_result(a, deps)) for a in attempts if a.claim is not None]
    applied: list[Attempt] = []
    answers = deps.links.finish_many([(claim, result, entries) for _, claim, result, entries in done]) if done else []
    for (attempt, _, result, _), lost in zip(done, answers):
        if lost is not None:
            if attempt.error is None:
                attempt.error, attempt.outcome = lost, None
            else:       # the failure itself goes back to the worker; this one is only logged
                logger.warning("could not record a failed join", extra={"campaign_id": attempt.ref.campaign_id,
                                                                        "reason": str(lost)})
            continue
        if attempt.error is not None:
            continue
        if result.status is LinkStatus.IGNORED:
            count("JoinsSkipped")
            continue
        reached, person = attempt.reached, attempt.person
        assert reached is not None and person is not None and attempt.settings is not None
        attempt.outcome = reached.outcome
        count({"created": "ContactsCreated"}.get(reached.outcome, "ContactsLinked"))
        # (from the webhook's answer, when the edge stamped the message: a join it made; once, as it is counted)
        seconds("JoinDelaySeconds", delay(attempt.message.received_at, deps.clock()))
        if result.qualification is QState.QUALIFIED:     # counted once its link is written, not when decided
            count("ReferralsFoundQualified")
        logger.info("join applied", extra={"campaign_id": attempt.settings.campaign_id, "outcome": reached.outcome,
                                           "email": mask_email(person.email), "contact_id": reached.contact["id"]})
        applied.append(attempt)
    _note_not_written(applied, deps)


def _note_not_written(applied: list[Attempt], deps: WorkDeps) -> None:
    """The applied joins' fields not written, counted per campaign, attribute and kind in the edge's log
    (`fields:<campaign>`: doctor reads it in one query, without reading anyone's history): one update per
    attribute and kind for the whole batch, with the samples of its first few people (kept while the hour
    has fewer than the ring holds). Never fails the joins."""
    if deps.edge is None:
        return
    at = iso(deps.clock())
    found: dict[tuple[str, str], list[RefusalSample]] = {}
    for attempt in applied:
        if attempt.plan is None:
            continue
        email = attempt.person.email if attempt.person is not None else None
        for error in {(e.to, e.kind): e for e in attempt.plan.payload.errors}.values():
            found.setdefault((fields_scope(attempt.ref.campaign_id), f"{error.to}: {error.kind}"), []).append(
                RefusalSample(f"{error.to}: {error.kind}", at, error.source, rf_user_id=attempt.ref.rf_user_id,
                              email_digest=deps.edge.digest("email", email) if email else None,
                              email_masked=mask_email(email) if email else None, campaign_id=attempt.ref.campaign_id))
    for (scope, _), samples in found.items():
        try:
            deps.edge.refused(scope, *samples[:SAMPLES], count=len(samples))
        except Exception:  # the joins are applied; only doctor's count misses them
            logger.warning("could not count a field not written", extra={"scope": scope}, exc_info=True)


def _result(attempt: Attempt, deps: WorkDeps) -> tuple[JoinResult, list[Entry]]:
    if attempt.error is not None:
        known, exc = attempt.known, attempt.error
        if attempt.sent_create and not known.contact_id:      # the create's answer was never seen
            known = dataclasses.replace(known, uncertain_since=deps.clock())
        reason = getattr(exc, "reason", None) or unforeseen(exc)
        outage = getattr(exc, "outage", None)
        if outage:                 # named so (domain/outage.outage_of reads it), whatever the vendor answered
            reason = f"{unavailable(outage)}: {reason}"
        elif isinstance(exc, TokenRefused):     # waited out as an outage, for the workspace's reconnect
            reason = exc.waiting
        # A wait (a 429's pause, search catching up, a vendor's outage, a refused token...) is not a failure: the link
        # says it waits, with what the next try needs all the same (the contact, its baseline, since when one may
        # exist unseen).
        waiting = waits(exc) or isinstance(exc, TokenRefused)
        entry = Entry("join", "waiting" if waiting else "failed", reason)
        # The first try that does not finish, and each replay, says what was received (a retry's try
        # of the same failed or waiting join does not repeat it).
        link = attempt.link
        first = link is None or not link.status.tried or attempt.message.replayed_from
        # A wait that says what the link's does already (one outage, however long) is not noted again: the
        # worker's counted note of the waits says how often, and the latest.
        again = waiting and link is not None and link.status is LinkStatus.WAITING and waits_again(link.reason, reason)
        return JoinResult(LinkStatus.WAITING if waiting else LinkStatus.FAILED, email=known.email, kind=known.kind,
                          reason=reason, **known.kept()), \
            [_received(attempt), entry] if first else [] if again else [entry]
    if attempt.ignored is not None:
        return attempt.ignored, attempt.entries
    reached, person, settings = attempt.reached, attempt.person, attempt.settings
    assert reached is not None and person is not None and settings is not None
    contact, kind, pending = reached.contact, person.values.get("type"), attempt.judged
    already = attempt.rf_qualified_at if pending else None
    entries = [Entry("qualification", "qualified", f"Referral Factory says user {person.values.get('id')} is "
                     f"qualified already (since {already}): recorded, and never called for it")] if already else []
    return JoinResult(LinkStatus.LINKED, kind=kind, email=_known_by(attempt), contact_id=str(contact["id"]),
                      contact_role=contact.get("role"), baseline=reached.baseline, baseline_of=reached.baseline_of,
                      contact_created=reached.outcome == "created",
                      # (a contact it found: when the try that read her baseline there began; one it made: none)
                      found_at=attempt.known.found_at if reached.outcome != "created" and attempt.known.found else None,
                      qualification=(QState.QUALIFIED if already else QState.PENDING) if pending else None,
                      qualified_at=already, counts_for=_counts_for(attempt, settings, person.values)), \
        [*attempt.entries, *reached.entries, *attempt.tagged, *entries]


def _known_by(attempt: Attempt) -> Optional[str]:
    """The email the linked person is known by: the one their contact was made or found with (its Intercom email), as
    a mapping may take it from another field than RF's `email` (`{from: meta.work_email, to: email}`); a contact an
    earlier try made, by its own (the email's mapping may have changed since: that try made it with the one then)."""
    reached = attempt.reached
    if reached is not None and reached.resumed and (own := people.given_email(reached.contact)):
        return own          # (in lower case, as the bridge keys every email)
    return attempt.plan.payload.email if attempt.plan is not None else attempt.person.email if attempt.person else None


def _counts_for(attempt: Attempt, settings: CampaignSettings, values: dict) -> Optional[str]:
    """The referrer this finished join counts for: nobody when the link counts for one already (a join
    the settings ignored, counted then, and sent again by `bridge backfill` once the action creates)."""
    return None if attempt.link is not None and attempt.link.counted_for else counted_referrer(settings, values)


def _qualified_in_rf(attempt: Attempt, person: Person, settings: CampaignSettings, deps: WorkDeps) -> None:
    """A lead whose person says `qualified_at` (backfill's page of RF's users; a webhook that maps it):
    only RF's word counts — a body may say "null" or 0 there — so RF is asked (one GET), unless the
    person was read from RF for this join already (RF's own answer, not the merged values, where the
    webhook's win). Qualified in RF, the link is recorded qualified at once: with the contact at the
    target already, the rule would never be met again, and the lead would wait as pending for ever.
    Asked before anything is written to Intercom: RF busy or away, or refusing (a bad token), fails (or
    defers) this join alone, and its retry or replay asks again. RF not knowing them (404): pending,
    said in the history."""
    if settings.qualification is None or person.values.get("type") != LEAD or not person.values.get("qualified_at"):
        return
    try:
        ref = attempt.message
        user = person.rf_user if person.rf_user is not None else campaign_user(
            deps.apis.rf().get_user(ref.rf_user_id), ref.campaign_id, ref.rf_user_id)
    except Permanent as exc:
        if exc.status != 404:             # a bad token, RF not connected: the join fails (and can be replayed)
            raise
        attempt.entries.append(Entry("qualification", "not_checked", f"the join's person says qualified_at; "
                                     f"Referral Factory does not know them ({exc.reason}): pending"))
        return
    attempt.rf_qualified_at = qualified_at(user, attempt.message.rf_user_id)


def _looks_again(attempt: Attempt) -> bool:
    """Does the finished join look at her link again (_resumed_evaluation; all of a batch's in one read)? A resumed
    try (webhooks that came while the join was unfinished were not applied), one that began with a change kept for
    its finish, or one that found and held her contact under a rule a notification could keep a change for meanwhile
    (judge._kept: require_change only)."""
    rule = attempt.settings.qualification if attempt.settings is not None else None
    if attempt.error is not None or attempt.outcome is None or attempt.reached is None or rule is None:
        return False
    return attempt.reached.resumed or attempt.kept is not None or (attempt.known.found and rule.require_change)


def _resumed_evaluation(attempt: Attempt, deps: WorkDeps, resumed: Optional[Link]) -> None:
    """Webhooks that came while the join was unfinished were not applied: look now. A change to the target one of
    them showed, which the link kept for this finish (Attempt.kept: judge.kept_for_join), qualifies her then
    (judge.released), whatever her value now. Kept on the contact her join held, it is hers whichever contact the
    join finished with: one that hold of another contact cleared (her held contact merged into another, or gone and
    another of hers found) is held again on the link, with its arm, before the contact is judged (as always, judge's
    guards hold: a baseline not known there, a campaign moved to another workspace, do not qualify her). A try that
    found and held her contact itself, and finishes (not resumed, nothing kept when it began), judges it only when the
    link reads released: a notification kept a change while that try ran (after its hold), and nothing else would
    judge it until her contact's next sighting."""
    reached, settings = attempt.reached, attempt.settings
    if reached is None or settings is None or settings.qualification is None:
        return
    rule, kept = settings.qualification, attempt.kept
    if resumed is None or resumed.qualification is not QState.PENDING or resumed.status is not LinkStatus.LINKED:
        return
    if not reached.resumed and kept is None and not released(resumed, rule):
        return          # (a try that held her contact: nothing kept while it ran)
    if kept is not None:
        said = [Entry("evaluation", "met", (
            f"the change to the target kept while her join was not finished (of the event at {iso(kept.held_at)}, on "
            f"contact {kept.contact_id}, after her baseline there) is hers: kept for this finish, on contact "
            f"{resumed.contact_id}"), {"kept_for_join": kept.held_at, "kept_on": kept.contact_id})]
        if not released(resumed, rule):
            resumed = deps.links.arm(resumed, said, rules.key(rule), kept.armed_at, hold=kept.held_at)
        elif kept.contact_id != resumed.contact_id:      # (the hold of that contact carried it: _hold)
            deps.links.note(resumed.ref, said)
    deps.qualifier.evaluate(resumed, settings, Sighting(reached.contact, "join resumed" if reached.resumed else
                                                        "join finished"))


def _repeated_released(attempt: Attempt) -> bool:
    """A repeat of a finished join whose link, as the batch read it, reads released (judge.released): its finish
    wrote what qualifies her (a change kept while her join was not finished), and the write after it that claims her
    qualification failed (the table throttled, the worker stopped): the message, tried again, is this repeat, which
    finishes that evaluation (_repeated_evaluation). Rare: no read for any other repeat, nor for one whose baseline
    is not known under a rule that requires a change (judge notes it and qualifies nobody: a kept change carried to
    a contact made before she joined stays released, and each repeat would read her contact again for nothing)."""
    link, settings = attempt.link, attempt.settings
    rule = settings.qualification if settings is not None else None
    return attempt.outcome == "repeat" and attempt.error is None and rule is not None and link is not None \
        and link.status is LinkStatus.LINKED and released(link, rule) \
        and (not rule.require_change or baseline_known(link, rule))


def _repeated_evaluation(attempt: Attempt, deps: WorkDeps, link: Optional[Link]) -> None:
    """A repeat of a finished join whose link still reads released, as read again (consistently) after the batch:
    her contact is read and judged (judge: released, she qualifies, whatever her value; claimed, Referral Factory
    asked first when a call may have reached it: never a second call). Her contact merged or gone: left to the
    check and reconciliation that follow those (as for any sighting)."""
    settings = attempt.settings
    rule = settings.qualification if settings is not None else None
    if settings is None or rule is None or link is None or link.contact_id is None \
            or link.status is not LinkStatus.LINKED or not released(link, rule):
        return
    try:
        contact = deps.apis.intercom(link.workspace).get_contact(link.contact_id)
    except (Merged, NotFound):
        return
    deps.qualifier.evaluate(link, settings, Sighting(contact, "join repeated, her qualification not finished",
                                                     current=True, read_after_link=True))


def _follow_later(attempts: list[Attempt], deps: WorkDeps) -> None:
    """A lead the tag step met merged into another contact (she signed up meanwhile) is linked to the contact the
    join made or found: the merge's notification, if it came while the join was unfinished, found no link to move.
    A check of her is queued: it follows the merge (her baseline kept) and judges that contact now, not at
    reconciliation's next sweep (which follows it anyway, should this send fail)."""
    checks = [CheckMessage(campaign_id=a.ref.campaign_id, rf_user_id=a.ref.rf_user_id, workspace=a.workspace).wire()
              for a in attempts if a.merged_into and a.error is None and a.outcome is not None and a.judged]
    if not checks or deps.queue is None:
        return
    try:
        deps.queue.send_many(checks)
    except Exception:
        logger.exception("could not queue the check of a lead merged during her join: reconciliation follows it")


def _verify_later(created: list[Attempt], deps: WorkDeps) -> None:
    """Each lead the bridge created (on this try or an earlier one) is looked at again once
    Intercom's search has caught up: a contact with the same email made just before the person
    joined shows only then. Queued before the links are written, so that a worker dying in between
    leaves a contact that is looked at anyway (the next try resumes it and queues it again)."""
    lag, now = deps.search_lag(), deps.clock()
    checks = [VerifyMessage(campaign_id=a.ref.campaign_id, rf_user_id=a.ref.rf_user_id, workspace=a.workspace,
                            contact_id=str(a.reached.contact["id"]), email=str(_known_by(a)),
                            created_at=decide.time_number(a.reached.contact.get("created_at")), not_before=now + lag).wire()
              for a in created if a.reached is not None and a.reached.contact.get("role") == "lead" and _known_by(a)]
    if checks and deps.queue is not None:
        deps.queue.send_many(checks, delay=lag)


# --- pieces ---------------------------------------------------------------------------------------

def _repeat(deps: WorkDeps, ref: PersonRef) -> str:
    deps.links.note_repeat(ref, "join", "the same join arrived again and was ignored: it had already "
                           "been applied", outcome="repeated")   # not "ignored": that is a join the settings skip
    count("JoinRepeatsIgnored")
    return "repeat"


def _count_later(attempts: list[Attempt], deps: WorkDeps) -> None:
    """In a campaign that keeps referral counts: each referrer a finished lead's join counted for gets
    their count written back (one message per referrer), and so does a referrer whose own join linked
    their contact (leads may have joined before them), and a lead whose own join linked hers, if she has a
    count (leads get a referral link too; most refer nobody: one read of the batch's, no write of 0 to every lead). A
    repeated lead's join asks again, in case the worker that finished it died before asking (or its send
    failed): the write is then made only if Intercom lacks it. A failed read or send is the failure of the
    joins that asked (not of the batch)."""
    counted: dict[PersonRef, list[Attempt]] = {}
    repeated: dict[PersonRef, list[Attempt]] = {}
    contacts: dict[PersonRef, str] = {}            # a person's own join: the contact it linked
    leads: list[Attempt] = []                      # ... as a lead: asked if she has a count
    for attempt in attempts:
        settings = attempt.settings
        if attempt.error is not None or settings is None or not count_attribute(settings):
            continue
        campaign = attempt.ref.campaign_id
        if attempt.outcome == "repeat":
            # Whom the finished join counted for, as its link recorded it (a thin webhook names nobody).
            counted_for = attempt.link.counted_for if attempt.link is not None else None
            referrer = counted_for or counted_referrer(
                settings, {"type": "lead", "referrer_id": attempt.message.person.referrer_id})
            if referrer:
                repeated.setdefault(PersonRef(campaign, referrer), []).append(attempt)
            elif attempt.link is not None and attempt.link.status is LinkStatus.LINKED and not attempt.link.is_lead:
                repeated.setdefault(attempt.ref, []).append(attempt)     # a referrer's own join
                if attempt.link.contact_id:
                    contacts[attempt.ref] = attempt.link.contact_id
            link = attempt.link
            if link is not None and link.status is LinkStatus.LINKED and link.is_lead and link.contact_id:
                contacts[attempt.ref] = link.contact_id
                leads.append(attempt)
        elif attempt.claim is not None and attempt.person is not None:
            referrer = counted_referrer(settings, attempt.person.values)
            if referrer:
                counted.setdefault(PersonRef(campaign, referrer), []).append(attempt)
            if attempt.person.values.get("type") == LEAD:
                if attempt.reached is not None:
                    contacts[attempt.ref] = str(attempt.reached.contact["id"])
                    leads.append(attempt)
            elif attempt.outcome not in (None, "ignored"):
                counted.setdefault(attempt.ref, []).append(attempt)
                if attempt.reached is not None:
                    contacts[attempt.ref] = str(attempt.reached.contact["id"])
    if deps.queue is None:
        return
    try:
        kept = deps.links.referrals_many(a.ref for a in leads) if leads else {}
    except Exception as exc:
        for attempt in leads:
            _failed_after(attempt, exc)
        leads, kept = [], {}
    for attempt in leads:
        held = kept.get(attempt.ref)
        if held is not None and (held.n or held.written):
            (repeated if attempt.outcome == "repeat" else counted).setdefault(attempt.ref, []).append(attempt)
    again = set(repeated) - set(counted)
    if not (counted or again):
        return
    try:
        deps.queue.send_many(count_messages(set(counted), contacts=contacts)
                             + count_messages(again, unless_written=True, contacts=contacts))
    except Exception as exc:
        for attempt in dict.fromkeys(a for asked in (*counted.values(), *repeated.values()) for a in asked):
            _failed_after(attempt, exc)


def _person(settings: CampaignSettings, message: JoinMessage, apis: Apis) -> Person:
    """The webhook's person, completed from Referral Factory with what the mapping needs."""
    values = {"id": message.rf_user_id, "campaign_id": message.campaign_id, **message.person.as_dict()}
    sources = _sources(settings, values)
    fetched: list[str] = []
    rf_user: Optional[dict] = None
    # A lead counts for their referrer (referral counts): a webhook without `referrer_id` asks RF who it is.
    uncounted = bool(count_attribute(settings)) and values.get("type") == LEAD and "referrer_id" not in values
    # (a join too large to queue came without its largest fields: read whatever they were)
    if people.missing(values, sources) or uncounted or message.too_large:
        rf_user = campaign_user(apis.rf().get_user(values["id"]), message.campaign_id, values["id"])
        values = people.merge(values, people.normalise(rf_user))
        fetched.append("user")
        sources = _sources(settings, values)       # RF may have said only now whether a lead or a referrer
    wanted = {s for s in sources if s.startswith("referrer_")}
    if wanted and values.get("referrer_id") and not wanted <= set(values):
        values = people.with_referrer(values, people.normalise(apis.rf().get_user(values["referrer_id"])))
        fetched.append("referrer")
    if "campaign_name" in sources and "campaign_name" not in values:
        values["campaign_name"] = apis.campaign_name(settings.campaign_id)
    return Person(values, tuple(fetched), rf_user)


def _received(attempt: Attempt) -> Entry:
    """The try's `join_received` entry: the person as read, or, before they were read, as the webhook
    says (a `referrer_id` without a `type`: a lead)."""
    if attempt.person is not None:
        return attempt.person.received(attempt.message)
    values = attempt.message.person.as_dict()
    kind = values.get("type") or (LEAD if values.get("referrer_id") else None)
    return Person({**values, "type": kind}).received(attempt.message)


def _sources(settings: CampaignSettings, values: dict) -> set[str]:
    """The fields the person's own mapping reads: the leads' for a lead, the referrers' for a referrer
    (the webhook's `type`, or `referrer_id` given or not). Until that is known, both mappings': the
    type is missing then, so RF is asked anyway."""
    kind = values.get("type")
    mappings = [settings.people(kind == LEAD)] if kind in (LEAD, REFERRER) else [settings.leads, settings.referrers]
    return {r.from_ for p in mappings for r in p.fields if r.from_}


def _field_errors(plan: decide.Plan, counted: frozenset | set = frozenset()) -> list[Entry]:
    """The plan's conversion errors, said; each counted unless in `counted` (a plan made again)."""
    errors = [{"to": e.to, "source": e.source, "reason": e.reason} for e in plan.payload.errors]
    if not errors:
        return []
    new = [e for e in plan.payload.errors if e not in counted]
    if new:
        count("FieldConversionErrors", len(new))
    return [Entry("fields", "not_written", "some mapped values could not be converted, or Intercom refused them; "
                  "the contact was still created or linked", {"errors": errors})]


def _get(intercom: IntercomPort, contact_id: str) -> dict:
    """Read a contact Intercom pointed at, following a merge; a vanished one is a permanent failure."""
    contact = _find(intercom, contact_id)
    if contact is None:
        raise Permanent(f"Intercom pointed at contact {contact_id}, which no longer exists (404)")
    return contact


def _find(intercom: IntercomPort, contact_id: str) -> Optional[dict]:
    """Read a contact, following a merge; None when it no longer exists."""
    try:
        try:
            return intercom.get_contact(contact_id)
        except Merged as merged:
            if merged.canonical_id:
                return intercom.get_contact(merged.canonical_id)
            raise Permanent(f"contact {contact_id} was merged and Intercom gave no canonical link") from None
    except NotFound:
        return None
