"""The PynamoDB items of the one table (keys.py names them), and the Link they store."""
from __future__ import annotations

import os
import random
import threading
import time
from typing import Any, Callable, Iterable, Optional, Type, TypeVar

from pynamodb.connection.table import TableConnection
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.attributes import (BooleanAttribute, JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute,
                                 UnicodeSetAttribute)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from ...domain.link import ContactState, DuplicateSeen, LeftContact, Link, LinkStatus, ReferralCount
from ...domain.qualification import QState
from ...errors import Deferred, Throttled
from .keys import Key


class _Meta:
    table_name = "rf-intercom-bridge-table"
    region: Optional[str] = None


class _Item(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)

    @classmethod
    def _get_connection(cls) -> TableConnection:
        # PynamoDB gives each model its own botocore session and client, and each new session loads
        # botocore's endpoint and service files again: ten models cost a cold start about a second.
        # Every model of the table shares one client, made from the container's one botocore session
        # (adapters/aws.py: SQS and SSM use it too, so the files are read once per container).
        connection = super()._get_connection()
        if connection.connection._client is None:
            connection.connection._client = _client()
        return connection


class SettingsItem(_Item):
    document = JSONAttribute()
    workspace = UnicodeAttribute()
    version = NumberAttribute(default=1)
    updated_at = UnicodeAttribute()
    count_backfill_attribute = UnicodeAttribute(null=True)      # ports.store.CountBackfill (older items: none)
    count_backfill_since = UnicodeAttribute(null=True)


class SettingsDeletedItem(_Item):
    """The last version of a campaign's deleted settings (keys.py: SETTINGS#<id> / DELETED): versions never repeat."""

    version = NumberAttribute()
    deleted_at = UnicodeAttribute()


class ConnectionItem(_Item):
    """Non-secret connection metadata only: never a token or a secret."""

    api_base = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="active")
    secrets = UnicodeSetAttribute(null=True)        # which are set in the secret store: token, client-secret, oauth
    token_app = UnicodeAttribute(null=True)         # the app the token is of: private, oauth (domain/apps.py)
    updated_at = UnicodeAttribute(null=True)
    attributes = JSONAttribute(null=True)           # Intercom's attribute list (compact), shared by the workers
    attributes_read_at = NumberAttribute(null=True)


class RFConfigItem(_Item):
    secrets = UnicodeSetAttribute(null=True)        # token, webhook-secret
    # When the token was last stored (under the name it had when any store set it: such a time stays read)
    token_at = UnicodeAttribute(null=True, attr_name="updated_at")


class WorkspacesItem(_Item):
    names = UnicodeSetAttribute(null=True)


class OAuthStateItem(_Item):
    expires_at = NumberAttribute()              # the table's TTL attribute
    ended_at = NumberAttribute(null=True)       # what its callback did (domain/oauth.Outcome), once it has
    workspace = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    stopped = BooleanAttribute(null=True)        # its callback failed midway


class OAuthTicketItem(_Item):
    workspace = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()              # the table's TTL attribute: DynamoDB removes it some time after


class PendingIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "pending"
        projection = AllProjection()

    pending_pk = UnicodeAttribute(hash_key=True)
    pending_sk = UnicodeAttribute(range_key=True)


class OverdueIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "overdue"
        projection = AllProjection()

    overdue_pk = UnicodeAttribute(hash_key=True)
    lease_until = NumberAttribute(range_key=True)


class LinkItem(_Item):
    campaign_id = UnicodeAttribute()
    rf_user_id = UnicodeAttribute()
    workspace = UnicodeAttribute()
    status = UnicodeAttribute()                     # domain.link.LinkStatus
    kind = UnicodeAttribute(null=True)              # lead | referrer
    email = UnicodeAttribute(null=True)
    contact_id = UnicodeAttribute(null=True)
    contact_role = UnicodeAttribute(null=True)
    # The workspace whose pointer names `contact_id` (written with it): a claim in another workspace (the campaign
    # moved) keeps an earlier try's contact, whose pointer a hold or finish leaves there. Unset: `workspace`.
    contact_workspace = UnicodeAttribute(null=True)
    contact_state = UnicodeAttribute(null=True)     # domain.link.ContactState
    baseline = JSONAttribute(null=True)
    baseline_of = UnicodeAttribute(null=True)       # the attribute `baseline` is a value of (Link)
    baseline_at = NumberAttribute(null=True)        # when `bridge backfill --apply` took it (Link)
    last_moved_at = NumberAttribute(null=True)      # when the link last moved to another contact (Link)
    armed = BooleanAttribute(null=True)
    armed_by = UnicodeAttribute(null=True)          # the rule `armed` holds under (Link)
    armed_at = NumberAttribute(null=True)           # since when, by Intercom's clock (Link)
    held_at = NumberAttribute(null=True)            # the target value held as no change (Link)
    held_by = UnicodeAttribute(null=True)           # the rule it was held under (Link)
    qualification = UnicodeAttribute(null=True)     # domain.qualification.QState
    qualified_at = UnicodeAttribute(null=True)
    last_event_at = NumberAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    claim = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)        # the overdue index's position: the lease's end, or the next retry
    lease_ended = NumberAttribute(null=True)        # set once reconciliation requeued it: when the lease ended
    requeued = NumberAttribute(null=True)           # how many times reconciliation queued its finishing message
    joined_at = UnicodeAttribute(null=True)
    found_at = NumberAttribute(null=True)           # when the try that found `contact_id` began (Link)
    updated_at = UnicodeAttribute(null=True)
    uncertain_since = NumberAttribute(null=True)    # a try may have created the contact since (Link)
    rf_said_no = BooleanAttribute(null=True)        # unconfirmed, and RF's "not qualified" still holds (Link)
    letter_owed = BooleanAttribute(null=True)       # failed, its dead letter maybe not sent yet (Link)
    refused_at = NumberAttribute(null=True)         # when its qualification was refused, its letter sent (Link)
    refusal_discarded = BooleanAttribute(null=True)  # the operator discarded that refusal's letter (Link)
    rf_deleted_at = NumberAttribute(null=True)      # backfill found that refused lead deleted in RF (Link)
    counted_for = UnicodeAttribute(null=True)      # the referrer whose count this lead's join added to (Link)
    counted_at = NumberAttribute(null=True)        # when (Link.counted_at), written with `counted_for`
    contact_found = BooleanAttribute(null=True)    # a join part-way found `contact_id` existing (Link)
    contact_created = BooleanAttribute(null=True)  # the join created `contact_id` (Link)
    left_contacts = UnicodeSetAttribute(null=True)  # the contacts the link moved off (Link)
    # What it held on each, when it left it (Link.left_baselines): {contact_id: LeftContact.as_stored()}, written with
    # `left_contacts` (an item with the set alone was written before the bridge recorded these)
    left_baselines = JSONAttribute(null=True)
    # Values meeting the target seen on her other contacts (Link.duplicates_seen): {contact_id: DuplicateSeen.as_stored()}
    duplicates_seen = JSONAttribute(null=True)
    pending_pk = UnicodeAttribute(null=True)
    pending_sk = UnicodeAttribute(null=True)
    pending = PendingIndex()
    overdue_pk = UnicodeAttribute(null=True)       # set with lease_until: the sparse `overdue` index
    overdue = OverdueIndex()

    def to_link(self) -> Link:
        return Link(campaign_id=self.campaign_id, rf_user_id=self.rf_user_id, workspace=self.workspace,
                    status=LinkStatus(self.status), kind=self.kind, email=self.email, contact_id=self.contact_id,
                    contact_role=self.contact_role,
                    contact_state=ContactState(self.contact_state) if self.contact_state else None,
                    baseline=self.baseline, baseline_of=self.baseline_of, baseline_at=self.baseline_at,
                    last_moved_at=self.last_moved_at, armed=bool(self.armed),
                    armed_by=self.armed_by, armed_at=self.armed_at, held_at=self.held_at, held_by=self.held_by,
                    qualification=QState(self.qualification) if self.qualification else None,
                    qualified_at=self.qualified_at, last_event_at=self.last_event_at, reason=self.reason,
                    joined_at=self.joined_at, found_at=self.found_at, updated_at=self.updated_at,
                    uncertain_since=self.uncertain_since,
                    rf_said_no=self.rf_said_no, letter_owed=bool(self.letter_owed),
                    refused_at=self.refused_at, refusal_discarded=bool(self.refusal_discarded), rf_deleted_at=self.rf_deleted_at,
                    counted_for=self.counted_for,
                    counted_at=self.counted_at, contact_found=bool(self.contact_found),
                    contact_created=bool(self.contact_created), left_contacts=frozenset(self.left_contacts or ()),
                    left_baselines=left_read(self.left_baselines), duplicates_seen=seen_read(self.duplicates_seen))


def left_stored(held: tuple[LeftContact, ...]) -> Optional[dict[str, Any]]:
    """Link.left_baselines as LinkItem.left_baselines stores them (in a set order: a write holds to it as read)."""
    return {h.contact_id: h.as_stored() for h in sorted(held, key=lambda h: h.contact_id)} or None


def left_read(stored: Optional[dict[str, Any]]) -> tuple[LeftContact, ...]:
    return tuple(LeftContact.of_stored(contact_id, held) for contact_id, held in sorted((stored or {}).items()))


def seen_stored(seen: tuple[DuplicateSeen, ...]) -> Optional[dict[str, Any]]:
    """Link.duplicates_seen as LinkItem.duplicates_seen stores them (in a set order: a write holds to it as read)."""
    return {s.contact_id: s.as_stored() for s in sorted(seen, key=lambda s: s.contact_id)} or None


def seen_read(stored: Optional[dict[str, Any]]) -> tuple[DuplicateSeen, ...]:
    return tuple(DuplicateSeen.of_stored(contact_id, seen) for contact_id, seen in sorted((stored or {}).items()))


class ReferralItem(_Item):
    """A referrer's count (domain.link.ReferralCount): `n` grows in the joins' own transactions."""

    n = NumberAttribute(null=True)
    written = NumberAttribute(null=True)
    written_to = UnicodeAttribute(null=True)        # the attribute `written` went to (none: before it was kept)
    contact_id = UnicodeAttribute(null=True)
    contact_workspace = UnicodeAttribute(null=True)  # contact_id's workspace (older items: none, ReferralCount.workspace)
    updated_at = UnicodeAttribute(null=True)
    since = NumberAttribute(null=True)              # when it began (ReferralCount.since): set once, by its first lead
    # Set in the very write of an erasure that lowered the count (the sparse `overdue` index, in a
    # partition of its own): its write to Intercom is owed until reconciliation queued it again
    # (LinkRepository.erase, counts_owed, count_asked).
    overdue_pk = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)
    owed = OverdueIndex()

    def to_count(self) -> ReferralCount:
        return ReferralCount(int(self.n or 0), None if self.written is None else int(self.written), self.contact_id,
                             self.written_to, self.since, self.contact_workspace)


class PointerItem(_Item):
    links = UnicodeSetAttribute(null=True)          # {"<campaign>#<rf id>", ...}; none for a marker
    # A notification mark's (NotificationItem) TTL, read in the pointers' batch (lookup); never set on a pointer.
    expires_at = NumberAttribute(null=True)


class NotificationItem(_Item):
    expires_at = NumberAttribute()


class HistoryItem(_Item):
    event = UnicodeAttribute()
    outcome = UnicodeAttribute()
    reason = UnicodeAttribute(null=True)
    details = JSONAttribute(null=True)
    repeats = NumberAttribute(null=True, attr_name="count")    # counted repeats (`note_repeat`)
    at = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)         # the table's TTL attribute
    # The entries written with the first, in order ([event, outcome, reason, details] each): one
    # item per write, not per entry (DynamoDB bills each item of a transaction).
    also = JSONAttribute(null=True)


class RateItem(_Item):
    n = NumberAttribute(default=0)                  # slots asked for in the slice (may pass its cap)
    cap = NumberAttribute(null=True)                # the slice's cap, as its last caller saw it
    expires_at = NumberAttribute()


class BudgetStateItem(_Item):
    """A rate budget's shared state (domain.budget.BudgetState)."""

    pause_until = NumberAttribute(null=True)
    share = NumberAttribute(null=True)
    lowered_at = NumberAttribute(null=True)
    strikes = NumberAttribute(null=True)
    blocked_until = NumberAttribute(null=True)
    blocked_since = NumberAttribute(null=True)
    blocked_reason = UnicodeAttribute(null=True)


class CursorItem(_Item):
    position = UnicodeAttribute(null=True)


class CampaignsItem(_Item):
    names = UnicodeSetAttribute(null=True)


class SyncRunItem(_Item):
    """A sync run (ports.store.SyncRun): the latest at SYNC#RUN, earlier ones copied to SYNC#RUN#<n>.
    The counts are one number each, so that a page adds them atomically."""

    number = NumberAttribute()
    kind = UnicodeAttribute()
    source = UnicodeAttribute()
    status = UnicodeAttribute()
    page = NumberAttribute(default=0)
    cursor = UnicodeAttribute(null=True)
    total = NumberAttribute(null=True)
    since = NumberAttribute(null=True)
    started_at = NumberAttribute()
    updated_at = NumberAttribute()
    finished_at = NumberAttribute(null=True)
    message = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)
    owner = UnicodeAttribute(null=True)
    # the last failure of its next page (ports.store.SyncRun.error), until a checkpoint removes it
    error_page = NumberAttribute(null=True)
    error_reason = UnicodeAttribute(null=True)
    error_tries = NumberAttribute(null=True)
    error_at = NumberAttribute(null=True)
    error_state = UnicodeAttribute(null=True)
    paused = NumberAttribute(null=True)       # seconds its pages waited in the dead-letter queue
    required = ListAttribute(of=UnicodeAttribute, null=True)   # RF's campaign's required fields (SyncRun.required)
    workspace = UnicodeAttribute(null=True)   # (absent from runs started before it: None, not known)
    full_run = NumberAttribute(null=True)     # SyncRun.full_run
    expires_at = NumberAttribute(null=True)   # the table's TTL attribute: a past run's (SyncRepository.start)
    c_enrolled = NumberAttribute(null=True)
    c_enrolled_no_link = NumberAttribute(null=True)
    c_already_enrolled = NumberAttribute(null=True)
    c_linked = NumberAttribute(null=True)
    c_missing_field = NumberAttribute(null=True)
    c_already_in_campaign = NumberAttribute(null=True)
    c_user_limit = NumberAttribute(null=True)
    c_invalid_email = NumberAttribute(null=True)
    c_writeback_failed = NumberAttribute(null=True)
    c_no_link_yet = NumberAttribute(null=True)
    c_enrolled_writeback_failed = NumberAttribute(null=True)
    c_refused = NumberAttribute(null=True)
    c_not_in_rf = NumberAttribute(null=True)
    # ongoing mode's webhook outcomes while this run was the latest (SyncRun.by_webhook)
    w_enrolled = NumberAttribute(null=True)
    w_enrolled_no_link = NumberAttribute(null=True)
    w_already_enrolled = NumberAttribute(null=True)
    w_linked = NumberAttribute(null=True)
    w_missing_field = NumberAttribute(null=True)
    w_already_in_campaign = NumberAttribute(null=True)
    w_user_limit = NumberAttribute(null=True)
    w_invalid_email = NumberAttribute(null=True)
    w_writeback_failed = NumberAttribute(null=True)
    w_no_link_yet = NumberAttribute(null=True)
    w_enrolled_writeback_failed = NumberAttribute(null=True)
    w_refused = NumberAttribute(null=True)
    w_not_in_rf = NumberAttribute(null=True)


class LedgerItem(_Item):
    """What sync did with one contact of a campaign (ports.store.LedgerEntry)."""

    outcome = UnicodeAttribute()
    email = UnicodeAttribute(null=True)
    rf_user_id = UnicodeAttribute(null=True)
    url = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    run = NumberAttribute(default=0)
    seen_run = NumberAttribute(default=0)
    written_back = BooleanAttribute(default=False)
    at = UnicodeAttribute(null=True)
    count_known = BooleanAttribute(null=True)
    adopted = BooleanAttribute(null=True)           # (absent from items written before it: False)
    linked_run = NumberAttribute(null=True)         # (absent: 0)
    workspace = UnicodeAttribute(null=True)         # (absent from items written before it: None, not known)
    link_attribute = UnicodeAttribute(null=True)    # (absent from items written before it: None, not known)
class EdgeItem(_Item):
    """What the edge keeps (ports/edge.py): a refusal counter, a sample, or when it last heard."""

    reason = UnicodeAttribute(null=True)
    n = NumberAttribute(null=True)
    first_at = UnicodeAttribute(null=True)
    at = UnicodeAttribute(null=True)                # last_at of a counter; a sample's or a beat's time
    message = UnicodeAttribute(null=True)
    rf_user_id = UnicodeAttribute(null=True)
    email_hash = UnicodeAttribute(null=True)
    email_masked = UnicodeAttribute(null=True)
    contact_id = UnicodeAttribute(null=True)
    campaign_id = UnicodeAttribute(null=True)
    rf_user_digest = UnicodeAttribute(null=True)
    email_digest = UnicodeAttribute(null=True)
    contact_digest = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)



MODELS: tuple[Type[_Item], ...] = (SettingsItem, SettingsDeletedItem, ConnectionItem, RFConfigItem, WorkspacesItem, LinkItem, PointerItem,
                                   NotificationItem, HistoryItem, RateItem, BudgetStateItem, CursorItem,
                                   CampaignsItem, EdgeItem, OAuthStateItem, OAuthTicketItem, SyncRunItem, LedgerItem, ReferralItem)


_clients: dict[tuple[Optional[str], ...], Any] = {}
_clients_lock = threading.Lock()
_bound: tuple = ()
_watch: Optional[Callable[[Any], None]] = None


def _where() -> tuple[Optional[str], ...]:
    """Where and as whom the client talks (a process whose credentials change gets a new client)."""
    e = os.environ
    return (e.get("AWS_ENDPOINT_URL"), e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION"),
            e.get("AWS_PROFILE"), e.get("AWS_ACCESS_KEY_ID"))


def _client() -> Any:
    """The DynamoDB client of this endpoint and region (PynamoDB's own settings: no parameter
    validation, its timeouts and retries)."""
    where = _where()
    with _clients_lock:         # a cold worker's first reads run at once: one client for them all
        if where not in _clients:
            from .. import aws

            _clients[where] = aws.client("dynamodb", parameter_validation=False, connect_timeout=15,
                                         read_timeout=30, max_pool_connections=10,
                                         retries={"total_max_attempts": 4, "mode": "standard"})
            _clients[where].meta.events.register("after-call.dynamodb", _conflict)
            if _watch is not None:
                _watch(_clients[where])
        return _clients[where]


def watch_clients(watch: Callable[[Any], None]) -> None:
    """`watch(client)` for each DynamoDB client of this process, made or to be made (the CLI's clock reads
    AWS's time in their answers); it replaces the former `watch`, on the clients to be made."""
    global _watch
    with _clients_lock:
        _watch = watch
        for made in _clients.values():
            watch(made)


def bind(table_name: str) -> None:
    """Point every model at `table_name` (tests and the local stack create a table per stack). Binding
    again to the same table, endpoint and region keeps the connections (and their client)."""
    global _bound
    if _bound == (table_name, _where()):
        return
    for model in MODELS:
        model.Meta.table_name = table_name
        model._connection = None
    _bound = (table_name, _where())


M = TypeVar("M", bound=_Item)


BATCH_GET_KEYS, BATCH_WRITE_ITEMS = 100, 25     # DynamoDB's most a BatchGetItem, a BatchWriteItem takes
UNPROCESSED_WAIT = 0.05         # seconds: the first wait before asking again for what a batch call left (doubling)
UNPROCESSED_WAIT_MOST = 2.0
UNPROCESSED_TRIES = 10          # calls processing none of a batch's keys before it gives up (its waits: ~10 s)
pause: Callable[[float], None] = time.sleep


class Unprocessed(Throttled):
    """DynamoDB still left keys of a batch call unprocessed (throttled) after UNPROCESSED_TRIES calls that processed
    none: DynamoDB's outage, which the work waits out (errors.Throttled), or the command's one line."""


def _unprocessed(call: Callable[[list[dict]], list[dict]], keys: Iterable[Key], size: int, what: str) -> None:
    """`call` of `keys` (once each, in DynamoDB's form), `size` a call, then of the keys it answers left unprocessed:
    a throttled table does so with an HTTP 200, which botocore does not retry. AWS asks for a growing wait before
    each call again (PynamoDB's batch_get and batch_write make it at once, in a loop that hammers the throttled
    partition): half of it random, so that the callers a throttle held back do not all come back together. Only the
    calls that processed none of them count towards giving up: a big batch on a table throttled slowly goes on while
    each call processes some (a worker's calls end in its time: adapters/aws.within)."""
    wanted = [{"pk": {"S": k[0]}, "sk": {"S": k[1]}} for k in dict.fromkeys(keys)]
    for start in range(0, len(wanted), size):
        _unprocessed_chunk(call, wanted[start:start + size], what)


def _unprocessed_chunk(call: Callable[[list[dict]], list[dict]], keys: list[dict], what: str) -> None:
    left, calls, idle = keys, 0, 0
    while left:
        if idle == UNPROCESSED_TRIES:
            raise Unprocessed("DynamoDB", f"DynamoDB left {len(left)} of {len(keys)} {what} unprocessed after {calls} "
                                          f"calls, {idle} of them processing none (the table is throttled): try again")
        if calls:
            wait = min(UNPROCESSED_WAIT_MOST, UNPROCESSED_WAIT * 2 ** min(calls, 10))
            pause(wait / 2 + random.uniform(0, wait / 2))
        asked, left = len(left), call(left)
        calls, idle = calls + 1, idle + (len(left) >= asked)


def batch_get(model: Type[M], keys: Iterable[Key], consistent: bool = False) -> list[M]:
    """The items of `keys` there are (one read each, however many calls DynamoDB takes to answer them all)."""
    connection, table = model._get_connection(), model.Meta.table_name
    found: list[M] = []

    def read(asked: list[dict]) -> list[dict]:
        answer = connection.batch_get_item(asked, consistent_read=consistent)  # type: ignore[arg-type] # (key maps)
        found.extend(model.from_raw_data(raw) for raw in answer.get("Responses", {}).get(table, ()))
        return answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys") or []
    _unprocessed(read, keys, BATCH_GET_KEYS, "keys to read")
    return found


def batch_delete(model: Type[M], keys: Iterable[Key]) -> None:
    """Delete the items of `keys` (those there are), 25 a call."""
    connection, table = model._get_connection(), model.Meta.table_name

    def delete(asked: list[dict]) -> list[dict]:
        answer = connection.batch_write_item(delete_items=asked)
        return [r["DeleteRequest"]["Key"] for r in (answer.get("UnprocessedItems") or {}).get(table, ())]
    _unprocessed(delete, keys, BATCH_WRITE_ITEMS, "items to delete")


def get(model: Type[M], key: Key, consistent: bool = False) -> Optional[M]:
    try:
        return model.get(*key, consistent_read=consistent)
    except model.DoesNotExist:
        return None


def applied(write: Callable[[], Any]) -> bool:
    """Run a conditional write: True when it went through, False when its condition did not hold
    (any other failure raises)."""
    try:
        write()
    except PynamoDBException as exc:
        if conditional(exc):
            return False
        raise
    return True


def conditional(exc: Exception) -> bool:
    """Did a write fail on its condition (alone, or inside a transaction)?"""
    code = getattr(exc, "cause_response_code", None)
    if code == "ConditionalCheckFailedException":
        return True
    return code == "TransactionCanceledException" and "ConditionalCheckFailed" in str(
        getattr(exc, "cause_response_message", ""))


def _reasons(exc: Exception) -> list[Any]:
    """A cancelled transaction's reasons, one per item in the order written (None: the item's fine)."""
    if getattr(exc, "cause_response_code", None) != "TransactionCanceledException":
        return []
    return getattr(getattr(exc, "cause", None), "cancellation_reasons", None) or []


CONFLICT_WAIT = 5.0          # seconds a write that met another transaction waits, in the queue, before its next try


class Conflict(Deferred, TransactWriteError):
    """DynamoDB refused a write only because another transaction was writing its items at that moment (a single
    write's TransactionConflictException, a transaction cancelled for TransactionConflict alone): nothing of it was
    applied. The work waits a few seconds, as it does while another worker holds the person, without using up a try;
    a transaction tries again first (links.py: _retrying_conflicts), and one of several people is written alone, as
    after any TransactWriteError."""


def _conflict(http_response: Any, parsed: dict, model: Any, **_: Any) -> None:
    """Heard after each DynamoDB call: a write refused as a conflict raises Conflict instead of botocore's error."""
    if http_response is None or http_response.status_code < 300:
        return
    code = (parsed.get("Error") or {}).get("Code")
    reasons = {r.get("Code") for r in parsed.get("CancellationReasons") or ()} - {"None"}
    if code == "TransactionConflictException" or code == "TransactionCanceledException" and reasons == {
            "TransactionConflict"}:
        raise Conflict(f"DynamoDB refused {model.name}: another transaction was writing its items at that moment "
                       f"(TransactionConflict): tried again in {CONFLICT_WAIT:g} s", retry_after=CONFLICT_WAIT)


def conflicted(exc: Exception) -> bool:
    """Was a write refused only because other transactions were writing its items at that moment?"""
    return isinstance(exc, Conflict)


def refused_items(exc: Exception) -> set[int]:
    """The positions (in the order written) of a cancelled transaction's items whose condition failed."""
    return {i for i, reason in enumerate(_reasons(exc))
            if reason is not None and reason.code == "ConditionalCheckFailed"}
