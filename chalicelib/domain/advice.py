"""What to do about a problem, in words every command that names it shares (`bridge doctor`, `bridge
explain`): the same problem never gets two different fixes. Templates take `{campaign}`."""
from __future__ import annotations

import re
import shlex
from typing import Any, Mapping, Sequence

from .mapping import REFUSED_KIND, FieldError
from .people import OTHER_CAMPAIGN

#: Send the people a refused join left out (RF does not retry a refused webhook): what ends every such fix.
BACKFILL = "`bridge backfill {campaign}` (dry run), then `--apply`"

#: Why the edge refused a join of Referral Factory, by reason: (what it means, what to do).
REFUSED_JOIN = {
    "unauthorized": ("RF's webhook sends a wrong or no X-Bridge-Secret header",
                     "in RF, set the webhook's custom header X-Bridge-Secret to the webhook secret given to "
                     "`bridge rf connect` (or connect again with RF's value), then " + BACKFILL),
    "not_configured": ("the bridge has no RF webhook secret", "`bridge rf connect` (it asks for the webhook "
                       "secret), then " + BACKFILL),
    "missing_user_id": ("the webhook's payload has no `id`", "add the field `id` (the user's ID) to RF's webhook "
                        "payload (docs/setup.md, Setting up Referral Factory's webhook), or to a body sent by hand; "
                        "then " + BACKFILL),
    "missing_campaign_id": ("the webhook's payload has no `campaign_id`", "add `campaign_id` to the payload"),
    # (the person's own email refused is INVALID_EMAIL)
    "invalid_field": ("a payload field has a value of a type or shape the bridge does not accept (the webhook's "
                      "payload, not the person's data)", "correct the field the message names in RF's webhook "
                      "payload (or in a body sent by hand) as docs/setup.md, Setting up Referral Factory's webhook, "
                      "lists it; then " + BACKFILL),
    "malformed_json": ("the body is not JSON", "set RF's webhook to send JSON (or a form)"),
    "malformed_form": ("the form cannot be read", "set RF's webhook to send JSON"),
    "malformed_encoding": ("the body is not the gzip or deflate data its Content-Encoding says",
                           "check what sends to the webhook URL (RF sends bodies uncompressed)"),
    "unsupported_media_type": ("the body's Content-Type is not accepted", "send application/json"),
    "too_large": ("the body is too large", "send only the fields docs/setup.md lists"),
    "unknown_campaign": ("the campaign has no settings here", "`bridge settings apply <file>`, then " + BACKFILL),
}

#: A join refused for the person's own email (person_data): fixed in RF, not in the webhook.
INVALID_EMAIL = ("the person's email is not an address, e.g. it holds a space",
                 "fix the email in Referral Factory, then " + BACKFILL)
#: What an `invalid_field` message says of an email's content (webhooks.rf_email; its length), not of its type
#: (`email: must be text`) or of a field sent twice (`email: ... differ`): those are the payload's.
_EMAIL_CONTENT = re.compile(r"email: (holds a character no email address can|String should have at most)")


def person_data(reason: str, messages: Sequence[str]) -> bool:
    """Whether joins refused for `reason` (its sampled messages) were refused for the person's own data in RF: an
    email no address can be. Every other refusal is the webhook's setup (its secret, its payload's fields, their
    names, types and shapes), which one fix mends for every later join."""
    return reason == "invalid_field" and bool(messages) and all(   # (a message names each field refused: "a; b")
        _EMAIL_CONTENT.match(part) for m in messages for part in m.split("; "))


def refused_join(reason: str, messages: Sequence[str], unknown: str = "see the message") -> tuple[str, str]:
    """(what, fix) of joins refused for `reason`, whose messages (one or more samples) say which field."""
    if person_data(reason, messages):
        return INVALID_EMAIL
    return REFUSED_JOIN.get(reason, (reason, unknown))


#: Referral Factory refused the RF token the bridge has stored (RF's 401, as the bridge words it: "Referral Factory
#: answered 401"): the cause is the bridge's token, not anything at RF. (RF's 403 is its block of the bridge's IP,
#: which the work waits out: never dead-lettered, never this fix.) Takes `{replay}`.
#: RF refusing the stored token, and its connect (RF_TOKEN: then the replay; a sync page still retried: its next try).
RF_RECONNECT = ("Referral Factory refuses the RF token the bridge has stored (revoked or replaced in RF): "
                "`bridge rf connect` (it asks for the new token)")
RF_TOKEN = RF_RECONNECT + ", then {replay}"
#: What RF's refusal of the stored token puts in a failure's reason, whatever RF's message: `dlq replay --reason`
#: reaches every letter of the incident by it (a notification's, which names no campaign, among them).
RF_TOKEN_REFUSED = "Referral Factory answered 401"
_RF_TOKEN_REFUSED = re.compile(re.escape(RF_TOKEN_REFUSED) + r"\b")
#: The work that failed while the RF token could not see its campaign (refused, or of another RF account, whose
#: every user RF then says is "not found"): valid work, brought back once the token is fixed, never discarded.
RF_TOKEN_REPLAY = ("`bridge dlq replay {selector}` brings back the work that failed meanwhile (it is valid: do not "
                   "discard it)")


def rf_token_fix() -> str:
    """The one fix of RF refusing the stored token, wherever it is seen (doctor's campaign check, a campaign's
    dead letters, a notification's, explain): the replay by RF's refusal (what the letters' reasons say),
    whatever the campaign, as it reaches every letter of the incident."""
    return RF_TOKEN.format(replay=RF_TOKEN_REPLAY.format(selector=f"--reason {shlex.quote(RF_TOKEN_REFUSED)}"))


def rf_token_reason(answer: str) -> str:
    """The reason of work RF refused the stored token for (`answer`: its 401, "Referral Factory answered 401: ..."),
    as its dead letter keeps it: the answer, then the one fix (rf_token_fix). Where no letter is made, or the fix is
    said beside it, the answer alone is said (answer_of)."""
    return f"{answer} — {rf_token_fix()}"


def answer_of(reason: str) -> str:
    """A vendor's answer alone, without the advice a failure's reason says after it (" — ...")."""
    return reason.split(" — ", 1)[0]


def rf_token_refused(reason: str) -> bool:
    """Whether a failure's reason (a history entry's, a dead letter's) is RF refusing the stored token."""
    return bool(_RF_TOKEN_REFUSED.search(reason))


def refused_token(workspace: str) -> str:
    """What the reason of each failure Intercom's refusal of `workspace`'s token makes says (its 401 once the token
    was read again: revoked, the app uninstalled), and no other workspace's (`ws's` is not in `ws-b's`): `dlq
    replay --reason` reaches every letter of the incident (an Intercom notification's, which names no campaign)."""
    return f"Intercom refuses workspace {workspace}'s token"


def replay_refused(workspace: str) -> str:
    return f'bridge dlq replay --reason "{refused_token(workspace)}"'


def refused_answer(answer: str, workspace: str) -> str:
    """Intercom's `answer` refusing `workspace`'s token, as each reason of such a refusal says it before its advice
    (errors.refused_reason's, a link write's in sync) and as it is said beside a fix that gives that advice."""
    return f"{answer} — {refused_token(workspace)} (invalid or revoked)"


def token_fix(workspace: str, token_app: str | None = None) -> str:
    """The one fix of letters Intercom's refusal of `workspace`'s token made (doctor, `dlq list`, explain, a sync
    page's): reconnect it the way its token came (`token_app`, when known), then the replay of what the refusal
    failed."""
    return f"{reconnect(workspace, token_app)}, then `{replay_refused(workspace)}`"


def refused_token_of(reason: str) -> str | None:
    """The workspace whose token Intercom refused in a failure of `reason` (None: not such a refusal)."""
    found = re.search(refused_token("([A-Za-z0-9_-]+)"), reason)
    return found.group(1) if found else None


def reconnect(workspace: str, token_app: str | None = None) -> str:
    """How to replace `workspace`'s token, the way it came (`token_app`, when known: the public app's comes only
    from the admin's authorization): each way when not known."""
    link = f"a new OAuth link for the workspace's admin, who authorizes the app again: `bridge workspace oauth-link " \
           f"--workspace {workspace}`"
    connect = f"`bridge workspace connect {workspace}` (it asks for the new token)"
    return {"private": connect, "oauth": link}.get(token_app or "", f"{connect} or, for the public app's token, {link}")


#: Mapped fields a join was applied without (a value not converted, a text too long).
NOT_WRITTEN = ("fix the values in Referral Factory, or the field mapping (map it to an attribute of a type they "
               "convert to; text holds at most 255 characters); a field Intercom refused: fix the attribute in "
               "Intercom (Settings > Data > People: it exists, is not archived, is writable, the value meets its "
               "rules) or map another")
#: ... a fixed value Intercom refused (its value is the settings', not Referral Factory's).
FIXED_REFUSED = ("fix the attribute in Intercom (Settings > Data > People: it exists, is not archived, is writable, the "
                 "value meets its rules), or the fixed value in the settings (then `bridge settings apply`), or map "
                 "another")


def not_written(kind: str, source: str) -> str:
    """The fix of a mapped field joins were applied without, by its kind (mapping.FieldError.kind) and `source`
    ("from <RF field>", "fixed value")."""
    return FIXED_REFUSED if kind == REFUSED_KIND and source == "fixed value" else NOT_WRITTEN


def fields_not_written(errors: Sequence[Mapping[str, Any]]) -> str:
    """The fix of one join's fields not written (its history entry's `errors`: to, source, reason each), as doctor
    says it of each (not_written): a fixed value's when each is a fixed value Intercom refused, else the values'
    (which names a field Intercom refused too)."""
    fixes = {not_written(FieldError(str(e.get("to", "")), str(e.get("source", "")), str(e.get("reason", ""))).kind,
                         str(e.get("source", ""))) for e in errors}
    return FIXED_REFUSED if fixes == {FIXED_REFUSED} else NOT_WRITTEN

#: Leads linked before the campaign's qualification rule (under none, or a rule on another attribute), or moved since
#: to an older contact: their value at join time is not known, so they never qualify by themselves
#: (domain/judge.takes_baseline).
TAKE_BASELINES = ("`bridge backfill {campaign}` (a dry run) lists them, then `bridge backfill {campaign} --apply` "
                  "takes each one's value now as their baseline")

#: A lead's email shared by another contact while the campaign qualifies on the linked contact only.
DUPLICATE = ("set `qualification.match: email` in the settings (then `bridge settings apply`), or merge the "
             "contacts in Intercom")


def how_many(n: int, bounded: bool, one: str, many: str) -> str:
    """"1 referrer", "3 referrers"; "3 or more referrers" when the read that counted them stopped at its bound."""
    return f"{n} or more {many}" if bounded else f"1 {one}" if n == 1 else f"{n} {many}"


#: Any 404 of Referral Factory's: a user deleted there, but also every call when RF_BASE_URL is wrong.
RF_404 = "Referral Factory answered 404"
#: The reason of work that can never succeed: Referral Factory says it does not know the user (deleted
#: there). Only RF's own answer says so: a 404 without it (a wrong RF_BASE_URL) is fixed and replayed.
RF_GONE = f"{RF_404}: User not found"


def gone_or_token(reason: str, rf_user_id: str, campaign_id: str, campaign_refused: str | None) -> str:
    """The reason of RF's `User not found` (`reason`) to a qualification, once RF was asked whether it knows the
    campaign with the RF token (`campaign_refused`: its answer when it does not; None: it showed the campaign). Shown,
    the user was deleted in RF: the reason as it is (its fix, the discard), saying so. Not known, the token's case (of
    another account, RF says so of every user): not RF_GONE (never discarded), naming doctor's check and the replay."""
    if campaign_refused is None:
        return (f"{reason} — Referral Factory shows campaign {campaign_id} with the RF token: the user was deleted "
                "there")
    return (f"Referral Factory says user {rf_user_id} is not found (404), but it does not know campaign {campaign_id} "
            f"with the RF token either ({answer_of(campaign_refused)}): not taken as a deleted user — the RF token "
            f"may be of another account than the campaign's: `bridge doctor {campaign_id}` checks it ([rf.campaign]); "
            f"fix it with `bridge rf connect`, then replay this work (it is valid: do not discard it)")


def never_succeeds(reason: str) -> bool:
    """Work a replay would only dead-letter again (its fix says to discard it instead)."""
    return RF_GONE.lower() in reason.lower()


def discarded(reason: str) -> bool:
    """Whether the fix of a letter of `reason` ends in its discard (replay_fix: a replay would fail the same way),
    as the history's dead-letter entry records it."""
    return OTHER_CAMPAIGN in reason or never_succeeds(reason)
