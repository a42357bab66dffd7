"""The dead-letter queue as an operator reads it: every dead letter (not just the first batch SQS
hands out), counted by reason and campaign, with the person each is about (email masked), the
payload only on request (its emails masked unless `raw`); replay by reason, by campaign, or all;
and discard (by reason and/or campaign) what can never succeed.

A failed search of changed contacts (reconciliation's, one a run: an Intercom outage leaves one a run) is
never work to replay: the next search that succeeds starts where the last successful one did, and covers
its window. Such a letter is said so, and once a search asked after it succeeded, `superseded` (by the
workspace's search cursor): `dlq discard --superseded` takes those out.

Reading every message: receive with a visibility timeout until the queue answers nothing more (each
message received once, hidden while we look: hidden again before its timeout runs out, however long
the look lasts), then make them visible again at once, and also when
the look is cut short (Ctrl-C, an error): only a process killed outright leaves them hidden, for the
timeout. A message received twice in one listing (its timeout ran out meanwhile) is counted once.
Letters another reader holds hidden meanwhile cannot be seen: the queue's count says about how many."""
from __future__ import annotations

import json
import math
import re
import shlex
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Optional, Protocol

from .. import messages
from ..domain.advice import (RF_404, RF_GONE, RF_TOKEN_REFUSED, never_succeeds, rf_token_fix, rf_token_refused,
                             token_fix)
from ..domain.history import Entry, epoch, iso
from ..domain.judge import QUALIFYING_LETTERS
from ..domain.link import PersonRef
from ..domain.outage import outage_of
from ..domain.people import OTHER_CAMPAIGN
from ..errors import PLAN_FIX, parked_of, plan_restricted, refused_token_of, replay_parked
from ..observability import mask_email, mask_emails
from ..ports import DeadLetterQueue, NotSent, ReceivedLetter, Store
from ..ports.queue import REASON_KEPT, kept_reason
from ..ports.secrets import read_by_every_worker
from . import sync
from .deps import earliest
from .qualification.changes import cursor_name

LOOK_SECONDS = 120          # how long a listed message stays hidden if we are killed before releasing it
REPLAY_SECONDS = 300        # the same for a replay (it also sends each back)
MAX_LISTED = 10_000


class HasDeadLetters(Protocol):
    @property
    def queue(self) -> DeadLetterQueue: ...
    @property
    def clock(self) -> Callable[[], float]: ...


class Discarding(HasDeadLetters, Protocol):
    """What a listing, a replay and a discard are given: the queues, and the store (whose histories say what was
    replayed or discarded, whose search cursors which searches a later one superseded)."""

    @property
    def store(self) -> Store: ...


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    reason: str
    attempts: Optional[int]            # tries before it was given up
    failed_at: Optional[str]
    kind: Optional[str]
    campaign_id: Optional[str]
    rf_user_id: Optional[str]
    workspace: Optional[str]
    contact_id: Optional[str]
    email: Optional[str]               # masked
    body: Any
    # The email as the message carries it (never shown): masked wherever it stands in the payload, also when
    # no address pattern would match it (an invalid one Intercom refused is what dead letters hold most).
    given_email: Optional[str] = field(default=None, repr=False)
    # A search of changed contacts: when the search that covered its window was asked (None: not yet)
    superseded: Optional[str] = None

    @property
    def shown_reason(self) -> str:
        """The reason as doctor, `dlq list` and its counts show it: its emails masked (a `--reason` matches the stored
        one); a failed search's without the replay a refused token's reason advises ("reconnect the workspace, then
        `bridge dlq replay ...`"), as a search is never replayed (SEARCH_FIX: the next that succeeds covers its
        window). A search's own reason advises none (changes._unreplayed); the letters of searches failed before it
        did (kept 14 days) still do."""
        shown = mask_emails(self.reason, self.given_email)
        return _REPLAY_ADVICE.sub("", shown) if self.kind == SEARCH else shown

    def view(self, show_payload: bool = False, raw: bool = False, token_apps: Optional[dict] = None) -> dict:
        """The letter for `dlq list`: whom it is about (email masked), and with `show_payload` its message,
        its emails (and its reason's) masked too unless `raw` (as queued: e.g. to see what Intercom refused in an
        email). `token_apps`: whose each workspace's token is (token_apps()), for a refused token's reconnect."""
        out = {k: v for k, v in (("message_id", self.message_id), ("reason", self.reason if raw else self.shown_reason),
                                 ("attempts", self.attempts), ("failed_at", self.failed_at), ("kind", self.kind),
                                 ("campaign_id", self.campaign_id), ("rf_user_id", self.rf_user_id),
                                 ("workspace", self.workspace), ("contact_id", self.contact_id),
                                 ("email", self.email)) if v is not None}
        if self.kind == SEARCH and self.superseded:    # whatever failed it (the plan too): `--superseded` takes it
            out.update({"superseded": self.superseded, "fix": SUPERSEDED_FIX})
        # Intercom's plan (not the token's fault, as the reason would make one think), or RF refusing the
        # bridge's stored RF token (its fix is the bridge's, not anything at RF): as doctor and explain say it
        elif plan_restricted(self.reason) or rf_token_refused(self.reason) or (
                refused_token_of(self.reason) and self.kind != SEARCH):   # (a search's: nothing to replay, below)
            out["fix"] = replay_fix(self.reason, None if no_campaign(self.kind) else self.campaign_id,
                                    self.workspace, token_app=(token_apps or {}).get)
        elif self.kind == SEARCH:
            out["fix"] = SEARCH_FIX
        if show_payload:
            out["payload"] = self.body if raw else mask_emails(self.body, self.given_email)
        return out


SEARCH = "intercom.changes"
#: The replay a failure's reason may advise (a refused token's: errors.replay_refused), cut from an older search's.
_REPLAY_ADVICE = re.compile(r", then (?:`bridge dlq replay[^`]*`|replay the dead-letter queue)")
#: Why a failed search of changed contacts loses nothing, and what to do with its letter.
SEARCH_WHY = ("nothing is lost: the next search that succeeds covers every change since the last successful one "
              "(meanwhile a qualification whose Intercom webhook was lost waits for it)")
_DISCARD = "`bridge dlq discard --superseded --yes` takes them out"
SEARCH_FIX = ("nothing to replay: fix the cause (an Intercom outage passes by itself); once a search succeeds (the "
              f"next scheduled run), these letters are superseded: {_DISCARD}")
SUPERSEDED_FIX = f"nothing to replay: a later search covered its window: {_DISCARD}"



def replay_fix(reason: str, campaign: Optional[str], workspace: Optional[str] = None,
               token_refused: bool = False, campaign_seen: bool = False,
               token_app: Callable[[str], Optional[str]] = lambda workspace: None,
               token_reaches: Optional[str] = None) -> str:
    """How to bring back dead letters of `reason`: one of `campaign`'s by its campaign; one whose message
    names no campaign (`campaign` None: an Intercom notification's, a search of changed contacts) by a
    part of its reason, as `--campaign` does not reach it. Those a disconnect parked go back by their
    reason: the Intercom notifications among them name no campaign, so `--campaign` leaves them behind.
    Those that can never succeed are discarded instead, unless the RF token may be the cause: of another RF
    account, RF says every user of the campaign is "not found" (`token_refused`: doctor saw RF refuse
    the token or not know the campaign; those are replayed once the token is fixed). Those Intercom refused
    for the workspace's plan wait for the plan (a new token would fail the same way). `campaign_seen`: doctor saw RF
    show the campaign with the token, so RF's "not found" is the user's (deleted there): the discard alone.
    `token_app`: whose a workspace's token is (its connection's; None: not known), for the reconnect of the
    workspace whose token the reason says Intercom refused. `token_reaches`: the campaign doctor's [rf.campaign] just
    showed with the RF token (doctor's own fix: that check is done, not pointed to); of `campaign`'s own letters, when they
    may have failed with a token before it (not `campaign_seen`): the replay asks RF again with the token shown."""
    if plan_restricted(reason):
        return PLAN_FIX.format(workspace=f"workspace {workspace}" if workspace else "the workspace",
                               replay=_replay(reason, campaign, workspace))
    refused_for = refused_token_of(reason)
    if refused_for:               # by its reason, whatever the campaign: as doctor's [intercom.token] says
        return token_fix(refused_for, token_app(refused_for))
    parked_by = parked_of(reason)
    if parked_by:
        return (f"reconnect workspace {parked_by}, then `{replay_parked(parked_by)}` (every letter its disconnect "
                "parked, also those of Intercom notifications, which name no campaign)")
    scope = f" --campaign {campaign}" if campaign else ""
    if OTHER_CAMPAIGN in reason:
        return ("the webhook named another campaign than Referral Factory places the user in (a webhook body copied "
                "between campaigns?): a replay would fail the same way — fix the webhook in RF, then "
                f'`bridge dlq discard --reason "{OTHER_CAMPAIGN}"{scope} --yes` takes them out')
    if rf_token_refused(reason):     # by its reason, whatever the campaign: as doctor's [rf.campaign] says
        return rf_token_fix()
    token = f"`bridge rf connect` (it asks for the token), then {_replay(reason, campaign)}"
    if token_refused and RF_404 in reason:
        named = f"campaign {campaign}" if campaign else "the campaign"
        return (f"Referral Factory refuses the RF token or does not know {named} with it (see "
                f"[rf.campaign]): this work is valid — fix the token: {token}; do not discard it")
    if never_succeeds(reason):
        take_out = (f'`bridge dlq discard --reason "{RF_GONE}"{scope} --yes` takes them out (each person\'s history '
                    "says so)")
        discard = f"a replay would fail the same way — {take_out}"
        if campaign_seen:
            return f"Referral Factory shows the campaign with the RF token, so the user was deleted in RF: {discard}"
        if token_reaches and campaign:      # their campaign's, shown reaching it: they failed with a token before it
            return (f"Referral Factory says it does not have this user: [rf.campaign] shows the RF token reaches "
                    f"campaign {token_reaches}, but letters of this reason may have failed with the one before it "
                    "(an RF token of another account than the campaign's says so of every user; it was replaced after "
                    "they failed, or while a worker still used it) — replay them, RF is asked again with this one: "
                    f"{_replay(reason, campaign)}; those that fail the same way again are of users deleted in RF: "
                    f"{take_out}")
        checked = (f"[rf.campaign] shows the RF token reaches campaign {token_reaches}; for a user of another "
                   "campaign, `bridge doctor <that campaign>` checks it" if token_reaches else "`bridge doctor` checks it")
        return ("Referral Factory says it does not have this user: an RF token of another account than the "
                f"campaign's says so of every user ({checked}) — then fix the token: {token}; a user deleted in RF: "
                f"{discard}")
    vendor = outage_of(reason)
    if vendor:                  # waited out up to BRIDGE_OUTAGE_HOURS: nothing to fix but to wait for the vendor
        return f"once {vendor} answers again, {_replay(reason, campaign)}"
    cause = ("check RF_BASE_URL (a wrong one answers 404 to every call) and that the RF token is of the "
             "campaign's account" if RF_404 in reason else "fix the cause")
    return f"{cause}, then {_replay(reason, campaign)}"


def _replay(reason: str, campaign: Optional[str], workspace: Optional[str] = None) -> str:
    """The replay of letters of `reason`: by `campaign`, or by a part of the reason when it names none (and by
    `workspace`, given when the failure is that workspace's: another's letters of the reason would fail again)."""
    if campaign is None:
        of = f" --workspace {workspace}" if workspace else ""
        return (f"`bridge dlq replay --reason {shlex.quote(reason_part(reason))}{of}` (its message names no campaign: "
                "`--campaign` does not reach it; see `bridge dlq list`)")
    return f"`bridge dlq replay --campaign {campaign}` (see `bridge dlq list`)"


def reason_part(reason: str, most: int = 60) -> str:
    """A part of a dead letter's reason that `dlq replay --reason` matches it by (a case-insensitive
    substring): without the tries count (letters of one cause differ in it), stopping before an email
    (shown masked, it would match nothing), at most `most` characters, cut between words."""
    if rf_token_refused(reason):
        return RF_TOKEN_REFUSED             # every letter of the incident, whatever RF's message said
    part = re.sub(r"^gave up after \d+ tries: ", "", reason)
    part = re.split(r"\S*@", part, maxsplit=1)[0].rstrip(" :,;(\"'") or part
    if len(part) > most:
        part = part[:most].rsplit(" ", 1)[0] or part[:most]
    return part


def no_campaign(kind: Optional[str]) -> bool:
    """Whether a message of `kind` names no campaign (`dlq replay --campaign` does not reach its letter)."""
    model = messages.KINDS.get(kind or "")
    return model is not None and "campaign_id" not in model.model_fields


def body_of(m: ReceivedLetter) -> Any:
    """A dead letter's body: its JSON, or the text as it is (one no model could read)."""
    try:
        return json.loads(m.body)
    except ValueError:
        return m.body


def read(m: ReceivedLetter) -> DeadLetter:
    reason, attempts = (m.reason, m.attempts) if m.reason else _moved_by_sqs(m.receive_count)
    body = body_of(m)
    about: dict[str, Any] = body if isinstance(body, dict) else {}
    person: dict = about["person"] if isinstance(about.get("person"), dict) else {}
    item: dict = about["item"] if isinstance(about.get("item"), dict) else {}
    email = person.get("email") or item.get("email")
    return DeadLetter(m.message_id, reason, attempts, m.failed_at,
                      _text(about.get("kind")), _text(about.get("campaign_id")), _text(about.get("rf_user_id")),
                      _text(about.get("workspace")), _text(item.get("id")),
                      mask_email(email) if isinstance(email, str) and email else None, body,
                      email if isinstance(email, str) and email else None)


def _text(value: Any) -> Optional[str]:
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _moved_by_sqs(receive_count: int) -> tuple[str, int]:
    """SQS's redrive policy moves a message after maxReceiveCount receives that ended without an
    answer: the worker crashed or ran out of time each time, before it could record a reason.
    SQS's count includes this look (and earlier `dlq list` looks), hence "about". (reason, tries)"""
    receives = max(1, receive_count - 1)
    return f"moved by SQS after about {receives} receives: the worker crashed or timed out each time", receives


@dataclass(frozen=True)
class Listing:
    letters: list[DeadLetter]
    not_seen: int                      # about how many more the queue held, hidden by another reader...
    cut: bool = False                  # ...or not read: the scan stopped before the end (CUT)


#: Why a scan that stopped before an empty receive saw less than the queue holds.
CUT = (f"the scan stopped before the end: it reached {MAX_LISTED:,} letters, or the letters it held came back "
       "before it could hide them again (a very slow link)")
#: The commands that hide dead letters from another while they run (or for a while after one is killed).
HOLDERS = "a `dlq list`, `doctor`, `forget`, `dlq replay` or `dlq discard` running, or one killed"
#: Why a count of hidden letters may be too high.
APPROXIMATE = "SQS's count is approximate: for a minute after letters are taken out it may still count them"


#: How far a listing, a replay or a discard is, told after each receive and each ten acted on: letters read, letters
#: acted on (sent back, discarded), of how many matching (None while they are still being read). For the CLI's
#: progress line: a scan of thousands of letters takes minutes.
Progress = Callable[[int, int, Optional[int]], None]


@contextmanager
def holding(rt: HasDeadLetters, visibility: int, limit: int = MAX_LISTED,
            take: Optional[Callable[[ReceivedLetter], bool]] = None, progress: Optional[Progress] = None
            ) -> Iterator[tuple[list[ReceivedLetter], dict[str, str], int, bool, Callable[..., None]]]:
    """Every dead letter we can receive, each once; the latest receipt handle of each, by message id,
    for the caller to take out those it deletes; about how many more the queue holds that we could
    not see; whether those were not read, the scan cut (stopped before an empty receive), rather
    than hidden by another reader. However the block ends (done, an error, Ctrl-C), each letter still held is visible again
    at once. It reads until a receive brings nothing: a scan longer than `visibility` hides the letters
    it holds again, by `rt.clock`, before their time runs out (so they do not come back). It stops
    early at `limit` letters held (memory), or at a receive that brings nothing new (letters came back
    all the same: a link too slow to hide them again in time). `take`: a letter it says yes to is
    deleted as soon as it is received (its handle is fresh), and is not among those yielded. Last, a
    call that keeps the letters still held hidden while the caller works (call it often: it hides
    again, 10 a call, those half of whose hide time has passed): one that came back meanwhile is no
    longer held (another reader may hold it); called with `ask=False`, it asks the queue nothing (so
    nothing can fail) and only lets go, by the clock, those whose hide time has run out. The caller
    takes out of `held` the letters it deletes or releases itself."""
    received: dict[str, ReceivedLetter] = {}
    held: dict[str, str] = {}
    renew: dict[str, float] = {}       # when each held letter is hidden again (half its hide time before it ends)
    taken: set[str] = set()
    cut = True
    try:
        while len(received) < limit:
            _hide_again(rt, held, renew, visibility)
            at = rt.clock()
            batch = rt.queue.receive_dead(max_messages=10, visibility=visibility)
            if not batch:
                cut = False
                break
            new = [m for m in batch if m.message_id not in received and m.message_id not in taken]
            for m in batch:
                if m.message_id in taken:
                    continue
                if take is not None and m.message_id not in received and take(m):
                    rt.queue.delete_dead(m.handle)
                    taken.add(m.message_id)
                    continue
                received.setdefault(m.message_id, m)
                held[m.message_id] = m.handle
                renew[m.message_id] = at + visibility / 2
            if progress:
                progress(len(received), 0, None)
            if not new:
                break
        # (Counted after the scan: SQS's count may still hold letters just taken, for a minute: a false
        # "hidden" rather than a letter hidden and not said, for `forget` above all.)
        not_seen = max(0, rt.queue.dead_count() - len(received))
        yield (list(received.values()), held, not_seen, cut and not_seen > 0,
               lambda ask=True: _hide_again(rt, held, renew, visibility, ask))
    finally:
        if held:
            rt.queue.hide_dead_many(list(held.values()), 0)


def _hide_again(rt: HasDeadLetters, held: dict[str, str], renew: dict[str, float], visibility: int,
                ask: bool = True) -> None:
    """Hide again for `visibility` the held letters half of whose hide time has passed (10 a call). One
    the queue refuses came back before (another reader may hold it now): it is read, no longer held.
    `ask` False: no call to the queue; only those whose hide time ran out, by the clock, are let go."""
    for i in [i for i in renew if i not in held]:      # the caller took it out (deleted, or released)
        del renew[i]
    now = rt.clock()
    if not ask:
        for i in [i for i, at in renew.items() if at + visibility / 2 <= now]:
            del held[i], renew[i]
        return
    due = [i for i, at in renew.items() if at <= now]
    if not due:
        return
    refused = rt.queue.hide_dead_many([held[i] for i in due], visibility)
    for i in due:
        if held[i] in refused:
            del held[i], renew[i]
        else:
            renew[i] = now + visibility / 2


def marked(rt: Discarding, letters: list[DeadLetter]) -> list[DeadLetter]:
    """The letters, each search of changed contacts that a search asked at its time or later completed
    marked `superseded` (by its workspace's search cursor: one read a workspace)."""
    cursors: dict[str, Optional[str]] = {}
    out = []
    for d in letters:
        at = d.body.get("at") if d.kind == SEARCH and d.workspace and isinstance(d.body, dict) else None
        if d.workspace and isinstance(at, (int, float)):
            if d.workspace not in cursors:
                cursors[d.workspace] = rt.store.cursor.get(cursor_name(d.workspace))
            last = cursors[d.workspace]
            if last is not None and float(last) >= at:
                d = replace(d, superseded=iso(float(last)))
        out.append(d)
    return out


def look(rt: Discarding, progress: Optional[Progress] = None) -> Listing:
    """Every dead letter; the queue is left as it was (each message visible again as soon as all are read)."""
    with holding(rt, LOOK_SECONDS, progress=progress) as (received, _, not_seen, cut, _):
        pass
    return Listing(marked(rt, [read(m) for m in received]), not_seen, cut)


def token_apps(rt: Discarding, letters: list[DeadLetter]) -> dict[str, Optional[str]]:
    """Whose the token of each workspace the letters say Intercom refused is (its connection's, when known): the
    one reconnect that fits it, as doctor names it. The store is read only for such letters."""
    refused = {w for w in (refused_token_of(d.reason) for d in letters) if w}
    return {w: conn.token_app if (conn := rt.store.connections.workspace(w)) else None for w in sorted(refused)} \
        if refused else {}


def summary(letters: list[DeadLetter], show_payload: bool = False, not_seen: int = 0, raw: bool = False,
            token_apps: Optional[dict[str, Optional[str]]] = None) -> dict:
    return {"total": len(letters), "not_seen": not_seen,
            "by_reason": dict(Counter(d.reason if raw else d.shown_reason for d in letters).most_common()),
            "by_campaign": dict(Counter(d.campaign_id or "(none)" for d in letters).most_common()),
            "dead_letters": [d.view(show_payload, raw, token_apps) for d in letters]}


def matches(letter: DeadLetter, reason: Optional[str], campaign: Optional[str], superseded: bool = False,
            workspace: Optional[str] = None, workspace_of: Callable[[str], Optional[str]] = lambda c: None) -> bool:
    """`workspace`: only a letter of that workspace — its message names it, or names a campaign whose settings are
    in it (`workspace_of`: a campaign's workspace now, campaign_workspaces)."""
    return (reason is None or reason.lower() in letter.reason.lower()) and (
        campaign is None or letter.campaign_id == str(campaign)) and (not superseded or bool(letter.superseded)) and (
        workspace is None or (letter.workspace or (workspace_of(letter.campaign_id) if letter.campaign_id else None))
        == workspace)


def selection(rt: Discarding, reason: Optional[str] = None, campaign: Optional[str] = None, superseded: bool = False,
              workspace: Optional[str] = None) -> Callable[[DeadLetter], bool]:
    """Which dead letters `dlq` commands' selectors take: the one rule `dlq list` shows them by and `replay` and
    `discard` take them by (`matches`, each campaign's workspace read once)."""
    of = campaign_workspaces(rt)
    return lambda letter: matches(letter, reason, campaign, superseded, workspace, of)


def campaign_workspaces(rt: Discarding) -> Callable[[str], Optional[str]]:
    """Each campaign's workspace, as its settings say now (None: no settings), each read once."""
    known: dict[str, Optional[str]] = {}

    def of(campaign_id: str) -> Optional[str]:
        if campaign_id not in known:
            stored = rt.store.settings.get(campaign_id)
            known[campaign_id] = stored.workspace if stored is not None else None
        return known[campaign_id]
    return of


def replay(rt: Discarding, reason: Optional[str] = None, campaign: Optional[str] = None,
           progress: Optional[Progress] = None, workspace: Optional[str] = None) -> dict:
    """Send the matching dead letters back to the work queue, marked as replays (one no model can read
    goes back as it was: a fixed bridge may read it now), 10 a call, each taken out of the dead-letter
    queue once its copy was sent; the history of the person each is about (as `discard` finds them) says it was
    replayed, before it is sent (so `explain` says it is back in the queue until its next try, whose entries
    come after); the others stay, visible again at once. The letters not sent yet are
    kept hidden however long the replay lasts; one that came back all the same (a stall: another
    reader may hold it) is not sent, and is reported as not read, for the next replay. One sent during
    the stall itself may stay a dead letter (another reader received it meanwhile: the delete by the
    replay's receipt does nothing): at the end it is looked for again and taken out by a fresh receipt
    (its copy is in the work queue); those another reader still holds then cannot be seen, and are
    reported (`sent_late`: they may stay dead letters, to be sent again; an upper bound, as SQS does not say
    which letters another reader holds).
    Interrupted, those not sent back are visible again at once. The ten being sent when it was
    interrupted may have reached the work queue and stay dead letters too. Sent twice, a message is
    worked once. Those SQS refuses to send stay dead letters, visible again at once (their people's history, which
    said them replayed, says them dead letters again: the next replay sends them): `refused`, with SQS's reasons and
    how many each (never their bodies: they may hold emails).
    Those sent that SQS would not take out of the dead-letter queue (`not_taken_out`, with SQS's reasons
    and how many each) stay dead letters too, visible again at once: the next replay sends them again.
    Sent while a running worker may still hold the RF token it read before `bridge rf connect` stored the last one,
    the copies wait in the queue until no worker can (`runs_from`, with `rf_token_stored_at`): see `rf_token_held`;
    but not the letters RF refused the token of (its 401: a worker that meets it reads the token again)."""
    held = rf_token_held(rt)
    waited: list[int] = []      # how many of each batch wait (sent with a delay)

    def send(batch: dict[str, ReceivedLetter]) -> tuple[list[str], list[tuple[dict | str, str]]]:
        copies = {i: _copy(m) for i, m in batch.items()}
        letters = [read(m) for m in batch.values()]
        people = _people_of(rt, letters)
        # Said before they are sent, so before anything their next try writes (a worker may take one at once): by
        # the earliest AWS's time may be now, which no worker's clock is behind (the CLI's estimate may be ahead).
        _note(rt, letters, "replayed", people, at=earliest(rt.clock))
        # Those RF refused the old token of run at once, whatever the batch holds beside them (a worker meeting the
        # 401 again reads the new token); the others wait while a worker may hold the old one.
        later = {i for i, d in zip(copies, letters) if held is not None and not rf_token_refused(d.reason)}
        waited.append(len(later))
        refused_now: list[tuple[dict | str, str]] = []
        try:
            for ids, delay in (([i for i in copies if i not in later], 0),
                               ([i for i in copies if i in later], max(0, math.ceil(held[0] - rt.clock())) if held else 0)):
                try:
                    if ids:
                        rt.queue.send_many([copies[i] for i in ids], delay=delay)
                except NotSent as exc:
                    refused_now += exc.refused
        except Exception as exc:        # sent or not, each is still a dead letter (not taken out)
            _note(rt, letters, "replayed", people, {i: f"the replay stopped ({type(exc).__name__})" for i in batch})
            raise
        refused = {i: why for i, c in copies.items() for r, why in refused_now if c is r}
        if refused:
            _note(rt, letters, "replayed", people, {i: f"SQS refused it ({why})" for i, why in refused.items()})
        return [i for i in copies if i not in refused], refused_now
    taken = selection(rt, reason, campaign, workspace=workspace)
    done = _take_matching(rt, lambda letters: [taken(d) for d in letters], REPLAY_SECONDS, send, progress)
    return {**{{"done": "replayed", "late": "sent_late"}.get(k, k): v for k, v in done.items()},
            **({"runs_from": iso(held[0]), "rf_token_stored_at": held[1], "delayed": sum(waited)}
               if held and any(waited) and done["done"] else {})}


def rf_token_held(rt: Discarding) -> Optional[tuple[float, str]]:
    """While a running worker may still call with the RF token it read before `bridge rf connect` stored the last
    one: when none can any more (epoch seconds), and when the token was stored (ISO-8601); else None. An RF token
    of another account is never refused (no 401 to read the new one on): RF says every user is "not found", and
    work replayed meanwhile is dead-lettered again."""
    rf = rt.store.connections.rf()
    stored = rf.token_at if rf is not None else None
    ready = read_by_every_worker(epoch(stored)) if stored else 0.0
    return (ready, stored) if stored and ready > rt.clock() else None


def discard(rt: Discarding, reason: Optional[str] = None, campaign: Optional[str] = None,
            superseded: bool = False, progress: Optional[Progress] = None, workspace: Optional[str] = None) -> dict:
    """Take the matching dead letters out for good (work that can never succeed: a replay would only
    dead-letter it again), as `replay` walks them but sending nothing; the history of the person each
    is about (its campaign and RF user id; for an Intercom notification's, those linked to its contact
    whose history holds its failure: `_people_of`) says it was discarded and why, so `explain` shows the
    failure resolved; a qualification's letter marks the person's refused qualification (Link.refusal_discarded),
    which `backfill` then never checks again. `superseded`: only the searches of changed contacts a later search covered. A
    selector is required: discarding every letter at once is never what is meant.
    The answer as replay's, `discarded` for `replayed` and `discarded_late` for `sent_late`; `named_people`: how many
    of those discarded named a person whose history says so (a search of changed contacts names none)."""
    if reason is None and campaign is None and not superseded and workspace is None:
        raise ValueError("discard takes a reason, a campaign, a workspace or superseded")

    stopped: list[dict] = []
    named: list[int] = []

    def note(batch: dict[str, ReceivedLetter]) -> tuple[list[str], list[tuple[dict | str, str]]]:
        # Said before each is taken out: a run cut short leaves a letter said discarded, not one gone unsaid.
        letters = [read(m) for m in batch.values()]
        people = _people_of(rt, letters)
        _note(rt, letters, "discarded", people)
        named.append(sum(1 for refs in people if refs))
        rt.store.links.discard_refusals(ref for d, refs in zip(letters, people) if d.kind in QUALIFYING_LETTERS
                                        for ref in refs)
        stopped.extend(_stop_runs(rt, letters))
        return list(batch), []
    taken = selection(rt, reason, campaign, superseded, workspace)
    done = _take_matching(rt, lambda letters: [taken(d) for d in marked(rt, letters)], REPLAY_SECONDS, note, progress)
    return {**{{"done": "discarded", "late": "discarded_late"}.get(k, k): v for k, v in done.items()},
            "named_people": sum(named), **({"stopped_sync_runs": stopped} if stopped else {})}


def _stop_runs(rt: Discarding, letters: list[DeadLetter]) -> list[dict]:
    """A discarded page of a contact sync run ends its run (services/sync.discarded): each run stopped."""
    stopped = []
    for d in letters:
        with suppress(messages.Unreadable):
            page = messages.read(d.body) if d.kind == "sync.page" else None
            if isinstance(page, messages.SyncPageMessage) and \
                    sync.discarded(rt.store.sync, page, d.shown_reason, rt.clock()):
                stopped.append({"campaign_id": page.campaign_id, "run": page.run})
    return stopped


def _note(rt: Discarding, letters: list[DeadLetter], outcome: str, people: Optional[list[list[PersonRef]]] = None,
          not_sent: Optional[dict[str, str]] = None, at: Optional[float] = None) -> None:
    """The history of the people each letter is about (`people`, else `_people_of`) says what the operator did with
    it (`outcome`: replayed, discarded), and why it was a dead letter: an item a letter and person, written at once
    (a replay of thousands makes as few round trips to DynamoDB as to SQS), each only while the person is kept (one
    `bridge forget` erased meanwhile, as the command held the letter, is not written back). `not_sent` (message id
    -> why): only those letters, which the replay noted and could not send back: still dead letters, said failed
    again with their own reason (explain says them dead-lettered, with its fix, not back in the queue)."""
    written: list[tuple[PersonRef, list[Entry]]] = []
    for d, refs in zip(letters, _people_of(rt, letters) if people is None else people):
        details = {"message_id": d.message_id, **({"kind": d.kind} if d.kind else {})}
        if not_sent is None:
            entry = Entry("dead_letter", outcome, f"dead letter {outcome} by the operator: {d.reason}", details)
        elif d.message_id in not_sent:
            entry = Entry("dead_letter", "failed", d.reason,
                          {**details, "replay": f"not sent back: {not_sent[d.message_id]}"})
        else:
            continue
        written += [(ref, [entry]) for ref in refs]
    rt.store.links.note_many(written, at)


def _same_reason(recorded: Optional[str], letter: str) -> bool:
    """The history keeps a failure's whole reason; the letter, what its attribute keeps of it (kept_reason;
    a letter written before that counted bytes kept its first REASON_KEPT characters)."""
    return recorded is not None and (letter in (recorded, kept_reason(recorded)) or len(letter) >= REASON_KEPT
                                     and recorded.startswith(letter))


def _people_of(rt: Discarding, letters: list[DeadLetter]) -> list[list[PersonRef]]:
    """Whom each letter's failure is recorded under: the person its message names (campaign and RF user),
    or for an Intercom notification's (it names the workspace and contact) the people linked to its
    contact, to the contact merged into it or to its email, as the worker finds them (one lookup for
    all), whose history holds this letter's failure (another person of that contact keeps theirs)."""
    contacts: dict[str, list[tuple[str, str]]] = {}
    emails: dict[str, list[tuple[str, str]]] = {}
    for d in letters:
        if not (d.campaign_id and d.rf_user_id) and d.workspace and d.kind == "intercom.contact":
            item = d.body.get("item") if isinstance(d.body, dict) else None
            merged = item.get("merged_from") if isinstance(item, dict) else None
            ids = [d.contact_id, _text(merged.get("id")) if isinstance(merged, dict) else None]
            contacts[d.message_id] = [(d.workspace, c) for c in ids if c]
            emails[d.message_id] = [(d.workspace, d.given_email)] if d.given_email else []
    found = rt.store.lookup.look_up(contacts=[c for cs in contacts.values() for c in cs],
                                    emails=[e for es in emails.values() for e in es]) if contacts else None
    people: list[list[PersonRef]] = []
    histories: dict[PersonRef, list] = {}       # each person's history read once, however many letters
    for d in letters:
        if d.campaign_id and d.rf_user_id:
            people.append([PersonRef(d.campaign_id, d.rf_user_id)])
        elif found is not None and d.message_id in contacts:
            refs = {link.ref for ws, c in contacts[d.message_id] for link in found.linked_to_contact(ws, c)}
            refs |= {link.ref for ws, e in emails[d.message_id] for link in found.linked_to_email(ws, e)}
            people.append([ref for ref in sorted(refs) if any(
                (e.event, e.outcome) == ("dead_letter", "failed") and _same_reason(e.reason, d.reason)
                for e in histories.setdefault(ref, list(rt.store.history.entries(ref))))])
        else:
            people.append([])
    return people


def _take_matching(rt: HasDeadLetters, chosen: Callable[[list[DeadLetter]], list[bool]], visibility: int,
                   act: Callable[[dict[str, ReceivedLetter]], tuple[list[str], list[tuple[dict | str, str]]]],
                   progress: Optional[Progress] = None) -> dict:
    """Replay's and discard's walk (see `replay`): the dead letters `chosen` says yes to, 10 at a time,
    each kept hidden until `act` on its ten (message id -> letter) says which of them it did (the others refused
    by SQS, with SQS's reasons), then those done taken out of the dead-letter queue. The answer: `done`,
    `left`, `not_seen`, and when it applies `cut`, `late` (done after their hide time ran out, and still dead letters as far as a last look can tell),
    `refused`, `not_taken_out` (each with its reasons)."""
    done_n = 0
    late: dict[str, str] = {}          # done after their hide time ran out: message id -> the handle used
    refused: list[tuple[dict | str, str]] = []
    kept: dict[str, str] = {}          # done, but the queue would not take them out: handle -> its reason
    with holding(rt, visibility, progress=progress) as (received, held, not_seen, cut, keep_hidden):
        matching = [m for m, yes in zip(received, chosen([read(m) for m in received])) if yes]
        ids = {m.message_id for m in matching}
        others = [i for i in held if i not in ids]
        rt.queue.hide_dead_many([held[i] for i in others], 0)       # cut short: released again below
        for i in others:
            del held[i]
        for start in range(0, len(matching), 10):
            keep_hidden()
            # A letter read but no longer held (it came back during a slow scan or a stall; another
            # reader may hold it) is not acted on: it is reported as not read, for the next run.
            batch = {m.message_id: m for m in matching[start:start + 10] if m.message_id in held}
            handles = {i: held[i] for i in batch}
            done, refused_now = act(batch)
            # An act that outlasted their hide time: another reader may hold them. Told by the clock, not
            # by a call that could fail (Ctrl-C, an error) before the letters done are taken out.
            keep_hidden(ask=False)
            late.update({i: handles[i] for i in done if i not in held})
            kept.update(_delete_sent(rt, held, {i: handles[i] for i in done}))
            done_n, refused = done_n + len(done), refused + refused_now
            if progress:
                progress(len(received), done_n, len(matching))
        let_go = len(matching) - done_n - len(refused)
        not_seen, cut = not_seen + let_go, cut or let_go > 0
    late_left = _take_out_late(rt, late, kept) if late else 0
    return {"done": done_n, "left": len(received) - len(matching), "not_seen": not_seen,
            **({"cut": True} if cut else {}), **({"late": late_left} if late_left else {}),
            **({"refused": len(refused), "refused_because": dict(Counter(why for _, why in refused))}
               if refused else {}),
            **({"not_taken_out": len(kept), "not_taken_out_because": dict(Counter(kept.values()))} if kept else {})}


def _take_out_late(rt: HasDeadLetters, late: dict[str, str], kept: dict[str, str]) -> int:
    """Letters sent back after their hide time ran out (message id -> the handle the replay used): if
    another reader received one meanwhile, the delete by that handle did nothing (SQS answers it all
    the same), and it is still a dead letter. A scan takes out each one it sees (a fresh receipt; its
    copy is in the work queue, so nothing is lost), and they leave `kept`. About how many may still be
    dead letters: those another reader holds now are not seen (SQS's counts are approximate)."""
    found: set[str] = set()

    def take(m: ReceivedLetter) -> bool:
        mine = m.message_id in late
        if mine:
            found.add(m.message_id)
        return mine
    with holding(rt, LOOK_SECONDS, take=take) as (_, _, not_seen, _, _):
        pass
    for i in found:
        kept.pop(late[i], None)
    return min(len(late) - len(found), not_seen)


def _copy(m: ReceivedLetter) -> dict | str:
    try:
        return messages.replayed(m.body, m.message_id)
    except messages.Unreadable:
        return m.body


def _delete_sent(rt: HasDeadLetters, held: dict[str, str], handles: dict[str, str]) -> dict[str, str]:
    """Letters sent back (their handles by message id) leave the dead-letter queue, even when Ctrl-C or
    an error cuts their delete short (tried once more); if they cannot, those still held are released
    with the others, visible again at once. The handles the queue refused, with its reasons: those
    letters are still held (released with the others)."""
    try:
        refused = rt.queue.delete_dead_many(list(handles.values()))
    except BaseException:
        with suppress(Exception):
            _let_go(held, handles, rt.queue.delete_dead_many(list(handles.values())))
        raise
    _let_go(held, handles, refused)
    return refused


def _let_go(held: dict[str, str], handles: dict[str, str], refused: dict[str, str]) -> None:
    for i, handle in handles.items():
        if handle not in refused:
            held.pop(i, None)
