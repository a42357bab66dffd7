"""The store, as repositories that take and return domain values (chalicelib/domain). Two
implementations honour the same conditions, proved by one contract suite (tests/contract/):
adapters/dynamo/ (PynamoDB, one table) and adapters/memory.py (the in-memory twin)."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple, Optional, Protocol, Sequence

from ..domain.budget import BudgetState
from ..domain.history import Entry, Recorded
from ..domain.oauth import Outcome
from ..domain.link import (Claim, ContactState, DuplicateSeen, FoundContact, JoinClaim, JoinResult, Link, LinkStatus,
                           Overdue, PendingPage, PersonRef, ReferralCount)
from ..domain.qualification import QState
from ..domain.sync import PageError
from ..errors import Deferred
from .edge import EdgeLog

if TYPE_CHECKING:   # the pointers' audit (`bridge pointers`) only: no function's init needs its module
    from ..domain.pointers import Finding, Placed, Pointer

# How long a claim (a join's, a qualification's, a sync page's) holds before another may take it, unless the
# runtime's Config.lease (BRIDGE_LEASE_SECONDS) says otherwise: the store is built with it, and a call given no
# `lease` takes the store's. BRIDGE_LEASE_SECONDS shortens it for chaos runs, where killed workers' claims must
# run out within the run. It must be at least the worker Lambda's timeout, or a claim runs out while its worker
# still works (`make deploy` refuses a shorter one: infra/deploy.py lease_problem).
DEFAULT_LEASE_SECONDS = 120.0
SCAN_LIMIT = 2000   # items a check over a whole campaign reads at most (a few pages): past them it says it stopped


class Leases:
    """A store part built with the runtime's lease (`lease`): a call that names no lease of its own takes it."""
    lease: float = DEFAULT_LEASE_SECONDS

    def _lease(self, lease: Optional[float]) -> float:
        return self.lease if lease is None else lease


class Busy(Deferred):
    """Another worker holds the claim right now, or took it from us: the work waits (`retry_after`:
    until the claim's lease ends) without using up a try."""


#: Busy's reason (claim_many's `read`): the link was written after the caller read it; read again, it comes back soon.
CHANGED_SINCE_READ = "another try of this join wrote its link after this batch read it: read again before trying"
#: Busy's reason (hold_found, FoundContact.held_read): a notification kept a change on the contact the link held after
#: the try read it; the join's retry reads it, and its hold carries it.
KEPT_MEANWHILE = ("a change to the target was kept on the contact her join held after this try read the link (another "
                  "worker applied an Intercom event): her join's retry carries it")
#: Busy's reason (set_contact): what an Intercom notification said of a contact is not set on a link that left it.
MOVED_SINCE_READ = ("the link moved to another contact after this batch read it (another worker linked or moved it): "
                    "read again")


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()         # "leave this attribute as it is" (None removes it)


class LinkRepository(Protocol):
    lease: float        # seconds its claims hold when a call gives no `lease` (Config.lease)

    def get(self, ref: PersonRef) -> Optional[Link]: ...
    def get_many(self, refs: Iterable[PersonRef], consistent: bool = False) -> dict[PersonRef, Link]:
        """The links held for `refs` (a ref without one is absent). Not `consistent`: a write just made may
        not show yet (DynamoDB's batched read); `consistent`: every write made before the read shows."""
    def statuses_in(self, campaign_id: str, limit: int) -> dict[LinkStatus, int]:
        """How many of the campaign's links are in each status, counting up to `limit` links (reads the
        campaign's own items only)."""
    def linked_elsewhere(self, campaign_id: str, workspace: str, limit: int,
                         scan_limit: int = SCAN_LIMIT) -> tuple[dict[str, int], bool]:
        """The campaign's linked people in other workspaces than `workspace`, by workspace, counting up to
        `limit` of them: its links are read page by page (not only its first `limit` links) until `limit`
        are found, none is left, or `scan_limit` links were read. With whether the read was complete (False:
        it stopped at `scan_limit` links, having found fewer than `limit`: the links past them are not known)."""
    def joining_elsewhere(self, campaign_id: str, workspace: str, limit: int,
                          scan_limit: int = SCAN_LIMIT) -> tuple[dict[str, int], bool]:
        """The campaign's joins part-way (Link.part_way) in other workspaces than `workspace`, by workspace,
        counted and read as `linked_elsewhere` counts and reads them."""
    def ignored_in(self, campaign_id: str, limit: int,
                   scan_limit: int = SCAN_LIMIT) -> tuple[dict[Optional[str], int], bool]:
        """The campaign's joins the settings ignored (action nothing), by kind (lead, referrer; None: not
        known), counting up to `limit` of them, read as `linked_elsewhere` reads (and as complete)."""
    def unbaselined(self, campaign_id: str, workspace: str, attribute: str, limit: int,
                    scan_limit: int = SCAN_LIMIT) -> tuple[dict[Optional[QState], int], bool]:
        """The campaign's leads linked in `workspace` whose baseline is no value of `attribute` (judge.baseline_known),
        by qualification state: None (linked before the campaign had a rule) or PENDING (a baseline of another
        attribute, recorded as such), counting up to `limit` of them, read as `linked_elsewhere` reads (and as
        complete)."""
    def refused_in(self, campaign_id: str, scan_limit: int = SCAN_LIMIT) -> tuple[list[Link], bool]:
        """The campaign's links whose qualification RF refused (failed), among its first `scan_limit` links in key
        order, with whether every link was read (as pending_in)."""
    def pending_in(self, campaign_id: str, scan_limit: int = SCAN_LIMIT) -> tuple[list[Link], bool]:
        """The campaign's links in the pending index, among its first `scan_limit` links in key order, read from the
        campaign's own links (the index is every campaign's, oldest first: another's backlog may fill its first
        pages). With whether every link was read (False: it stopped at `scan_limit` links)."""
    def joined_people(self, campaign_id: str,
                      scan_limit: int = SCAN_LIMIT) -> tuple[list[tuple[str, Optional[str]]], bool]:
        """The RF user id and email of each of the campaign's joins applied (final), among its first
        `scan_limit` links in key order (PERSON#<rf id> as text): whom doctor recognises a refused join's
        digests by (its body is not trusted with the person in clear). With whether every link was read
        (False: it stopped at `scan_limit` links)."""

    # joining: claim -> finish, only while the claim is held
    def claim(self, ref: PersonRef, workspace: str, lease: Optional[float] = None) -> Optional[JoinClaim]:
        """The claim, or None when the join was already applied (final). Raises Busy while another
        worker's lease runs. The claim records its time as `uncertain_since` (this try may create the
        contact from now on: a crash before `finish` leaves that said) and keeps what earlier tries
        recorded (the contact they created, its baseline, when the person joined)."""
    def claim_many(self, wanted: Sequence[tuple[PersonRef, str]], lease: Optional[float] = None,
                   read: Mapping[PersonRef, Optional[Link]] = MappingProxyType({})
                   ) -> list[JoinClaim | None | Exception]:
        """claim() for each (ref, workspace), in as few writes as the store can: per item what
        claim() answers, or the exception it raises (Busy) as a value. `read`: the links as the caller read
        them (None: it found none). Each of those is claimed only as read: with no link yet (the store may write
        it whole), or one not written since (its `updated_at`); one written since that claim() would take answers
        Busy (CHANGED_SINCE_READ): another try came between, and a try that went on from the older link would not
        know the contact it made or found (one final since is None, one another try holds Busy, as claim() says)."""
    def hold_found(self, held: Sequence[tuple[JoinClaim, FoundContact]]) -> list[Optional[Exception]]:
        """Each claimed join's contact that existed, with its baseline, recorded on its link (`contact_found`,
        and the person's kind) with the contact's pointer, before the join writes anything to it: a try that dies
        or fails after it resumes with that baseline, and a notification of the contact meanwhile finds the link.
        The link is no longer armed (a value seen on another contact says nothing of this one), nor says its contact
        deleted or archived (this one was just read), but for a change the join kept for its finish that the found
        contact carries (FoundContact.kept_at: hers, held with its arm in the same write). Held to what the link held
        as the try read it (FoundContact.held_read): another value held, Busy (KEPT_MEANWHILE), nothing written. A contact an earlier try recorded that is not this one: its
        pointer names her no more, in that write (as `finish` leaves one), in the workspace that try wrote it in
        (the campaign may have moved to another since: a claim keeps that contact). In as few writes as
        the store can: per item None, or Busy as a value when the claim was lost. `finish` then updates the link
        (it is no longer the claim's alone to write whole)."""
    def finish(self, claim: JoinClaim, result: JoinResult, entries: Sequence[Entry]) -> None:
        """The result, the contact and email pointers and the history, at once (a contact the link held, hold_found's
        or an earlier try's, that is not the result's: its pointer names her no more, in that write, in the workspace
        it was written in, as hold_found says; and, with
        `result.counts_for`, one more lead on that referrer's ReferralCount, the link dated
        `counted_at` and the count, if it begins with this lead, `since`, both with the write's time,
        never before the count's `since`: a count another worker began by a clock ahead dates the lead
        from its start). A contact the join created (`result.contact_created`) clears the link's contact_state
        (that of a contact an earlier try had, gone since). A result naming no `baseline_of` leaves the link's: a join resuming an earlier version's
        baseline keeps the rule `stamp_rule` recorded on it meanwhile. Raises Busy when the claim was lost."""
    def finish_many(self, done: Sequence[tuple[JoinClaim, JoinResult, Sequence[Entry]]]) -> list[Optional[Exception]]:
        """finish() for each, in as few writes as the store can: per item None, or the exception
        finish() raises (Busy) as a value. A referrer counted by several joins of one write gets
        them in one update."""
    def reopen_ignored_many(self, ignored: Sequence[tuple[PersonRef, str, Sequence[Entry]]]) -> list[bool]:
        """Joins the settings ignored (action nothing), each (ref, reason, entries), made claimable again
        for a join sent anew (`bridge backfill` once the action creates): the link waits (WAITING, with
        `reason`) and keeps everything else (whom it counted for: its join counts it no more), its
        entries go into its history, at once. Per person True, or False and nothing written unless the
        link is still ignored."""

    # referral counts (the referrer's PersonRef; services/referral_count.py)
    def referrals(self, ref: PersonRef) -> Optional[ReferralCount]: ...
    def referrals_many(self, refs: Iterable[PersonRef]) -> dict[PersonRef, ReferralCount]:
        """The counts kept of these people, read at once (strongly consistent): those with none are left out."""
    def referrals_in(self, campaign_id: str) -> dict[PersonRef, ReferralCount]:
        """Every count the campaign keeps (a query of its counts alone, page after page; not strongly consistent)."""
    def referrer_contact(self, ref: PersonRef, contact_id: str, workspace: str) -> ReferralCount:
        """Record the contact the referrer's count is written to (sync enrolled them), and its workspace:
        the count as it stands (0 when no lead counted yet)."""
    def drop_referrer_contact(self, ref: PersonRef, contact_id: str, workspace: Optional[str] = None) -> bool:
        """The count forgets the contact it names (and its workspace): `contact_id` learnt without its workspace
        (the campaign's workspace does not hold it), or, given `workspace`, recorded there (Intercom deleted it):
        only while the count still names it so (not another one sync recorded since)."""
    def referrals_written(self, ref: PersonRef, n: int, attribute: str) -> None:
        """Intercom holds `n` in `attribute` (written, and checked after); nothing when the count is gone."""
    def forget_referrals(self, ref: PersonRef) -> bool:
        """Erase the referrer's count (and the contact it named, and a write it owed): whether there was one."""
    def count_applied_many(self, leads: Sequence[tuple[PersonRef, str, Sequence[Entry]]]) -> list[bool]:
        """Count leads whose joins were applied without counting (before the campaign kept counts),
        each (lead, referrer, entries): their link records `counted_for = referrer` (and `counted_at`,
        dated as finish() dates it), the referrer's count grows by 1 and `entries` go into the lead's
        history, at once, in as few writes as the store can (a referrer of several gets them in one
        update). Per lead True, or False and
        nothing written for them, unless the link exists, is final (linked or ignored) and counted
        for nobody yet (nor named earlier in `leads`): each lead counts once, by their join or by
        this. A lead refused does not hold back the others."""

    # what Intercom says of the contact
    def move(self, link: Link, contact_id: str, entries: Sequence[Entry], role: Optional[str] = None,
             baseline: Any = KEEP, baseline_of: Optional[str] = KEEP, when: Optional[float] = None,
             left: bool = False, stays: bool = False) -> Optional[Link]:
        """The link and its pointer follow the person to `contact_id` (alive): the contact was merged
        into it, or it is the older duplicate of the one we created. `baseline`: its new baseline, a
        value of `baseline_of` (the link is no longer armed: what armed it was the other contact's). Any move clears the
        value held back (Link.held_at: the contact left's), but for a change a join not finished kept for its finish
        (Link.keeps_for_join, as stored: hers, carried with its arm, whatever the baseline; held to the link not
        linked and armed as read where the store cannot read it in the write). `role`: the
        contact's role now; none given, the link keeps the one it holds, and is returned with it (set meanwhile too),
        as it is returned with the values seen on her other contacts as stored (Link.duplicates_seen: the merge judges
        the survivor's).
        `when`: the time of the event that moved it (a merge notification's), which shows `contact_id` as it was
        then: the newest event applied from then on (Link.last_event_at, never moved back), so that a notification
        about it from before, delivered late, does not set its role or email back (set_contact). `left`: the contact
        it leaves is recorded (Link.left_contacts), with what the stored link holds on it then, its baseline and armed
        state, and when it leaves it (Link.left_baselines: `when`, or none given, the store's clock now); that record
        replaces an earlier one of that contact. The caller's to say (gone from Intercom, merged or deleted, so that
        its notifications delivered later are of events from before the move, and the link's baseline now another
        contact's): such a notification is judged against the baseline it had on that contact, not the one it holds
        now (contact_events._late). What is recorded is the stored link's: one armed (or whose baseline a backfill
        took) since `link` was read is read again. `stays` (with `left`): the contact it leaves stays in Intercom (the
        duplicate check's move to an older contact, her lead left in place): what the link holds on it is recorded
        (Link.left_baselines) all the same, but it does not join Link.left_contacts: its notifications are those of any
        contact with her email, but for one of an event from before the move, judged against that record
        (contact_events._same_email).
        Only while the stored link is on the contact `link` names: on another (moved meanwhile), Busy; erased
        meanwhile (`bridge forget`), None, and nothing written (neither the link nor a pointer to it)."""
    def set_contact(self, link: Link, entries: Sequence[Entry], *, when: Optional[float] = None,
                    role: Optional[str] = KEEP, state: Optional[ContactState] = KEEP,
                    email: str = KEEP) -> Optional[Link]:
        """With `when` (the event's time), an event older than the newest applied changes nothing:
        None, and the repeat is counted in the history. A link erased meanwhile (`bridge forget`): None, and
        nothing written. A link on another contact than `link` names (linked or moved meanwhile): Busy, nothing
        written (what is set is the contact's that `link` names). `email`: the link's email pointer follows it,
        from the email `link` has (a pointer left with no link goes in the same write: the old address is kept
        nowhere, whatever stops the caller after it); Busy when the stored link's email is not that one any more,
        or the links the old pointer names changed meanwhile (another worker changed them: read it again)."""
    def stamp_rule(self, campaign_id: str, attribute: str, key: str) -> int:
        """Before settings replace the campaign's rule (rules.replaced), its links stored before links named
        their rule record it as the one they were judged under: `baseline_of` = `attribute` on each link whose
        baseline is unrecorded (Link.baseline_unrecorded), `armed_by` = `key` (rules.key) on each armed one
        (Link.armed_unrecorded); and so on what each held on a contact it left (Link.left_baselines:
        LeftContact.stamped), which a late notification of that contact is judged against. Each only while the
        stored link still lacks it (written meanwhile, by a worker or another run: kept; those records, changed
        meanwhile, are read again), so a run cut short is simply run again. Reads all the campaign's links;
        the number written."""
    def arm(self, link: Link, entries: Sequence[Entry], by: str, at: Optional[float] = None,
            keep_held: bool = True, hold: Optional[float] = None) -> Link:
        """A value missing the target of the rule whose key (rules.key) is `by` was seen, in an event at `at`
        (Intercom's clock; None: unknown): the link is armed under it since then (Link.armed_at: judge.armed_for
        decided that it arms it, so `at` is earlier than any it held), erased meanwhile: `link`, and nothing written;
        on another contact than `link` names, moved meanwhile, or armed otherwise meanwhile than `link` reads (armed or
        not, armed_by, armed_at, held_at, held_by: another worker armed it, or held a value): Busy, nothing written, as
        set_contact. The value held (Link.held_at) is kept under the same rule (Link.held_under: `held_by` = `by`),
        unless not `keep_held` (judge: Verdict.drops_held), else cleared. `hold`: a value at the target of that time
        is held too, in the same write (Link.held_at: the newer of it and the one kept, under `by`): a join not
        finished keeping a change to the target for its finish (judge: Verdict.keeps); held to the link's status as
        read too (another: Busy, nothing written; a join finished since judged its contact before this write, and
        the notification read again is judged on the linked link, where the change qualifies her)."""
    def hold_back(self, link: Link, entries: Sequence[Entry], at: float, by: str) -> Link:
        """A value meeting the target, no change from the baseline, was held (judge: by armed_at, judge.armed_for, or
        seen while the link was not armed under the rule): the entries written, Link.held_at set to `at` (the newer of
        it and the one held under the rule: judge's) and Link.held_by to `by` (rules.key), held as arm is (Busy, or
        erased: `link`, nothing written)."""
    def arm_left(self, link: Link, contact_id: str, entries: Sequence[Entry], by: str, at: Optional[float] = None,
                 carry: bool = False, keep_held: bool = True, drop_left_held: bool = False) -> Link:
        """A value missing the target of the rule `by` was seen on `contact_id`, a contact the link left (in a late
        notification of an event from before the move, at `at`): what the link held on it (Link.left_record) is armed
        under it since then (LeftContact.armed_at), as the link would have been on it, and the entries written; the link's own armed state (the contact's it
        holds now) is not. Only while those records are as `link` read them: changed meanwhile, Busy, nothing
        written; erased meanwhile, `link`, nothing written; none recorded for `contact_id`, `link`, nothing written.
        `carry` (judge.carried: the move that left it kept her baseline, and the armed state): the link itself is armed
        too, in the same write, as arm does (since `at`, under `by`, the value held kept unless not `keep_held`), only
        while on the contact `link` names and armed as it reads (else Busy, nothing written). `drop_left_held`: the
        value held on the record (LeftContact.held_at) is cleared (judge: Verdict.drops_held), else kept."""
    def hold_left(self, link: Link, contact_id: str, entries: Sequence[Entry], at: float, by: str) -> Link:
        """A value at the target of `contact_id`, a contact the duplicate check's move left in Intercom (recorded, not
        in Link.left_contacts), from before the move, delivered after it, was no change against what the link held on
        it (judge's hold): that record holds it (LeftContact.held_at = `at`, held_by = `by`: judge's, the newer of it
        and the one held), with the entries. Held to the records as arm_left is (Busy; erased, or none recorded for
        `contact_id`: `link`, nothing written)."""
    def see_duplicate(self, link: Link, seen: DuplicateSeen) -> Link:
        """A value meeting the target was seen on `seen.contact_id`, another contact with her email (`match: contact`:
        not counted there): recorded as the newest of that contact's (Link.duplicates_seen; one of a newer event
        recorded already is kept), for a merge onto it to judge. Only while those records, and the contact the link is
        on, are as `link` read them: changed meanwhile, Busy, nothing written (a merge that moved it onto that contact
        meanwhile judged without the record: the retry judges the value as hers); erased meanwhile, `link`, nothing
        written. Nothing else is written (its history says it was not counted: note_repeat)."""
    def take_baselines(self, taken: Sequence[tuple[Link, Any, str, Sequence[Entry]]],
                       read_at: Optional[float] = None) -> list[bool]:
        """Leads whose baseline is not known under the campaign's rule (judge.takes_baseline), each (the link as
        read, its baseline now, the attribute it is a value of, entries): the link takes that baseline, is not
        armed, and waits for qualification (PENDING, in the pending index from now), and the entries go into
        its history, at once. Dated (Link.baseline_at) by `read_at`, when the contacts were read (the bridge's
        clock as the reads answered; default: now), by the second (by_the_second): a change she made after the read,
        of that second or later, is judged as one after the baseline, not one the value taken followed. Per link True, or False and nothing written, unless the stored link is still
        linked, with the qualification state and `baseline_of` the link read has (another run, or a
        qualification, changed it meanwhile)."""

    # qualification (domain/qualification.py says which transitions exist)
    def start_qualifying(self, link: Link, replay: bool = False, lease: Optional[float] = None) -> Claim | Link | None:
        """The claim, or the link as it stands when it cannot be taken (qualified, failed without a
        replay, or another worker's lease runs); None when the link was erased meanwhile (`bridge forget`)."""
    def note(self, ref: PersonRef, entries: Sequence[Entry], enrolled: Optional[str] = None) -> None:
        """Entries about the person (a judgement of what Intercom said, a failed try of work about them), written
        only while they are kept: their link, or (a referrer) their referral count, exists. A worker that read them
        before `bridge forget` erased them writes nothing about them. `enrolled`: a note of contact sync, which
        holds instead while the sync ledger entry of that contact names them (forget deletes it)."""
    def note_many(self, noted: Sequence[tuple[PersonRef, Sequence[Entry]]], at: Optional[float] = None) -> None:
        """`note` of each person's entries (each only while they are kept), the writes made at once. `at`: their
        time when the caller knows one it must not pass (no later than the store's clock, which it never passes)."""
    def note_latest(self, ref: PersonRef, entry: Entry) -> None:
        """One entry per person, event and outcome, replaced by each newer one (e.g. the latest referral count
        written): it sorts after the timed entries, before the counted repeats. Only while they are kept (as `note`)."""
    def note_repeat(self, ref: PersonRef, event: str, reason: str, outcome: str = "ignored",
                    restart_after: Optional[float] = None) -> None:
        """One entry per person and event counts the repeats (ignored ones; or waits: `deferred`), only while they
        are kept (as `note`). With `restart_after`, it counts from one again when its last repeat is older than
        that many seconds, or was of another kind (history.kind_of: its reason but for times and numbers)."""
    def finish_qualifying(self, claim: Claim, state: QState, entries: Sequence[Entry],
                          reason: Optional[str] = None, lease: Optional[float] = None,
                          rf_said_no: bool = False) -> Link:
        """End the claim: QUALIFIED or FAILED (final; out of every index), or UNCONFIRMED (out of the
        pending index; overdue once `lease` has run, unless a retry finished it first), recording
        `rf_said_no` (Link.rf_said_no) with it. FAILED owes its dead letter (Link.letter_owed) until `lettered`, and
        dates the refusal (Link.refused_at); either ending clears a discarded refusal's mark (Link.refusal_discarded) and
        a deletion in RF found (Link.rf_deleted_at)."""
    def lettered(self, ref: PersonRef, reason: str) -> None:
        """A dead letter saying `reason` was sent about the person: their failed qualification, if it owes its
        letter with that reason (Link.reason), owes it no more, and its refusal is dated by it (Link.refused_at).
        Nothing is written otherwise (another letter about them, no link)."""
    def discard_refusals(self, refs: Iterable[PersonRef]) -> None:
        """The operator discarded a qualification's dead letter about each (`bridge dlq discard`): one whose
        qualification failed is marked so (Link.refusal_discarded) until it ends again; others are left alone."""
    def rf_deleted(self, found: Sequence[tuple[Link, Sequence[Entry]]]) -> list[bool]:
        """`bridge backfill --apply` found each lead deleted in Referral Factory: one whose qualification failed, its
        refusal as read (Link.refused_at; one refused before the bridge recorded that: Link.updated_at too), is
        marked so (Link.rf_deleted_at: now), with its entries, until its qualification ends again; the mark does not
        date the refusal anew (Link.updated_at kept: what dates one without refused_at, letter_gone). Others (no link,
        no longer failed, or refused again since the read, e.g. a replay: its new dead letter there) are left alone,
        nothing written. Whether each was marked."""
    def unpend(self, link: Link, reason: str) -> Link:
        """Reconciliation stops checking this link (the reason goes into its history; erased meanwhile: nothing
        written)."""
    def pending(self, after: Optional[str], limit: int) -> PendingPage:
        """Links waiting for qualification, oldest first (never a scan). Positions sort by the time
        the lead joined (or the time `bridge backfill --apply` took its baseline: take_baselines), as
        ISO-8601 text: `after=iso(t)` starts with the leads placed at `t`."""
    def count_pending(self, before: Optional[str] = None, limit: Optional[int] = None) -> int:
        """How many links wait in the pending index (with `before`: those placed earlier), counting up to `limit`
        (its read stops there: the index keeps every lead that never converted, for good)."""
    def overdue(self, now: float, limit: int) -> list[Overdue]:
        """Links left unfinished past their lease and due (`Overdue.due` before `now`), longest due
        first (never a scan): joins and qualifications whose worker died holding the claim, and
        qualifications left unconfirmed — except those whose finishing message was queued
        (`requeue`) and has not yet had its fair chance to run."""
    def requeue(self, late: Overdue, retry_at: float, entries: Sequence[Entry]) -> bool:
        """Reconciliation queued the message that finishes this overdue link: the link leaves the
        overdue index until `retry_at` (then it is due again, unless that message finished it), its
        `requeued` count grows and `entries` go into its history, in one conditional write. Its
        lease stays ended: any worker may take the link at once (the queued message's; a dead
        worker's token still finishes it while nobody has). False, and nothing written, when the
        link moved since `late` was read (claimed, finished, or queued by another run)."""
    def unqueue(self, late: Overdue, retry_at: float, entries: Sequence[Entry]) -> bool:
        """Undo `requeue(late, retry_at, ...)`, whose message was not sent: the link is due again as `late` was
        read (its `requeued` count as then) and `entries` go into its history, in one conditional write. False,
        and nothing written, when the link moved since that requeue (claimed, or finished)."""

    # maintenance (`bridge pointers`): a scan of the table's pointers, never on a worker's or doctor's path
    def pointers(self, after: Optional[str], limit: int) -> "PointerPage":
        """The contact and email pointers after the position `after` (None: from the start), reading up to `limit`
        items (a page of the table's scan: a page may hold fewer pointers, even none, and more follow while `next`
        is not None), with the links they name as stored (strongly consistent), each with its contact's
        workspace."""
    def drop_reference(self, finding: Finding) -> bool:
        """Take `finding.ref` off `finding.pointer` (the pointer goes when it named nobody else), in one write
        holding to the link still not being that pointer's: a contact's, while the link is gone (ERASED) or not on
        that contact in that workspace (MOVED, ELSEWHERE: its `contact_workspace`, or, unset, its own); an email's,
        while the link has the email it was read with (EMAIL_CHANGED). A worker's write meanwhile that made the
        reference hers again (a merge followed back, a join finished there, the email changed back) refuses it:
        False, nothing written (as when the pointer names her no more)."""
    def place_contact(self, finding: Finding) -> bool:
        """Record on the link (UNPLACED) that its contact's pointer is `finding.pointer`'s workspace
        (`contact_workspace`), while the link records none, is on that contact and in the workspace it was read
        in, and the pointer names it still: then forget, merges and retries find that pointer. False, nothing
        written, otherwise."""

    def erase(self, link: Link) -> Erased:
        """The link, its history, its contact pointer's reference and the person's referral count (as a
        referrer). The pointers are those of the link as stored when it is deleted, not as `link` read it (a
        worker may have moved it since: a merge followed, a join finished on another contact, an email changed):
        the references of the contact it holds then and of an email it took since `link` was read go in the link's
        own delete (a move cannot come between; one left for a later write would name her for good once the erasure
        is interrupted before it, as nothing finds her by it). A link gone already (another erasure came between)
        takes her reference off the pointer of the contact `link` was read on, if it is there, while her link is
        still gone (counted in `pointers`). The email `link` has is the caller's to delete, last:
        `bridge forget` finds an interrupted erasure by it. The lead is taken off the count the stored link says they added to (`counted_for`,
        which a join or backfill may have set since `link` was read), never below 0, and only if that
        count began no later than the lead was counted (ReferralCount.counts: a count begun since,
        after the referrer was forgotten, never held the lead), in the link's own delete, and that
        count is marked as owing its write to Intercom (`counts_owed`) in that same write: whatever
        interrupts the caller before it asks for the write, reconciliation asks. The history goes
        last, so no entry written with the link (it was there) outlives it."""
    def counts_owed(self, now: float, limit: int) -> list[tuple[PersonRef, float]]:
        """The referrers whose count an erasure lowered, each with when its mark fell due
        (COUNT_ASK_GRACE seconds after the erasure) before `now`, until `count_asked` clears it;
        longest due first (never a scan)."""
    def count_asked(self, ref: PersonRef, due: float) -> bool:
        """The write of the referrer's count was queued after `counts_owed` read its mark (`due`): the
        mark goes, unless an erasure marked it again since (then it stays owed, and False)."""


# Days a past sync run is kept (SyncRepository.start): ongoing sync's catch-ups, one every 15 minutes, kept a month.
PAST_RUN_DAYS = 30

# Seconds an erasure's own ask for its referrer's count write (services/privacy.py) gets before
# reconciliation asks again: the mark `erase` leaves is what repairs an erasure interrupted before asking.
COUNT_ASK_GRACE = 60.0


@dataclass
class PointerPage:
    """A page of the pointers' scan (LinkRepository.pointers)."""

    pointers: list[Pointer]
    placed: dict[PersonRef, Placed]
    next: Optional[str]


class Erased(NamedTuple):
    """What LinkRepository.erase removed, the referrer whose count it lowered (None: none), the contact the
    link held as it was deleted (None: none, or the link was gone already), and the workspace that contact is in
    (an earlier try's when the campaign moved since: where its notifications and refusals are kept)."""

    entries: int
    pointers: int
    lowered: Optional[PersonRef]
    contact_id: Optional[str] = None
    contact_workspace: Optional[str] = None


@dataclass
class Found:
    """What one batched lookup answered: the links, who points at which contact and email, and the
    notifications already applied."""

    links: dict[PersonRef, Link] = field(default_factory=dict)
    by_contact: dict[tuple[str, str], frozenset[PersonRef]] = field(default_factory=dict)
    by_email: dict[tuple[str, str], frozenset[PersonRef]] = field(default_factory=dict)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def linked_to_contact(self, workspace: str, contact_id: Optional[str]) -> list[Link]:
        """The links the contact's pointer names that are on this contact still: a pointer names a person, the link
        which contact is hers (a pointer written before a join that finished on another contact left it may name
        her still: its late notifications are not hers)."""
        pointed = self.by_contact.get((workspace, contact_id or ""), frozenset())
        return [link for link in self._links(workspace, pointed) if link.contact_id == contact_id]

    def linked_to_email(self, workspace: str, email: Optional[str]) -> list[Link]:
        """The links the email's pointer names that have this email still (a batch keeps the links as its
        messages leave them: one whose email a message changed no longer shares the old address)."""
        pointed = self.by_email.get((workspace, normal_email(email)), frozenset())
        return [link for link in self._links(workspace, pointed) if normal_email(link.email) == normal_email(email)]

    def _links(self, workspace: str, refs: frozenset[PersonRef]) -> list[Link]:
        return [self.links[r] for r in sorted(refs) if r in self.links and self.links[r].workspace == workspace]


def normal_email(email: Optional[str]) -> str:
    return (email or "").strip().lower()


def answer_or_error(write: Callable[[], Any]) -> Any:
    """The write's answer, or the exception it raised as a value (claim_many's and finish_many's items)."""
    try:
        return write()
    except Exception as exc:
        return exc


class LinkLookup(Protocol):
    def look_up(self, *, contacts: Iterable[tuple[str, str]] = (), emails: Iterable[tuple[str, str]] = (),
                notifications: Iterable[tuple[str, str]] = (), refs: Iterable[PersonRef] = ()) -> Found:
        """One batched read: the links pointing at these (workspace, contact id) and (workspace,
        email) pairs, the links named by `refs`, and which (workspace, notification id) were seen (a
        mark past its keep_days is not, though DynamoDB's TTL deletes it late)."""
    def mark_seen(self, workspace: str, notification_id: str, keep_days: int = 7) -> None: ...
    def first_seen(self, workspace: str, notification_id: str, keep_days: int = 7) -> bool:
        """Mark the notification seen unless a live mark is there: True for the one worker that marked it."""
    def forget_email(self, workspace: str, email: str) -> None:
        """Delete the email's pointer (after its links were erased)."""


class HistoryLog(Protocol):
    def entries(self, ref: PersonRef) -> list[Recorded]: ...
    def erase(self, ref: PersonRef) -> int:
        """Delete the person's whole history: how many entries."""


@dataclass(frozen=True)
class CountBackfill:
    """A `bridge backfill CAMPAIGN --apply` is owed: `settings apply` turned the referral counts on, or
    moved them to `attribute`, in a campaign that has people, at `since` (ISO-8601): Intercom's counts
    in `attribute` may be stale until a backfill completes (services/admin.py, backfill.py, doctor.py)."""

    attribute: str
    since: str


@dataclass(frozen=True)
class StoredSettings:
    campaign_id: str
    workspace: str
    document: dict
    version: int
    updated_at: str
    count_backfill: Optional[CountBackfill] = None      # (settings stored before it existed have none)


class SettingsRepository(Protocol):
    def put(self, campaign_id: str, document: dict, workspace: str,
            count_backfill: Optional[CountBackfill] = None) -> int:
        """Store the settings, with the count backfill they owe (None: none): the new version, one past the last
        the campaign's settings had, deleted ones included (a version never names two documents)."""
    def get(self, campaign_id: str) -> Optional[StoredSettings]: ...
    def count_backfilled(self, campaign_id: str, owed: CountBackfill) -> bool:
        """A backfill that began while `owed` was marked has completed: the mark goes, unless settings
        applied since marked another (or none is stored): then nothing changes, and False."""
    def delete(self, campaign_id: str) -> bool:
        """Remove the campaign's settings (False: there were none), keeping their last version for the next `put`.
        The campaign stays listed in `campaigns` (what `forget` and `explain` visit: its links and history are
        kept)."""
    def documents(self, campaign_ids: Iterable[str]) -> dict[str, dict]: ...
    def campaigns(self, workspace: str) -> set[str]:
        """Every campaign whose settings were ever applied for this workspace (a campaign moved to
        another workspace stays listed: read its settings to know where it is now)."""


@dataclass(frozen=True)
class AttributeList:
    """A workspace's contact attributes as a worker last read them from Intercom (compact:
    domain/mapping.compact_attributes), and when (epoch seconds, taken before the read)."""

    attributes: dict[str, dict]
    read_at: float

    def ahead_of(self, now: float) -> bool:
        """Read "later" than `now` by more than clocks differ: a writer's clock was wrong. Such a list
        is not used, and a list read now replaces it (it would otherwise block fresher ones)."""
        return self.read_at > now + LIST_CLOCK_SKEW


#: How far two containers' clocks may differ (Lambda's are synchronised to milliseconds).
LIST_CLOCK_SKEW = 5.0


@dataclass(frozen=True)
class Connection:
    """A connected Intercom workspace: never a token or a secret, only which are set."""

    workspace: str
    status: str = "active"
    api_base: Optional[str] = None
    secrets: frozenset[str] = frozenset()              # the apps' marks too (domain/apps.py)
    attribute_list: Optional[AttributeList] = None     # shared by the workers: runtime.Runtime.attributes
    token_app: Optional[str] = None                    # the app the token is of (None: connected before it was kept)


@dataclass(frozen=True)
class OAuthTicket:
    """A one-time OAuth start link the operator minted (`bridge workspace oauth-link`): its random
    id, the workspace it allows (None: any), when it expires (epoch seconds)."""

    ticket: str
    workspace: Optional[str]
    expires_at: int


@dataclass(frozen=True)
class RFConnection:
    secrets: frozenset[str] = frozenset()
    token_at: Optional[str] = None       # when `bridge rf connect` last stored the token (ISO-8601)


class ConnectionRepository(Protocol):
    def put_workspace(self, workspace: str, secrets: Iterable[str] = (), api_base: Optional[str] = None,
                      token_app: Optional[str] = None) -> None:
        """Mark a workspace connected. What is not given (a secret, the api base, the token's app) is kept."""
    def mark(self, workspace: str, secrets: Iterable[str]) -> None:
        """The connection says these are set too (an app relabelled). Touches nothing else (a disconnected
        workspace stays so); creates no connection."""
    def unmark(self, workspace: str, secrets: Iterable[str], read: Optional[Connection] = None) -> bool:
        """The connection no longer says these are set (an app removed). Touches nothing else. Given the
        connection as `read` before, only while the record still says what it said (status, the secrets
        set and the apps marked, the token's app): False, nothing changed, when a connect or disconnect
        changed it meanwhile, or there is no connection."""
    def workspace(self, workspace: str) -> Optional[Connection]: ...
    def keep_attributes(self, workspace: str, listed: AttributeList) -> None:
        """Keep the workspace's attribute list on its connection record, for other containers to use
        while it is fresh. Touches nothing else (status, api base, secrets); creates no connection
        (nothing is kept when there is none), and never replaces a list read later, unless that one
        is stamped ahead of this read by more than clocks differ (AttributeList.ahead_of)."""
    def disconnect_workspace(self, workspace: str) -> bool:
        """Mark it disconnected and its token (and its app) no longer set (settings, links, history stay). False
        when the workspace was never connected."""
    def use_oauth_state(self, nonce: str, expires_at: float) -> bool:
        """True the first time a state's nonce is used, False ever after (kept until it expires)."""
    def end_oauth_state(self, nonce: str, expires_at: float, outcome: Outcome) -> None:
        """Record on the used state what its callback did. Only on a state used and kept, once (a later
        call changes nothing); it stays used, and expires as it would have."""
    def oauth_state_outcome(self, nonce: str) -> Optional[Outcome]:
        """What the used state's callback did; None before it is recorded (the callback still runs, or
        stopped midway), or when the state is not kept."""
    def add_oauth_ticket(self, ticket: OAuthTicket) -> None:
        """Keep a new start ticket until it is spent or expires (an id already kept is refused:
        ValueError; 128 random bits never are)."""
    def oauth_ticket(self, ticket: str, now: float) -> Optional[OAuthTicket]:
        """The ticket, left as it is, while it is kept and unexpired (what the start's page shows:
        opening a link never spends it); None when it was never kept, is spent or has expired."""
    def spend_oauth_ticket(self, ticket: str, now: float) -> Optional[OAuthTicket]:
        """The ticket, removed, the first time it is spent before it expires; None when it was never
        kept, is spent already, or has expired (once expired, it is never answered again)."""
    def register_workspace(self, workspace: str) -> None: ...
    def workspaces(self) -> set[str]:
        """Every workspace ever connected or configured (what `forget` visits)."""
    def put_rf(self, secrets: Iterable[str] = ()) -> None: ...
    def rf(self) -> Optional[RFConnection]: ...


PENDING_SWEEP = "pending"
SWEEP_ROUND = "pending#round"


class Cursor(Protocol):
    """Where reconciliation left off, by name: the sweep of pending leads (`PENDING_SWEEP`; None
    between rounds) and when its latest round began (`SWEEP_ROUND`, epoch seconds), and the search of
    each workspace's changed contacts (`changes#<workspace>`, the time it last finished; until one did,
    `changes#<workspace>#start`, where the first ones start; `changes#<workspace>#failed`, the latest failed
    search, as JSON: when it was asked and failed, the vendor unavailable, the reason, whether Intercom refused the
    token; `changes#<workspace>#back`,
    a rule change the next completed search must look back for, as JSON: which apply made it)."""

    def get(self, name: str = PENDING_SWEEP) -> Optional[str]: ...
    def set(self, position: Optional[str], name: str = PENDING_SWEEP) -> None: ...
    def clear(self, name: str, position: str) -> bool:
        """Clears `name` if it still holds `position` (True), else leaves what another wrote since (False)."""


class RateWindows(Protocol):
    """The shared side of the rate limiter (adapters/ratelimit.py): each slice's counter, and the
    budget's state (a 429's pause, the lowered share, an open circuit). domain/budget.py says why."""

    def reserve(self, budget: str, slice_id: int, want: int, cap: int, ttl: int) -> int:
        """Up to `want` of the slice's `cap` slots, with one write: how many were taken (0: the
        slice is full). Callers together never get more than `cap`."""
    def used(self, budget: str, slice_ids: Iterable[int]) -> int:
        """The slots handed out in these slices, all callers together (one batched read)."""
    def state(self, budget: str) -> BudgetState: ...
    def pause(self, budget: str, until: float, now: float, share: float, strikes: int, window: float) -> bool:
        """A 429: everyone waits until `until`. The 429 that starts a new strike (none runs at `now`,
        and the last began `window` seconds ago or more: BudgetState.new_strike) also sets the lowered
        `share` and `strikes`, and answers True; another only makes the pause longer (False)."""
    def block(self, budget: str, until: float, now: float, reason: str) -> None:
        """The vendor blocked us: no call before `until` (the circuit opens, or stays open)."""
    def probe(self, budget: str, now: float, until: float) -> bool:
        """An open circuit whose time is up lets one call through: True for exactly one caller,
        whose probe holds until `until` (another may probe after that)."""
    def unblock(self, budget: str) -> None:
        """A call went through: the circuit closes."""


@dataclass(frozen=True)
class SyncRun:
    """A contact sync run of a campaign (services/sync.py): where it is, and what it did so far."""

    campaign_id: str
    number: int
    kind: str                             # full | catch-up
    source: str                           # where its contacts come from, e.g. "segment 5f2a"
    status: str                           # running | done | stopped
    page: int = 0                         # the next page to work (its cursor below)
    cursor: Optional[str] = None
    counts: dict[str, int] = field(default_factory=dict)   # by outcome (domain/sync.OUTCOMES), of its own pages
    by_webhook: dict[str, int] = field(default_factory=dict)   # ongoing mode's contacts, by webhook, while it was the
                                                               # latest run (not its progress: apart from `counts`)
    total: Optional[int] = None           # the contacts the search found
    since: Optional[float] = None         # a catch-up: contacts updated since
    started_at: float = 0.0
    updated_at: float = 0.0
    finished_at: Optional[float] = None
    message: Optional[str] = None         # why it stopped
    lease_until: Optional[float] = None   # a worker works a page until then
    owner: Optional[str] = None
    error: Optional[PageError] = None     # the last failure of its next page, while the queue retries it
    paused: float = 0.0                   # seconds its pages waited in the dead-letter queue (not its rate's time)
    required: tuple[str, ...] = ()        # the fields RF's campaign required of a referrer when the run started
                                          # (domain/sync.required_fields): its pages, and webhooks while it is the
                                          # latest run, skip a contact missing one without asking RF
    workspace: Optional[str] = None       # the workspace whose contacts it reads (None: started before runs said it)
    full_run: Optional[int] = None        # the latest full run when it started (a full run: itself; None: started
                                          # before runs said it, or no full run yet)

    @property
    def done(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class LedgerEntry:
    """What sync did with one contact of a campaign. `creating`: RF was (or is about to be) asked to
    create the user, and nobody knows yet whether it did."""

    contact_id: str
    outcome: str                          # creating | domain/sync.OUTCOMES
    email: Optional[str] = None
    rf_user_id: Optional[str] = None
    url: Optional[str] = None
    reason: Optional[str] = None
    run: int = 0                          # the run that decided it (0: ongoing, by webhook): for an enrolled
                                          # referrer, the run that enrolled them, also once a later run writes
                                          # their link (linked_run)
    seen_run: int = 0                     # the last full run that saw the contact in the source
    written_back: bool = False
    at: Optional[str] = None
    count_known: bool = False             # the referral count knows this contact (ReferralCount.contact_id)
    adopted: bool = False                 # their own join enrolled them (sync created nothing): already enrolled,
                                          # also while their link is not written yet (no_link_yet, writeback_failed)
    linked_run: int = 0                   # the run that wrote their late link (outcome `linked`; 0: none, or a webhook)
    workspace: Optional[str] = None       # the workspace of the contact (None: written before entries said it)
    link_attribute: Optional[str] = None  # where the link was written (None: written before entries said it)

    @property
    def final(self) -> bool:
        return self.outcome != "creating"


class SyncRepository(Protocol):
    def start(self, campaign_id: str, kind: str, source: str, now: float,
              since: Optional[float] = None, required: tuple[str, ...] = (),
              workspace: Optional[str] = None) -> Optional[SyncRun]:
        """A new run (numbered after the last one, naming the latest full run), or None while one is running. The
        run before is kept under its number, with every count a webhook added to it before the new run started: a
        catch-up run, or a full run the new one replaces (a full one), expires PAST_RUN_DAYS from now (the table's TTL;
        set with the start, never after it); the latest full run is kept while it is the latest."""
    def run(self, campaign_id: str, number: Optional[int] = None) -> Optional[SyncRun]:
        """A run by number (None: the latest); None for one expired (though DynamoDB's TTL deletes it late)."""
    def claim_page(self, campaign_id: str, number: int, page: int, owner: str, now: float,
                   lease: Optional[float] = None) -> tuple[Optional[SyncRun], bool]:
        """Take the page: (the run, True). (the run as it stands, False) when the page is not the
        run's next one (done, or the run ended). Raises Busy while another worker's lease runs."""
    def checkpoint(self, campaign_id: str, number: int, page: int, owner: str, now: float, *,
                   cursor: Optional[str], counts: dict[str, int], total: Optional[int] = None,
                   finished: bool = False, message: Optional[str] = None, paused: float = 0.0) -> bool:
        """The page is done: the next page and its cursor, the counts added, the lease given back, the
        page's error cleared (and the run done, or stopped with `message`), `paused` added to the run's. False
        when this worker no longer held it."""
    def release(self, campaign_id: str, number: int, page: int, owner: str,
                error: Optional[PageError] = None, paused: float = 0.0) -> None:
        """Give the page back unfinished (it is worked again later), with why (`error`, kept on the run
        until a checkpoint clears it; None: the run's error stays as it was), `paused` added to the run's."""
    def begin_again(self, campaign_id: str, number: int, now: float) -> bool:
        """Run `number`'s first page, never sent, is sent again now: the run's time counts from `now` (its
        `started_at`: the time it sat unsent is not its working time). False when it is not at its first page any
        more, ended, or a worker holds that page."""
    def stop(self, campaign_id: str, number: int, page: int, now: float, message: str, paused: float = 0.0) -> bool:
        """End run `number` while it is running at `page` (the operator gave up on that page: `bridge dlq discard` of
        its dead letter): stopped with `message`, its lease given back, `paused` added to the run's. False when it is
        not (it moved on, or ended)."""
    def add_counts(self, campaign_id: str, number: int, counts: dict[str, int]) -> None:
        """Ongoing mode's webhook outcomes, kept on the latest run apart from its pages' (`by_webhook`):
        neither its progress nor its last progress."""
    def entries(self, campaign_id: str, contact_ids: Iterable[str], consistent: bool = False) -> dict[str, LedgerEntry]:
        """The ledger's entries of these contacts (one batched read; `consistent`: every write made before it
        shows)."""
    def intend(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> set[str]:
        """Write `creating` entries (or the entry of a contact enrolled just now) over whatever the ledger holds but
        an entry naming an RF user: an earlier run's final skip too (a contact fixed since), so that a retry after a
        lost create answer finds the `creating` entry and looks the user up in RF. An entry naming an RF user was
        written since the page read the ledger (another worker enrolled the contact: the same notification handed to
        two workers, a run's page and a webhook at once): it stands. The entry of a contact enrolled just now is
        written only over an entry (the page's `creating` one): `bridge forget` deleted it meanwhile, it is not
        written back. The contact ids written."""
    def adopt(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> set[str]:
        """Write final entries of referrers their own join enrolled (`adopted`), each only while that join's link
        (of `rf_user_id`) exists: `bridge forget` erased her meanwhile, her email and ids are not written back. The
        contact ids written."""
    def rewrite(self, campaign_id: str, entries: Sequence[LedgerEntry]) -> set[str]:
        """Write final entries of contacts the ledger had enrolled when read, each only over an entry of its contact
        that still names the RF user it names: a merge moved it to the surviving contact meanwhile (two entries would
        name one RF user), or `bridge forget` deleted it (her email and ids would be written back). The contact ids
        written."""
    def move(self, campaign_id: str, from_id: str, entry: LedgerEntry) -> bool:
        """Contact `from_id` was merged into `entry.contact_id`: `entry` (its entry, taken over) is written, and
        `from_id`'s deleted, at once — only where the survivor's entry names no RF user and `from_id`'s names the same
        RF user as `entry`. Whether it was."""
    def ledger(self, campaign_id: str, limit: Optional[int] = None) -> Iterable[LedgerEntry]:
        """Every entry of the campaign, or its first `limit` (a query reading no more: for reports, not for
        the worker)."""
    def with_email(self, campaign_id: str, email: str) -> list[LedgerEntry]:
        """The campaign's entries with this email (a query of the campaign's ledger, strongly consistent: for
        `explain`, and for sync when RF refuses the create of a contact an earlier try may have created)."""
    def forget(self, campaign_id: str, email: str, contact_ids: Iterable[str] = ()) -> list[LedgerEntry]:
        """Delete the campaign's entries with this email, and those of `contact_ids` (erasure: the contacts of
        the people erased, whose entries may name an email they had before): the entries deleted."""


class Store(Protocol):
    """Every repository (an implementation declares its attributes with these types)."""

    links: LinkRepository
    lookup: LinkLookup
    history: HistoryLog
    settings: SettingsRepository
    connections: ConnectionRepository
    cursor: Cursor
    rates: RateWindows
    sync: SyncRepository
    edge: EdgeLog
