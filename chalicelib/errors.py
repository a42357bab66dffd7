"""How work can fail, which decides where it goes next."""
from __future__ import annotations

import re
from typing import Any, Optional, Sequence, TypeVar

from .domain.advice import (RF_TOKEN_REPLAY, answer_of, reconnect, refused_answer, refused_token, refused_token_of,
                            replay_refused, rf_token_fix, rf_token_refused)
from .domain.apps import reconnects

E = TypeVar("E", bound="WorkError")


class WorkError(Exception):
    """Base: `reason` is what the history and the dead-letter queue record; `status` is the
    vendor's HTTP status when an answer caused it (None otherwise), `message` the vendor's own words
    in that answer and `body` the answer itself (None otherwise). Decide by the status, never by
    looking for digits in the reason: a vendor's message may quote any number."""

    retryable = False
    person: Optional[tuple[str, str]] = None   # (campaign_id, rf_user_id) whose history records it
    outage: Optional[str] = None    # the vendor that is unavailable (a 5xx, a timeout, no connection): waited out
    where: Optional[str] = None     # ... at which of its API bases (Intercom's regions are apart), when known

    def __init__(self, reason: str, retry_after: Optional[float] = None, status: Optional[int] = None,
                 message: Optional[str] = None, body: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status
        self.message = message
        self.body = body

    def about(self, campaign_id: str, rf_user_id: str) -> "WorkError":
        self.person = (campaign_id, rf_user_id)
        return self

    def unavailable(self: E, service: Optional[str], where: Optional[str] = None) -> E:
        """Marks the failure as `service`'s outage (after the client's own retries; `where`: at which API base):
        the work waits for the vendor (domain/outage.py), without using up a try."""
        self.outage, self.where = service, where
        return self


class Transient(WorkError):
    """Worth another try, later: the work comes back and uses up a try. Waits use up none: a Deferred (a 429,
    a rate-limit pause, a concurrent worker holding the person) and a vendor's outage (`unavailable`: a 5xx, a
    timeout, no connection, after the client's own retries; AWS throttling the bridge, Throttled)."""

    retryable = True


def outage_for(vendor: Optional[str], status: Optional[int]) -> Optional[str]:
    """The vendor whose outage a failure is: no answer at all (`status` None) or a 5xx is one; any other answer
    is not (None)."""
    return vendor if status is None or status >= 500 else None


def unforeseen(exc: BaseException) -> str:
    """The reason of a failure no code foresaw (a bug, an AWS call that failed): its type and message, and what
    PynamoDB's exceptions keep as their `cause` when their message leaves it out ("Failed to write transaction
    items", after DynamoDB's read timeout)."""
    said, cause = f"{type(exc).__name__}: {exc}", getattr(exc, "cause", None)
    if not isinstance(cause, Exception) or str(cause) in said:
        return said
    return f"{said} ({type(cause).__name__}: {cause})"


def waits(exc: BaseException) -> bool:
    """Does the work wait rather than fail (a Deferred, or a vendor's outage)?"""
    return isinstance(exc, Deferred) or getattr(exc, "outage", None) is not None


class Throttled(Transient):
    """AWS throttled a call of the bridge's own, after botocore's retries (adapters/aws.py: DynamoDB, SQS, SSM; a
    batch call's keys DynamoDB keeps leaving unprocessed): `service`'s outage, waited out as a vendor's is (for up to
    BRIDGE_OUTAGE_HOURS, domain/outage.py), not a try. Nothing of the call was applied (of a batch call: of the keys
    it left unprocessed)."""

    def __init__(self, service: str, reason: str):
        super().__init__(reason)
        self.unavailable(service)


class Deferred(Transient):
    """Not a failure: the work must wait (another worker holds the person, a rate-limit pause, an
    open circuit). It comes back after `retry_after` seconds and does not use up a try."""


class BudgetSpent(Deferred):
    """The bridge's own shared budget of a vendor's calls (adapters/ratelimit.SharedLimiter) is spent for now: its
    workers used the slots, and the call was not made. The vendor limited nothing (the pause after its 429 is a
    Deferred with its status, the vendor's)."""


#: The setting that sizes the bridge's own budget of each vendor's calls.
BUDGET_SETTINGS = {"Intercom": "INTERCOM_CALLS_PER_10S", "Referral Factory": "RF_CALLS_PER_MINUTE"}


def limiting(exc: BaseException, vendor: str) -> str:
    """Whose limit held back a call to `vendor` that failed to go through for now (a retryable failure), as the
    operator looks for it: the bridge's own budget (BudgetSpent), AWS throttling the bridge's own calls (Throttled:
    the table the budget is kept in, the secrets; `vendor` was not called), else the vendor (its 429, 5xx, timeout)."""
    if isinstance(exc, BudgetSpent):
        return f"the bridge's own {vendor} budget is spent for now (its workers use it; {vendor} was not called)"
    if isinstance(exc, Throttled):
        return f"{exc.outage} throttled the bridge's own calls ({vendor} was not called)"
    return f"{vendor} is unavailable or limiting the bridge now"


def again_when(exc: BaseException) -> str:
    """When a command the failure `exc` stopped is worth running again: a minute for the bridge's own budget (its
    slices free slots every few seconds), later for anything else."""
    return "in a minute" if isinstance(exc, BudgetSpent) else "later"


class Blocked(Deferred):
    """The vendor blocked us (Referral Factory's IP block after repeated excess, for up to days): no call
    goes to it until a recheck; the work waits."""


class Uncertain(Transient):
    """The request may have reached the vendor and been applied, but its answer was lost (a read
    timeout, a connection dropped after sending, a 5xx to a request that is not idempotent). Never
    send it again blindly: look first (e.g. ask RF whether the user is qualified, search for the
    contact) and only then decide."""


class NoAnswer(Uncertain):
    """No answer in the time the call was given (its timeout, or what its caller had left: then, with no time
    left, it was not sent). It may have been applied: an OAuth code may be used up."""


class Permanent(WorkError):
    """Retrying will not help until someone fixes something: straight to the dead-letter
    queue with the reason, replayable once fixed (e.g. RF 422, Intercom 400, revoked token)."""


def plan_restricted(reason: str, status: Optional[int] = None) -> bool:
    """Intercom's 403 `api_plan_restricted` (or a 403 naming the plan): the workspace's plan does not include
    the API, and any token fails the same way. `status`: the answer's, when known (a dead letter or a history
    entry keeps only the reason, whose own "Intercom answered 403" says it)."""
    refused = status == 403 if status is not None else "Intercom answered 403" in reason
    return refused and ("api_plan_restricted" in reason or " plan" in reason.lower())


#: What to do about it (doctor, explain, `dlq list`): the plan, not the token.
PLAN_FIX = ("Intercom's plan for {workspace} does not include the API: upgrade it to a plan that does (a "
            "new token will not help: the plan refuses every token), then {replay}")


DISCONNECTED = "workspace disconnected"


def parked(workspace: str) -> str:
    """What the reason of each letter a disconnect of `workspace` parked says, and no other's (`workspace ws` is
    not in `workspace ws-b was`): `dlq replay --reason` (a substring) matches it, so a reconnect of one
    workspace brings back its letters, not those of another still disconnected (they would fail again)."""
    return f"Intercom workspace {workspace} was disconnected"


def replay_parked(workspace: str) -> str:
    return f'bridge dlq replay --reason "{parked(workspace)}"'


def parked_of(reason: str) -> Optional[str]:
    """The workspace whose disconnect parked a letter of `reason` (None: not a disconnect's)."""
    found = re.search(parked("(\\S+)"), reason) if DISCONNECTED in reason else None
    return found.group(1) if found else None


def refused_reason(answer: str, workspace: str, replay: bool = True) -> str:
    """The reason of a failure Intercom's refusal of `workspace`'s token made (`answer`: Intercom's): the reconnect,
    then (`replay`) the replay of what it failed; none of a search of changed contacts, which is never replayed (the
    next that succeeds covers its window)."""
    said = f"{refused_answer(answer, workspace)}: reconnect the workspace"
    return f"{said}, then `{replay_refused(workspace)}`" if replay else said


def beside_fix(reason: str, fix: Optional[str]) -> str:
    """A failure's reason as said beside `fix` (`dlq list`, doctor's [dead_letters] and [reconciliation], explain's
    text): without the advice it carries (answer_of) where the fix says it again, RF's refusal of the stored token
    (rf_token_fix) or Intercom's of a workspace's (a fix that reconnects that workspace: token_fix, doctor's
    reconnect before a search's fix; whose token stays said, as its replay's `--reason` names it). Any other reason,
    or beside another fix (a search's alone, which says no reconnect), as it is."""
    if fix and rf_token_refused(reason) and rf_token_fix() in fix:
        return answer_of(reason)
    refused_for = refused_token_of(reason)
    if fix and refused_for and any(reconnect(refused_for, app) in fix for app in ("private", "oauth")):
        return refused_answer(answer_of(reason), refused_for)
    return reason


def answer_refused_fix(workspace: str, status: int, token_app: Optional[str] = None) -> str:
    """The fix of Intercom refusing `workspace`'s token with another status than the 401 a worker waits out (a 403):
    the work it failed was dead-lettered with Intercom's answer as its reason, not `refused_token`'s, so the replay
    after the reconnect goes by that answer's status (token_fix's reaches none of it), of that workspace only (another
    workspace's letters of that status would fail again)."""
    return f"{reconnect(workspace, token_app)}, then {replay_answered(workspace, status)}"


def replay_answered(workspace: str, status: int) -> str:
    """The replay of the letters Intercom's answer of `status` to `workspace`'s calls failed (its token refused with a
    403, its plan): of that workspace only — another workspace's letters of that status would fail again."""
    return f'`bridge dlq replay --reason "Intercom answered {status}" --workspace {workspace}`'


def token_wait_fix(workspace: str, token_app: Optional[str] = None) -> str:
    """The fix while the work waits for `workspace`'s token to be replaced: the reconnect alone (what waits goes on
    by itself)."""
    return f"{reconnect(workspace, token_app)}; what waits for it then goes on by itself, with no replay"


class TokenRefused(Permanent):
    """Intercom refuses the token of a workspace still connected (its 401 after the token was read again: revoked,
    the app uninstalled; a disconnected workspace's work is Disconnected instead). The worker waits it out as an
    outage (domain/outage.py), up to BRIDGE_OUTAGE_HOURS, for the workspace to be reconnected; then it is a dead
    letter with this reason. `token_app`: whose token it is (how to replace it), when known."""

    def __init__(self, reason: str, workspace: str, token_app: Optional[str] = None, answer: str = "", **kw: Any):
        super().__init__(reason, **kw)
        self.workspace, self.token_app, self.answer = workspace, token_app, answer or reason

    @property
    def waiting(self) -> str:
        """The wait, as a join's link says it (Intercom's answer, not the dead letter's replay)."""
        return (f"{refused_token(self.workspace)} ({self.answer}): the work waits for the workspace's token to be "
                f"replaced — {token_wait_fix(self.workspace, self.token_app)}")


def waited_out(exc: BaseException) -> bool:
    """Is the failure waited out up to BRIDGE_OUTAGE_HOURS (by the kinds that wait out outages): a vendor's outage, or
    Intercom refusing a connected workspace's token?"""
    return getattr(exc, "outage", None) is not None or isinstance(exc, TokenRefused)


class Disconnected(Permanent):
    """The operator disconnected the workspace: its work waits in the dead-letter queue, with this
    one reason (it starts with DISCONNECTED), until the workspace is connected again and the queue replayed."""

    def __init__(self, workspace: str, connected: Sequence[str] = ()):
        """`connected`: the apps its connection says it was connected through (each one's reconnect is named)."""
        super().__init__(f"{DISCONNECTED}: {parked(workspace)} — reconnect it: {reconnects(workspace, list(connected))},"
                         f" then `{replay_parked(workspace)}`")
        self.workspace = workspace


class InvalidSettings(Permanent):
    """The campaign's stored settings no longer read as valid (`problems`, joined): its work waits in the
    dead-letter queue until corrected settings are applied and it is replayed."""

    def __init__(self, campaign_id: str, problems: str):
        super().__init__(f"the stored settings of campaign {campaign_id} are invalid ({problems}) — apply corrected "
                         "settings, then replay")


class ApiError(WorkError):
    """An error answer from Intercom or Referral Factory, with the vendor's own message."""

    message: str

    def __init__(self, service: str, status: int, message: str, code: str = "",
                 retry_after: Optional[float] = None, headers: Optional[dict] = None, body: Any = None):
        super().__init__(f"{service} answered {status}{' ' + code if code else ''}: {message}", retry_after, status,
                         message, body)
        self.service, self.code = service, code
        self.headers = headers or {}
        self.retryable = status == 429 or status >= 500
        self.outage = outage_for(service, status)


#: The statuses that refuse every call, whatever it asks (any other error says nothing of it): Intercom's refusal
#: of the token; Referral Factory's of its token (RF_REFUSED_TOKEN) or, with 403, of the bridge's IP (`rf_blocked`).
REFUSED_TOKEN = (401, 403)
#: Referral Factory's refusal of the token itself (its 403 is its block of the bridge's IP, never the token's).
RF_REFUSED_TOKEN = 401


def rf_blocked(exc: WorkError) -> bool:
    """Referral Factory blocks the bridge's IP (after repeated excess, for up to days): the limiter's open circuit
    (Blocked: the work waits, never dead-lettered), or RF's 403 itself, as a client outside the limiter gets it."""
    return isinstance(exc, Blocked) or exc.status == 403


def rf_answered(exc: WorkError) -> str:
    """What Referral Factory answered, said beside rf_campaign_fix: its refusal of the token without the fix its reason
    carries (rf_campaign_fix's own), any other failure as its reason says it."""
    return answer_of(exc.reason) if exc.status == RF_REFUSED_TOKEN else exc.reason


def rf_campaign_fix(exc: WorkError, campaign_id: str, again: str) -> str:
    """What to do when Referral Factory could not show a campaign, by its answer's status (never by digits
    in its message): RF's block of the bridge's IP (up to days: RF's support lifts it), its token refused, RF
    unavailable or limiting now (then `again`: the command to run
    again later), or the campaign unknown to it (404: a wrong id, or a token of another account)."""
    if rf_blocked(exc):
        return ("ask Referral Factory's support to lift the block of the bridge's IP (it blocks an IP that goes "
                "over its rate limit repeatedly); meanwhile the bridge calls RF once every RF_BLOCK_RECHECK_SECONDS to "
                "check, and resumes by itself once RF answers. If another tool shares the RF account, lower "
                "RF_CALLS_PER_MINUTE to what it leaves")
    if exc.status == RF_REFUSED_TOKEN:  # by its reason: the token fails every campaign's work, and notifications'
        return rf_token_fix()
    if exc.retryable:
        return f"nothing to change: {limiting(exc, 'Referral Factory')}; run {again} again {again_when(exc)}"
    return (f"check the campaign id (the settings' campaign_id) and that the RF token is of the account that owns "
            f"campaign {campaign_id} (`bridge rf connect` asks for the token); then "
            + RF_TOKEN_REPLAY.format(selector=f"--campaign {campaign_id}"))


