"""Contact sync (product.md §4): a campaign's Intercom contacts (all, leads, users or a segment)
enrolled in RF as referrers, each one's referral link written back to the contact.

A run is a chain of `sync.page` messages: each works one page of Intercom's contact search (150
contacts) and, once its checkpoint is written, sends the next page's message. So a run of any size
survives Lambda's time limit (a page that runs out of time gives itself back), redelivery and killed
workers:

- the run's item holds the next page, its cursor, the counts, and a lease on the page being worked
  (one worker at a time; a dead worker's lease runs out);
- the ledger holds what became of each contact. Before RF is asked to create a user, the contact's
  entry says `creating`; a later try that finds it so knows RF may have created the user: RF answers
  422 ("already taken") to the create, and the user is then looked up among the campaign's people by
  email. So a crash between RF's create and the checkpoint never makes a user twice, nor misses one.

Every call goes through the container's HTTP clients, which take their slots from the shared rate
limiter: a page works its contacts on a few threads, and the limiter paces them at RF's budget."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Callable, Iterator, Optional

from ..domain.advice import (RF_RECONNECT, answer_of, reconnect, refused_answer, refused_token, rf_token_reason,
                             rf_token_refused)
from ..domain.history import Entry, iso
from ..domain.link import REFERRER, Link, LinkStatus, PersonRef
from ..domain.mapping import ConversionError, attribute_value, to_unix
from ..domain.outage import Attempt, outage_of
from ..domain.settings import CampaignSettings, SettingsError, Sync, parse_settings
from ..domain.sync import (ALREADY, COUNTS_ONLY, ENROLLED, ENROLLED_NO_LINK, ENROLLED_WRITEBACK_FAILED, FAILED, LINKED,
                           NO_LINK, NO_LINK_REASON, NOT_IN_RF, PAGE_ERROR_CHARS, PER_PAGE, RETRYING, SKIPS, UNWRITTEN,
                           WAITING, WORKING, WRITEBACK_FAILED, WRITEBACK_FAILED_REASON, Create, Decision, PageError,
                           Skip, Tally, count_attribute, decide, describe_page_error, describe_source, describe_writes,
                           matches_source, page_error, preflight, refused_fix, required_fields, restored, run_counts,
                           search_query, shortened, source_changed, writeback_body, written)
from ..errors import (RF_REFUSED_TOKEN, Deferred, Permanent, TokenRefused, Transient, WorkError, unforeseen, waited_out,
                      waits)
from ..messages import ContactMessage, SyncPageMessage
from ..observability import count, logger, mask_email, mask_emails
from ..ports import Refused
from ..ports.apis import PeoplePage
from ..ports.store import LedgerEntry, SyncRepository, SyncRun, normal_email
from ..pool import Pool
from .deps import WorkDeps, earliest
from . import rf_people
from .moved import valid_campaigns
from .referral_count import messages as count_messages

THREADS = 8                        # contacts of a page in flight at once: the limiter paces them
PAGE_TIME_MS = 20_000              # a page starts no contact with less Lambda time left than this (on top of
                                   # the worker's own margin): it gives itself back and continues later
FULL_EVERY = 86400.0               # ongoing mode: a full run (which finds who left) at least this often
CREATED = ("contact.user.created", "contact.lead.created")
BEGIN_SECONDS = 60.0               # a run whose first page no worker took this long after it started: sent again


class SyncStopped(Exception):
    """The run cannot start (or, `shown_runs`, there is none to show): `problems` each name the fix."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


# --- starting a run ---------------------------------------------------------------------------------
def settings_of(deps: WorkDeps, campaign_id: str) -> CampaignSettings:
    stored = deps.settings.get(campaign_id)
    if stored is None:
        raise SyncStopped([f"campaign {campaign_id} has no settings — apply them first, with a `sync` block "
                           "(`bridge settings apply <file>`)"])
    try:
        settings = parse_settings(stored.document)
    except SettingsError as exc:
        raise SyncStopped(exc.problems) from None
    if settings.sync is None:
        raise SyncStopped([f"campaign {campaign_id}'s settings have no sync block — add one and apply them"])
    return settings


def checks(deps: WorkDeps, settings: CampaignSettings) -> list[str]:
    """Checks first: what would stop the run, each naming the fix (product.md §4)."""
    return read_checks(deps, settings)[0]


def read_checks(deps: WorkDeps, settings: CampaignSettings, command: Optional[str] = None
                ) -> tuple[list[str], tuple[str, ...]]:
    """checks(), and the fields RF's campaign requires of a referrer (read with it: one call). `command`: the operator's
    command that checks (not a worker's page), which RF refusing the token stops (SyncStopped), saying to run it again
    once RF is connected: the error's own advice, to replay the dead letters, is the worker's (a start queued none)."""
    sync = settings.sync
    assert sync is not None
    intercom = deps.apis.intercom(settings.workspace)
    try:
        segments = intercom.segments() if sync.source == "segment" else None
        attributes = intercom.data_attributes()
    except TokenRefused as exc:
        if not command:
            raise
        raise SyncStopped([f"{refused_token(exc.workspace)} ({exc.answer}) — reconnect it: "
                           f"{reconnect(exc.workspace, exc.token_app)}, then `{command}` again"]) from None
    try:
        campaign: Optional[dict] = deps.apis.rf().get_campaign(settings.campaign_id)
    except Permanent as exc:
        if exc.status == RF_REFUSED_TOKEN and command:     # (the reason's own fix replays letters: none made here)
            raise SyncStopped([f"{answer_of(exc.reason)} — {RF_RECONNECT}, then `{command}` again"]) from None
        if exc.status != 404:             # RF does not know the campaign: preflight says so
            raise
        campaign = None
    return preflight(settings, attributes, segments, campaign), required_fields(campaign)


def _checked(deps: WorkDeps, campaign_id: str, again: str = "") -> tuple[CampaignSettings, tuple[str, ...]]:
    """The campaign's settings once its checks pass (else SyncStopped), and the fields RF requires of a referrer.
    `again`: the options of the command that checks (`sync start`'s), which RF refusing the token says to run again."""
    settings = settings_of(deps, campaign_id)
    problems, required = read_checks(deps, settings, f"bridge sync start {campaign_id}{again}")
    if problems:
        raise SyncStopped(problems)
    return settings, required


def start(deps: WorkDeps, campaign_id: str, *, kind: str = "full", since: Optional[float] = None) -> SyncRun:
    """Checks first, then a new run whose first page is queued. Raises SyncStopped."""
    settings, required = _checked(deps, campaign_id)
    assert settings.sync is not None and deps.queue is not None
    # Its start is stamped no later than AWS's time may be (the CLI's estimate may run ahead of the workers' clocks,
    # which stamp its progress and finish): a worker finishing the run at once never finishes it before it started.
    run = deps.sync.start(campaign_id, kind, describe_source(settings.sync), earliest(deps.clock), since=since,
                          required=required, workspace=settings.workspace)
    now = deps.clock()
    current = deps.sync.run(campaign_id) if run is None else None
    if current is not None and first_page_lost(current, now) and \
            deps.sync.begin_again(campaign_id, current.number, earliest(deps.clock)):
        # Its first page's message was never sent (the command that started it was interrupted, or SQS refused it):
        # nothing else would ever send it. Sent now (a copy of one still queued is harmless: one worker takes the page),
        # the run's time counted from now (the time it sat unsent is not its rate's).
        run = current
    elif current is not None and never_begun(current, now):
        raise SyncStopped([f"sync run {current.number} of campaign {campaign_id} has not begun yet (started at "
                           f"{iso(current.started_at)}): a worker takes its first page within seconds — see `bridge "
                           f"sync status {campaign_id}`; if it has not begun a minute after it started, `bridge sync "
                           f"start {campaign_id}` sends its first page again"])
    if run is None:
        # Before its first page is done, the run has no progress to date: when it started is what is known
        moved = "" if current is None else f" (last progress at {iso(current.updated_at)})" if current.page else \
            f" (started at {iso(current.started_at)})"
        # What its page does, when it fails or waits, as `sync status` says it: a page that waits out an outage is in
        # no dead-letter queue (the advice to list and replay it there would find nothing)
        error = shown_error(current, now) if current else None
        said = describe_page_error(error, campaign_id) if error else ""
        if error and error["state"] == FAILED:      # (a refused token's page succeeds once it is replaced: no discard)
            tail = f": {said}" + ("" if refused_fix(error["reason"]) else f"; {DISCARD_ENDS}")
        elif error:
            tail = f": {said} — see `bridge sync status {campaign_id}`"
        else:
            tail = (f" — see `bridge sync status {campaign_id}`; if it no longer moves, its page failed and waits in "
                    "the dead-letter queue: `bridge dlq list`, then `bridge dlq replay` resumes it where it stopped; "
                    f"{DISCARD_ENDS}")
        raise SyncStopped([f"sync run {current.number if current else '?'} of campaign {campaign_id} is still "
                           f"running{moved}{tail}"])
    deps.queue.send(SyncPageMessage(campaign_id=campaign_id, run=run.number, page=0).wire())
    logger.info("sync run started", extra={"campaign_id": campaign_id, "run": run.number, "kind": kind})
    return run


DISCARD_ENDS = "a page that can never succeed: `bridge dlq discard --reason <its reason> --yes` ends the run"


def never_begun(run: SyncRun, now: float) -> bool:
    """Is the running run still at its first page, which no worker has worked nor holds (no count, no failure)? Its
    first page's message may never have been sent."""
    return run.status == "running" and run.page == 0 and not run.counts and run.error is None and \
        not (run.owner and (run.lease_until or 0) > now)


def first_page_lost(run: SyncRun, now: float) -> bool:
    """Has the run not begun BEGIN_SECONDS after it started? Its first page's message was never sent, surely enough
    to send it again (a copy of one still queued is harmless)."""
    return never_begun(run, now) and now - run.started_at >= BEGIN_SECONDS


# --- one page -------------------------------------------------------------------------------------
def on_page(message: SyncPageMessage, deps: WorkDeps, _context: Any = None, attempt: Attempt = Attempt()) -> str:
    """`attempt`: what the worker does if this try fails (worker.Handler.handle_try): the page's error says it."""
    campaign_id, owner = message.campaign_id, uuid.uuid4().hex
    run, took = deps.sync.claim_page(campaign_id, message.run, message.page, owner, deps.clock())
    if not took:
        # A repeat. If its checkpoint was written and the worker died before sending the next page,
        # the next page's message is lost: send it again (a duplicate of it is harmless: one claims it).
        if run is not None and run.number == message.run and run.status == "running" and \
                run.page == message.page + 1 and not run.owner and deps.queue is not None:
            deps.queue.send(SyncPageMessage(campaign_id=campaign_id, run=run.number, page=run.page,
                                            cursor=run.cursor).wire())
            return "resent"
        return "repeat"
    assert run is not None
    # A page taken back from the dead-letter queue (`bridge dlq replay`): the time it waited there is not the run's
    # working time (its rate's), kept apart as `paused`.
    paused = dead_lettered_for(run, message.page, deps.clock())
    try:
        return _work_page(message, deps, run, owner, paused)
    except Exception as exc:
        deps.sync.release(campaign_id, message.run, message.page, owner,
                          _page_error(run, message.page, exc, deps.clock(), attempt), paused=paused)
        raise
    except BaseException:
        # An interrupt: the lease given back, nothing else, as after a killed worker. The page's dead-letter error
        # stays, and the try that works the page counts the wait from it, once.
        deps.sync.release(campaign_id, message.run, message.page, owner)
        raise


def dead_lettered_for(run: SyncRun, page: int, now: float) -> float:
    """How long the run's `page` has waited in the dead-letter queue (0: it does not wait there)."""
    error = run.error
    return max(0.0, now - error.at) if error is not None and error.state == FAILED and error.page == page else 0.0


def discarded(store: SyncRepository, page: SyncPageMessage, reason: str, now: float) -> bool:
    """The operator discarded the dead letter of a run's page (`reason`, emails masked): the page can never succeed
    (a contact that crashes the worker each time, a cursor Intercom refuses), so the run, if it is still at that
    page, ends there: stopped, saying why (`sync status`), and `bridge sync start` (or ongoing mode's next catch-up)
    begins a new one. Its time in the dead-letter queue is not working time (`paused`). Whether it stopped it."""
    run = store.run(page.campaign_id, page.run)
    said = (f"its page {page.page + 1} could not be worked and its dead letter was discarded (it failed: "
            f"{shortened(' '.join(reason.split()), PAGE_ERROR_CHARS)}) — `bridge sync start {page.campaign_id}` "
            "starts a new run")
    return run is not None and store.stop(page.campaign_id, page.run, page.page, now, said,
                                          paused=dead_lettered_for(run, page.page, now))


def _page_error(run: SyncRun, page: int, exc: Exception, now: float, attempt: Attempt = Attempt()) -> PageError:
    """Why the page failed, as `sync status` shows it: the reason the worker records (the dead-letter
    queue's), emails masked; retrying while the queue retries it, failed once the worker gives up on it
    (refused for good, or its last try) and it waits in the dead-letter queue. A vendor's outage is waited
    out as the worker decides it (`attempt.outage`): waiting for the vendor, then failed past the budget (or, once
    the vendor answers again, retried as any failure)."""
    retried = FAILED if attempt.last else RETRYING
    decided = attempt.outage(exc) if isinstance(exc, WorkError) and waited_out(exc) and attempt.outage else None
    if decided is not None:
        reason, state = decided.said, WAITING if decided.delay is not None else FAILED
    elif isinstance(exc, WorkError):
        reason, state = exc.reason, WAITING if isinstance(exc, Deferred) else retried if exc.retryable else FAILED
    else:                           # a bug or an outage nobody foresaw: the worker retries it
        reason, state = unforeseen(exc), retried
    return page_error(run.error, page, mask_emails(reason), state, now)


def _work_page(message: SyncPageMessage, deps: WorkDeps, run: SyncRun, owner: str, paused: float = 0.0) -> str:
    campaign_id = message.campaign_id
    try:
        settings = settings_of(deps, campaign_id)
        # (a run's later pages: settings applied since that keep only counts stop it; any page: settings that read
        # another source or workspace than the run says, its first page too when it was sent again: `start`)
        assert settings.sync is not None
        problems = (checks(deps, settings) if message.page == 0 else [COUNTS_ONLY] if settings.sync.counts_only
                    else []) or source_changed(settings, run.source, run.workspace)
    except SyncStopped as exc:
        problems = exc.problems
    if problems:
        deps.sync.checkpoint(campaign_id, run.number, message.page, owner, deps.clock(), cursor=None, counts={},
                             message="; ".join(problems), paused=paused)
        logger.warning("sync run stopped by its checks", extra={"campaign_id": campaign_id, "run": run.number})
        return "stopped"
    sync = settings.sync
    assert sync is not None
    contacts, following, total = deps.apis.intercom(settings.workspace).search_page(
        search_query(sync, run.since), message.cursor, PER_PAGE)
    page = Page(deps, settings, run, full=run.kind == "full")
    page.work(contacts)
    stop = page.stopped
    finished = following is None or stop is not None
    if not deps.sync.checkpoint(campaign_id, run.number, message.page, owner, deps.clock(),
                                cursor=None if finished else following, counts=page.tally.counts,
                                total=total if message.page == 0 else None, finished=finished, message=stop,
                                paused=paused):
        return "lost"          # our lease ran out and another worker did the page: its counts stand
    for outcome, n in page.tally.counts.items():
        count(f"Sync{''.join(p.title() for p in outcome.split('_'))}", n)
    if not finished and deps.queue is not None:
        deps.queue.send(SyncPageMessage(campaign_id=campaign_id, run=run.number, page=message.page + 1,
                                        cursor=following).wire())
    return "done"


def refuses_token(error: WorkError) -> bool:
    """Is it RF refusing the stored token (its 401): every call with the token fails alike until `bridge rf connect`."""
    return error.status == RF_REFUSED_TOKEN and not error.retryable and rf_token_refused(error.reason)


def page_failure(errors: list[WorkError], not_tried: int = 0) -> WorkError:
    """The page's error, from all its contacts' (never just the first's): it waits when every one of them is a
    wait — for the vendor's outage if any was one (its answer's status, which the outage's dead letter names),
    else a pause that keeps the vendor's status (a 429: RF answered, so an outage the page's copy carried has
    ended) —, is refused for good when RF refused the stored token for every one of them (no try helps before
    `bridge rf connect`: straight to the dead-letter queue, its reason the answer then the reconnect and the replay), and
    fails a try otherwise. It comes back no sooner than the longest wait any of them asked for. `not_tried`: the
    page's contacts not tried once RF refused the token (Page._run), said beside the refusal. Intercom refusing the
    workspace's token to a link's write (its 401: TokenRefused) comes first: the page waits for the reconnect as a
    refused search does (the worker's token_wait), its contacts tried again then."""
    refused = next((e for e in errors if isinstance(e, TokenRefused)), None)
    if refused is not None:
        return refused
    if all(refuses_token(e) for e in errors):
        first = errors[0]
        others = f", its {not_tried} other(s) not tried (they share the token)" if not_tried else ""
        return Permanent(f"{len(errors)} contact(s) of the page failed{others}: "
                         f"{rf_token_reason(answer_of(first.reason))}", status=first.status, message=first.message)
    retry_after = max((e.retry_after for e in errors if e.retry_after is not None), default=None)
    if all(waits(e) for e in errors):
        outages = [e for e in errors if e.outage]
        if outages:
            # (the vendor's answer, when any contact got one: "RF answered 503", not "RF did not answer")
            cause = next((e for e in outages if e.status is not None), outages[0])
            return Transient(f"{len(outages)} contact(s) of the page met {cause.outage}'s outage: {cause.reason}",
                             retry_after, cause.status).unavailable(cause.outage, cause.where)
        cause = next((e for e in errors if e.status is not None), errors[0])
        return Deferred(cause.reason, retry_after, cause.status)      # (`sync status` says the page waits)
    failed = [e for e in errors if not waits(e)]
    # RF's refusal of the token cited before any other failure: no try mends it (`bridge rf connect` does), and the
    # contacts after it were not tried (Page._run), so it is seldom the first
    cited = next((e for e in failed if refuses_token(e)), failed[0])
    return Transient(f"{len(failed)} contact(s) of the page failed, {'first' if cited is failed[0] else 'among them'}: "
                     f"{cited.reason}", retry_after, cited.status)


@dataclass
class _Outcome:
    entry: LedgerEntry
    outcome: str
    note: Optional[Entry] = None
    fresh: bool = False           # enrolled (or skipped) just now: its entry written unless another worker's names
                                  # an RF user


class Page:
    """The contacts of one page (or one webhook's contact): the ledger first, then RF and the
    write-back on a few threads, each contact's entry written as soon as it is decided."""

    def __init__(self, deps: WorkDeps, settings: CampaignSettings, run: Optional[SyncRun], full: bool,
                 via: Optional[str] = None):
        assert settings.sync is not None
        self.deps, self.settings, self.sync, self.run, self.full = deps, settings, settings.sync, run, full
        self.number = run.number if run else 0
        self.required = run.required if run else ()     # (a webhook's page then takes the latest run's)
        # The ledger's `run` of what this page decides: 0 for a webhook's contact (its counts are the latest run's
        # by_webhook), so that the run's own page meeting the contact later does not take it for its own (_ours).
        self.decider = self.number if run else 0     # (a webhook's page then takes the latest run's number)
        self.via = via or (f"sync run {self.number} from {describe_source(self.sync)}")
        self.tally = Tally()
        self.stopped: Optional[str] = None
        self.errors: list[WorkError] = []
        # Once RF refuses the token (its 401) for one contact, the page's others are not tried: each call would spend
        # the shared RF budget on the same refusal (RF blocks an IP for repeated excess). The page is dead-lettered.
        # So once Intercom refuses the workspace's token to a link's write: the page waits for the reconnect.
        self.token_refused = False
        self.not_tried = 0
        self.counting = bool(count_attribute(settings))
        self._directory: Optional[_Directory] = None
        self._lock = threading.Lock()
        self._campaign_lock = threading.Lock()
        self._campaign: Optional[str] = None    # once a 404 for a user is seen: "" RF knows the campaign, or why not
        self.adopting: set[str] = set()         # contacts whose own join enrolled them, the ledger naming no RF user

    @property
    def campaign_id(self) -> str:
        return self.settings.campaign_id

    def work(self, contacts: list[dict]) -> None:
        ids = [str(c.get("id")) for c in contacts if c.get("id")]
        # Consistent: a page given back (or failed) is worked again seconds later, and must see what its try before
        # wrote (a `creating` entry read as none would lose the user that try created).
        known = self.deps.sync.entries(self.campaign_id, ids, consistent=True)
        # The joins' links of the contacts not decided yet, and of those an earlier run skipped as already in
        # the campaign: a join since (a webhook, `backfill --apply`) may have made them the bridge's own
        # referrer. All in the one batched read; no call to RF or Intercom for a skip that still stands.
        joined = joined_contacts(self.deps, self.settings, [i for i in ids if i not in known or not known[i].final
                                                            or self._may_have_joined(known[i])])
        todo: list[tuple[dict, Create, Optional[LedgerEntry]]] = []
        attribute = self.sync.referral_link_attribute
        links: list[tuple[LedgerEntry, Any]] = []   # enrolled referrers whose link is written (where the contact's
                                                    # value, second, differs)
        seen: list[LedgerEntry] = []          # enrolled referrers the ledger had (rewritten), and those adopted (new)
        asks: set[PersonRef] = set()          # referrers whose counts are written, now their contact is known
        attributes = cache(partial(self.deps.apis.attributes, self.settings.workspace))   # once a page, if asked
        for contact in contacts:
            cid = str(contact.get("id"))
            entry = known.get(cid)
            # An entry of this very run: a try of this page before (it failed, or its worker died) decided it.
            ours = entry is not None and self._ours(entry)
            link = joined.get(cid)
            own = _own(link)   # the bridge's own referrer (who replaces an earlier run's skip as already in the
            # campaign once a join has linked them, or one as deleted in RF once they joined again: a new RF user)
            if _still_not_in_rf(entry, link):
                self.tally.add(NOT_IN_RF)            # deleted in RF: not asked again, nor re-created
                continue
            if entry is not None and entry.final and entry.rf_user_id and entry.outcome != NOT_IN_RF:
                held = attribute_value(contact, attribute) if attribute else None
                if not attribute or _written_there(entry, attribute, held):
                    # (a try of this page before wrote their late link: LINKED still)
                    self.tally.add(LINKED if self._linked_here(entry) else entry.outcome if ours else ALREADY)
                    changed = entry
                    if self.full and entry.seen_run != self.number:
                        changed = _replace(changed, seen_run=self.number)
                    if self.counting and not entry.count_known:    # enrolled before the count was kept
                        changed = self._count_contact(changed, asks)
                    if changed is not entry:
                        seen.append(changed)
                else:          # (a full run marks them seen, whatever becomes of their link: _write_back, _no_link)
                    links.append((_replace(entry, seen_run=self.number) if self.full else entry, held))
                continue
            if entry is not None and entry.final and (ours or entry.outcome == "already_in_campaign" and own is None):
                self.tally.add(entry.outcome)
                continue
            if own is not None:                                 # enrolled by their join
                # RF says their link (_link), written unless the contact holds it where sync writes it: their join
                # may have skipped an existing contact, or kept its value (another campaign's link, an old URL),
                # or written the link elsewhere.
                adopted = LedgerEntry(cid, ALREADY, email=_email(contact), rf_user_id=own.rf_user_id, run=self.decider,
                                      seen_run=self.number, count_known=True, at=iso(self.deps.clock()),
                                      written_back=not attribute, adopted=True)
                self.adopting.add(cid)
                if attribute:
                    links.append((adopted, attribute_value(contact, attribute)))
                else:
                    self.tally.add(ALREADY)
                    seen.append(adopted)                        # (recorded with the page's others, in one write)
                continue
            decision = joined_skip(link) if link is not None else \
                decide(self.sync, self.campaign_id, contact, self.required, attributes())
            if isinstance(decision, Skip):
                self._skip(cid, contact, decision.reason, decision.detail)
                continue
            todo.append((contact, decision, entry if entry is not None and not entry.final else None))
        if asks and self.deps.queue is not None:      # one send, before the ledger says the count knows them
            self.deps.queue.send_many(count_messages(asks))
        if seen:
            self._record(self._in_workspace(seen))
        if todo:
            intended = self.deps.sync.intend(self.campaign_id, self._in_workspace([
                # (a try before's email and time kept: what it may have created RF's user with, and when)
                LedgerEntry(str(c["id"]), "creating", email=earlier.email if earlier is not None and earlier.email
                            else d.email, run=self.decider, seen_run=self.number,
                            at=earlier.at if earlier is not None and earlier.at else iso(self.deps.clock()))
                for c, d, earlier in todo]))
            # Not written: another worker enrolled them since the ledger was read (as _enrolled_meanwhile), counted
            if len(intended) < len(todo):       # already, and RF is not asked
                self.tally.add(ALREADY, len(todo) - len(intended))
                todo = [t for t in todo if str(t[0]["id"]) in intended]
        jobs: list[Callable[[], None]] = [partial(self._link, e, value) for e, value in links]
        jobs += [partial(self._enrol, c, d, u) for c, d, u in todo]
        self._run(jobs)
        if self.errors:
            raise page_failure(self.errors, self.not_tried)

    def _may_have_joined(self, entry: LedgerEntry) -> bool:
        """An earlier run's skip as already in the campaign (RF had the email, or a join linked a lead), or as
        deleted in RF (they may have joined again since)."""
        return entry.outcome in ("already_in_campaign", NOT_IN_RF) and not self._ours(entry)

    def _ours(self, entry: LedgerEntry) -> bool:
        """Is the entry this very run's (a try of this page before decided it)?"""
        return self.run is not None and entry.run == self.number

    def _tried_before(self, entry: LedgerEntry) -> bool:
        """Did a try before this one enrol them, their link not written yet: a try of this page (_ours), or of this
        webhook's notification (_put_off kept her RF user; a notification that went through is not worked again)?"""
        return self._ours(entry) or self.run is None and entry.run == self.decider and entry.outcome in UNWRITTEN

    def _linked_here(self, entry: LedgerEntry) -> bool:
        """Did a try of this page before write the late link of someone an earlier run (or their join) enrolled?"""
        return self.run is not None and entry.linked_run == self.number

    def _run(self, jobs: list[Callable[[], None]]) -> None:
        if not jobs:
            return
        if len(jobs) == 1:
            self._guard(jobs[0])
            return
        pending: set[Future] = set()
        with Pool(max_workers=THREADS, thread_name_prefix="sync") as pool:
            for started, job in enumerate(jobs):
                while len(pending) >= THREADS:
                    _, pending = wait(pending, return_when=FIRST_COMPLETED)
                if self.token_refused:
                    with self._lock:
                        self.not_tried += len(jobs) - started
                    break
                if self.errors and isinstance(self.errors[0], Deferred) or self.stopped:
                    break
                if self.deps.remaining_ms() < PAGE_TIME_MS:
                    self.errors.append(Deferred("the Lambda's time is running out: the page continues in "
                                                "another invocation", retry_after=1))
                    break
                pending.add(pool.submit(self._guard, job))
            wait(pending)

    def _guard(self, job: Callable[[], None]) -> None:
        if self.token_refused:      # refused meanwhile, for a contact in flight beside this one
            with self._lock:
                self.not_tried += 1
            return
        try:
            job()
        except WorkError as exc:
            with self._lock:
                self.errors.append(exc)
                self.token_refused = self.token_refused or refuses_token(exc) or isinstance(exc, TokenRefused)
        except Exception as exc:  # a bug: the page is tried again, the others' entries stand
            logger.exception("sync contact failed")
            with self._lock:
                self.errors.append(Transient(unforeseen(exc)))

    def _skip(self, contact_id: str, contact: dict, reason: str, detail: str, **kw: Any) -> None:
        """Decided from a ledger naming no RF user for the contact: another worker that enrolled her since (a webhook,
        a merge's move) keeps its entry, and she is counted already enrolled."""
        self._done(_Outcome(LedgerEntry(contact_id, reason, email=_email(contact), reason=detail,
                                        run=self.decider, seen_run=self.number, **kw), reason, fresh=True))

    def _in_workspace(self, entries: list[LedgerEntry]) -> list[LedgerEntry]:
        """Each entry says the workspace of its contact: a move of the campaign then knows whom it leaves."""
        return [_replace(e, workspace=self.settings.workspace) for e in entries]

    def _record(self, entries: list[LedgerEntry]) -> set[str]:
        """Entries of contacts enrolled earlier: adopted ones written while their join's link is kept, those the
        ledger had rewritten only while it still has them (a merge, `bridge forget` meanwhile: not written back).
        The contact ids written."""
        sync = self.deps.sync
        return sync.adopt(self.campaign_id, [e for e in entries if e.contact_id in self.adopting]) | \
            sync.rewrite(self.campaign_id, [e for e in entries if e.contact_id not in self.adopting])

    def _done(self, result: _Outcome) -> None:
        entries = self._in_workspace([result.entry])
        if not (self.deps.sync.intend(self.campaign_id, entries) if result.fresh else self._record(entries)):
            # Another worker enrolled the contact meanwhile (a run's page and a webhook at once, each creating, or
            # finding, the one RF user): its entry stands, and this one counts the contact already enrolled. Or,
            # enrolled earlier, her entry went meanwhile (a merge moved it to the survivor, `bridge forget` erased
            # her): not written back, nor noted.
            with self._lock:
                self.tally.add(ALREADY)
            return
        if result.note is not None and result.entry.rf_user_id:
            self.deps.links.note(PersonRef(self.campaign_id, result.entry.rf_user_id), [result.note],
                                 enrolled=result.entry.contact_id)      # (forgotten meanwhile: not noted)
        with self._lock:
            self.tally.add(result.outcome)

    def _enrol(self, contact: dict, decision: Create, earlier: Optional[LedgerEntry]) -> None:
        """`earlier`: the `creating` entry a try before this one left (RF may have created the user)."""
        cid = str(contact["id"])
        rf = self.deps.apis.rf()
        found = False
        if earlier is not None and earlier.email and earlier.email != decision.email:
            # Her email changed since a try before meant to create her: that try may have made her RF user with the
            # email she had then (its `creating` entry keeps it). Found, she is enrolled with it, not created twice.
            before = self._made_before(cid, earlier.email, earlier)
            if before is not None:
                self._enrolled(cid, decision.email, before, found=True)
                return
        try:
            user = rf.create_user(decision.body)
        except Refused as refused:
            reason, detail = classify(refused)
            if reason == "user_limit":
                with self._lock:
                    self.stopped = (f"campaign user limit reached: {refused.message} — raise the campaign's user "
                                    "limit in Referral Factory, then run `bridge sync start` again")
            taken = reason in ("already_in_campaign", "user_limit")     # RF may hold a user made for this contact
            if not taken or earlier is None:
                if not (taken and self._enrolled_meanwhile(cid)):
                    self._skip(cid, contact, reason, detail)
                return
            # An earlier try of ours may have created them: RF has the email, or says the campaign is full (that
            # user may be its last). Which user is it? Not ours when it joined by itself, nor when another contact
            # of the source has the email (its create made the user).
            look = self._made_before(cid, decision.email, earlier)
            if look is None:
                self._skip(cid, contact, reason, detail)
                return
            user, found = look, True
        self._enrolled(cid, decision.email, user, found)

    def _made_before(self, contact_id: str, email: str, earlier: LedgerEntry) -> Optional[dict]:
        """RF's user with `email` if a try before this one (its `creating` entry: `earlier`) may have made it for
        this contact: not one who joined by themselves before it, nor one another contact of the source has."""
        look = self.directory.find(email)
        if look is None or _joined_before(look, earlier) or self._anothers(contact_id, email, look):
            return None
        return look

    def _enrolled(self, cid: str, email: str, user: dict, found: bool) -> None:
        """The contact is enrolled with RF's `user` (`found`: among the campaign's people, made by a try before)."""
        rf_id, url = str(user.get("id")), user.get("url")
        how = " (found in Referral Factory: an earlier, interrupted try created them)" if found else ""
        note = Entry("sync", "enrolled", f"enrolled by {self.via}{how}",
                     {"contact_id": cid, "run": self.decider, "referral_link": url})
        entry = LedgerEntry(cid, ENROLLED, email=email, rf_user_id=rf_id, url=url, run=self.decider,
                            seen_run=self.number)
        logger.debug("sync enrolled a contact", extra={"contact_id": cid, "email": mask_email(email),
                                                      "rf_user_id": rf_id, "found": found})
        self._write_back(entry, note)

    def _enrolled_meanwhile(self, contact_id: str) -> bool:
        """RF has the email (or says the campaign is full: that user may be its last) of a contact no try of ours
        was creating when this one read the ledger: did another worker enrol this very contact since (the same
        notification handed to two workers, a run's page and a webhook at once, while this create waited)? Its user
        is the one RF has: counted already, and its entry kept (a skip over it would lose the RF user, and with it
        the late link and `left`)."""
        entry = self.deps.sync.entries(self.campaign_id, [contact_id], consistent=True).get(contact_id)
        if entry is None or not entry.final or not entry.rf_user_id or entry.outcome == NOT_IN_RF:
            return False
        with self._lock:
            self.tally.add(ALREADY)
        return True

    def _anothers(self, contact_id: str, email: str, user: dict) -> bool:
        """Is RF's user with the contact's email another contact's: the ledger has it enrolled to another contact
        with the email, or another contact with the email was being created too (either create may have made
        the user)? Then RF's 422 is the duplicate email, not the contact's own earlier create."""
        rf_id = str(user.get("id"))
        return any(e.contact_id != contact_id and (e.rf_user_id == rf_id or not e.final)
                   for e in self.deps.sync.with_email(self.campaign_id, email))

    def _link(self, entry: LedgerEntry, value: Any) -> None:
        """An enrolled referrer's link, written back unless the contact holds it already (`value`: the
        contact's value where sync writes it). When the ledger has no link, RF says it (one call): a
        referrer of the bridge's own joins (their contact may hold a stale link), or one RF had made no
        link for when they were enrolled (asked again each run, until RF has one, or says it has no
        such user: _gone)."""
        assert entry.rf_user_id
        if not entry.url:
            try:
                entry = _replace(entry, url=self.deps.apis.rf().get_user(entry.rf_user_id).get("url") or None)
            except Permanent as exc:
                if exc.status != 404:
                    raise
                self._campaign_known(exc.reason)
                self._gone(entry, exc.reason)
                return
        self._write_back(entry, value=value)

    def _write_back(self, entry: LedgerEntry, note: Optional[Entry] = None, value: Any = None) -> None:
        attribute = self.sync.referral_link_attribute
        if self.counting and entry.rf_user_id and not entry.count_known:   # (whether or not Intercom takes the link)
            entry = self._count_contact(entry)
        if attribute and entry.url and entry.url != value:
            try:
                self.deps.apis.intercom(self.settings.workspace).update_contact(
                    entry.contact_id, writeback_body(self.sync, entry.url))
            except TokenRefused as exc:
                # The workspace's token refused (revoked): every write of the workspace fails alike until it is
                # reconnected. The page waits for that (page_failure), no try used; one enrolled just now is kept
                # with her RF user, her link written by the page's next try.
                if note is not None:
                    self._put_off(entry, note, exc)
                raise
            except Permanent as exc:
                why = _unwritten(exc)
                detail = f"write-back failed: {why}"
                failed = Entry("sync", WRITEBACK_FAILED, f"{note.reason if note else 'enrolled'}; the referral "
                               f"link could not be written to {attribute}: {why}",
                               {"contact_id": entry.contact_id, "run": self.decider})
                # Enrolled by this run (or webhook), or earlier (already): not a skip either way, as for _no_link.
                counted = ENROLLED_WRITEBACK_FAILED if self._enrolled_here(entry, note) else WRITEBACK_FAILED
                self._done(_Outcome(_replace(entry, outcome=WRITEBACK_FAILED, reason=detail, written_back=False),
                                    counted, failed, fresh=note is not None))
                return
            except Exception as exc:
                if note is not None:     # enrolled just now: the ledger names her RF user before the page fails
                    self._put_off(entry, note, exc)
                raise
        if attribute and not entry.url:
            self._no_link(entry, note)
            return
        again = entry.written_back           # written before, but not where the settings say now: written there
        fresh = note is not None
        outcome, counted = written(entry.outcome, fresh=fresh, ours=self._tried_before(entry),
                                   adopted=entry.adopted, again=again)
        if entry.outcome in UNWRITTEN or again:
            why = "Referral Factory had made none before" if entry.outcome == NO_LINK else \
                "the write before had failed" if not again else \
                f"it was written before to {entry.link_attribute or 'another attribute, or cleared since'}"
            note = Entry("sync", "link_written", f"referral link written to {attribute} by {self.via}: {why}",
                         {"contact_id": entry.contact_id, "run": self.decider, "referral_link": entry.url})
        # (the ledger's `run` stays the run that enrolled them; the LINKED note says which run wrote the link)
        there = bool(attribute and entry.url)
        self._done(_Outcome(_replace(entry, outcome=outcome, reason=None, written_back=there,
                                     link_attribute=attribute if there else None,
                                     linked_run=self.decider if counted == LINKED else entry.linked_run), counted,
                            note, fresh))

    def _put_off(self, entry: LedgerEntry, note: Entry, exc: Exception) -> None:
        """RF enrolled the contact just now, and Intercom put off the write of her link (a 429, an outage): her entry
        names her RF user (and link) as one whose link is not written yet, so the page's retry writes the link and
        counts her enrolled by this run, asking RF nothing (left `creating`, it paid a create RF refuses and a walk
        of the campaign's people). Written only where the ledger names no RF user, as an enrolment is."""
        reason = _unwritten(exc) if isinstance(exc, TokenRefused) else exc.reason if isinstance(exc, WorkError) \
            else unforeseen(exc)
        kept = _replace(entry, outcome=WRITEBACK_FAILED, reason=f"write-back failed: {mask_emails(reason)}",
                        written_back=False)
        if isinstance(exc, TokenRefused):      # her history says what the link waits for (explain shows it)
            note = Entry(note.event, note.outcome, f"{note.reason}; her referral link is not written yet: "
                         f"{_unwritten(exc)}", note.details)
        if self.deps.sync.intend(self.campaign_id, self._in_workspace([kept])) and entry.rf_user_id:
            self.deps.links.note(PersonRef(self.campaign_id, entry.rf_user_id), [note], enrolled=entry.contact_id)

    def _no_link(self, entry: LedgerEntry, note: Optional[Entry]) -> None:
        """Enrolled, but RF has made no referral link for them yet: the ledger says so (`sync report`), the
        person's history too (the first time), and each run asks RF again (_link) until it has one."""
        detail = (f"no referral link yet: Referral Factory has none for user {entry.rf_user_id} — each sync "
                  f"run asks it again, and writes the link to {self.sync.referral_link_attribute} once it has one")
        first = None
        if entry.outcome != NO_LINK:
            details = {**((note.details or {}) if note else {}), "contact_id": entry.contact_id, "run": self.decider}
            first = Entry("sync", note.outcome if note else NO_LINK, f"{note.reason}; {detail}" if note else detail,
                          details)
        # Enrolled by this run (or webhook), or by an earlier run or their own join (already): not a skip either way.
        counted = ENROLLED_NO_LINK if self._enrolled_here(entry, note) else NO_LINK
        self._done(_Outcome(_replace(entry, outcome=NO_LINK, reason=detail, written_back=False), counted, first,
                            fresh=note is not None))

    def _enrolled_here(self, entry: LedgerEntry, note: Optional[Entry]) -> bool:
        """Did this run (or webhook) enrol them — now (`note`), or on a try of this page before — rather than an
        earlier run or their own join (adopted)?"""
        return note is not None or self._tried_before(entry) and not entry.adopted and entry.outcome != ALREADY

    def _campaign_known(self, why: str) -> None:
        """A 404 for a user is final (_gone) only while RF still knows the campaign with this token: asked
        once a page (GET /campaigns/{id}). Else RF's answer is not about the user (an outage's page, a token
        of another account): the page fails with RF's reason, is retried, and marks nobody."""
        with self._campaign_lock:
            if self._campaign is None:
                self._campaign = rf_people.campaign_refused(self.deps.apis.rf(), self.campaign_id) or ""
        if self._campaign:
            raise Transient(f"{why}, but it does not know campaign {self.campaign_id} "
                            f"either ({self._campaign}): not taken as a deleted user — check RF and its token")

    def _gone(self, entry: LedgerEntry, why: str) -> None:
        """RF has no such user (404: deleted there): a final skip, said in the ledger and the person's
        history. Later runs ask RF nothing for the contact and do not enrol it again (docs/how-it-works.md)."""
        detail = (f"no longer in Referral Factory: user {entry.rf_user_id} was deleted there ({why}) — sync asks "
                  "no more, and does not enrol this contact again")
        note = Entry("sync", NOT_IN_RF, detail, {"contact_id": entry.contact_id, "run": self.decider})
        self._done(_Outcome(_replace(entry, outcome=NOT_IN_RF, reason=detail, written_back=False,
                                     at=iso(self.deps.clock())), NOT_IN_RF, note))   # (when: a later join clears it)

    def _count_contact(self, entry: LedgerEntry, asks: Optional[set[PersonRef]] = None) -> LedgerEntry:
        """The referral count learns the referrer's contact: a count their leads made before (their
        joins may come first) is written to it now. Asked before the ledger records that the count
        knows the contact (a page that dies after this still leaves the write asked for): at once,
        or added to `asks`, which the caller sends before its ledger write."""
        assert entry.rf_user_id
        ref = PersonRef(self.campaign_id, entry.rf_user_id)
        if self.deps.links.referrer_contact(ref, entry.contact_id, self.settings.workspace).n:
            if asks is not None:
                asks.add(ref)
            elif self.deps.queue is not None:
                self.deps.queue.send_many(count_messages({ref}))
        return _replace(entry, count_known=True)

    @property
    def directory(self) -> "_Directory":
        with self._lock:
            if self._directory is None:
                self._directory = _Directory(self.deps, self.campaign_id)
            return self._directory


def joined_contacts(deps: WorkDeps, settings: CampaignSettings, contact_ids: list[str]) -> dict[str, Link]:
    """The contacts the campaign's own joins linked (one batched read): their people are in RF's
    campaign already, whatever the contact holds (e.g. a referrer created with an email only)."""
    if not contact_ids:
        return {}
    ws = settings.workspace
    found = deps.lookup.look_up(contacts=[(ws, c) for c in contact_ids])
    linked = {c: [link for link in found.linked_to_contact(ws, c)
                  if link.campaign_id == settings.campaign_id and link.status is not LinkStatus.IGNORED]
              for c in contact_ids}
    # a referrer first: one contact may hold a referrer and a lead of the campaign (the same email)
    return {c: sorted(links, key=lambda link: link.kind != REFERRER)[0] for c, links in linked.items() if links}


def joined_skip(link: Link) -> Skip:
    return Skip("already_in_campaign", f"already in the campaign: joined it as a {link.kind or 'person'} (RF user "
                                       f"{link.rf_user_id}), linked to this contact by the join")


def _unwritten(exc: Permanent) -> str:
    """Why Intercom did not take a contact's link (`sync report`, her history). Its refusal of the workspace's token
    names the reconnect, which the page (or webhook) waits for, then writes the link: nothing is dead-lettered yet, so
    the refusal's own advice, to replay its dead letters, reaches none."""
    if not isinstance(exc, TokenRefused):
        return exc.reason
    return (f"{refused_answer(exc.answer, exc.workspace)}: reconnect it: {reconnect(exc.workspace, exc.token_app)}; "
            "the sync waits for it, then writes the link")


def _email(contact: dict) -> Optional[str]:
    """The contact's email as the ledger keeps it: trimmed and lowercased, as `forget` and `with_email` look it up."""
    return normal_email(contact["email"]) or None if isinstance(contact.get("email"), str) else None


def _written_there(entry: LedgerEntry, attribute: str, held: Any) -> bool:
    """Is an enrolled referrer's link written where the settings say now (`attribute`; `held`: the contact's value
    there)? Not when `referral_link_attribute` named another since. An entry from before the ledger said where it
    wrote: the contact's value says."""
    return entry.written_back and (entry.link_attribute == attribute if entry.link_attribute else held == entry.url)


def _own(link: Optional[Link]) -> Optional[Link]:
    """The join's link if it makes the contact the bridge's own referrer."""
    return link if link is not None and link.kind == REFERRER else None


def _still_not_in_rf(entry: Optional[LedgerEntry], link: Optional[Link]) -> bool:
    """An earlier skip as deleted in RF (not_in_rf) that still stands: unless a join since linked the contact
    as the bridge's own referrer — a new RF user, or the same one joining after the skip (RF restored them) —
    taken as such (adopted), no longer skipped."""
    if entry is None or entry.outcome != NOT_IN_RF:
        return False
    own = _own(link)
    return own is None or own.rf_user_id == entry.rf_user_id and not restored(own.joined_at, entry.at)


def _joined_before(user: dict, intent: LedgerEntry, margin: float = 60.0) -> bool:
    """Was the RF user there before our first try meant to create them (RF's clock may differ from ours
    by up to `margin`)? Then they joined by themselves: already in the campaign, not ours."""
    try:
        return bool(intent.at) and to_unix(user.get("signed_up_at")) < to_unix(intent.at) - margin
    except (ConversionError, TypeError, ValueError):
        return False


def _replace(entry: LedgerEntry, **changes: Any) -> LedgerEntry:
    from dataclasses import replace
    return replace(entry, **changes)


def classify(refused: Refused) -> tuple[str, str]:
    """RF's 4xx to a create, as a skip reason and its detail (RF's own words)."""
    said = "; ".join(f"{k}: {v}" for k, v in refused.fields.items()) or refused.message
    text = f"{refused.message} {said}".lower()
    if "limit" in text:
        return "user_limit", f"campaign user limit reached: {refused.message}"
    if "already" in text and "email" in text:
        return "already_in_campaign", "already in the campaign (Referral Factory has this email)"
    if "email" in refused.fields:
        return "invalid_email", f"invalid email: {refused.fields['email']}"
    return "refused", f"Referral Factory answered {refused.status}: {said}"


class _Directory:
    """The campaign's people by email, read from RF only when a try must know whether an earlier one
    created a user: page by page (rf_people.pages), until found. A walk that failed (a generator ends for
    good once it raises) answers each later look-up it cannot answer with its failure, never "not found":
    those contacts fail as the first did and are tried again with their page, which walks afresh."""

    def __init__(self, deps: WorkDeps, campaign_id: str):
        self.deps, self.campaign_id = deps, campaign_id
        self.by_email: dict[str, dict] = {}
        self.pages: Optional[Iterator[PeoplePage]] = None     # the walk, once begun
        self.failed: Optional[Exception] = None               # why the walk ended before its last page
        self._lock = threading.Lock()

    def find(self, email: str) -> Optional[dict]:
        with self._lock:
            if self.pages is None:
                self.pages = rf_people.pages(self.deps.apis.rf(), self.campaign_id)
            while email not in self.by_email:
                if self.failed is not None:
                    raise self.failed
                try:
                    page = next(self.pages, None)
                except Exception as exc:
                    self.failed = exc
                    raise
                if page is None:
                    return None
                for person in page.people:
                    if isinstance(person.get("email"), str):
                        self.by_email.setdefault(person["email"].lower(), person)
            return self.by_email[email]


# --- ongoing mode ----------------------------------------------------------------------------------
def on_contact(message: ContactMessage, deps: WorkDeps, _context: Any = None) -> None:
    """Ongoing mode: a contact Intercom just created is enrolled in every campaign of the workspace
    that syncs its kind of contact (a segment's members are found by the scheduled catch-up)."""
    if message.change == "merged":
        follow_merge(message, deps)
        return
    if message.topic not in CREATED:
        return
    contact = message.item.model_dump()
    ws = message.workspace
    campaigns = []
    for settings in _ongoing(deps, ws):
        assert settings.sync is not None
        latest = deps.sync.run(settings.campaign_id) if matches_source(settings.sync, contact) else None
        if latest is not None:      # (none: sync was never started: ongoing mode begins with the first run)
            campaigns.append((settings, latest, f"sync {settings.campaign_id} {message.notification_id}"))
    # A repeat of a notification a campaign's sync worked (Intercom and SQS redeliver) is not counted again: a
    # mark per campaign and notification, all read in one batched read. The mark is written once the contact is
    # worked, only where none is (two workers handed the same notification at once: one marks it), and the
    # counts are added by the worker that wrote it.
    seen = deps.lookup.look_up(notifications=[(ws, heard) for *_, heard in campaigns]).seen \
        if campaigns and message.notification_id else set()
    for settings, latest, heard in campaigns:
        assert settings.sync is not None
        if (ws, heard) in seen:
            continue
        page = Page(deps, settings, None, full=False, via=f"ongoing sync ({message.topic}) from "
                    f"{describe_source(settings.sync)}")
        page.number, page.required = latest.number, latest.required
        page.work([contact])
        if not message.notification_id or deps.lookup.first_seen(ws, heard):
            deps.sync.add_counts(settings.campaign_id, latest.number, page.tally.counts)


def follow_merge(message: ContactMessage, deps: WorkDeps) -> None:
    """Intercom merged a contact into another (a lead into a user): in each campaign of the workspace whose ledger has
    the merged one enrolled, the survivor takes its entry (its RF user). Else the next full run skipped the survivor as
    already in the campaign (RF has the email), her link was never written there, and `sync report` said the merged
    one left. The next run writes the link to the survivor (unless it holds it), and the count learns the contact."""
    merged, survivor = message.item.merged_from.id if message.item.merged_from else None, message.item.id
    if not merged or merged == survivor:
        return
    for campaign_id, settings in valid_campaigns(deps.settings, message.workspace).items():
        if settings.sync is None or settings.sync.counts_only:
            continue
        entry = deps.sync.entries(campaign_id, [merged], consistent=True).get(merged)
        if entry is None or not entry.final or not entry.rf_user_id or entry.outcome == NOT_IN_RF:
            continue
        taken = _replace(entry, contact_id=survivor, email=_email(message.item.model_dump()) or entry.email,
                         written_back=False, link_attribute=None, count_known=False, workspace=message.workspace)
        if deps.sync.move(campaign_id, merged, taken):
            deps.links.note(PersonRef(campaign_id, entry.rf_user_id), [Entry(
                "sync", "contact_merged", f"contact {merged} was merged into {survivor} in Intercom: contact sync "
                "follows her there", {"contact_id": survivor, "merged_from": merged})], enrolled=survivor)


def catch_up(deps: WorkDeps, workspace: str) -> list[SyncRun]:
    """Ongoing mode, on the reconciliation's schedule: for each campaign whose last run ended, a
    catch-up run of the contacts updated since it started (a full run at least every FULL_EVERY,
    which also finds who left). The first run is always the operator's `bridge sync start`."""
    started = []
    now = deps.clock()
    for settings in _ongoing(deps, workspace):
        latest = deps.sync.run(settings.campaign_id)
        if latest is None or latest.status == "running" and not first_page_lost(latest, now):
            continue                 # (a run whose first page was never sent: start() sends it)
        full = _last_full(deps, settings.campaign_id, latest)
        kind = "full" if full is None or now - full.started_at >= FULL_EVERY else "catch-up"
        try:
            started.append(start(deps, settings.campaign_id, kind=kind,
                                 since=None if kind == "full" else latest.started_at))
        except SyncStopped as exc:
            logger.warning("ongoing sync did not start", extra={"campaign_id": settings.campaign_id,
                                                               "problems": exc.problems})
        except WorkError as exc:     # Intercom or RF busy: the next schedule tries again
            logger.warning("ongoing sync did not start", extra={"campaign_id": settings.campaign_id,
                                                               "reason": exc.reason})
    return started


def _last_full(deps: WorkDeps, campaign_id: str, latest: SyncRun) -> Optional[SyncRun]:
    """The latest full run: the one `latest` names (kept while it is the latest: the catch-ups between expire), or,
    for a run started before runs named it, walked back to."""
    if latest.kind != "full" and latest.full_run:
        return deps.sync.run(campaign_id, latest.full_run)
    run: Optional[SyncRun] = latest
    while run is not None and run.kind != "full":
        run = deps.sync.run(campaign_id, run.number - 1) if run.number > 1 else None
    return run


def _ongoing(deps: WorkDeps, workspace: str) -> list[CampaignSettings]:
    return [s for _, s in sorted(valid_campaigns(deps.settings, workspace).items())
            if s.sync is not None and s.sync.mode == "ongoing" and not s.sync.counts_only]


# --- what the operator reads -------------------------------------------------------------------------
RATE_AFTER = 10.0                  # seconds: a run shorter than this shows no rate (nor ETA), as it would mean nothing


def status(deps: WorkDeps, campaign_id: str, number: Optional[int] = None) -> Optional[dict]:
    """The latest run's progress (or run `number`'s): its own pages' contacts against the search's
    total, at the rate they went over the run's own time. Ongoing mode's webhooks meanwhile are
    counted apart. When the latest run is a scheduled catch-up, the latest full run (the one
    `bridge sync start` began, or the daily one) is shown with it, as `full_run`: a catch-up starting
    seconds after the operator's run must not hide that run's counts."""
    run = deps.sync.run(campaign_id, number)
    if run is None:
        return None
    return _shown(deps, run, _last_full(deps, campaign_id, run) if number is None and run.kind != "full" else None)


def _shown(deps: WorkDeps, run: SyncRun, full: Optional[SyncRun]) -> dict:
    """The run's status, and beside it the latest full run's when the run is a catch-up."""
    return {**_status(deps, run),
            **({"full_run": _status(deps, full)} if full is not None and full is not run else {})}


def _status(deps: WorkDeps, run: SyncRun) -> dict:
    campaign_id = run.campaign_id
    now = deps.clock()
    error = shown_error(run, now)
    stalled = error is not None and error["state"] == FAILED     # since its page failed: the run waits, not works
    # The run's working time: not the time its pages waited in the dead-letter queue, before (paused) or now
    end = run.finished_at or (run.error.at if stalled and run.error else now)
    elapsed = max(0.0, end - run.started_at - run.paused)
    done = run.done
    rate = done / elapsed * 60 if done and elapsed >= RATE_AFTER else None
    total = run.total
    eta = None
    if run.status == "running" and total and rate and not stalled and not (error and error.get("outage")):
        eta = max(0.0, (total - done) / rate * 60)
    paused = run.paused + (now - end if stalled else 0.0)
    return {"campaign_id": campaign_id, "run": run.number, "kind": run.kind, "source": run.source,
            "status": run.status, "done": done, "total": total, "page": run.page, **run_counts(run.counts),
            "by_webhook": dict(run.by_webhook),
            "rate_per_minute": None if rate is None else round(rate, 1),
            "eta_seconds": None if eta is None else round(eta), "paused_seconds": round(paused),
            "started_at": iso(run.started_at), "finished_at": iso(run.finished_at) if run.finished_at else None,
            "last_progress_at": iso(run.updated_at),
            "message": run.message, **({"since": iso(run.since)} if run.since else {}),
            "page_error": error}


def shown_error(run: SyncRun, now: float) -> Optional[dict]:
    """The failure of the page the run is at (domain/sync.describe_page_error says it): its page 1-based, and
    `outage`: the vendor whose outage it waits out (or waited out for too long). A failed page a worker holds
    again (`bridge dlq replay` sent it back) is retrying; a page that waited, working (its wait is over)."""
    error = run.error
    if error is None or run.status != "running" or error.page != run.page:
        return None
    worked = bool(run.owner) and (run.lease_until or 0) > now
    state = {FAILED: RETRYING, WAITING: WORKING}.get(error.state, error.state) if worked else error.state
    vendor = outage_of(error.reason) if error.state != RETRYING and state != WORKING else None
    return {"page": error.page + 1, "state": state,
            "reason": error.reason, "tries": error.tries, "at": iso(error.at), **({"outage": vendor} if vendor else {})}


def report(deps: WorkDeps, campaign_id: str, examples: int = 5) -> dict:
    """The latest run's counts; skips by reason with examples (from the whole ledger); the enrolled still
    without a link, or whose link Intercom refused, apart (not skips); and who left the source since the
    last full run saw them — but those enrolled from another workspace than that run's (the campaign moved since:
    their contacts are not the run's to see), counted apart (`moved`). As shown_runs shows them (none ran raises
    SyncStopped), the settings read once."""
    block = _sync_block(deps, campaign_id)
    run = deps.sync.run(campaign_id)
    if run is None:
        return _runs_said(campaign_id, None, block)
    full = _last_full(deps, campaign_id, run)
    skips: dict[str, dict] = {}
    without_link: dict = {"reason": NO_LINK_REASON, "count": 0, "examples": []}   # enrolled: said apart from skips
    not_written: dict = {"reason": WRITEBACK_FAILED_REASON, "count": 0, "examples": []}      # so are these
    left: list[dict] = []
    moved: dict[str, int] = {}      # enrolled from a workspace the campaign has moved from: by workspace
    enrolled = 0
    for entry in deps.sync.ledger(campaign_id):
        if entry.outcome in SKIPS or entry.outcome in UNWRITTEN:
            group = without_link if entry.outcome == NO_LINK else not_written if entry.outcome == WRITEBACK_FAILED \
                else skips.setdefault(entry.outcome, {"reason": SKIPS[entry.outcome], "count": 0, "examples": []})
            group["count"] += 1
            if len(group["examples"]) < examples:
                group["examples"].append({"contact_id": entry.contact_id, "email": mask_email(entry.email or ""),
                                          "detail": mask_emails(entry.reason, entry.email), "run": entry.run})
        if entry.rf_user_id and entry.outcome != NOT_IN_RF:
            enrolled += 1
            if full is not None and full.status == "done" and max(entry.seen_run, entry.run) < full.number:
                if full.workspace and entry.workspace and entry.workspace != full.workspace:
                    moved[entry.workspace] = moved.get(entry.workspace, 0) + 1   # not looked for: the campaign moved
                    continue
                left.append({"contact_id": entry.contact_id, "email": mask_email(entry.email or ""),
                             "rf_user_id": entry.rf_user_id, "last_seen_run": entry.seen_run})
    return _runs_said(campaign_id, {
            "campaign_id": campaign_id, "run": _shown(deps, run, full), "counts": dict(run.counts),
            "writes": None if isinstance(block, SyncStopped) else describe_writes(block),
            "skipped": dict(sorted(skips.items(), key=lambda kv: -kv[1]["count"])), "without_link": without_link,
            "link_not_written": not_written, "enrolled_in_all": enrolled,
            "left": {"since_run": full.number if full else None, "count": len(left), "examples": left[:examples],
                     "note": "in Referral Factory still (the bridge removes nobody): no longer in the source"},
            "moved": {"count": sum(moved.values()), "workspaces": sorted(moved),
                      "moved_to": full.workspace if moved and full else None,
                      "note": "in Referral Factory still: enrolled from a workspace the campaign has moved from, their "
                              "contacts are not read by its runs now"}}, block)


def shown_runs(deps: WorkDeps, campaign_id: str, found: Optional[dict]) -> dict:
    """What `status` or `report` found, as `bridge sync status` and `report` show it: with
    `no_contact_sync` saying the campaign runs no contact sync now, and why, when its settings keep only
    referral counts, or are gone, or have no sync block any more (the runs found are then past ones).
    None found raises SyncStopped naming why: no contact sync, or never synced."""
    return _runs_said(campaign_id, found, _sync_block(deps, campaign_id))


def _sync_block(deps: WorkDeps, campaign_id: str) -> Sync | SyncStopped:
    """The campaign's sync block now, or why it has none: no settings, or no sync block (`sync start` would
    say the same)."""
    try:
        settings = settings_of(deps, campaign_id)
    except SyncStopped as exc:
        return exc
    assert settings.sync is not None
    return settings.sync


def _runs_said(campaign_id: str, found: Optional[dict], block: Sync | SyncStopped) -> dict:
    """shown_runs, of the sync block read already."""
    if isinstance(block, SyncStopped):
        if found is None:
            raise block
        return {"no_contact_sync": f"campaign {campaign_id} runs no contact sync now: {block}", **found}
    said = (f"campaign {campaign_id} runs no contact sync: its sync block only keeps referral counts "
            "(docs/how-it-works.md, Referral counts) — add fields and referral_link_attribute to sync contacts")
    counts_only = bool(block.counts_only)
    if found is None:
        raise SyncStopped([said if counts_only else
                           f"campaign {campaign_id} has never been synced — run `bridge sync start {campaign_id}`"])
    return {"no_contact_sync": said, **found} if counts_only else found


WOULD = "would_enrol"
WOULD_LINK = "would_link"          # enrolled by an earlier run, their link not written: the run would write it


def dry_run(deps: WorkDeps, campaign_id: str, examples: int = 5,
            progress: Optional[Callable[[int, Optional[int]], None]] = None) -> dict:
    """What a run would do now, creating nothing: the checks, then every page of the search against
    the ledger and RF's people of the campaign (read once, by email). Raises SyncStopped."""
    settings, required = _checked(deps, campaign_id, " --dry-run")
    sync = settings.sync
    assert sync is not None
    rf, intercom = deps.apis.rf(), deps.apis.intercom(settings.workspace)
    in_campaign: dict[str, dict] = {}     # RF's people, by email
    would: dict[str, str] = {}            # the email of each contact the run would enrol: that contact's id
    urls: dict[str, str] = {}             # RF's referral links of its people, by RF id
    ids: set[str] = set()                 # RF's people's ids: one enrolled earlier and not among them is deleted
    for page in rf_people.pages(rf, campaign_id):
        people = page.people
        in_campaign |= {p["email"].lower(): p for p in people if isinstance(p.get("email"), str)}
        urls |= {str(p.get("id")): p["url"] for p in people if p.get("url")}
        ids |= {str(p.get("id")) for p in people}
    tally, shown = Tally(), dict[str, list[dict]]()
    cursor: Optional[str] = None
    total: Optional[int] = None
    while True:
        contacts, cursor, found = intercom.search_page(search_query(sync), cursor, PER_PAGE)
        total = found if total is None else total
        known = deps.sync.entries(campaign_id, [str(c.get("id")) for c in contacts])
        joined = joined_contacts(deps, settings, [str(c.get("id")) for c in contacts if c.get("id")])
        attributes = cache(partial(deps.apis.attributes, settings.workspace))   # once a page, if asked
        for contact in contacts:
            entry = known.get(str(contact.get("id")))
            link = joined.get(str(contact.get("id")))
            decision: Decision
            if entry is not None and _still_not_in_rf(entry, link):   # deleted in RF: stays skipped
                decision = Skip(NOT_IN_RF, entry.reason or SKIPS[NOT_IN_RF])
            elif entry is not None and entry.final and entry.rf_user_id and entry.outcome != NOT_IN_RF and \
                    entry.written_back and sync.referral_link_attribute and not _written_there(
                        entry, sync.referral_link_attribute, attribute_value(contact, sync.referral_link_attribute)):
                tally.add(WOULD_LINK)               # written elsewhere before: the run would write it there
                continue
            elif entry is not None and entry.outcome in UNWRITTEN and entry.rf_user_id and sync.referral_link_attribute:
                if entry.url or urls.get(entry.rf_user_id):  # enrolled earlier: the run would write their link (LINKED)
                    tally.add(WOULD_LINK)
                    continue
                # (the run asks RF for them: a user RF no longer has answers 404, a final skip)
                if entry.rf_user_id in ids:
                    tally.add(NO_LINK)                       # enrolled earlier, RF has no link for them yet
                    continue
                decision = Skip(NOT_IN_RF, f"no longer in Referral Factory: user {entry.rf_user_id} is not among the "
                                           "campaign's people (deleted there)")
            elif entry is not None and entry.final and entry.rf_user_id or _own(link) is not None:
                tally.add(ALREADY)
                continue
            elif entry is not None and entry.outcome == "already_in_campaign":
                # an earlier run's skip stands, as the run keeps it (it asks RF nothing for the contact): also once RF
                # no longer has the email (deleted there)
                decision = Skip("already_in_campaign", entry.reason or SKIPS["already_in_campaign"])
            else:
                decision = joined_skip(link) if link is not None else \
                    decide(sync, campaign_id, contact, required, attributes())
            # (a try interrupted after its create made their RF user: the run finds that user and enrols them)
            made = entry is not None and not entry.final and entry.email in in_campaign and \
                not _joined_before(in_campaign[entry.email], entry)
            if isinstance(decision, Create) and decision.email in in_campaign and not made:
                decision = Skip("already_in_campaign", "already in the campaign (Referral Factory has this email)")
            elif isinstance(decision, Create) and decision.email in would:
                decision = Skip("already_in_campaign", f"already in the campaign: contact {would[decision.email]} of "
                                "the source has the same email and would be enrolled with it (the first of them; "
                                "Referral Factory takes an email once)")
            if isinstance(decision, Skip):
                tally.add(decision.reason)
                group = shown.setdefault(decision.reason, [])
                if len(group) < examples:
                    email = str(contact.get("email") or "")
                    group.append({"contact_id": str(contact.get("id")), "detail": mask_emails(decision.detail, email),
                                  "email": mask_email(email)})
            else:
                tally.add(WOULD)
                would[decision.email] = str(contact.get("id"))
        if progress:
            progress(sum(tally.counts.values()), total)
        if cursor is None:
            break
    counted = run_counts(tally.counts)      # "already" as a run counts it (its WOULD keys are apart)
    return {"campaign_id": campaign_id, "dry_run": True, "source": describe_source(sync), "total": total,
            "would_enrol": tally.counts.get(WOULD, 0), "already_enrolled": counted["already_enrolled"],
            "would_link": tally.counts.get(WOULD_LINK, 0), "still_without_link": counted["still_without_link"],
            "skipped": {k: {"reason": SKIPS[k], "count": n, "examples": shown.get(k, [])}
                        for k, n in sorted(tally.counts.items(), key=lambda kv: -kv[1]) if k in SKIPS}}
