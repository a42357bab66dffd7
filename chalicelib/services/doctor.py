"""`bridge doctor CAMPAIGN`: checks a campaign against the live workspace, Referral Factory and the
bridge's own records. Each finding says what is wrong, why it matters and the fix; `ok` says
whether anything is wrong (the CLI's exit status).

Reads only: GET /me, the data attributes, one contact search per pending lead (at most
DUPLICATE_CHECKS), the campaign in RF; the store (no scan; the links of refused people sampled, and
of a campaign once applied naming another workspace, see _left_behind); the dead-letter queue (listed and
released). Every call to Intercom and RF goes through the shared rate limiter."""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import cache
from typing import Any, Callable, Optional, Protocol, Sequence

from ..domain import apps
from ..domain.advice import (BACKFILL, DUPLICATE, RF_GONE, how_many, never_succeeds, not_written, person_data,
                             reconnect, refused_join)
from ..domain.history import epoch, iso
from ..domain.judge import DEAD_LETTER_DAYS, elsewhere, letter_gone
from ..domain.link import Link, PersonRef
from ..domain.mapping import attribute_type
from ..domain.outage import hours, outage_of
from ..domain import people as people_
from ..domain.people import OTHER_CAMPAIGN
from ..domain.settings import (EMAIL_TOPICS, LINKS, TOPICS, CampaignSettings, SettingsError, needed_topics,
                               own_attributes, parse_settings, shared_attributes, unworkable)
from ..domain.sync import (FAILED, FIX_RESUME, RETRYING, WAITING, describe_counts, describe_page_error,
                           describe_writes, page_fix, run_counts)
from ..domain.workspace_check import boolean_text_warnings, check_against_workspace, option_warnings
from ..config import Config
from ..errors import (BUDGET_SETTINGS, PLAN_FIX, REFUSED_TOKEN, RF_REFUSED_TOKEN, BudgetSpent, Throttled, TokenRefused,
                      WorkError, answer_refused_fix, beside_fix, limiting, plan_restricted, replay_parked, rf_blocked,
                      refused_token_of, rf_answered, rf_campaign_fix, token_wait_fix, replay_answered)
from ..observability import mask_email, mask_emails
from ..ports import Connection, DeadLetterQueue, Store
from ..ports.secrets import read_by_every_worker
from ..ports.store import SCAN_LIMIT, RFConnection
from ..ports.apis import CampaignPeople, IntercomAccount
from ..ports.edge import HEARD_EVERY_SECONDS, UNKNOWN, Refusals, RefusalSample, campaign_scope, fields_scope, workspace_scope
from ..webhooks import CONTACT_TOPICS
from . import dead_letters, rf_people
from .backfill import unknown_baselines
from .moved import applied_elsewhere, valid_campaigns
from .sync import never_begun, shown_error

# The topics to subscribe, and those a campaign's settings need besides: domain/settings.py (needed_topics).
assert set(TOPICS + EMAIL_TOPICS) <= set(CONTACT_TOPICS)
QUIET_HOURS = 24               # no join heard for this long, with people joining in RF: a finding
NOTIFICATION_QUIET_HOURS = 24  # no Intercom notification heard for this long, with leads pending: a finding
DUPLICATE_CHECKS = 50          # pending leads whose email is searched for duplicates
PENDING_SCAN = 5000            # pending links read to find the campaign's (the index is shared)
LATE_RUNS = 4                 # reconciliation is late after 4 of its scheduled runs (an hour at the default 15 min)
LATE_MINUTES = 5               # a join not in the bridge this long after joining in RF is missing
# Doctor answers the operator now: its calls wait no longer than this (a backoff, a Retry-After, a slot of the
# limiter), so a call is retried at once, once at most (the next backoff is longer), and a vendor's outage is said
# in seconds, not waited out with the worker's retries; each call times out after CHECK_TIMEOUT at most.
CHECK_WAIT = 0.5
CHECK_TIMEOUT = 5.0


class Examined(Protocol):
    """What the doctor is given (the composition root's Runtime)."""

    config: Config

    @property
    def store(self) -> Store: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def queue(self) -> DeadLetterQueue: ...
    def intercom(self, workspace: str) -> Any: ...          # an IntercomAccount
    def rf(self) -> Any: ...                                  # CampaignPeople


def quick(config: Config) -> Config:
    """The configuration doctor's HTTP clients are made with (CHECK_WAIT, CHECK_TIMEOUT); explain's too (its
    question to Intercom about a contact id no link names)."""
    return replace(config, max_retry_wait=CHECK_WAIT, http_timeout=min(config.http_timeout, CHECK_TIMEOUT))


@dataclass(frozen=True)
class Finding:
    check: str              # the area checked: several findings may share it
    ok: bool
    what: str
    why: str = ""
    fix: str = ""
    warn: bool = False      # ok, but worth a look: said with its why and fix; the exit status stays 0
    id: str = ""            # the finding's own, stable from run to run: `check`, or `check:discriminator`


def tag(text: str) -> str:
    """A short stable discriminator of a finding about a free text (a dead letter's reason, a problem)."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass
class Report:
    campaign_id: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def add(self, check: str, ok: bool, what: str, why: str = "", fix: str = "", warn: bool = False,
            key: str = "") -> None:
        """`key`: what tells this finding from the others of its check (each check that can say several). Emails
        in the texts (a vendor's error quoted, a dead letter's reason) are masked."""
        what, why, fix = mask_emails((what, why, fix))
        self.findings.append(Finding(check, ok, what, why, fix, warn and ok, f"{check}:{key}" if key else check))

    def view(self) -> dict:
        return {"campaign_id": self.campaign_id, "ok": self.ok,
                "problems": sum(not f.ok for f in self.findings),
                "warning_count": sum(f.warn for f in self.findings),
                "findings": [asdict(f) for f in self.findings]}


def examine(rt: Examined, campaign_id: str, dlq: bool = True) -> Report:
    report = Report(str(campaign_id))
    store = rt.store
    stored = store.settings.get(report.campaign_id)
    unknown = store.edge.refusals(UNKNOWN)
    refused_unknown = len(_refused_before_settings(unknown, report.campaign_id))
    if stored is None:
        joins, unknown_to_it = _joins_refused(unknown, report.campaign_id)
        report.add("settings", False, f"campaign {campaign_id} has no settings here"
                   + (f"; {joins} for it were refused as unknown_campaign" + (f" ({unknown_to_it})" if unknown_to_it
                                                                              else "") if refused_unknown else ""),
                   "every join for it is refused (404 unknown_campaign): nobody is sent to Intercom",
                   "apply its settings: `bridge settings apply <file>`, then " + BACKFILL.format(campaign=campaign_id))
        return report
    try:
        settings = parse_settings(stored.document)
    except SettingsError as exc:
        report.add("settings", False, "the stored settings are invalid: " + "; ".join(exc.problems),
                   "every join and qualification of this campaign fails", "apply corrected settings")
        return report
    report.add("settings", True, f"settings version {stored.version} (applied {stored.updated_at})")
    _problems(report, "settings", unworkable(settings))       # (stored before `settings apply` refused them)
    owed = stored.count_backfill
    if owed is not None:
        report.add("referral_count.backfill", False,
                   f"Intercom's referral counts in {owed.attribute} may be stale since {owed.since}: "
                   "`bridge settings apply` turned the counts on or moved them there then, and no "
                   f"`bridge backfill {campaign_id} --apply` has completed since",
                   "each referrer's contact shows the count last written there (or none), without the leads "
                   "applied while counts were off, until their next lead",
                   f"`bridge backfill {campaign_id} --apply`")
    if refused_unknown:
        _before_settings(store, report, unknown)
    _shared_attributes(store, report, settings)
    conn = store.connections.workspace(settings.workspace)
    attributes = _intercom(rt, report, settings, conn)
    if attributes is not None:
        _settings_against_workspace(rt, report, settings, attributes)
    else:                      # each way _intercom reads no attributes ends with its finding saying why
        _unchecked(report, "settings.workspace", f"the settings against workspace {settings.workspace}'s data "
                   "attributes (they could not be read)", report.findings[-1].check, settings.campaign_id)
    rf_conn = store.connections.rf()           # read once: the RF checks and the dead letters' advice
    rf_reached = _rf(rt, report, settings, rf_conn)
    # Pending leads linked in another workspace (left there by a move) can no longer qualify, nor (but restored)
    # those whose contact was deleted or archived in Intercom, which reconciliation's sweep skips: each is its own
    # finding, not counted by the checks of this workspace's notifications and pending leads.
    everyone, read_all = _pending(store, report.campaign_id)
    pending: list[Link] = []
    gone: list[Link] = []
    left: list[Link] = []
    for link in everyone:
        (left if elsewhere(link, settings) is not None else gone if link.contact_state else pending).append(link)
    _left_behind(store, report, settings, left)
    _baselines(store, report, settings)
    _letters_gone(store, report, settings, rt.clock())
    _liveness(rt, report, settings, pending, conn, unknown)
    _not_written(store, report, settings)
    _in_flight(rt, report, settings, pending, attributes, dlq, stored.updated_at, conn, rf_reached, read_all, rf_conn,
               gone)
    _sync(rt, report, settings)
    return report


# --- a workspace move ------------------------------------------------------------------------------
LEFT_COUNTED = 100      # people linked in other workspaces counted ("100 or more")


def _left_behind(store: Store, report: Report, settings: CampaignSettings, pending: list[Link]) -> None:
    """The people a workspace move left in the old workspace (linked there: their contacts' changes no
    longer count, domain/judge.elsewhere). Asked only of a campaign once applied naming another workspace
    (the list of workspaces and each one's campaign list: one read each), or with pending leads linked
    elsewhere; then one query of the campaign's links, stopping once LEFT_COUNTED are found elsewhere or
    SCAN_LIMIT links were read (a campaign with none left, e.g. moved back, reads up to SCAN_LIMIT: said
    when it stopped there).
    `pending`: its pending leads linked elsewhere, as read for the report."""
    c, ws = settings.campaign_id, settings.workspace
    if not pending and not applied_elsewhere(store, c, ws):
        return
    linked, complete = store.links.linked_elsewhere(c, ws, LEFT_COUNTED)
    if not complete:
        report.add("workspace.left_behind", True,
                   f"people linked in other workspaces than {ws} were not checked past the first {SCAN_LIMIT:,} "
                   f"joins of campaign {c}",
                   "the campaign was applied naming another workspace before: people linked there no longer "
                   "qualify", "`bridge explain <email>` says where one person is linked", warn=True, key="not_read")
    for other, n in sorted(linked.items()):
        waiting = sum(link.workspace == other for link in pending)
        n = max(n, waiting)
        people = how_many(n, sum(linked.values()) >= LEFT_COUNTED, f"linked person of campaign {c} stays",
                          f"linked people of campaign {c} stay")
        report.add("workspace.left_behind", True,
                   f"{people} in workspace {other}"
                   + (f" (of them {waiting} pending lead(s))" if waiting else "")
                   + f": the campaign names workspace {ws} now, so they no longer qualify",
                   f"their contacts stay in {other}, whose changes no longer count for campaign {c}"
                   + (": its pending leads there never qualify" if waiting else ""),
                   f"to make them count, apply campaign {c} back to workspace {other} (`workspace: {other}`, "
                   "`bridge settings apply`); nothing to do if the move is intended", warn=True, key=other)


def _baselines(store: Store, report: Report, settings: CampaignSettings) -> None:
    """Leads linked before the campaign's qualification rule (under none, or one on another attribute), or moved
    since to an older contact: never qualified automatically until a backfill takes their baselines. One query of the campaign's links, stopping
    once LEFT_COUNTED are found or SCAN_LIMIT links were read."""
    unknown = unknown_baselines(store, settings, LEFT_COUNTED)
    if unknown is None:
        return
    if unknown.n:
        report.add("qualification.baselines", False, unknown.what,
                   "a lead's value when they joined is what tells a change to the target from a value they had "
                   "all along", unknown.fix)
    if not unknown.complete:
        report.add("qualification.baselines", True, f"leads linked before the qualification rule were not checked "
                   f"past the first {SCAN_LIMIT:,} joins of campaign {settings.campaign_id}", "",
                   f"`bridge backfill {settings.campaign_id}` (a dry run) lists every one", warn=True, key="not_read")


def _letters_gone(store: Store, report: Report, settings: CampaignSettings, now: float) -> None:
    """Leads whose qualification RF refused longer ago than SQS keeps a dead letter (letter_gone): no replay reaches
    them, nor does `[dead_letters]` see them; `bridge backfill --apply` checks each again (not one whose letter the
    operator discarded). One query of the campaign's links (SCAN_LIMIT at most). A warning. One whose lead was deleted
    in RF is found by that backfill (not listed, 404) and marked so (Link.rf_deleted_at): nothing is left to check, and
    it is no longer counted here (letter_gone)."""
    found, complete = store.links.refused_in(settings.campaign_id)
    gone = sorted((link.rf_user_id for link in found if letter_gone(link, now)), key=lambda r: (len(r), r))
    c = settings.campaign_id
    if gone:
        report.add("qualification.refused", True, (
            f"{how_many(len(gone), not complete, 'lead', 'leads')} whose qualification Referral Factory refused over "
            f"{DEAD_LETTER_DAYS} days ago (RF user(s) {', '.join(gone[:5])}{', …' if len(gone) > 5 else ''}): their "
            f"dead letters are gone (SQS keeps one {DEAD_LETTER_DAYS} days), so no `bridge dlq replay` reaches them"),
            "the rule was met, and the referral stays unqualified until it is checked again",
            f"fix the cause at Referral Factory (`bridge explain <RF user id>` shows RF's answer), then `bridge "
            f"backfill {c}` (a dry run) lists them, and `bridge backfill {c} --apply` checks each again (Referral "
            "Factory asked first), or, one deleted in Referral Factory, marks it so: no longer counted here", warn=True)


# --- contact sync --------------------------------------------------------------------------------
SYNC_STALL_MINUTES = 30


def _sync(rt: Examined, report: Report, settings: CampaignSettings) -> None:
    """Contact sync's state: never started, stopped (its reason names the fix), stalled, or done."""
    sync, c = settings.sync, settings.campaign_id
    if sync is None:
        return
    if sync.counts_only:
        report.add("sync", True, f"no contact sync: the sync block only {describe_writes(sync)}")
        return
    run = rt.store.sync.run(c)
    if run is None:
        report.add("sync", sync.mode == "once", f"contact sync ({sync.mode}) is configured but was never started",
                   "nobody is enrolled" + (", and new contacts are not enrolled either: ongoing mode begins with the "
                                           "first run" if sync.mode == "ongoing" else ""),
                   f"`bridge sync start {c} --dry-run`, then `bridge sync start {c}`")
        return
    shown = run_counts(run.counts)
    counts = describe_counts(shown) if run.counts else "nothing yet"
    where = f"sync run {run.number} ({run.kind}, {run.source})"
    error = shown_error(run, rt.clock())   # the failure of the page the run is at (as `sync status` says it)
    vendor = error.get("outage") if error is not None else None   # the page waits out a vendor's outage, or did
    if run.status == "stopped":
        report.add("sync", False, f"{where} stopped: {run.message}",
                   "the contacts after the stop were not enrolled", f"fix what it names, then `bridge sync start {c}`")
    elif error is not None and error["state"] == FAILED:
        # (a refused token's page: the reconnect, then the replay by the letters' reason, as `sync status` says it)
        report.add("sync", False, f"{where} stalled: {describe_page_error(error, c, advice=False)}; {counts} so far",
                   "the page waits in the dead-letter queue: the run does not go on by itself",
                   page_fix(error, c))           # (as `sync status` says it)
    elif error is not None and error["state"] == WAITING and (waited_for := refused_token_of(error["reason"])):
        # (a wait for the operator: the reconnect of the workspace whose token Intercom refuses, said at each wait)
        report.add("sync", True, f"{where} running: {counts}; {describe_page_error(error, c, advice=False)}",
                   f"the page waits for workspace {waited_for}'s token to be replaced, without using up a try, and "
                   "goes on by itself once it is; past BRIDGE_OUTAGE_HOURS it waits in the dead-letter queue and the "
                   "run stops there", token_wait_fix(waited_for), warn=True)
    elif error is not None and error["state"] == WAITING and (
            vendor or rt.clock() - epoch(error["at"]) <= SYNC_STALL_MINUTES * 60):
        # (an outage's wait is no stall, however long; another wait, a rate limit's or RF's block of the bridge's IP,
        # is said again at each of its tries, every 15 minutes at most: one not said for longer is a stall)
        report.add("sync", True, f"{where} running: {counts}; {describe_page_error(error, c)}",
                   f"the page waits for {vendor} without using up a try, and goes on by itself once {vendor} answers; "
                   "past BRIDGE_OUTAGE_HOURS it waits in the dead-letter queue and the run stops there" if vendor else
                   "the page waits in the work queue without using up a try (a rate limit, or Referral Factory's block "
                   "of the bridge's IP: [rf.campaign] says so), and goes on by itself when the wait ends",
                   f"nothing to do; `bridge sync status {c} --watch` follows it", warn=True)
    elif never_begun(run, rt.clock()) and rt.clock() - run.started_at > SYNC_STALL_MINUTES * 60:
        report.add("sync", False, f"{where} has not begun in {(rt.clock() - run.started_at) / 60:.0f} min: no worker "
                   "took its first page", "its first page's message was never sent (the command that started the run "
                   "was interrupted, or the queue refused it): the run does not go on by itself",
                   f"`bridge sync start {c}` sends it again")
    elif run.status == "running" and rt.clock() - run.updated_at > SYNC_STALL_MINUTES * 60 and \
            (run.lease_until or 0) < rt.clock():
        report.add("sync", False, f"{where} has not moved for {(rt.clock() - run.updated_at) / 60:.0f} min "
                   f"(page {run.page + 1}; {counts})"
                   + (f"; last: {describe_page_error(error, c)}" if error is not None else ""),
                   "its page failed and waits in the dead-letter queue: the run does not go on by itself",
                   f"`bridge dlq list`, {page_fix(error, c) if error is not None else FIX_RESUME.format(campaign=c)}")
    elif error is not None and error["state"] == RETRYING:
        report.add("sync", True, f"{where} running: {counts}; {describe_page_error(error, c)}",
                   "the queue retries the page by itself; after its last try it waits in the dead-letter queue and "
                   "the run stops there", f"if it keeps failing, fix the cause; `bridge sync status {c} --watch` "
                   "follows it", warn=True)
    else:
        skipped = shown["skipped"]
        refused = shown["enrolled_link_not_written"] + shown["still_link_not_written"]
        # Enrolled, yet Intercom refused their link: not a skip, but it repeats each run until the operator fixes it.
        # (What the settings write now: the run keeps no settings, and settings applied since may name others.)
        report.add("sync", not refused, f"{where} {run.status}: {counts}; the sync block now {describe_writes(sync)}"
                   + (f" — see `bridge sync report {c}` for the {skipped} skipped, with their reasons" if skipped else ""),
                   *((f"Intercom refused to write the referral link of {refused:,} enrolled referrer(s) to "
                      f"{sync.referral_link_attribute}: their contacts do not show it, and each run tries again",
                      f"see `bridge sync report {c}` for Intercom's reason (e.g. a read-only or wrong-type attribute), "
                      "fix it, and the next run writes the link") if refused else ()))


# --- Intercom ------------------------------------------------------------------------------------
def _intercom(rt: Examined, report: Report, settings: CampaignSettings,
              conn: Optional[Connection]) -> Optional[dict]:
    ws = settings.workspace
    if conn is not None and conn.status != "active":     # a disconnect also deletes the token: say which
        report.add("intercom.connection", False, f"workspace {ws} is {conn.status}",
                   "its work waits in the dead-letter queue (reason: workspace disconnected)",
                   f"reconnect it: `bridge workspace connect {ws}` (it asks for the token) or by OAuth, "
                   f"then `{replay_parked(ws)}`")
        return None
    if conn is None or "token" not in conn.secrets:
        report.add("intercom.connection", False, f"workspace {ws} is not connected",
                   "nothing can be sent to Intercom and nothing qualifies: every join ends in the dead-letter queue",
                   f"`bridge workspace connect {ws}` (it asks for the token and the client secret), then "
                   "`bridge dlq replay`")
        return None
    if not apps.apps(conn.secrets):
        report.add("intercom.client_secret", False, f"workspace {ws} has no app's client secret",
                   "every Intercom webhook is refused (401), so qualification waits for reconciliation",
                   f"`bridge workspace connect {ws}` (Enter keeps the token; then it asks for the app's client "
                   "secret)")
    client: IntercomAccount = rt.intercom(ws)
    try:
        me = client.me()
    except WorkError as exc:
        if plan_restricted(exc.reason, exc.status):
            report.add("intercom.token", False, f"Intercom refused the API to workspace {ws}: its plan does not "
                       f"include it ({exc.reason})", "joins and qualification checks fail until the plan allows it",
                       PLAN_FIX.format(workspace=f"workspace {ws}", replay=replay_answered(ws, 403)))
        elif exc.status == 401:     # (errors.TokenRefused: its work waits for a reconnect; Intercom's answer, not
            said = exc.answer if isinstance(exc, TokenRefused) else exc.reason     # the dead letters' replay)
            report.add("intercom.token", False, f"Intercom refused the token of workspace {ws}: {said}",
                       "joins, notifications and qualification checks wait in the queue, without using up a try, "
                       "for its token to be replaced; a refusal longer than "
                       f"{hours(rt.config.outage_hours * 3600)} (BRIDGE_OUTAGE_HOURS) leaves them in the dead-letter "
                       "queue", token_wait_fix(ws, conn.token_app))
        elif exc.status in REFUSED_TOKEN:
            report.add("intercom.token", False, f"Intercom refused the token of workspace {ws}: {exc.reason}",
                       "joins and qualification checks fail until it is replaced",
                       answer_refused_fix(ws, exc.status, conn.token_app))
        elif exc.retryable:
            report.add("intercom.token", False, *_waits(rt, settings, exc, "Intercom", f"the token of workspace {ws} "
                                                        "could not be checked", "joins and qualification checks"))
        else:
            report.add("intercom.token", False, f"Intercom could not check the token of workspace {ws}: {exc.reason}",
                       "the workspace and the settings cannot be checked against it",
                       f"see the reason, then run `bridge doctor {settings.campaign_id}` again")
        return None
    app = (me.get("app") or {}).get("id_code") if isinstance(me.get("app"), dict) else None
    if app and app != ws:
        report.add("intercom.workspace", False, f"the token stored for {ws} belongs to workspace {app}",
                   "contacts would be created in the wrong workspace",
                   f"connect {ws} with its own token, or set `workspace: {app}` in the settings")
        return None
    report.add("intercom.token", True, f"the token is valid for workspace {ws}")
    try:
        return client.data_attributes()
    except WorkError as exc:
        if exc.retryable:       # an outage or a limit now, as [intercom.token] says one: no scope to check
            report.add("intercom.attributes", False, *_waits(rt, settings, exc, "Intercom", "the data attributes "
                                                             "could not be read", "joins and qualification checks"))
        else:
            report.add("intercom.attributes", False, f"could not read the data attributes: {exc.reason}",
                       "the mapping cannot be checked", "check the token's scopes (read data attributes)")
        return None


_REFUSED = ("Intercom refuses it (400): each {who} whose join writes it is created or updated without it, said in "
            "its history (fields not written)")
_WHY = {"is blank, and Intercom refuses a tag": "each join that tags its contact fails: Intercom refuses the tag",
        "and a blank value is no value": "the rule compares text without the spaces around it: no lead qualifies",
        "takes no value (it meets whatever": "the rule ignores the value: a lead qualifies once their contact holds "
                                             "any value there, not only the one written",
        "the bridge's own marker": "the bridge sets it when it creates a contact, whatever the lead does: the rule "
                                   "qualifies leads as their contacts are created (without require_change), or never",
        "meets the rule itself": "every lead's contact is created meeting the rule: under require_change none "
                                 "qualifies until its value changes away and back; without it, each one is qualified "
                                 "(and rewarded) at the first notification about its new contact",
        "sync.": "contact sync cannot start (`bridge sync start` refuses) or cannot write the referral link or count",
        "cannot be written: Intercom's contact create": "Intercom keeps no value sent there: each join records the "
                                                        "field as not written (its history: fields not written)",
        "a rule compares a contact's value as it is": "no lead qualifies by the rule (or, with is_set, every lead "
                                                      "whose contact carries the object at all)",
        "is a boolean": "a text attribute never equals true or false: nothing qualifies (or the text 'true' is written)",
        "qualification.operator": "the rule never compares as meant: nothing qualifies",
        # (Checked in the simulator and Intercom's docs: a write naming an unknown attribute is a 400.)
        "qualification.attribute": "the rule reads an attribute no contact has: it compares an empty value, never "
                                   "the one meant",
        "does not exist": _REFUSED,
        "archived": _REFUSED,      # (the simulator refuses a write naming an archived attribute: 400)
        "read-only": _REFUSED,
        "is not supported": "the bridge cannot write this type: each {who}'s join is applied without the field, "
                            "said in its history",
        "is not a number": "the value cannot be written as the attribute's type",
        "a list in Intercom": "no {who}'s own value is one of the list's options, which Intercom may keep it to: each "
                              "join is then applied without the field, said in its history (fields not written)",
        " but ": "values of this field cannot be converted to the attribute's type: they are not written"}


def _settings_against_workspace(rt: Examined, report: Report, settings: CampaignSettings, attributes: dict) -> None:
    """The same check `bridge settings apply` refuses settings by (domain/workspace_check.check_against_workspace):
    settings applied before the workspace changed, or with --offline, show their problems here."""
    segments = None
    if settings.sync is not None and settings.sync.source == "segment":
        try:
            segments = rt.intercom(settings.workspace).segments()
        except WorkError as exc:
            report.add("settings.workspace", False, f"could not read the segments of {settings.workspace}: "
                       f"{exc.reason}", "the sync block's segment cannot be checked", "try again later", key="segments")
    problems = check_against_workspace(settings, attributes, segments)
    # (A referral link mapped to a non-text attribute is among them: `url is string but ... is integer`.)
    _problems(report, "settings.workspace", problems)
    if not problems:        # (as `settings apply` says them: once the values fit their attributes' types)
        for warning in option_warnings(settings, attributes):
            what, _, fix = warning.partition(" — ")
            why = _NO_OPTION_MEETS if what.startswith("qualification.value") else _NOT_AN_OPTION
            report.add("settings.workspace", True, what, why, fix, warn=True, key=tag(what))
        for warning in boolean_text_warnings(settings, attributes):
            what, _, fix = warning.partition(" — ")
            why = _READ_AS_BOOLEAN if what.startswith("qualification.") else _WRITTEN_AS_BOOLEAN
            report.add("settings.workspace", True, what, why, fix, warn=True, key=tag(what))
    q = settings.qualification
    if not problems:
        report.add("settings.workspace", True, f"every mapped attribute exists in {settings.workspace}, is writable "
                   "and fits its type" + (f"; the rule's attribute {q.attribute} is "
                                          f"{attribute_type(q.attribute, attributes)}" if q else "")
                   + ("; the sync block's attributes exist" if settings.sync else ""))


_READ_AS_BOOLEAN = ("a true/false attribute holds true or false, never text: the rule compares (and a new lead's "
                    "contact is written) with the boolean the text is read as — true: a ticked box")
_WRITTEN_AS_BOOLEAN = ("a true/false attribute holds true or false, never text: each join writes the boolean the text "
                       "is read as — true: a ticked box")
_NO_OPTION_MEETS = "Intercom's dropdown sets only the list's options: a lead whose value is set there never qualifies"
_NOT_AN_OPTION = ("Intercom may refuse a value that is not one of the list's options: each join is then applied without "
                  "the field, said in its history (fields not written)")


def _problems(report: Report, check: str, problems: list[str]) -> None:
    """Settings problems ("key: what — fix" lines, as `settings apply` refuses them), each a finding with its why."""
    for problem in problems:
        what, _, fix = problem.partition(" — ")
        why = next((w for key, w in _WHY.items() if key in what), "the mapping does not work as written").format(
            who="referrer" if what.startswith("referrers.") else "lead")
        report.add(check, False, what, why, fix, key=tag(what))


def _shared_attributes(store: Store, report: Report, settings: CampaignSettings) -> None:
    """Each campaign needs its own referral-link (and referral-count) attribute: two campaigns writing the
    same one overwrite each other's links on a person in both (domain/settings.shared_attributes)."""
    if not own_attributes(settings):
        return
    for shared in shared_attributes(settings, valid_campaigns(store.settings, settings.workspace)):
        report.add("settings.referral_link" if shared.what == LINKS else "settings.referral_count", False,
                   shared.said, shared.why, shared.fix, key=f"{shared.other}:{shared.attribute}")


# --- Referral Factory ------------------------------------------------------------------------------
def _rf(rt: Examined, report: Report, settings: CampaignSettings, conn: Optional[RFConnection]) -> Optional[bool]:
    """The RF checks; whether the RF token reaches the campaign: True, RF showed it; False, RF refused the token or
    did not know the campaign with it (a token of another account); None, not checked. `conn`: the RF connection."""
    secrets = conn.secrets if conn else frozenset()
    if "webhook-secret" not in secrets:
        report.add("rf.webhook_secret", False, "no RF webhook secret is set",
                   "every join is refused (503 not_configured)",
                   "`bridge rf connect` (it asks for the webhook secret)")
    if "token" not in secrets:
        report.add("rf.connection", False, "Referral Factory is not connected (no API token)",
                   "missing fields cannot be read and no referral can be qualified",
                   "`bridge rf connect` (it asks for the token)")
        _unchecked(report, "webhooks.rf_missing", _NEWEST, "rf.connection", settings.campaign_id)
        return None
    try:
        campaign = rt.rf().get_campaign(settings.campaign_id)
    except WorkError as exc:
        c = settings.campaign_id
        if rf_blocked(exc):
            report.add("rf.campaign", False, f"Referral Factory has blocked this IP: campaign {c} could not be checked "
                       f"({exc.reason})", "joins and qualifications wait in the queue (not dead-lettered) until RF "
                       "lifts the block, which lasts up to days", rf_campaign_fix(exc, c, f"`bridge doctor {c}`"))
        elif exc.retryable:
            report.add("rf.campaign", False, *_waits(rt, settings, exc, "Referral Factory", f"campaign {c} could not "
                                                     "be checked", "joins and qualifications"))
        else:
            report.add("rf.campaign", False, f"Referral Factory could not show campaign {c}: {rf_answered(exc)}",
                       "joins and qualifications for it cannot work", rf_campaign_fix(exc, c, f"`bridge doctor {c}`"))
        _unchecked(report, "webhooks.rf_missing", _NEWEST, "rf.campaign", c)
        return False if exc.status in (RF_REFUSED_TOKEN, 404) else None
    status = campaign.get("status")
    if status not in (None, "launched", "live", "active"):
        report.add("rf.campaign", False, f"campaign {settings.campaign_id} is {status} in Referral Factory",
                   "nobody joins a campaign that is not live, so nothing reaches Intercom",
                   "launch the campaign in Referral Factory")
    else:
        report.add("rf.campaign", True, f"campaign {settings.campaign_id} ({campaign.get('name')}) is live in RF")
    _newest_reached_us(rt, report, settings)
    return True


_NEWEST = "whether the newest person in RF's campaign reached the bridge"
NEWEST_PAGES = 20           # pages of RF's list of a campaign's people doctor reads at most (_newest_reached_us)


def _unchecked(report: Report, check: str, what: str, cause: str, c: str) -> None:
    """A check that could not run, said rather than left out: a warning (its cause is reported, with
    its fix, as the finding `cause` names, or here)."""
    report.add(check, True, f"not checked: {what}", "this report cannot say whether it is fine",
               (f"fix what [{cause}] says, then " if cause != check else "") + f"run `bridge doctor {c}` again",
               warn=True, key="not_checked")


def _waits(rt: Examined, settings: CampaignSettings, exc: WorkError, vendor: str, missed: str,
           work: str) -> tuple[str, str, str]:
    """The finding, why and fix of a vendor unavailable or limiting the bridge now (a 429, a 5xx, a timeout: `exc`),
    as doctor `missed` something: nothing to change, never a token to replace. A call the bridge's own budget held
    back, or AWS's throttling of the bridge's own calls (the vendor was not called), says so: the operator looks
    there, not at the vendor."""
    c, finding = settings.campaign_id, f"{limiting(exc, vendor)}: {missed} ({exc.reason})"
    if isinstance(exc, BudgetSpent):
        return (finding,
                f"{work} wait in the queue, without using up a try, and go on by themselves as the budget frees slots",
                f"nothing to change: run `bridge doctor {c}` again in a minute; if the budget stays spent, the work "
                f"needs more calls than {BUDGET_SETTINGS[vendor]} allows (raise it only as far as {vendor}'s own "
                "limit allows)")
    if isinstance(exc, Throttled):
        return (finding,
                f"{work} wait in the queue, without using up a try, and go on by themselves once {exc.outage} takes "
                f"the bridge's calls again; a throttling longer than {hours(rt.config.outage_hours * 3600)} "
                "(BRIDGE_OUTAGE_HOURS) leaves them in the dead-letter queue",
                f"nothing to change: the work waits; if it lasts, look at {exc.outage}'s throttled requests in "
                f"CloudWatch; run `bridge doctor {c}` again later")
    return (finding,
            f"{work} wait in the queue, without using up a try, and go on by themselves once {vendor} answers; "
            f"an outage (5xx, timeouts) longer than {hours(rt.config.outage_hours * 3600)} (BRIDGE_OUTAGE_HOURS) "
            "leaves them in the dead-letter queue",
            f"nothing to change: the work waits; run `bridge doctor {c}` again later")


def _newest_reached_us(rt: Examined, report: Report, settings: CampaignSettings) -> None:
    """The campaign's newest person in RF (who joined last, among RF's list of the campaign's people, read
    page by page to its end: at most NEWEST_PAGES calls) should have reached the bridge a few minutes after
    joining; if not, joins are not arriving (whatever the reason: no webhook, a filter in RF, refused at
    the edge)."""
    c = settings.campaign_id
    newest: Optional[dict] = None
    found = 0
    try:
        for number, page in enumerate(rf_people.pages(rt.rf(), c), 1):
            people = [p for p in page.people if isinstance(p.get("id"), (int, str))]
            found += len(people)
            newest = people_.newest([newest, *people] if newest else people)
            if number == NEWEST_PAGES and page.next:
                report.add("webhooks.rf_missing", True, f"not checked: {_NEWEST} (RF's list of people runs over "
                           f"{NEWEST_PAGES} pages of {rf_people.PER_PAGE}: doctor reads no more of RF's budget)",
                           "this report cannot say whether it is fine",
                           f"`bridge backfill {c}` (a dry run: it sends nothing) reads them all and names whom the "
                           "bridge has not applied", warn=True, key="not_checked")
                return
    except WorkError as exc:
        _unchecked(report, "webhooks.rf_missing", f"{_NEWEST} (Referral Factory could not list its people: "
                   f"{exc.reason})", "webhooks.rf_missing", c)
        return
    if newest is None or rt.store.links.get(PersonRef(c, str(newest["id"]))) is not None:
        return
    at = people_.signed_up(newest)         # (read as `newest` read it: whatever its form, never by this computer's zone)
    if at is not None and rt.clock() - at < LATE_MINUTES * 60:
        return                                          # may still be on its way
    joined = str(people_.normalise(newest).get("signed_up_at") or "")     # (as RF gave it)
    report.add("webhooks.rf_missing", False,
               f"the newest person in RF's campaign {c} (RF user {newest['id']}, joined {joined or 'at an unknown time'}) "
               f"never reached the bridge ({found} people in RF)",
               "joins are not arriving: RF's webhook is missing, filtered, or refused, and those people are not in "
               "Intercom",
               "check RF's webhook (docs/setup.md, Setting up Referral Factory's webhook), then "
               + BACKFILL.format(campaign=c))


# --- webhooks ---------------------------------------------------------------------------------------
# (and "unauthorized": what to do depends on the workspace's apps, domain/apps.unauthorized_fix)
_INTERCOM_FIX = {
    "invalid_notification": ("a notification of an unexpected shape", "see the message; report it if Intercom "
                             "changed its payload"),
    "no_contact": ("a contact notification without a contact id", "see the message"),
    "malformed_json": ("the body is not JSON", "check the webhook URL is the bridge's /webhooks/intercom"),
    "malformed_encoding": ("the body is not the gzip or deflate data its Content-Encoding says",
                           "check the webhook URL is the bridge's /webhooks/intercom"),
    "unsupported_media_type": ("the body's Content-Type is not JSON", "check the webhook URL"),
    "too_large": ("the body is too large", "see the message"),
}


# Refusals of how the sender is set up (its secret, header, format, payload, the campaign's settings here): one
# fix serves every later webhook, so webhooks accepted after the last one say it may be fixed. Any other reason
# is about one body's data, which other webhooks being accepted fix nothing of: a join's person's email
# (advice.person_data: every other join refusal is RF's setup), an Intercom notification of an unexpected shape.
_INTERCOM_SETUP = frozenset({"unauthorized", "malformed_json", "malformed_encoding", "unsupported_media_type",
                             "too_large"})


def _refusal_findings(report: Report, check: str, refusals: Refusals, c: str, who: str,
                      fixes: Optional[dict] = None, ws: str = "", heard: Optional[str] = None,
                      accepted: str = "", after_why: str = "", after_fix: str = "",
                      joined: Optional[Callable[[list[RefusalSample]], tuple[str, str]]] = None, *,
                      setup: Callable[[str, list[str]], bool]) -> int:
    """One finding per reason refused. A setup reason (`setup(reason, messages)`) whose last refusal is older
    than the last webhook the edge accepted (`heard`) is ok: the fix may have worked ("fixed?"); it stays BAD
    while refusals are the newest. A reason about a body's own data stays BAD with its fix. Either is resolved,
    ok without a fix, once `joined(samples)` says the refused people sampled were joined since (not a
    setup refusal that is still the newest: later webhooks are refused too), or says what it could not
    check. Returns how many are BAD."""
    by_reason: dict[str, list] = {}
    for count in refusals.counts:
        by_reason.setdefault(count.reason, []).append(count)
    bad = 0
    for reason, counts in sorted(by_reason.items()):
        total = sum(x.count for x in counts)
        last = max(x.last_at for x in counts)
        first = min(x.first_at for x in counts)
        samples = [s for s in refusals.samples if s.reason == reason]
        messages = [s.message for s in samples]
        sample = messages[0] if messages else ""
        unknown = "see the message in `bridge explain`"
        what, fix = fixes.get(reason, (reason, unknown)) if fixes else refused_join(reason, messages, unknown)
        refused = f"{total} {who} refused ({reason}: {what}) " + (f"at {last}" if first == last else  # (one: no span)
                                                                    f"between {first} and {last}")
        since = heard is not None and epoch(heard) > epoch(last)
        fixed_by_setup = setup(reason, messages)
        resolved, unchecked = (joined(samples) if joined is not None and (since or not fixed_by_setup)
                               else ("", ""))
        sampled = len({s.rf_user_id or s.rf_user_digest or s.email_digest for s in samples})
        if resolved and total <= sampled:          # every refused person is among those known joined
            report.add(check, True, f"{refused}; {resolved}: resolved since", key=reason)
            continue
        if resolved:                               # only a few of each reason are sampled: the rest may be missing
            report.add(check, True, f"{refused}; {resolved}, the other {total - sampled} are not sampled",
                       "the bridge keeps a few samples of each refusal: the people of the other refused joins may "
                       "still be missing from Intercom", f"`bridge backfill {c}` lists the rest (dry run), then "
                       "`--apply`", warn=True, key=reason)
            continue
        if unchecked:
            refused += f"; {unchecked}"
        if since and fixed_by_setup:
            report.add(check, True, f"{refused}; {accepted} accepted since (last at {heard}): fixed?",
                       after_why, after_fix.format(c=c, campaign=c, ws=ws), warn=True, key=reason)
            continue
        if since:
            refused += f"; {accepted} accepted since (last at {heard}) do not fix it (it is about those people's own data)"
        bad += 1
        report.add(check, False, refused + (f" — e.g. \"{sample}\"" if sample else ""),
                   "refused webhooks are not retried by the sender: those people or changes never reach the bridge",
                   fix.format(c=c, campaign=c, ws=ws), key=reason)
    return bad


def _joined_digests(store: Store, c: str) -> tuple[dict[str, str], bool]:
    """The campaign's joined people (its first SCAN_LIMIT links) by the digests of their RF id and email, as
    the edge keeps the person of a body that did not authenticate, and whether all its links were read."""
    known: dict[str, str] = {}
    people, complete = store.links.joined_people(c)
    for rf_user_id, email in people:
        known[store.edge.digest("rf_user", rf_user_id)] = rf_user_id
        if email:
            known[store.edge.digest("email", email)] = rf_user_id
    return known, complete


def _joined_since(store: Store, c: str, samples: list[RefusalSample],
                  digests: Callable[[], tuple[dict[str, str], bool]]) -> tuple[str, str]:
    """Whether the people of a reason's refusal samples (at most SAMPLES) were all joined since (`bridge
    backfill --apply`, or RF's webhook once accepted): (said, "") or ("", "") (a sample naming nobody, or a
    person not joined), or ("", what was not checked) when a person was not found among the campaign's
    first SCAN_LIMIT links. A sample with the RF id in clear: one batch read of their links; one that kept
    the person as digests (a body that did not authenticate): matched with `digests()` (_joined_digests,
    read once for all of the campaign's reasons)."""
    if not samples or any(not (s.rf_user_id or s.rf_user_digest or s.email_digest) for s in samples):
        return "", ""
    refs = {PersonRef(c, s.rf_user_id) for s in samples if s.rf_user_id}
    links = store.links.get_many(refs)
    if len(links) < len(refs) or any(not link.status.final for link in links.values()):
        return "", ""
    joined = {ref.rf_user_id for ref in refs}
    digested = [s for s in samples if not s.rf_user_id]
    if digested:
        known, complete = digests()
        found = [known.get(s.rf_user_digest or "") or known.get(s.email_digest or "") for s in digested]
        if not all(found):
            return "", "" if complete else (f"whether they were joined since was not checked past the first "
                                            f"{SCAN_LIMIT:,} joins of campaign {c}")
        joined.update(rf_user_id for rf_user_id in found if rf_user_id)
    return (f"the refused person (RF user {next(iter(joined))}) was joined since" if len(joined) == 1 else
            f"the {len(joined)} refused people sampled (RF users {', '.join(sorted(joined))}) were joined since"), ""


def _refused_before_settings(refusals: Refusals, campaign_id: str) -> list[RefusalSample]:
    """The samples of the campaign's joins the edge refused as unknown_campaign (its one bucket of campaigns without
    settings), newest first."""
    return [s for s in refusals.samples if s.reason == "unknown_campaign" and s.campaign_id == campaign_id]


def _joins_refused(refusals: Refusals, campaign_id: str) -> tuple[str, str]:
    """How many of the campaign's joins the edge refused as unknown_campaign, as far as it knows, and what it does not
    know ("" when nothing): its bucket counts every campaign without settings together, by reason and hour, and samples
    a few (SAMPLES a reason, the first of each hour), so the samples naming the campaign are all of its refusals only
    while the bucket sampled every refusal."""
    mine = len(_refused_before_settings(refusals, campaign_id))
    sampled = sum(1 for s in refusals.samples if s.reason == "unknown_campaign")
    total = sum(x.count for x in refusals.counts if x.reason == "unknown_campaign")
    if total <= sampled:
        return f"{mine} join(s)", ""
    return f"at least {mine} join(s)", (f"the edge sampled {sampled} of the {total} joins it refused for campaigns "
                                        "without settings, counted together: the others may be this campaign's too")


def _before_settings(store: Store, report: Report, refused: Refusals) -> None:
    """The campaign's joins refused as unknown_campaign (samples of the edge's one bucket of campaigns without
    settings): BAD with the backfill, resolved since (ok, no fix) once their people were joined, as `explain` says
    each refusal resolved; a warning when the bucket refused more than it sampled (another campaign's among them,
    maybe: it counts them together), whose people may still be missing."""
    c = report.campaign_id
    mine = _refused_before_settings(refused, c)
    joins, unknown_to_it = _joins_refused(refused, c)
    what = (f"{joins} for campaign {c} were refused as unknown_campaign (they came before its settings existed"
            + (f"; {unknown_to_it})" if unknown_to_it else ")"))
    resolved, _ = _joined_since(store, c, mine, cache(lambda: _joined_digests(store, c)))
    if resolved and not unknown_to_it:          # every refusal of the bucket is sampled: all of them joined
        report.add("webhooks.before_settings", True, f"{what}; {resolved}: resolved since")
    elif resolved:
        report.add("webhooks.before_settings", True, f"{what}; {resolved}, others may not be sampled",
                   "the bridge keeps a few samples of the joins refused for campaigns without settings: the people "
                   "of the others may still be missing from Intercom", BACKFILL.format(campaign=c), warn=True)
    else:
        report.add("webhooks.before_settings", False, what, "those people were never sent to Intercom: the bridge "
                   "does not apply settings retroactively by itself", BACKFILL.format(campaign=c))


def _liveness(rt: Examined, report: Report, settings: CampaignSettings, pending: list[Link],
              conn: Optional[Connection], unknown: Refusals) -> None:
    """When joins and notifications were last received, and those refused. `unknown`: the edge's bucket of campaigns
    without settings, whose samples of this campaign's joins refused before its settings show RF's webhook reaches
    the bridge though no join of it was ever accepted."""
    store, c = rt.store, settings.campaign_id
    last = store.edge.last_heard(campaign_scope(c), "join")
    digests = cache(lambda: _joined_digests(store, c))
    problems = _refusal_findings(report, "webhooks.rf_refused", store.edge.refusals(campaign_scope(c)), c, "join(s)",
                                 heard=last, accepted="joins",
                                 after_why="the people whose joins were refused are not in Intercom",
                                 after_fix=BACKFILL,
                                 joined=lambda samples: _joined_since(store, c, samples, digests),
                                 setup=lambda reason, messages: not person_data(reason, messages))
    before = _refused_before_settings(unknown, c)
    if last is None and before:      # RF's webhook is set up: its joins came (refused) before the settings existed
        refused_at = max(s.at for s in before)
        quiet = _age_hours(rt.clock(), refused_at) > QUIET_HOURS
        report.add("webhooks.rf", True, f"no join of campaign {c} was accepted yet, but RF's webhook reaches the "
                   f"bridge: its joins were refused before the campaign's settings existed (the last at {refused_at}"
                   + (f", over {QUIET_HOURS} h ago): if people joined since, check RF's webhook" if quiet else ")"))
    elif last is None:
        report.add("webhooks.rf", False, f"no join of campaign {c} was ever received",
                   "if people joined, RF's webhook is not set up or is refused: they are not sent to Intercom",
                   "set up the webhook in RF (docs/setup.md, Setting up Referral Factory's webhook: event User joins, "
                   "header X-Bridge-Secret), then " + BACKFILL.format(campaign=c))
    elif _age_hours(rt.clock(), last) > QUIET_HOURS:
        report.add("webhooks.rf", True, f"the last join of campaign {c} was received at {last} "
                   f"(over {QUIET_HOURS} h ago): if people joined since, check RF's webhook")
    elif not problems:
        report.add("webhooks.rf", True, f"joins arrive (last received at {last}{_KEPT})")
    ws = settings.workspace
    heard = store.edge.last_heard(workspace_scope(ws), "notification")
    fixes = {**_INTERCOM_FIX, "unauthorized": ("X-Hub-Signature verifies with the client secret of none of the "
                                               "workspace's apps", apps.unauthorized_fix(ws, conn.secrets if conn else ()))}
    _refusal_findings(report, "webhooks.intercom_refused", store.edge.refusals(workspace_scope(ws)), c,
                      f"Intercom notification(s) for workspace {ws}", fixes, ws, heard=heard,
                      accepted="notifications", setup=lambda reason, messages: reason in _INTERCOM_SETUP,
                      after_why="Intercom does not send a refused notification again: the contact changes it told of "
                                "were not applied when it came (leads it would have qualified waited)",
                      after_fix="nothing to do if notifications keep being accepted: the scheduled reconciliation "
                                "searches Intercom's changed contacts and catches those qualifications up (the "
                                "[reconciliation] check says when it last did)")
    if settings.qualification is None:
        return
    if heard is None and pending:
        report.add("webhooks.intercom", False,
                   f"no Intercom contact notification was ever received for workspace {ws} while "
                   f"{len(pending)} lead(s) are pending",
                   "the topics are probably not subscribed: qualification waits for the periodic reconciliation "
                   "instead of seconds",
                   _subscribe(settings))
    elif heard is not None and pending and _age_hours(rt.clock(), heard) > NOTIFICATION_QUIET_HOURS:
        # A warning: a workspace may change no contact for a day. With leads waiting, the subscription
        # may have stopped (a paused or edited webhook, another app's URL).
        report.add("webhooks.intercom", True,
                   f"the last Intercom notification for workspace {ws} was received at {heard} (over "
                   f"{NOTIFICATION_QUIET_HOURS} h ago) while {len(pending)} lead(s) are pending",
                   "if contacts changed since, the webhook subscription may have stopped: qualification waits for "
                   "the periodic reconciliation instead of seconds",
                   "check the subscription: " + _subscribe(settings), warn=True)
    elif heard is not None:
        report.add("webhooks.intercom", True, f"Intercom notifications arrive (last received at {heard}{_KEPT})")


# When a webhook was last received, as the edge notes it: once a minute at most (HEARD_EVERY_SECONDS), so later ones
# may not show (the next after a refusal is noted at once: "fixed?" compares them truly).
_KEPT = ", or within the minute after: the edge notes it at most once a minute"
assert HEARD_EVERY_SECONDS == 60, _KEPT
def _subscribe(settings: CampaignSettings) -> str:
    """The topics to subscribe: TOPICS, and those the campaign's settings need besides (docs/setup.md, Setting up
    Intercom)."""
    more = tuple(t for topics in needed_topics(settings).values() for t in topics)
    return ("in Intercom's Developer Hub > Webhooks, set the URL to <api>/webhooks/intercom and subscribe the topics "
            + ", ".join(TOPICS + tuple(t for t in dict.fromkeys(more) if t not in TOPICS)))


NOT_WRITTEN_EXAMPLES = 3


def _not_written(store: Store, report: Report, settings: CampaignSettings) -> None:
    """Mapped fields joins were applied without (a value that could not be converted, a text too long), per
    attribute and kind, from the counter the worker keeps (one query of the campaign's `fields:` partition
    of the edge's log, never anyone's history): a warning, since the contacts exist; each names a few
    people (masked) for `bridge explain`."""
    c = settings.campaign_id
    found = store.edge.refusals(fields_scope(c))
    by_key: dict[str, list] = {}
    for counted in found.counts:
        by_key.setdefault(counted.reason, []).append(counted)
    for key, counts in sorted(by_key.items(), key=lambda kv: (-sum(x.count for x in kv[1]), kv[0])):
        attribute, _, kind = key.rpartition(": ")
        samples = [s for s in found.samples if s.reason == key]
        source = samples[0].message if samples else ""
        shown = [f"{s.email_masked} (RF user {s.rf_user_id})" if s.email_masked else f"RF user {s.rf_user_id}"
                 for s in samples[:NOT_WRITTEN_EXAMPLES]]
        first, last = min(x.first_at for x in counts), max(x.last_at for x in counts)
        example = samples[0].rf_user_id if samples else "<RF id>"
        report.add("fields.not_written", True,
                   f"{sum(x.count for x in counts)} join(s) applied without {attribute} ({kind}"
                   + (f", {source}" if source else "") + (f") at {last}" if first == last else
                                                          f") between {first} and {last}")
                   + (f" — e.g. {', '.join(shown)}" if shown else ""),
                   "their contacts were created or updated without that value: Intercom shows it empty, or as it was",
                   f"{not_written(kind, source)}; `bridge explain {example}` lists each person's fields not written",
                   warn=True,
                   key=f"{attribute}:{tag(kind)}")


def _age_hours(now: float, iso_text: str) -> float:
    then = epoch(iso_text)
    return (now - then) / 3600 if then else 0.0


# --- work in flight ------------------------------------------------------------------------------------
def _pending(store: Store, campaign_id: str) -> tuple[list[Link], bool]:
    """The campaign's pending links among the first PENDING_SCAN of every campaign's (oldest first), and when those
    were not all, among its own first SCAN_LIMIT links: a year of another campaign's leads waiting may fill the
    first PENDING_SCAN. Whether that was all of the campaign's."""
    out: list[Link] = []
    position, read = None, 0
    while read < PENDING_SCAN:
        page = store.links.pending(position, min(500, PENDING_SCAN - read))
        read += len(page.links)
        out += [link for link in page.links if link.campaign_id == campaign_id]
        if not page.links or page.position is None:
            return out, True
        position = page.position
    own, complete = store.links.pending_in(campaign_id, SCAN_LIMIT)
    seen = {link.ref for link in out}
    return out + [link for link in own if link.ref not in seen], complete


def _in_flight(rt: Examined, report: Report, settings: CampaignSettings, pending: list[Link],
               attributes: Optional[dict], dlq: bool, applied_at: str, conn: Optional[Connection],
               rf_reached: Optional[bool] = None, read_all: bool = True,
               rf_conn: Optional[RFConnection] = None, gone: Sequence[Link] = ()) -> None:
    c = settings.campaign_id
    if rt.config.queue_url:        # every campaign's work (SQS's count is approximate): one call
        waiting = rt.queue.work_count()
        report.add("work_queue", True, f"{waiting} message(s) in the work queue (every campaign's: waiting, being "
                                       "worked or delayed)" if waiting else "the work queue is empty")
    searches = _dead_letters(rt, report, settings, rf_reached, rf_conn, conn.token_app if conn else None) if dlq else []
    failing = [d for d in searches if not d.superseded]
    if settings.qualification is None:
        _searches(report, settings.workspace, failing)
        return
    # (`read_all` False: the scans stopped at PENDING_SCAN pending links and SCAN_LIMIT of the campaign's, so what
    # it says is of those only)
    scanned = "" if read_all else (f" (the first {PENDING_SCAN:,} pending links of all campaigns and the first "
                                   f"{SCAN_LIMIT:,} joins of campaign {c} were read)")
    if pending:
        oldest = min(pending, key=lambda link: link.joined_at or "")
        age = _age_hours(rt.clock(), oldest.joined_at or "")
        report.add("pending", True, f"{len(pending)}{'' if read_all else ' or more'} lead(s) wait for qualification"
                   f"{scanned}; the oldest{'' if read_all else ' read'}, RF user {oldest.rf_user_id}, joined at "
                   f"{oldest.joined_at} ({age:.1f} h ago)")
    else:
        report.add("pending", True, "no lead is waiting for qualification" if read_all else
                   f"no lead of campaign {c} is among the pending links read{scanned}")
    if gone:        # (under `match: contact`, another contact's change is a duplicate's: not counted)
        other = ("or if another contact with their email meets the rule" if settings.qualification.match == "email"
                 else "not by another contact with their email (that counts under `qualification.match: email` only)")
        report.add("pending", True, f"{len(gone)}{'' if read_all else ' or more'} lead(s) whose contact was deleted "
                   f"or archived in Intercom{scanned}: they qualify only if it is restored, {other} (reconciliation's "
                   f"sweep skips them) — e.g. RF user {gone[0].rf_user_id}", key="contact_gone")
    if not _reconciliation(rt, report, settings, applied_at, conn, failing):
        _searches(report, settings.workspace, failing)      # said once: by [reconciliation] when it names them
    if settings.qualification.match == "email" or not pending:
        return
    if attributes is None:
        _unchecked(report, "duplicates", "whether contacts share a pending lead's email (Intercom could not be "
                   "read)", next((f.check for f in report.findings if f.check.startswith("intercom.") and not f.ok), "intercom.token"), c)
        return
    duplicates, failed = _duplicates(rt, settings, pending[:DUPLICATE_CHECKS])
    if failed:
        _unchecked(report, "duplicates", f"whether contacts share the email of {len(failed)} of "
                   f"{min(len(pending), DUPLICATE_CHECKS)} pending lead(s) searched (Intercom: {failed[-1]})",
                   "duplicates", c)
    for link, others in duplicates:
        report.add("duplicates", False,
                   f"pending lead RF user {link.rf_user_id} ({mask_email(link.email)}) is linked to contact "
                   f"{link.contact_id}, but contact(s) {', '.join(others)} share the email",
                   "with `match: contact`, a conversion recorded on the duplicate does not qualify the referral",
                   DUPLICATE, key=f"rf_user:{link.rf_user_id}")


_NO_CAMPAIGN = {"intercom.contact": "Intercom notifications", dead_letters.SEARCH: "reconciliation's searches"}


_FAILS_AGAIN = ("the work can never succeed, and a replay fails the same way; the letter waits in the dead-letter "
                "queue until it is discarded")


def _stopped(reason: str, rf_reached: Optional[bool]) -> str:
    """Why dead letters of `reason` matter, as truthfully as what a replay would do (`rf_reached`: whether the RF
    token reaches their campaign, as _rf says). RF placing the user in another campaign is RF's answer to the
    token, whatever the token does now: a replay fails the same way."""
    if OTHER_CAMPAIGN in reason:
        return f"Referral Factory places the user in another campaign than the webhook named: {_FAILS_AGAIN}"
    if not never_succeeds(reason) or rf_reached is False:
        return "this work is stopped until it is replayed"
    if rf_reached:
        return f"Referral Factory no longer has this user in the campaign, which the RF token reaches: {_FAILS_AGAIN}"
    return ("this work is stopped: a replay brings it back only if the RF token was the cause (of another RF "
            "account); for a user deleted in RF, a replay fails the same way")


def _dead_letters(rt: Examined, report: Report, settings: CampaignSettings,
                  rf_reached: Optional[bool] = None,
                  rf_conn: Optional[RFConnection] = None,
                  token_app: Optional[str] = None) -> list[dead_letters.DeadLetter]:
    """The campaign's dead letters by reason, and those that name no campaign (Intercom's notifications
    of its workspace, unreadable messages): they may be about its people, and `--campaign` misses them.
    `rf_reached`: whether the RF token reaches the campaign (_rf): RF showed it (its `User not found` is the
    user's, gone, in a letter that failed after the token was stored), or refused the token or did not know the
    campaign with it (its 404s are the token's). `token_app`: whose the workspace's token is (its refusal's reconnect).
    Answers the workspace's dead-lettered searches of changed contacts: those superseded are said here, the others
    by reconciliation's finding (or `_searches`, when it does not name them)."""
    c, ws = settings.campaign_id, settings.workspace
    token_apps = {ws: token_app}            # (another workspace's, a letter naming no campaign may say: not known)
    listing = dead_letters.look(rt)
    letters = listing.letters
    mine = [d for d in letters if d.campaign_id == c]
    searches = [d for d in letters if d.kind == dead_letters.SEARCH and d.workspace == ws]
    unnamed = [d for d in letters
               if d.campaign_id is None and d.workspace in (ws, None) and d.kind != dead_letters.SEARCH]
    rf_refused = rf_reached is False
    rf = rf_conn if rf_reached else None
    token_at = epoch(rf.token_at) if rf is not None and rf.token_at else None

    def after_token(chosen: list[dead_letters.DeadLetter]) -> bool:
        """The token shown to reach the campaign is not the one they failed with when it was stored after one
        of them failed, or as long before as a running worker keeps the token it read (a token of another
        account says every user is not found), and then as long as its batch may run (a letter's time is its batch's
        end, not its call's; a worker runs no longer than a claim's lease): a replay asks RF again."""
        return token_at is not None and all(
            d.failed_at and epoch(d.failed_at) > read_by_every_worker(token_at) + rt.config.lease for d in chosen)
    # The discard advised alone takes out every letter its reason part matches (not only one wording's), and
    # those doctor did not read: only when all of them were read, failing with the token shown.
    gone_alone = not listing.not_seen and after_token(
        [d for d in mine if dead_letters.matches(d, RF_GONE, c)])
    for reason, n in Counter(d.shown_reason for d in mine).most_common():          # (emails masked)
        reached = rf_reached if not rf_reached or after_token([d for d in mine if d.shown_reason == reason]) else None
        fix = dead_letters.replay_fix(reason, c, ws, token_refused=rf_refused,
                                      campaign_seen=bool(reached) and gone_alone, token_app=token_apps.get,
                                      token_reaches=c if rf_reached else None)
        report.add("dead_letters", False, f"{n} dead letter(s) of campaign {c}: {beside_fix(reason, fix)}",
                   _stopped(reason, reached), fix, key=f"campaign:{tag(reason)}")
    for reason, n in Counter(d.shown_reason for d in unnamed).most_common():
        kinds = ", ".join(sorted({_NO_CAMPAIGN.get(d.kind or "", "unreadable messages") for d in unnamed
                                  if d.shown_reason == reason}))
        # (a letter naming no campaign may be another campaign's, which RF was not asked about)
        fix = dead_letters.replay_fix(reason, None, ws, token_refused=rf_refused, token_app=token_apps.get,
                                      token_reaches=c if rf_reached else None)
        report.add("dead_letters", False, f"{n} dead letter(s) name no campaign ({kinds}): {beside_fix(reason, fix)}",
                   "they may be about this campaign's people (a notification can qualify a lead), and `--campaign` "
                   "does not reach them: " + _stopped(reason, False if rf_refused else None), fix,
                   key=f"no_campaign:{tag(reason)}")
    superseded = [d for d in searches if d.superseded]
    if superseded:
        report.add("dead_letters", True, f"{len(superseded)} dead letter(s) of searches of the changed contacts of "
                   f"workspace {ws} are superseded: the search asked at {max(d.superseded or '' for d in superseded)} "
                   "succeeded, and covered their window", "nothing is lost, nothing to replay; the dead-letter alarm "
                   "stays on while they wait", dead_letters.SUPERSEDED_FIX, warn=True, key="searches_superseded")
    if listing.not_seen:           # held by another command, or past the scan's end: they may be this campaign's
        cause = dead_letters.CUT if listing.cut else f"hidden by another command: {dead_letters.HOLDERS}"
        report.add("dead_letters", True, f"about {listing.not_seen} dead letter(s) could not be read ({cause})",
                   "they may be this campaign's work, stopped until it is replayed: this report does not count them",
                   f"replay or discard the letters `bridge dlq list` shows, then run `bridge doctor {c}` again"
                   if listing.cut else f"run `bridge doctor {c}` again once that command ends (a killed one's hold "
                   "ends within minutes)",
                   warn=True, key="not_read")
    elif not mine and not unnamed and not searches:
        report.add("dead_letters", True, f"no dead letters for campaign {c} or without a campaign", key="none")
    return searches


def _searches(report: Report, ws: str, letters: list[dead_letters.DeadLetter]) -> None:
    """The workspace's failed searches of changed contacts that no search has covered since (one a reconciliation
    run: an outage leaves several), said once, when [reconciliation] does not name them."""
    failing = sorted(letters, key=lambda d: d.failed_at or "")
    if failing:
        since = f", since {failing[0].failed_at}" if failing[0].failed_at else ""
        report.add("dead_letters", False, f"{len(failing)} search(es) of the changed contacts of workspace {ws} failed "
                   f"(dead letters{since}); the last: {failing[-1].shown_reason}",
                   dead_letters.SEARCH_WHY, dead_letters.SEARCH_FIX, key="searches")


def _reconciliation(rt: Examined, report: Report, settings: CampaignSettings, applied_at: str,
                    conn: Optional[Connection], failing: list[dead_letters.DeadLetter]) -> bool:
    """Reconciliation's lag: when it last searched the workspace's changed contacts, the links left
    unfinished past their lease, and the leads too old for the one-by-one sweep. `applied_at`: when
    the campaign's settings were stored; `conn`: the workspace's connection, as read for this report;
    `failing`: its searches in the dead-letter queue that no later search superseded (an outage's). Whether it
    reported the searches failing (then they are said here, once, naming the outage)."""
    from .qualification.changes import cursor_name, latest_failure
    from .reconcile import past_sweep_age, searchable

    now, ws, c = rt.clock(), settings.workspace, settings.campaign_id
    last = rt.store.cursor.get(cursor_name(ws))
    # The latest failed search, if asked after the last that succeeded: the queue still tries it (no dead letter yet).
    tried = latest_failure(rt.store.cursor, ws, last)
    # Intercom refused the workspace's token to it (not the API to its plan: that fix is [intercom.token]'s).
    refused = bool(tried.get("refused")) and not plan_restricted(str(tried.get("reason", "")))
    applied = _age_hours(now, applied_at) * 60
    # The schedule the stage runs (RECONCILE_EVERY_MINUTES deployed, RECONCILE_EVERY_SECONDS on `make run`).
    late_after = LATE_RUNS * rt.config.reconcile_every / 60         # minutes
    said = False
    if not searchable(conn):           # the connection's own finding names the cause and its fix
        report.add("reconciliation", True, f"reconciliation waits for workspace {ws} to be "
                   f"{'reconnected' if conn is not None else 'connected'}: it searches no changed contacts "
                   "without the workspace's token (" + ("it has never searched them" if last is None else
                                                        f"the last search ran {(now - float(last)) / 60:.0f} min ago")
                   + ")")
    elif (failing or tried) and (refused or last is None or (now - float(last)) / 60 > late_after):
        # The schedule runs: its searches fail (an outage passes by itself; the next search that succeeds
        # covers every change since the last that did), dead-lettered or still tried by the queue. Intercom refusing
        # the workspace's token never passes by itself: said at once, with the reconnect.
        failing = sorted(failing, key=lambda d: d.failed_at or "")
        vendor = outage_of(failing[-1].reason or "") if failing else tried["vendor"]
        reconnect_first = f"{reconnect(ws, conn.token_app if conn else None)}; then " if refused else ""
        fix = reconnect_first + (dead_letters.SEARCH_FIX if failing else
                                 ("nothing to change: the outage passes by itself" if vendor else
                                  "fix the cause the reason names")
                                 + "; the next search that succeeds covers every change since the last that did")
        # (the reason as said beside the fix: a refused token's reconnect, which the fix says, said there alone)
        report.add("reconciliation", False, (f"{vendor} is unavailable: " if vendor else "")
                   + f"reconciliation's searches of the changed contacts of workspace {ws} fail ("
                   + ("none has succeeded yet" if last is None else
                      f"the last that succeeded ran {(now - float(last)) / 60:.0f} min ago")
                   + (f"; {len(failing)} failed since {failing[0].failed_at or '?'}, the last: "
                      f"{beside_fix(failing[-1].shown_reason, fix)})" if failing else
                      f"; the last failed at {iso(tried['at'])}: {beside_fix(tried['reason'], fix)}; the queue tries "
                      "it again)"),
                   dead_letters.SEARCH_WHY, fix)
        said = True
    elif last is None and applied < late_after:
        # A fresh stack, or settings just applied: the first search comes with the next scheduled run.
        due = datetime.fromtimestamp(now + (late_after - applied) * 60, timezone.utc).strftime("%H:%M UTC")
        report.add("reconciliation", True, f"reconciliation has not searched the changed contacts of workspace {ws} "
                   f"yet: the settings were applied {applied:.0f} min ago, and the first search comes with the next "
                   f"scheduled run (late if not done by {due})")
    elif last is None:
        report.add("reconciliation", False, f"reconciliation has never searched the changed contacts of workspace {ws}",
                   "a lost Intercom webhook is caught only by the slower one-by-one sweep, or not at all for leads "
                   "older than RECONCILE_SWEEP_DAYS",
                   "check that the reconcile schedule runs (the stage's `reconcile` function); settings applied "
                   "with an older version: apply them once more (`bridge settings apply`)")
    else:
        lag = (now - float(last)) / 60
        ok = lag <= late_after
        report.add("reconciliation", ok, f"the last search of changed contacts of {ws} ran {lag:.0f} min ago",
                   "" if ok else "qualifications whose webhook was lost wait for it",
                   "" if ok else "check that the reconcile schedule runs (the stage's `reconcile` function, its errors)")
    # Every unfinished link, also those whose finishing message reconciliation queued (out of the
    # index's due part until their retry): the index is sparse, so this is not a scan.
    stuck = [o for o in rt.store.links.overdue(now + rt.config.reconcile_retry + 366 * 86400, 1000)
             if o.link.campaign_id == c]
    late = [o for o in stuck if now - o.lease_until > late_after * 60]
    if late:
        oldest = min(late, key=lambda o: o.lease_until)
        queued = (f"; its finishing work was queued {oldest.requeued} time(s)" if oldest.requeued
                  else "; reconciliation has not queued its finishing work yet")
        q = oldest.link.qualification           # (none for a join left in progress)
        what = (f"{len(late)} link(s) of campaign {c} left unfinished (e.g. RF user {oldest.link.rf_user_id}: "
                f"{oldest.link.status.value}{f', qualification {q.value}' if q else ''}"
                f"{queued}) for over {late_after:.0f} min after their worker's claim ran out")
        if not searchable(conn):    # as above: the connection's own finding names the cause and its fix
            report.add("reconciliation.overdue", True, f"{what}: they wait for workspace {ws} to be "
                       f"{'reconnected' if conn is not None else 'connected'} (the work reconciliation queues to finish "
                       "them waits in the dead-letter queue meanwhile)")
        else:
            report.add("reconciliation.overdue", False, what,
                       "reconciliation queues the work that finishes such links on its next run, and again every "
                       f"RECONCILE_RETRY_SECONDS ({rt.config.reconcile_retry:g} s) while they stay unfinished: "
                       "these were not finished",
                       "check that the reconcile schedule runs, and the dead-letter queue (`bridge dlq list`); "
                       "`bridge explain <RF id>` shows each one's trail")
    # (counted up to PENDING_SCAN: the index keeps, for good, every lead that never converted)
    old = past_sweep_age(rt, PENDING_SCAN)  # type: ignore[arg-type]
    if old:
        report.add("reconciliation.sweep", True, f"{old}{' or more' if old >= PENDING_SCAN else ''} pending lead(s) "
                   f"(all campaigns) joined over "
                   f"{rt.config.reconcile_sweep_days:g} days ago: they qualify by webhook and by the search of changes, "
                   "not by the one-by-one sweep")
    return said


def _duplicates(rt: Examined, settings: CampaignSettings,
                pending: list[Link]) -> tuple[list[tuple[Link, list[str]]], list[str]]:
    """The pending leads whose email other contacts share, with theirs; the reasons of the searches that failed."""
    client = rt.intercom(settings.workspace)
    out, failed = [], []
    for link in pending:
        if not link.email:
            continue
        try:
            found = client.search_by_email(link.email)
        except WorkError as exc:
            failed.append(exc.reason)
            continue
        others = sorted(str(c["id"]) for c in found if str(c.get("id")) != link.contact_id)
        if others:
            out.append((link, others))
    return out, failed


# --- text -----------------------------------------------------------------------------------------------
def as_text(report: Report) -> str:
    warnings = sum(f.warn for f in report.findings)
    lines = [f"campaign {report.campaign_id}: " + ("no problems found" if report.ok else
                                                  f"{sum(not f.ok for f in report.findings)} problem(s)")
             + (f", {warnings} warning(s)" if warnings else "")]
    for f in report.findings:
        lines.append(f"  {'BAD' if not f.ok else 'warn' if f.warn else 'ok '} [{f.check}] {f.what}")
        if not f.ok or f.warn:
            if f.why:
                lines.append(f"        why: {f.why}")
            if f.fix:
                lines.append(f"        fix: {f.fix}")
    return "\n".join(lines)


__all__ = ["CampaignPeople", "Finding", "Report", "TOPICS", "as_text", "examine"]
