"""Judge what was seen of a contact, act on the verdict, and qualify the referral in Referral
Factory at most once: a claim in the store, and RF asked first whenever an earlier try may have
reached it (domain/qualification.py: the states, and why a decision never goes back to pending)."""
from __future__ import annotations

from typing import Any, Callable, Optional

from ...domain import rules
from ...domain.advice import gone_or_token, never_succeeds
from ...domain.history import Entry, iso
from ...domain.judge import Action, Sighting, Verdict, carried, elsewhere, judge, kept_left
from ...domain.latency import CHANGED_AT, changed_at, delay, kept_since
from ...domain.link import Claim, LeftContact, Link, LinkStatus
from ...domain.mapping import attribute_type
from ...domain.qualification import QState, ask_rf_first, may_have_qualified
from ...domain.settings import CampaignSettings, Qualification
from ...domain.people import other_campaign
from ...errors import REFUSED_TOKEN, Permanent, Transient, Uncertain, WorkError
from ...observability import count, logger, seconds
from ...ports import Apis, HistoryLog, LinkRepository, Merged, NotFound
from ..rf_people import campaign_refused

#: After RF's answer was lost and RF could not tell us whether it applied the call, try again no sooner than this
#: (RF asked first). When the loss was RF's outage, its outage wait (domain/outage.outage_wait) sets the delay.
UNSURE_RETRY_SECONDS = 30.0
#: How long RF's answer to "do you know the campaign with the RF token?" (asked after its `User not found`) is kept:
#: one call for a burst of 404s, and a token replaced since (`bridge rf connect`) asked about again soon.
CAMPAIGN_SEEN_SECONDS = 300.0


class Qualifier:
    def __init__(self, links: LinkRepository, apis: Apis, clock: Callable[[], float],
                 history: Optional[HistoryLog] = None):
        # `clock`: when RF confirmed a qualification, for its delay (QualificationDelaySeconds); never a decision's.
        # `history`: read for that delay only, by a try that finishes a qualification an earlier one left unconfirmed
        # without judging it again (resume: the change's time its first try kept there, _unconfirmed)
        self.links, self.apis, self.clock, self.history = links, apis, clock, history
        self._campaigns: dict[str, tuple[float, Optional[str]]] = {}    # campaign: when asked, RF's refusal or None

    def evaluate(self, link: Link, settings: Optional[CampaignSettings], seen: Sighting, note: bool = True) -> Link:
        """Judge `seen` under the campaign's settings as they are now (every path that may qualify comes
        here). Returns the link as it is afterwards. `note=False`: a verdict that changes nothing leaves
        no trace (reconciliation's search sees the same contacts run after run)."""
        if self.moved_away(link, settings, note):
            return link
        rule = settings.qualification if settings is not None else None
        verdict = self._judge(link, rule, seen)
        if verdict.action is Action.FAIL:
            raise owed_letter(link)
        if verdict.action is Action.ARM and not seen.current and link.status is LinkStatus.LINKED:
            # (a join part-way is only armed: nothing judges it before it is linked, so its contact is not read now)
            return self._arm_and_look(link, settings, seen, verdict)
        if not note and verdict.action in (Action.NOTE, Action.IGNORE):
            return link
        if verdict.repeat is not None:
            self.links.note_repeat(link.ref, verdict.repeat.event, verdict.repeat.reason)
        entries = [verdict.entry] if verdict.entry is not None else []
        if verdict.action is Action.ARM:
            return self._released(self._arm(link, entries, rule, seen.when, verdict), verdict, seen)
        if verdict.held_at is not None and verdict.held_by is not None:
            return self.links.hold_back(link, entries, verdict.held_at, verdict.held_by)
        if entries:
            self.links.note(link.ref, entries)
        if verdict.action is Action.QUALIFY:
            return self.qualify(link, seen.via, replay=seen.replay, since=changed_at(seen))
        return link

    def _released(self, armed: Link, verdict: Verdict, seen: Sighting) -> Link:
        """Armed since a value missing the target no later than the one held back (Verdict.releases): that one was a
        change to the target in order, and qualifies her (claimed, RF asked first, once)."""
        if not (verdict.releases and armed.armed and armed.status is LinkStatus.LINKED):
            return armed
        held, since = iso(armed.held_at or 0.0), iso(armed.armed_at or 0.0)
        return self._release(armed, seen, armed.held_at, (
            f"the value at the target of the event at {held}, held back as older than the change away that armed the "
            f"link, was a change to the target in order: this change away, at {since}, came before it"))

    def evaluate_late(self, link: Link, left: LeftContact, settings: Optional[CampaignSettings], seen: Sighting,
                      look: bool = True) -> Link:
        """`seen`: a contact the link left (`left`: what it held on it then), in an event from before it left it,
        delivered after: judged as it would have been in order, against the baseline and armed state the link had on
        that contact (LeftContact.held), its qualification as it is now (one reached goes the usual way: claimed,
        RF asked first, once). A value missing the target seen after joining arms what the link held on that contact
        (LinkRepository.arm_left), as it would have armed the link on it: a later change to the target there, also
        delivered late, counts. Not the link's own armed state (the contact's it holds now), unless the move that
        left that contact kept her baseline (judge.carried): then it too, and a value held on the contact it holds
        since the move, at the target, is released (_released: she qualifies, once). Unlike the contact the
        link holds (_arm_and_look), the contact left is not read then: Intercom no longer has it; but one the
        duplicate check's move left in Intercom is (_look_again). Returns the link as it is afterwards."""
        if self.moved_away(link, settings):
            return link
        rule = settings.qualification if settings is not None else None
        verdict = self._judge(left.held(link), rule, seen)
        if verdict.action is Action.FAIL:
            raise owed_letter(link)
        if verdict.repeat is not None:
            self.links.note_repeat(link.ref, verdict.repeat.event, verdict.repeat.reason)
        entries = [late_entry(verdict.entry, left, link)] if verdict.entry is not None else []
        since = kept_left(link, rule, verdict) if verdict.action is Action.ARM and rule is not None else None
        if since is not None and rule is not None and verdict.keeps is not None:
            # (a change her join kept, on her contact then: the link itself keeps it, held to its contact, armed state
            # and status as read; her join's finish qualifies her, once)
            return self.links.arm(link, entries, rules.key(rule), since, hold=verdict.keeps)
        if verdict.action is Action.ARM and rule is not None:
            carry = carried(link, left, rule, seen.when)
            # (her contact the duplicate check's move left in Intercom is read before anything is written, as
            # _arm_and_look reads: a failed read retries the notification, which finds the record as it was, not armed
            # already, and reads it again; a value released here qualifies her without it)
            released = verdict.releases or (carry is not None and carry.releases)
            now = self._read_left(link, left) if look and not released else None
            armed = self.links.arm_left(link, left.contact_id, entries, rules.key(rule), seen.when,
                                        carry=carry is not None, keep_held=carry is None or not carry.drops_held,
                                        drop_left_held=verdict.drops_held)
            armed = self._released(armed, carry, seen) if carry is not None else armed
            if verdict.releases:        # (a value held on the record: LeftContact.held_at)
                armed = self._released_left(armed, left, seen)
            return self._look_again(armed, left, settings, seen, now) if now is not None else armed
        if verdict.held_at is not None and verdict.held_by is not None and not link.left(left.contact_id):
            # (held on the record of a contact left in Intercom: LinkRepository.move's `stays`; on one merged or gone,
            # not: a known miss)
            return self.links.hold_left(link, left.contact_id, entries, verdict.held_at, verdict.held_by)
        if entries:
            self.links.note(link.ref, entries)
        if verdict.action is Action.QUALIFY:
            return self.qualify(link, seen.via, replay=seen.replay, since=changed_at(seen))
        return link

    def _released_left(self, armed: Link, left: LeftContact, seen: Sighting) -> Link:
        """A late change away armed what the link held on `left` since no later than a value at the target held there
        (Verdict.releases on LeftContact.held: the contact the duplicate check's move left in Intercom): that value was
        a change to the target in order, and qualifies her (claimed, RF asked first, once)."""
        if armed.qualification is not QState.PENDING or armed.status is not LinkStatus.LINKED:
            return armed
        return self._release(armed, seen, left.held_at, (
            f"the value at the target of contact {left.contact_id}'s event at {iso(left.held_at or 0.0)}, from before "
            f"the link left it and held there, was a change to the target in order: this change away there, at "
            f"{iso(seen.when or 0.0)}, came before it"), late_of_contact_id=left.contact_id)

    def _release(self, armed: Link, seen: Sighting, held_at: Optional[float], reason: str, **details: Any) -> Link:
        """The value held back at `held_at`, released (_released: on the link; _released_left: on a record of a contact
        it left): noted as met, with `reason`, and she qualifies (claimed, RF asked first, once). Each keeps its own
        guard: _released asks the link's own armed state (its arm's, on the link); _released_left cannot (arm_left
        leaves that state as it was, unless `carry`), and asks that she still waits (QState.PENDING)."""
        self.links.note(armed.ref, [Entry("evaluation", "met", reason,
                                          {"via": seen.via, "released_held_at": held_at, **details})])
        return self.qualify(armed, f"{seen.via}, releasing the value held back", replay=seen.replay,
                            since=held_at)

    def _read_left(self, link: Link, left: LeftContact) -> Optional[dict]:
        """The contact of `left` as Intercom has it now, when it is one the duplicate check's move left there
        (recorded, not taken as left: LinkRepository.move's `stays`) and the link still waits: for _look_again. None:
        not such a contact, the link decided, or the contact merged or gone since."""
        if _stayed_waiting(link, left.contact_id) is None:
            return None
        try:
            return self.apis.intercom(link.workspace).get_contact(left.contact_id)
        except (Merged, NotFound):
            return None

    def _look_again(self, armed: Link, left: LeftContact, settings: Optional[CampaignSettings], seen: Sighting,
                    now: dict) -> Link:
        """A late value armed what the link held on `left`, a contact the duplicate check's move left in Intercom
        (recorded, not taken as left: LinkRepository.move's `stays`): as for the contact the link holds
        (_arm_and_look), order never matters, and a newer value of it from before the move, at the target, judged
        already against that record not armed then, was a change in order. So the contact is read now, and, when what
        it shows is from before the move (its updated_at no later than it: after it, a duplicate's value, judged as
        such in its own notification), judged again against the record as armed now (once: not read again). `now`:
        the contact as read before the record was armed (_read_left: a failed read wrote nothing)."""
        now_left = _stayed_waiting(armed, left.contact_id)
        if now_left is None or not now_left.armed:
            return armed
        when = rules.event_time(now.get("updated_at"))
        if not now_left.before_move(when) or armed.left_at(when) != now_left:
            return armed
        read = Sighting(now, f"{seen.via}, then the contact read at once", when, replay=seen.replay)
        return self.evaluate_late(armed, now_left, settings, read, look=False)

    def moved_away(self, link: Link, settings: Optional[CampaignSettings], note: bool = True) -> bool:
        """The link was made in another workspace than the campaign's now: it is never judged (nor its
        contact read for it), and its history says why (once, its repeats counted)."""
        repeat = elsewhere(link, settings)
        if repeat is not None and note:
            self.links.note_repeat(link.ref, repeat.event, repeat.reason, outcome="not_qualified")
        return repeat is not None

    def _judge(self, link: Link, rule: Optional[Qualification], seen: Sighting) -> Verdict:
        return judge(link, rule, seen, lambda name: attribute_type(name, self.apis.attributes(link.workspace, (name,))))

    def _arm(self, link: Link, entries: list[Entry], rule: Optional[Qualification], at: Optional[float],
             verdict: Verdict) -> Link:
        """Armed under the rule whose target the value seen missed (only a verdict under a rule arms), since the
        time of the event that showed it (`at`: Link.armed_at), keeping the value held unless the verdict drops it.
        A join not finished keeping a change to the target (Verdict.keeps): held in the same write, the arm since the
        verdict's `since` (no later than it)."""
        assert rule is not None
        if verdict.keeps is not None:
            return self.links.arm(link, entries, rules.key(rule), verdict.since, hold=verdict.keeps)
        return self.links.arm(link, entries, rules.key(rule), at, keep_held=not verdict.drops_held)

    def _arm_and_look(self, link: Link, settings: Optional[CampaignSettings], seen: Sighting, verdict: Verdict) -> Link:
        """Order never matters: an event that arms the link may be older than one already judged (the
        newer "Yes" came first and was noted as unchanged). So the contact's value now is read and
        judged with the link armed. Read before anything is written: a failed read retries the event."""
        assert link.contact_id is not None
        try:
            now = self.apis.intercom(link.workspace).get_contact(link.contact_id)
        except (Merged, NotFound):
            now = None             # reconciliation follows merges and deletions
        armed = self._arm(link, [verdict.entry] if verdict.entry is not None else [],
                          settings.qualification if settings is not None else None, seen.when, verdict)
        if verdict.releases and armed.armed:
            return self._released(armed, verdict, seen)
        if now is None or not armed.armed:
            return armed
        current = Sighting(now, f"{seen.via}, then the contact read at once", current=True, replay=seen.replay)
        return self.evaluate(armed, settings, current, note=False)

    # --- qualifying ---------------------------------------------------------------------------
    def qualify(self, link: Link, via: str, replay: bool = False, since: Optional[float] = None) -> Link:
        """Claim the referral and have RF qualify it: once, even when RF's answer is lost. `since`: the time of the
        change that qualified her, when known (domain/latency.changed_at), for the delay RF's confirmation took."""
        claim = self.links.start_qualifying(link, replay=replay)
        if claim is None:
            return link                   # erased meanwhile (`bridge forget`): nothing about them is written
        if not isinstance(claim, Claim):
            return self._not_claimed(claim)
        entries = _resumed(claim)
        must_ask = ask_rf_first(claim.previous, claim.link.rf_said_no)
        said_no = not must_ask        # no PUT of ours may have reached RF since it last said no (or ever)
        try:
            if must_ask:
                said = self._rf_says(link)
                if said:
                    return self._qualified(claim, via, entries, asked=True,
                                           first=claim.previous is QState.PENDING, since=since)
                said_no = said is False       # None: RF refused the question (the PUT will say why)
            try:
                self.apis.rf().qualify(link.rf_user_id)
            except Uncertain:
                # RF may have applied it: ask, and never send it again blindly.
                said_no = False
                if self._rf_says(link, quiet=True):
                    return self._qualified(claim, via, entries, asked=True, since=since)
                raise
        except Transient as exc:
            # Not sent (e.g. the shared budget held the PUT back after RF was asked): RF's "no" still
            # holds, and the next try sends the PUT without asking again (RF's budget is the scarce one).
            self._unconfirmed(claim, exc, entries, said_no, since)
            raise exc.about(*link.ref)
        except Permanent as exc:
            # (a refused token would refuse the question too: not asked)
            if not isinstance(exc, OtherCampaign) and exc.status not in REFUSED_TOKEN:
                try:
                    if self._rf_says(link, quiet=True):      # e.g. a resent PUT answered "already qualified"
                        return self._qualified(claim, via, entries, asked=True, since=since)
                except OtherCampaign as other:               # RF's refusal, and why: never left unfinished
                    exc.reason = f"{exc.reason} — {other.reason}"
            if exc.status == 404 and never_succeeds(exc.reason):
                # RF's `User not found`: the user deleted there, or an RF token of another account (RF says so of
                # every user). Whether RF knows the campaign with the token tells them apart: the token's case is
                # valid work (replayed once the token is fixed), never a discard.
                exc.reason = gone_or_token(exc.reason, link.rf_user_id, link.campaign_id,
                                           self._campaign_refused(link.campaign_id))
            self.links.finish_qualifying(claim, QState.FAILED, [*entries, Entry("qualification", "failed", exc.reason)],
                                         reason=exc.reason)
            count("QualificationsFailed")
            raise exc.about(*link.ref)
        return self._qualified(claim, via, entries, since=since)

    def _campaign_refused(self, campaign_id: str) -> Optional[str]:
        """RF's answer when it does not know `campaign_id` with the RF token (None: it shows it), asked once a
        CAMPAIGN_SEEN_SECONDS. RF not answering (an outage, its budget): not known, so not the user's for sure — the
        token's case is said (a replay, not a discard)."""
        now = self.clock()
        asked = self._campaigns.get(campaign_id)
        if asked is not None and now - asked[0] < CAMPAIGN_SEEN_SECONDS:
            return asked[1]
        try:
            refused = campaign_refused(self.apis.rf(), campaign_id)
        except WorkError as exc:        # not cached: asked again by the next 404
            return f"not known: {exc.reason}"
        self._campaigns[campaign_id] = (now, refused)
        return refused

    def resume(self, link: Link, via: str) -> Link:
        """Finish a qualification that was decided and left unfinished (unconfirmed, or claimed by a
        worker that died): whatever the contact's value is now, RF is asked first (unless its "no"
        still holds: domain/qualification.ask_rf_first)."""
        return self.qualify(link, via, replay=False)

    def _unconfirmed(self, claim: Claim, exc: Transient, entries: list[Entry], said_no: bool,
                     since: Optional[float] = None) -> None:
        """The history says whether the user may be qualified in RF now (`unconfirmed`: this try's PUT,
        or an earlier one RF has not said no to since, may have reached it), or surely not
        (`not_applied`: nothing reached RF, or RF refused it, e.g. with a 429). With the qualifying change's time
        (`since`, when this try knew it: latency.CHANGED_AT), for the delay of the try that finishes it (_qualified)."""
        maybe_sent = isinstance(exc, Uncertain)
        if maybe_sent and exc.retry_after is None:
            exc.retry_after = UNSURE_RETRY_SECONDS
        if maybe_sent or (not said_no and may_have_qualified(claim.previous, claim.link.rf_said_no)):
            outcome, then = "unconfirmed", ("Referral Factory may have qualified the user: it is asked before the "
                                            "call is made again")
        else:
            outcome, then = "not_applied", ("Referral Factory did not apply the qualification: the next try "
                                            + ("sends it" if said_no else "asks it first"))
        reason = f"{exc.reason} — {then}"
        kept = {CHANGED_AT: iso(since)} if since is not None else None
        self.links.finish_qualifying(claim, QState.UNCONFIRMED, [*entries, Entry("qualification", outcome, reason,
                                                                                 kept)],
                                     reason=reason, rf_said_no=said_no)

    def _not_claimed(self, current: Link) -> Link:
        if current.qualification in (QState.QUALIFIED, QState.FAILED):
            state = current.qualification.value
            self.links.note_repeat(current.ref, f"qualification_{state}", f"already {state}: nothing more to do")
        else:
            self.links.note(current.ref, [Entry("qualification", "in_progress_elsewhere",
                                                "another worker is qualifying this referral right now")])
        return current

    def _rf_says(self, link: Link, quiet: bool = False) -> Optional[bool]:
        """Is the user qualified in RF? None when RF refused the question. Unreachable: raises
        Transient (no PUT may follow), or with `quiet` answers None (the caller has an error of its
        own to raise). RF placing the user in another campaign than the link's raises OtherCampaign:
        no PUT follows, ever (it would qualify a user of another campaign). RF refusing the token
        (401; its 403 is the IP block, which waits) raises it, unless `quiet`: the PUT would be refused too, and
        spend RF's budget."""
        try:
            user = campaign_user(self.apis.rf().get_user(link.rf_user_id), link.campaign_id, link.rf_user_id)
            return bool(qualified_at(user, link.rf_user_id))
        except OtherCampaign:
            raise                  # RF's answer, not a refused question
        except Permanent as exc:
            if exc.status in REFUSED_TOKEN and not quiet:
                raise
            return None            # e.g. 404: the PUT will say why, in RF's words
        except Transient:          # unreachable, or an answer without `qualified_at`
            if quiet:
                return None
            raise

    def _qualified(self, claim: Claim, via: str, entries: list[Entry], asked: bool = False,
                   first: bool = False, since: Optional[float] = None) -> Link:
        """`first`: RF, asked before the bridge ever called it for this lead, says qualified already (not the
        bridge's doing: no delay measured). `since`: the qualifying change's time (Qualifier.qualify)."""
        link = claim.link
        if since is None and not first and claim.previous is QState.UNCONFIRMED:
            since = self._kept_since(link)      # (before this try's end is written: kept_since reads up to it)
        said = (f"Referral Factory says user {link.rf_user_id} is qualified already (asked before the first "
                f"call, via {via}): not called" if first else
                f"Referral Factory says user {link.rf_user_id} is qualified (asked before calling it again, "
                f"via {via}): not called again" if asked else
                f"Referral Factory confirmed the qualification of user {link.rf_user_id} (via {via})")
        done = self.links.finish_qualifying(claim, QState.QUALIFIED, [*entries, Entry("qualification", "qualified",
                                                                                      said)])
        count("ReferralsFoundQualified" if first else "ReferralsQualified")
        if not first:           # once: only the try that holds the claim gets here (another is _not_claimed)
            seconds("QualificationDelaySeconds", delay(since, self.clock()))
        logger.info("referral qualified", extra={"campaign_id": link.campaign_id, "rf_user_id": link.rf_user_id})
        return done


    def _kept_since(self, link: Link) -> Optional[float]:
        """The qualifying change's time a try that left this qualification unconfirmed kept in the history
        (latency.kept_since), for the delay of the try that finishes it: one read of the history, only by such a
        try. Never its failure: unread, no delay is measured."""
        if self.history is None:
            return None
        try:
            return kept_since(self.history.entries(link.ref))
        except Exception:
            logger.warning("the qualifying change's time was not read: no delay measured",
                           extra={"campaign_id": link.campaign_id, "rf_user_id": link.rf_user_id})
            return None


def late_entry(entry: Entry, left: LeftContact, link: Link) -> Entry:
    """A judgement of a late notification about a contact the link left says so, and against what."""
    at = f" at {iso(left.moved_at)}" if left.moved_at is not None else ""
    duplicate = (entry.details or {}).get("duplicate_contact_id")
    of = f"of contact {duplicate}, a duplicate then, from before the link left contact {left.contact_id}" \
        if duplicate else f"of contact {left.contact_id}, which the link left"
    return Entry(entry.event, entry.outcome, (
        f"{entry.reason} — a late notification {of} for "
        f"{link.contact_id}{at} (Intercom merged it there, or the bridge followed the person to another of her "
        f"contacts): judged against the baseline the link had then ({left.baseline!r}), as it would have been had it "
        "come before the move"), {**(entry.details or {}), "late_of_contact_id": left.contact_id,
                                   "baseline_then": left.baseline})


def _resumed(claim: Claim) -> list[Entry]:
    """The history names a qualification that was left unfinished, and how it is being finished."""
    if claim.took_over:
        return [Entry("qualification", "taken_over", "the worker that claimed this qualification did not finish "
                      "within its lease (it died): taking it over, asking Referral Factory first")]
    if claim.previous is QState.UNCONFIRMED:
        how = ("it said the user is not qualified and no call that could have changed that went out since: "
               "sending the qualification" if claim.link.rf_said_no else "asking it first")
        return [Entry("qualification", "resumed", f"Referral Factory had not confirmed this qualification: {how}")]
    return []


class OwedLetter(Permanent):
    """A failed qualification's dead letter, owed (owed_letter)."""


def owed_letter(link: Link) -> WorkError:
    """A failed qualification whose dead letter may not exist (Link.owes_letter): the failure again, with RF's
    reason, about the lead, for the record that sees it to be that letter (the one its first try would have
    written: the same reason, the same replay). A contact notification that sees it sends a check of the lead
    instead (checks.lead_letter): its replay would judge its own value, which may be another than the one RF was
    asked for."""
    return OwedLetter(link.reason or "Referral Factory refused the qualification").about(*link.ref)


class OtherCampaign(Permanent):
    """RF's user belongs to another campaign than the one the bridge handles them for."""


def campaign_user(user: dict, campaign_id: str, rf_user_id: str) -> dict:
    """RF's answer for a user read for `campaign_id`, unless RF places them in another campaign: then
    OtherCampaign, a permanent failure (never linked, never qualified by this campaign's rule)."""
    reason = other_campaign(user, rf_user_id, campaign_id)
    if reason is not None:
        raise OtherCampaign(reason)
    return user


def qualified_at(user: dict, rf_user_id: str) -> Optional[str]:
    """RF's answer to "is the user qualified?": since when, or None. A user object without the field
    is no answer (never a "no" a PUT could follow): Transient, asked again later."""
    if "qualified_at" not in user:
        raise Transient(f"Referral Factory's user {rf_user_id} came without `qualified_at`: whether it is "
                        "qualified is not known; asked again later")
    return str(user["qualified_at"]) if user["qualified_at"] else None


def _stayed_waiting(link: Link, contact_id: str) -> Optional[LeftContact]:
    """What `link`, still waiting, holds on `contact_id`, a contact the duplicate check's move left in Intercom
    (recorded, not taken as left: LinkRepository.move's `stays`). None: not such a contact, or the link decided."""
    held = link.left_record(contact_id)
    return held if held is not None and not link.left(contact_id) and link.qualification is QState.PENDING else None
