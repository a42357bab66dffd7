"""Contact sync (product.md §4): Intercom contacts enrolled as referrers of an RF campaign, their
referral link written back. Pure: the search query of a run, the checks made before anyone is
created, and what each contact becomes. No I/O."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional, Union

from .advice import (RF_RECONNECT, answer_of, reconnect, refused_token, refused_token_of, rf_token_fix, rf_token_refused,
                     token_fix)
from .mapping import MAX_STRING, ContactPayload, ConversionError, attribute_type, to_unix
from .settings import CampaignSettings, Sync, attribute_meant

DAY = 86400
PER_PAGE = 150                    # Intercom's largest search page

# What a contact became, per run. ENROLLED, ENROLLED_NO_LINK, ENROLLED_WRITEBACK_FAILED, ALREADY, NO_LINK,
# WRITEBACK_FAILED and LINKED are not skips; the rest (SKIPS) are, each with its reason.
ENROLLED = "enrolled"
ALREADY = "already_enrolled"      # an earlier run (or the webhook) enrolled it: nothing to do
LINKED = "linked"                 # enrolled earlier (counted then without a link, or write-back failed): its referral
                                  # link is written now — not a second enrolment
# Enrolled in RF, but RF had made no referral link yet: each run asks RF again (then LINKED). The ledger's outcome
# is NO_LINK; a run counts ENROLLED_NO_LINK where it enrolled them (enrolled), NO_LINK where an earlier run did
# (already enrolled): "skipped" would read as "not enrolled".
ENROLLED_NO_LINK = "enrolled_no_link"
NO_LINK = "no_link_yet"
NO_LINK_REASON = "no referral link yet"
# Enrolled in RF, but Intercom refused the write of their link: the next run writes it again (then LINKED). Counted
# as ENROLLED_NO_LINK and NO_LINK are: ENROLLED_WRITEBACK_FAILED where the run enrolled them, WRITEBACK_FAILED
# (the ledger's outcome) where an earlier run (or their join) did.
ENROLLED_WRITEBACK_FAILED = "enrolled_writeback_failed"
WRITEBACK_FAILED = "writeback_failed"
WRITEBACK_FAILED_REASON = "referral link not written to Intercom (write-back failed)"
SKIPS = {
    "missing_field": "missing required field",
    "already_in_campaign": "already in the campaign",
    "user_limit": "campaign user limit reached",
    "invalid_email": "invalid email",
    "refused": "refused by Referral Factory",
    "not_in_rf": "no longer in Referral Factory (deleted there)",   # final: never asked again, nor re-created
}
NOT_IN_RF = "not_in_rf"
UNWRITTEN = (NO_LINK, WRITEBACK_FAILED)    # enrolled, their link not written yet: a later run writes it (LINKED)
OUTCOMES = (ENROLLED, ENROLLED_NO_LINK, ENROLLED_WRITEBACK_FAILED, ALREADY, NO_LINK, WRITEBACK_FAILED, LINKED, *SKIPS)


def run_counts(counts: dict[str, int]) -> dict[str, int]:
    """A run's (or its webhooks') counts by outcome, as the operator reads them: a referrer enrolled
    without a referral link yet, or whose link Intercom refused, is enrolled (or already enrolled), the
    missing link said apart."""
    return {"enrolled": counts.get(ENROLLED, 0) + counts.get(ENROLLED_NO_LINK, 0) +
            counts.get(ENROLLED_WRITEBACK_FAILED, 0),
            "enrolled_without_link": counts.get(ENROLLED_NO_LINK, 0),
            "enrolled_link_not_written": counts.get(ENROLLED_WRITEBACK_FAILED, 0),
            "already_enrolled": counts.get(ALREADY, 0) + counts.get(NO_LINK, 0) + counts.get(WRITEBACK_FAILED, 0),
            "still_without_link": counts.get(NO_LINK, 0),
            "still_link_not_written": counts.get(WRITEBACK_FAILED, 0),
            "linked": counts.get(LINKED, 0),
            "skipped": sum(n for k, n in counts.items() if k in SKIPS)}


_APART = {"enrolled": (("enrolled_without_link", "without a link yet"), ("enrolled_link_not_written", "link not written")),
          "already_enrolled": (("still_without_link", "still without a link"),
                               ("still_link_not_written", "link still not written"))}


def apart(counts: dict, group: str) -> str:
    """What run_counts() says apart in a group (enrolled, already_enrolled), in words: " (1 without a link yet)"."""
    parts = [f"{counts[key]:,} {words}" for key, words in _APART[group] if counts.get(key)]
    return f" ({', '.join(parts)})" if parts else ""


def describe_counts(counts: dict, already: str = "already") -> str:
    """run_counts() in words: "enrolled 3 (1 without a link yet, 1 link not written), already 0, skipped 1"."""
    return ", ".join([f"enrolled {counts['enrolled']:,}" + apart(counts, "enrolled"),
                      f"{already} {counts['already_enrolled']:,}" + apart(counts, "already_enrolled")]
                     + ([f"link written later {counts['linked']:,}"] if counts.get("linked") else [])
                     + [f"skipped {counts['skipped']:,}"])

# A page's failure while its run retries it (`sync status`): RETRYING comes back by itself; FAILED waits in the
# dead-letter queue (its tries spent, retrying would not help, or a vendor's outage outlasted BRIDGE_OUTAGE_HOURS);
# WAITING is no failure (a vendor's outage, a rate-limit pause, an open circuit, the Lambda's time running out:
# it uses up no try).
RETRYING, FAILED, WAITING = "retrying", "failed", "waiting"
WORKING = "working"               # a page that waited, a worker holds again (services/sync.shown_error): worked now
PAGE_ERROR_CHARS = 200            # the reason as `sync status`'s line shows it (--json has it whole)
PAGE_ERROR_KEPT = 1000            # the reason as the run keeps it: as much as a dead letter keeps of its own
# What brings back a page in the dead-letter queue: its cause fixed, or the vendor whose outage outlasted the budget
# answering again.
# Its letter names its campaign: the replay of that campaign's letters reaches it (not every letter of the queue).
FIX_RESUME = "fix the cause, then `bridge dlq replay --campaign {campaign}` resumes the run where it stopped"
RESUME = "once {vendor} answers again, `bridge dlq replay --campaign {campaign}` resumes the run where it stopped"


@dataclass(frozen=True)
class PageError:
    """The last failure of the run's page `page` (0-based, as SyncRun.page) not yet worked since: what
    failed it, how many tries of it failed, when the last did. A checkpoint clears it."""

    page: int
    reason: str
    tries: int
    at: float
    state: str                    # RETRYING | FAILED | WAITING


def page_error(previous: Optional[PageError], page: int, reason: str, state: str, at: float) -> PageError:
    """The page's failure now: its tries counted on from the run's last failure of the same page (a wait
    counts no try). `reason` on one line, up to PAGE_ERROR_KEPT characters (the caller masks emails)."""
    tries = (previous.tries if previous is not None and previous.page == page else 0) + int(state != WAITING)
    return PageError(page, shortened(" ".join(reason.split()), PAGE_ERROR_KEPT), tries, at, state)


def shortened(line: str, limit: int) -> str:
    """`line` in at most `limit` characters: cut after a whole word (a word longer than the line, inside it)."""
    if len(line) <= limit:
        return line
    cut = line[:limit]
    words = cut.rsplit(" ", 1)[0] if " " in cut.strip() else cut[:-1]
    return words.rstrip(" ,;:(") + "…"


def page_fix(error: dict, campaign_id: str) -> str:
    """The one fix of campaign `campaign_id`'s page waiting in the dead-letter queue (`error`: as `sync status` has it),
    as `sync status` and doctor say it: a refused token's (refused_fix: the reconnect, then the replay by its letters'
    reason), else the replay of the campaign's letters once its cause is fixed, or its vendor answers again."""
    vendor = error.get("outage")
    return refused_fix(error["reason"]) or (RESUME.format(vendor=vendor, campaign=campaign_id) if vendor
                                            else FIX_RESUME.format(campaign=campaign_id))


def describe_page_error(error: dict, campaign_id: str, advice: bool = True) -> str:
    """A page error as `sync status` shows it (its JSON form: page 1-based, `at` ISO): "retrying page 3:
    Intercom answered 503 (2 tries, last 12:04:05)". `advice`: a failed page's line says what to do (doctor
    says it apart)."""
    tries = f"{error['tries']} {'try' if error['tries'] == 1 else 'tries'}, " if error["tries"] else ""
    when = f"({tries}last {str(error['at'])[11:19]})"
    vendor = error.get("outage")      # a vendor's outage (services/sync.shown_error): waited out, not failed
    reason = shortened(error["reason"], PAGE_ERROR_CHARS)
    if error["state"] == WAITING:           # (a refused token's wait: for the reconnect, which it names)
        waits = refused_fix(error["reason"], WAITING) if advice else None
        return f"page {error['page']} {'is ' if vendor else 'waits: '}{reason} {when}" + (
            f" — {waits}" if waits else "")
    if error["state"] == WORKING:
        return f"page {error['page']} is worked again; it waited: {reason} {when}"
    failed = error["state"] == FAILED
    refused = refused_fix(error["reason"], error["state"])
    if refused is not None:     # a refused token: its answer alone (the reason's own advice is the fix's, said whole)
        reason = shortened(answer_of(error["reason"]), PAGE_ERROR_CHARS)
    if failed:
        return f"page {error['page']} failed: {reason} {when}" + (
            f" — it waits in the dead-letter queue: {page_fix(error, campaign_id)}" if advice else "")
    return f"retrying page {error['page']}: {reason} {when}" + (f" — {refused}" if refused and advice else "")


#: A page's next try once the refused token is replaced (nothing of it is dead-lettered yet: no replay).
NEXT_TRY = "; the page's next try then goes on"


def refused_fix(reason: str, state: str = FAILED) -> Optional[str]:
    """The fix of a page that failed, or waits, because a token was refused (None: not so), as doctor gives it:
    Intercom refusing the workspace's token, its reconnect; RF refusing the bridge's, `bridge rf connect`.
    Dead-lettered (FAILED), then the replay by the letters' reason (not `bridge dlq replay` of every letter: other
    campaigns', other workspaces' still refused); still retried, its next try; waiting for the reconnect (Intercom's
    refusal, up to BRIDGE_OUTAGE_HOURS), nothing else: no letter to replay in either."""
    ws = refused_token_of(reason)
    if ws:
        if state == WAITING:            # (its line says the refusal already)
            return f"{reconnect(ws)}; the page then goes on by itself, with no replay"
        return f"{refused_token(ws)}: " + (f"{token_fix(ws)} resumes the run where it stopped" if state == FAILED
                                           else reconnect(ws) + NEXT_TRY)
    if rf_token_refused(reason) and state != WAITING:
        return f"{rf_token_fix()}; the replay resumes the run where it stopped" if state == FAILED else \
            RF_RECONNECT + NEXT_TRY
    return None


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")


@dataclass(frozen=True)
class Create:
    """Enrol: the body of RF's `POST /users` (a referrer: no `referrer`)."""

    email: str
    body: dict


@dataclass(frozen=True)
class Skip:
    reason: str                   # a key of SKIPS
    detail: str


Decision = Union[Create, Skip]


def describe_source(sync: Sync) -> str:
    """How history and reports name where a run's contacts come from."""
    return {"all": "all contacts", "leads": "leads", "users": "users"}.get(sync.source) or f"segment {sync.segment_id}"


def source_changed(settings: CampaignSettings, source: str, workspace: Optional[str]) -> list[str]:
    """Why a run's later page must not go on (empty: it may): settings applied since the run started that read another
    source than the run's (`source`, as describe_source said it then), or another workspace's contacts (`workspace`:
    the run's; None, not known). Its cursor is a place in the old source's order: the new source read from there
    would skip every contact before it, or mix two workspaces' contacts in one run."""
    assert settings.sync is not None
    now, campaign_id = describe_source(settings.sync), settings.campaign_id
    if workspace and workspace != settings.workspace:
        return [f"workspace: campaign {campaign_id} was applied naming workspace {settings.workspace} since this run "
                f"started in {workspace} — run `bridge sync start {campaign_id}` to sync {settings.workspace}'s "
                "contacts from the start"]
    if now == source:
        return []
    return [f"sync.source: the settings applied since this run started read {now}, not {source} — run "
            f"`bridge sync start {campaign_id}` to sync {now} from the start"]


def describe_writes(sync: Sync) -> str:
    """Which attributes sync writes back, as `sync report` and `doctor` say it."""
    writes = [f"{what} to {attribute}" for what, attribute in (
        ("each referrer's referral link", sync.referral_link_attribute),
        ("each referrer's referral count (the leads the bridge saw join with them)", sync.referral_count_attribute))
        if attribute]
    return "writes back " + " and ".join(writes) if writes else "writes nothing back"


def source_query(sync: Sync) -> dict:
    if sync.source == "segment":
        return {"field": "segment_id", "operator": "=", "value": sync.segment_id}
    if sync.source == "leads":
        return {"field": "role", "operator": "=", "value": "lead"}
    if sync.source == "users":
        return {"field": "role", "operator": "=", "value": "user"}
    return {"field": "role", "operator": "IN", "value": ["user", "lead"]}


def search_query(sync: Sync, since: Optional[float] = None) -> dict:
    """The run's contact search. A catch-up run (`since`) adds `updated_at` from the day before
    `since`: Intercom matches dates by calendar day (`>` starts the next day), and a search near the
    day boundary has been reported to miss contacts, so the window overlaps and the ledger dedupes."""
    query = source_query(sync)
    if since is None:
        return query
    day_before = int(since) // DAY * DAY - DAY
    return {"operator": "AND", "value": [query, {"field": "updated_at", "operator": ">", "value": day_before}]}


def matches_source(sync: Sync, contact: dict) -> Optional[bool]:
    """Does a contact (as a webhook sent it) belong to the source? None: cannot tell without a
    search (a segment's members are computed by Intercom)."""
    if sync.source == "segment":
        return None
    role = contact.get("role")
    return role in ("user", "lead") if sync.source == "all" else role == sync.source[:-1]


def _read(contact: dict, name: str) -> Any:
    value: Any = contact
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


STANDARD = ("email", "first_name")  # what RF's `POST /users` requires of everyone; a campaign's own fields: `meta.<id>`
BY_RF = "required by the campaign in Referral Factory"


def _required(campaign: Optional[dict]) -> list[tuple[str, str]]:
    """The fields RF's campaign requires of a referrer (`fields.person_referring[]`, required), as sync.fields
    names them (`email`, `first_name`, `meta.<id>`), each with its label."""
    fields = (campaign or {}).get("fields")
    referring = fields.get("person_referring") if isinstance(fields, dict) else None
    ids = [(str(f["id"]), f) for f in referring or [] if isinstance(f, dict) and f.get("required")
           and isinstance(f.get("id"), (str, int))]
    return [(i if i in STANDARD else f"meta.{i}", str(f.get("label") or i)) for i, f in ids]


def required_fields(campaign: Optional[dict]) -> tuple[str, ...]:
    """The fields RF's campaign (GET /campaigns/{id}) requires of a referrer, as sync.fields names them."""
    return tuple(name for name, _ in _required(campaign))


def for_rf(value: Any, data_type: str) -> Any:
    """An Intercom attribute's value as RF is sent it: a date as ISO-8601 in UTC, to the second ("2023-08-15T18:49:35Z",
    as RF's dashboard shows it), whichever form Intercom gave it in (its search: UNIX seconds; its webhooks: ISO-8601
    text); anything else as it is."""
    if data_type not in ("date", "datetime") or value is None or value == "":
        return value
    try:
        return datetime.fromtimestamp(to_unix(value), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ConversionError, ValueError, OverflowError, OSError):    # no date Intercom gives: sent as it is
        return value


def decide(sync: Sync, campaign_id: str, contact: dict, required: tuple[str, ...] = (),
           attributes: Optional[dict[str, dict]] = None) -> Decision:
    """What to ask RF for this contact (or why not): the mapping, then the required fields — email, first name
    and those the campaign requires (`required`: required_fields()); a blank value is a missing one. `attributes`:
    the workspace's (their types: a date is sent in one form, for_rf)."""
    body: dict[str, Any] = {"campaign_id": int(campaign_id) if campaign_id.isdigit() else campaign_id}
    meta = []
    for row in sync.fields:
        value = row.value if row.from_ is None else \
            for_rf(_read(contact, row.from_), attribute_type(row.from_, attributes or {}))
        if isinstance(value, str):
            value = value.strip()
        if value in (None, ""):
            continue
        if row.to.startswith("meta."):
            meta.append({"field": row.to[5:], "value": value})
        else:
            body[row.to] = value if isinstance(value, str) else str(value)
    if meta:
        body["meta"] = meta
    given = set(body) | {f"meta.{m['field']}" for m in meta}
    needed = dict.fromkeys((*STANDARD, *required))
    missing = [f"{r.to} (from {r.from_ or 'a fixed value'}{'' if r.to in STANDARD else '; ' + BY_RF})"
               for r in sync.fields if r.to in needed and r.to not in given]
    missing += [name for name in needed if not any(r.to == name for r in sync.fields)]
    if missing:
        return Skip("missing_field", "missing required field: " + ", ".join(missing))
    email = body["email"]
    if not _EMAIL.match(email):
        return Skip("invalid_email", f"invalid email: {email!r} is not an email address")
    return Create(email.lower(), body)


def written(previous: str, fresh: bool, ours: bool, adopted: bool = False, again: bool = False) -> tuple[str, str]:
    """A referrer whose link is now written (or who needs none): (the ledger's outcome, what the run counts).
    `previous`: the ledger's outcome before; `fresh`: enrolled just now; `ours`: the ledger's entry is this very
    run's (a try of its page before enrolled them, or `adopted` them: their own join enrolled them); `again`: their
    link was written before, but not where `referral_link_attribute` names now. Someone enrolled earlier is counted
    once as enrolled: the run that writes their late link (or writes it again) counts it as LINKED, and a run
    finding them done (or adopting them) as ALREADY."""
    if fresh or ours and previous in UNWRITTEN and not adopted:
        return ENROLLED, ENROLLED
    if ours and previous in UNWRITTEN:               # adopted by a try of this page before: already, as it was
        return ALREADY, ALREADY
    if previous in UNWRITTEN:
        return LINKED, LINKED
    # (written again: the ledger keeps who enrolled them, their own join included)
    return (previous if previous in (ALREADY, LINKED) else ENROLLED), LINKED if again else ALREADY


def restored(joined_at: Optional[str], skipped_at: Optional[str]) -> bool:
    """A referrer skipped as deleted in RF (`skipped_at`) whose own join, naming the same RF id, the bridge
    received after (`joined_at`): RF knows them again (restored), so the skip no longer stands. ISO times."""
    try:
        return bool(joined_at and skipped_at) and to_unix(joined_at) > to_unix(skipped_at)
    except ConversionError:
        return False


def writeback_body(sync: Sync, url: str) -> dict:
    """Intercom's `PUT /contacts/{id}` body that writes the referral link back."""
    return ContactPayload({sync.referral_link_attribute or "": url}).body()


COUNTS_ONLY = ("sync: this block only keeps referral counts (it has no fields and no referral_link_attribute) — "
               "to run a sync, add fields (at least {from: email, to: email} and {from: name, to: first_name}) "
               "and referral_link_attribute, then apply the settings")


def preflight(settings: CampaignSettings, attributes: dict[str, dict], segments: Optional[list[dict]],
              campaign: Optional[dict]) -> list[str]:
    """Why a run must not start, each naming the fix (empty: go). `segments`: every segment of the
    workspace (None when the source is not a segment); `campaign`: RF's campaign (None: not found)."""
    if settings.sync is None:
        return ["sync: the settings have no sync block — add one (docs/examples/campaign.yaml) and apply them"]
    if settings.sync.counts_only:
        return [COUNTS_ONLY]
    problems = check_sync(settings, attributes, segments)
    mapped = {r.to for r in settings.sync.fields}
    problems += [f"sync.fields: {name} is required by campaign {settings.campaign_id} in Referral Factory (its field "
                 f"{label}) but not mapped — add {{from: <an Intercom attribute>, to: {name}}}, or make the field "
                 "optional in Referral Factory" for name, label in _required(campaign)
                 if name not in STANDARD and name not in mapped]
    if campaign is None:
        # (RF answers 404 to a token of another account too: doctor's [rf.campaign] names both)
        problems.append(f"campaign {settings.campaign_id} does not exist in Referral Factory, or the RF token is "
                        f"another account's (RF answered 404) — fix campaign_id, or give the token of the account that "
                        f"owns campaign {settings.campaign_id} (`bridge rf connect`)")
    elif str(campaign.get("status", "launched")) != "launched":
        problems.append(f"campaign {settings.campaign_id} is not live in Referral Factory (status "
                        f"{campaign.get('status')}) — launch it first: people cannot join a "
                        f"{campaign.get('status')} campaign")
    return problems


def check_sync(settings: CampaignSettings, attributes: dict[str, dict], segments: Optional[list[dict]]) -> list[str]:
    """The sync block against the workspace: the segment exists, the referral link goes to a writable
    text attribute, every `from` attribute exists. What `sync start` (and its dry run) checks first,
    and what `settings apply` and `doctor` check (domain/workspace_check.check_against_workspace)."""
    sync = settings.sync
    if sync is None:
        return []
    if sync.counts_only:               # no sync runs from it: only the count's attribute matters
        return _count_attribute(settings, attributes)
    problems = []
    if sync.source == "segment" and segments is not None and \
            not any(str(s.get("id")) == str(sync.segment_id) for s in segments):
        names = ", ".join(f"{s.get('name')} ({s.get('id')})" for s in segments[:5])
        problems.append(
            f"sync.segment_id: segment {sync.segment_id} does not exist in workspace {settings.workspace} "
            f"({len(segments)} segments listed{': ' + names + (', ...' if len(segments) > 5 else '') if names else ''})"
            " — set segment_id to one of them (`GET /segments`), or use source: all, leads or users")
    attribute = sync.referral_link_attribute
    if not attribute:
        problems.append("sync.referral_link_attribute: not set — name a text attribute to write each "
                        "referrer's referral link to, e.g. custom_attributes.referral_link")
    else:
        problems += _writable("sync.referral_link_attribute", attribute, attributes, settings.workspace, "string",
                              ("Text", "Text", "a text attribute"),
                              f"a referral link is text (up to {MAX_STRING} characters): create a Text attribute")
    problems += _count_attribute(settings, attributes)
    for required in ("email", "first_name"):
        if not any(r.to == required for r in sync.fields):
            source = "email" if required == "email" else "name"
            problems.append(f"sync.fields: {required} is not mapped — add {{from: {source}, to: {required}}} "
                            "(Referral Factory requires it)")
    for row in sync.fields:
        if row.from_ and row.from_ not in attributes and row.from_ not in ("id", "role"):
            problems.append(f"sync.fields: {row.from_} (mapped to {row.to}) does not exist in workspace "
                            f"{settings.workspace} — {attribute_meant(row.from_, attributes)}map an existing attribute")
    return problems


def _count_attribute(settings: CampaignSettings, attributes: dict[str, dict]) -> list[str]:
    """The referral count goes to a writable integer attribute (when the sync block names one)."""
    attribute = count_attribute(settings)
    if not attribute:
        return []
    return _writable("sync.referral_count_attribute", attribute, attributes, settings.workspace, "integer",
                     ("Number (integer)", "integer", "an integer attribute"),
                     "a referral count is a whole number: create a Number (integer) attribute")


def _writable(setting: str, attribute: str, attributes: dict[str, dict], workspace: str, data_type: str,
              names: tuple[str, str, str], fix: str) -> list[str]:
    """The attribute a setting names exists in the workspace, is of `data_type` (not a list), and is
    writable: the problems, each with its fix (none: fine). `names`: the type as Intercom's settings
    name it, as a writable one is called, and what the attribute is not when it is of another type."""
    type_name, writable, is_not = names
    attr = attributes.get(attribute)
    if attr is None:
        return [f"{setting}: {attribute} does not exist in workspace {workspace} — {attribute_meant(attribute, attributes)}"
                f"create it as a {type_name} attribute in Intercom (Settings > Data > People) or fix the name"]
    if attr.get("data_type", "string") != data_type or attr.get("options"):
        kind = "a list" if attr.get("options") else f"of type {attr.get('data_type', 'string')}"
        return [f"{setting}: {attribute} is {kind}, not {is_not} — {fix} and name it here"]
    if attr.get("archived") or attr.get("api_writable") is False:
        return [f"{setting}: {attribute} is archived or read-only in Intercom — unarchive it or name a writable "
                f"{writable} attribute"]
    return []


@dataclass
class Tally:
    """Counts by outcome."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + n


def count_attribute(settings: CampaignSettings) -> Optional[str]:
    """Where each referrer's referral count goes (None: the campaign keeps no count)."""
    return settings.sync.referral_count_attribute if settings.sync is not None else None


def counted_referrer(settings: CampaignSettings, person: dict) -> Optional[str]:
    """The referrer (RF id) a lead's join counts for: a lead with a referrer, in a campaign that keeps
    referral counts. None for a referrer, a lead without one, or a campaign without the setting."""
    referrer = person.get("referrer_id")
    if not count_attribute(settings) or person.get("type") != "lead" or referrer in (None, ""):
        return None
    return str(referrer)
