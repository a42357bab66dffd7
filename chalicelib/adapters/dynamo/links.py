"""Links in DynamoDB: every state change is a conditional write (claims with leases, event-time
ordering, only-forward qualification), written with its history in one transaction."""
from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from ...domain.history import Entry, iso
from ...domain.link import (COUNT_CLOCK_SLACK, LEAD, Claim, ContactState, DuplicateSeen, FoundContact, JoinClaim,
                           JoinResult, LeftContact, Link, LinkStatus, Overdue, PendingPage, PersonRef, ReferralCount,
                           by_the_second, left_stamped, left_with, seen_with)
from ...domain.qualification import ENDINGS, QState, claimable
from ...ports.store import (CHANGED_SINCE_READ, COUNT_ASK_GRACE, DEFAULT_LEASE_SECONDS, KEEP, KEPT_MEANWHILE,
                            MOVED_SINCE_READ, SCAN_LIMIT, Busy, Leases, Erased, PointerPage, answer_or_error, normal_email)
from .history import Check, Delete, DynamoHistory, Put, Update
from .keys import (COUNT_WRITES, OVERDUE, PENDING, POINTER_PREFIXES, campaign_links, campaign_referrals, contact_key,
                   email_key, ledger_key, link_key, pointer_of, referrals_key, referrer_of)
from .models import (LedgerItem, LinkItem, PointerItem, ReferralItem, applied, batch_get, conditional, conflicted, get,
                     left_stored, seen_stored)

if TYPE_CHECKING:   # the pointers' audit (`bridge pointers`) imports it when it runs: no worker's record needs it
    from ...domain.pointers import Finding


def _assign(attr: Any, value: Any) -> Any:
    return attr.set(value) if value is not None else attr.remove()


def _pointed_in(held_in: Optional[str], workspace: str) -> Condition:
    """The stored link's contact pointer is in workspace `held_in`, as read (None: unset, or the link's `workspace`:
    an earlier try's, in the workspace it wrote it in when the campaign moved since, is read and named)."""
    return (LinkItem.contact_workspace == held_in) if held_in else (
        LinkItem.contact_workspace.does_not_exist() | (LinkItem.contact_workspace == workspace))


def _same(attr: Any, value: Any) -> Any:
    """The stored attribute is `value` (None: it has none)."""
    return attr.does_not_exist() if value is None else attr == getattr(value, "value", value)


def _armed_as(link: Link) -> Any:
    """The stored link is armed as `link` is: or not, under the same rule, since the same time, holding back the
    same value (Link.held_at) under the same rule (Link.held_by)."""
    armed = (LinkItem.armed == True) if link.armed else (  # noqa: E712
        LinkItem.armed.does_not_exist() | (LinkItem.armed == False))  # noqa: E712
    return armed & _same(LinkItem.armed_by, link.armed_by) & _same(LinkItem.armed_at, link.armed_at) \
        & _same(LinkItem.held_at, link.held_at) & _same(LinkItem.held_by, link.held_by)


def _add_ref(key: tuple[str, str], ref: PersonRef) -> Update:
    return Update(PointerItem(*key), [PointerItem.links.add({str(ref)})])


def _leave(key: tuple[str, str], ref: PersonRef) -> list[Update | Delete]:
    """The link leaves the pointer, in the write that moves it: the pointer goes with it when the link is
    all it names (its key holds the email in clear: never left behind with no link), else it keeps another
    link it names. Read first (strongly consistent), and conditioned on what was read: a pointer changed
    meanwhile refuses the write (Busy: read again)."""
    read = get(PointerItem, key, consistent=True)
    named = (read.links or set()) if read is not None else set()
    if str(ref) not in named:
        return []
    others = sorted(named - {str(ref)})
    if not others:
        return [Delete(PointerItem(*key), PointerItem.links == {str(ref)})]
    return [Update(PointerItem(*key), [PointerItem.links.delete({str(ref)})], PointerItem.links.contains(others[0]))]


def _more_leads(referrer: PersonRef, n: int, at: float) -> Update:
    """`n` more leads on the referrer's count, counted `at` (the item is created at the first, and
    the count begins then: `since`, kept until the item is erased), never before the count began: a
    count another worker began later by its own clock refuses them (DynamoLinks._counting_write)."""
    return Update(ReferralItem(*referrals_key(referrer)), [
        ReferralItem.n.add(n), ReferralItem.since.set(ReferralItem.since | at), ReferralItem.updated_at.set(iso(at))],
        ReferralItem.since.does_not_exist() | (ReferralItem.since <= at))


MAX_TRANSACTION = 100      # items in one TransactWriteItems
# A new claim, or the end of one, starts the link's overdue trail afresh (LinkRepository.requeue).
_NOT_REQUEUED = (LinkItem.lease_ended.remove(), LinkItem.requeued.remove())
_TRIED = tuple(s.value for s in LinkStatus if s.tried)      # a try ended without the join: claimable again


def _free(now: float) -> Any:
    """A join's link a claim may take: none yet, a try ended without the join, or a claim whose lease ended."""
    return LinkItem.pk.does_not_exist() | LinkItem.status.is_in(*_TRIED) \
        | ((LinkItem.status == LinkStatus.IN_PROGRESS.value) & _lease_ended(now))


def _as_read(link: Optional[Link]) -> Any:
    """The link is as it was read (claim_many's `read`): still none, or not written since."""
    if link is None:
        return LinkItem.pk.does_not_exist()
    return LinkItem.updated_at == link.updated_at if link.updated_at else LinkItem.updated_at.does_not_exist()


def _lease_ended(now: float) -> Any:
    """The claim's lease ran out (reconciliation's requeue keeps it ended)."""
    return (LinkItem.lease_until < now) | LinkItem.lease_ended.exists()


def _counts_for(lead: PersonRef, referrer: str, at: float) -> Update:
    """The lead's link counts for the referrer from `at`, as long as it is final and counts for nobody."""
    return Update(LinkItem(*link_key(lead)), [LinkItem.counted_for.set(referrer), LinkItem.counted_at.set(at),
                                              LinkItem.updated_at.set(iso(at))],
                  LinkItem.pk.exists() & LinkItem.counted_for.does_not_exist()
                  & LinkItem.status.is_in(*(s.value for s in LinkStatus if s.final)))


_Counting = tuple[int, PersonRef, str, Sequence[Entry]]     # a lead to count: (position, lead, referrer, entries)


def _referrer(lead: _Counting) -> PersonRef:
    return PersonRef(lead[1].campaign_id, lead[2])


def _counting_chunks(leads: Sequence[_Counting]) -> Iterator[list[_Counting]]:
    """The leads in groups whose transaction fits: each lead's link update and history item, and one
    count update per referrer of the group."""
    chunk: list[_Counting] = []
    items, referrers = 0, set[PersonRef]()
    for lead in leads:
        if chunk and items + 1 + bool(lead[3]) + (_referrer(lead) not in referrers) > MAX_TRANSACTION:
            yield chunk
            chunk, items, referrers = [], 0, set()
        items += 1 + bool(lead[3]) + (_referrer(lead) not in referrers)
        referrers.add(_referrer(lead))
        chunk.append(lead)
    if chunk:
        yield chunk


_Groups = list[tuple[PersonRef, Sequence[Entry], Sequence[Update | Put | Delete]]]
# A link that holds a contact its join did not finish on (hold_found's, merged meanwhile): that contact, and the
# writes that take the link off its pointer (_leave, read before the finish).
_Left = Mapping[PersonRef, tuple[str, list[Update | Delete]]]


def _with_counts(groups: _Groups, referrers: Sequence[PersonRef], at: float) -> _Groups:
    """`groups` (each person's writes), then one update per referrer, adding each the leads it is
    named for, counted `at` (a transaction may touch an item once): the last group, if any."""
    counted = [_more_leads(ref, n, at) for ref, n in sorted(Counter(referrers).items())]
    return [*groups, *([(groups[0][0], [], counted)] if counted else [])]


class _Alone(Exception):
    """One join: finished on its own, as finish() does."""


LINKS_PAGE = 500          # a campaign's links read per page (DynamoDB's Limit) when a filter skips most
_FOUND, _PAGE_READ = "Items", "ScannedCount"
NOTE_CHUNK = 50            # people noted in one transaction (note_many): a check and an entry each, of 100 items
CONFLICT_TRIES = 4         # a finishing transaction's tries while other transactions write its items
CONFLICT_BACKOFF = 0.05    # seconds: the first retry's longest wait (then doubling), jittered


def _capped(campaign_id: str, limit: int, scan_limit: int, attributes: Optional[list[str]],
            condition: Any) -> tuple[list[LinkItem], bool]:
    """The campaign's links matching `condition` (a filter, applied after each page is read), page after page
    until `limit` are found, none is left, or `scan_limit` links were read (each page asks for no more than
    are left of it): (those found, False when the read stopped at `scan_limit`)."""
    pk, prefix = campaign_links(campaign_id)
    found: list[LinkItem] = []
    read, start = 0, None
    while True:
        pages = LinkItem.query(pk, LinkItem.sk.startswith(prefix), filter_condition=condition,
                               attributes_to_get=attributes, page_size=min(LINKS_PAGE, scan_limit - read),
                               last_evaluated_key=start).page_iter
        page = next(pages)
        found += [LinkItem.from_raw_data(raw) for raw in page.get(_FOUND, [])]
        read, start = read + int(page.get(_PAGE_READ, 0)), pages.last_evaluated_key
        if len(found) >= limit or start is None:
            return found[:limit], True
        if read >= scan_limit:
            return found, False


class DynamoLinks(Leases):
    def __init__(self, clock: Callable[[], float], history: DynamoHistory,
                 sleep: Callable[[float], None] = time.sleep, lease: float = DEFAULT_LEASE_SECONDS):
        self.clock, self.history, self.sleep, self.lease = clock, history, sleep, lease

    def get(self, ref: PersonRef) -> Optional[Link]:
        return self.get_many([ref]).get(ref)

    def get_many(self, refs: Iterable[PersonRef], consistent: bool = False) -> dict[PersonRef, Link]:
        keys = (link_key(PersonRef(*r)) for r in refs)
        links = (i.to_link() for i in batch_get(LinkItem, keys, consistent=consistent))
        return {link.ref: link for link in links}

    def statuses_in(self, campaign_id: str, limit: int) -> dict[LinkStatus, int]:
        pk, prefix = campaign_links(campaign_id)
        return dict(Counter(LinkStatus(i.status) for i in LinkItem.query(
            pk, LinkItem.sk.startswith(prefix), limit=limit, attributes_to_get=["status"])))

    def linked_elsewhere(self, campaign_id: str, workspace: str, limit: int,
                         scan_limit: int = SCAN_LIMIT) -> tuple[dict[str, int], bool]:
        found, complete = _capped(campaign_id, limit, scan_limit, ["workspace"],
                                  (LinkItem.status == LinkStatus.LINKED.value) & (LinkItem.workspace != workspace))
        return dict(Counter(i.workspace for i in found)), complete

    def joining_elsewhere(self, campaign_id: str, workspace: str, limit: int,
                          scan_limit: int = SCAN_LIMIT) -> tuple[dict[str, int], bool]:
        part_way = (LinkItem.status == LinkStatus.IN_PROGRESS.value) | (LinkItem.status.is_in(*_TRIED) & (
            (LinkItem.contact_id.exists() & LinkItem.contact_found.does_not_exist())
            | LinkItem.uncertain_since.exists()))       # Link.part_way
        found, complete = _capped(campaign_id, limit, scan_limit, ["workspace"],
                                  part_way & (LinkItem.workspace != workspace))
        return dict(Counter(i.workspace for i in found)), complete

    def ignored_in(self, campaign_id: str, limit: int,
                   scan_limit: int = SCAN_LIMIT) -> tuple[dict[Optional[str], int], bool]:
        found, complete = _capped(campaign_id, limit, scan_limit, ["kind"], LinkItem.status == LinkStatus.IGNORED.value)
        return dict(Counter(i.kind for i in found)), complete

    def unbaselined(self, campaign_id: str, workspace: str, attribute: str, limit: int,
                    scan_limit: int = SCAN_LIMIT) -> tuple[dict[Optional[QState], int], bool]:
        other = (LinkItem.qualification == QState.PENDING.value) & LinkItem.baseline_of.exists() \
            & (LinkItem.baseline_of != attribute)
        found, complete = _capped(campaign_id, limit, scan_limit, ["qualification"], (
            LinkItem.status == LinkStatus.LINKED.value) & (LinkItem.kind == LEAD) & (LinkItem.workspace == workspace)
            & (LinkItem.qualification.does_not_exist() | other))
        return dict(Counter(QState(i.qualification) if i.qualification else None for i in found)), complete

    def refused_in(self, campaign_id: str, scan_limit: int = SCAN_LIMIT) -> tuple[list[Link], bool]:
        found, complete = _capped(campaign_id, scan_limit + 1, scan_limit, None,
                                  LinkItem.qualification == QState.FAILED.value)
        return [i.to_link() for i in found], complete

    def pending_in(self, campaign_id: str, scan_limit: int = SCAN_LIMIT) -> tuple[list[Link], bool]:
        # (as joined_people: never `limit` found before `scan_limit` were read, complete only once none is left)
        found, complete = _capped(campaign_id, scan_limit + 1, scan_limit, None, LinkItem.pending_pk.exists())
        return [i.to_link() for i in found], complete

    def joined_people(self, campaign_id: str,
                      scan_limit: int = SCAN_LIMIT) -> tuple[list[tuple[str, Optional[str]]], bool]:
        # Never `limit` found before `scan_limit` were read: complete only once none is left.
        found, complete = _capped(campaign_id, scan_limit + 1, scan_limit, ["rf_user_id", "email"],
                                  LinkItem.status.is_in(*(s.value for s in LinkStatus if s.final)))
        return [(i.rf_user_id, i.email) for i in found], complete

    # --- joining ---------------------------------------------------------------------------
    def _claim(self, ref: PersonRef, workspace: str, lease: float, now: float, token: str,
               read: Mapping[PersonRef, Optional[Link]]) -> Update:
        # An update, not a put: what an earlier try recorded (the contact it created, its
        # baseline, when the person joined) survives the new claim. Its reason (why it failed or
        # waited) is the history's from now on: the link in progress does not say it still.
        return Update(LinkItem(*link_key(ref)), [
            LinkItem.campaign_id.set(ref.campaign_id), LinkItem.rf_user_id.set(ref.rf_user_id),
            LinkItem.workspace.set(workspace), LinkItem.status.set(LinkStatus.IN_PROGRESS.value), LinkItem.reason.remove(),
            LinkItem.claim.set(token), LinkItem.lease_until.set(now + lease), LinkItem.uncertain_since.set(now),
            LinkItem.overdue_pk.set(OVERDUE), *_NOT_REQUEUED,
            LinkItem.joined_at.set(LinkItem.joined_at | iso(now)), LinkItem.updated_at.set(iso(now))],
            _free(now) & _as_read(read[ref]) if ref in read else _free(now))

    def claim(self, ref: PersonRef, workspace: str, lease: Optional[float] = None) -> Optional[JoinClaim]:
        return self._claim_one(ref, workspace, self._lease(lease), {})

    def _claim_one(self, ref: PersonRef, workspace: str, lease: float,
                   read: Mapping[PersonRef, Optional[Link]]) -> Optional[JoinClaim]:
        now, token = self.clock(), uuid.uuid4().hex
        update = self._claim(ref, workspace, lease, now, token, read)
        if applied(lambda: update.item.update(actions=update.actions, condition=update.condition)):
            return JoinClaim(ref, workspace, token, at=now)
        current = get(LinkItem, link_key(ref))
        if current is not None and current.to_link().final:
            return None
        held_until = current.lease_until if current is not None and current.status == LinkStatus.IN_PROGRESS.value \
            else None
        if held_until is not None and held_until > now:
            raise Busy("another worker is applying this join right now", retry_after=max(1.0, held_until - now))
        raise Busy(CHANGED_SINCE_READ, retry_after=1.0)

    def claim_many(self, wanted: Sequence[tuple[PersonRef, str]], lease: Optional[float] = None,
                   read: Mapping[PersonRef, Optional[Link]] = MappingProxyType({})
                   ) -> list[JoinClaim | None | Exception]:
        """All in one transaction; when one cannot be taken (a repeat, another worker's claim, a
        link written since it was read) or the transaction conflicts with another, each is
        claimed alone to tell which."""
        lease = self._lease(lease)
        if len(wanted) > 1 and len({ref for ref, _ in wanted}) == len(wanted) <= MAX_TRANSACTION:
            now = self.clock()
            claims = [JoinClaim(ref, workspace, uuid.uuid4().hex, now if ref in read and read[ref] is None else None,
                                at=now) for ref, workspace in wanted]
            try:
                self.history.transact_all([(c.ref, [], [
                    self._created(c, lease) if c.created_at is not None
                    else self._claim(c.ref, c.workspace, lease, now, c.token, read)]) for c in claims])
                return list(claims)
            except TransactWriteError:      # a condition, or a conflict with another transaction
                pass
        return [answer_or_error(lambda: self._claim_one(ref, workspace, lease, read)) for ref, workspace in wanted]

    def _created(self, claim: JoinClaim, lease: float) -> Put:
        """A claim that writes the link first: the whole item, as long as there is none. (For
        DynamoDB a put costs what an update does; emulators apply it in a fraction of the time.)"""
        assert claim.created_at is not None
        ref, now = claim.ref, claim.created_at
        return Put(LinkItem(*link_key(ref), campaign_id=ref.campaign_id, rf_user_id=ref.rf_user_id,
                            workspace=claim.workspace, status=LinkStatus.IN_PROGRESS.value, claim=claim.token,
                            lease_until=now + lease, uncertain_since=now, overdue_pk=OVERDUE, joined_at=iso(now),
                            updated_at=iso(now)), LinkItem.pk.does_not_exist())

    def _finish(self, claim: JoinClaim, result: JoinResult, at: float,
                left: _Left = MappingProxyType({})) -> list[Update | Put | Delete]:
        """The finish's writes, held to the claim and to the contact the link holds: none, the result's, or the one
        `left` names (its pointer left in the same write). A link found holding another refuses the write."""
        ref, now = claim.ref, iso(at)
        held, leave = left.get(ref, (result.contact_id, []))
        holds = LinkItem.contact_id.does_not_exist() | (LinkItem.contact_id == held) if held \
            else LinkItem.contact_id.does_not_exist()
        fields = {name: getattr(getattr(result, name), "value", getattr(result, name))
                  for name in ("kind", "email", "contact_id", "contact_role", "baseline", "baseline_of",
                               "qualification", "reason", "uncertain_since", "qualified_at", "found_at")}
        fields["contact_workspace"] = claim.workspace if result.contact_id else None
        fields["contact_found"] = result.contact_found or None
        fields["contact_created"] = result.contact_created or None
        if result.contact_created:      # (alive, as made or read: a state the link has is of another contact)
            fields["contact_state"] = None
        if result.counted_for:      # (a link counted already, an ignored join sent again, keeps its count)
            fields.update(counted_for=result.counted_for, counted_at=at)
        if result.qualification is QState.PENDING:
            fields.update(pending_pk=PENDING, pending_sk=f"{now}#{ref}")
        link: Update | Put
        if claim.created_at is not None:
            # Nothing but this claim has written the link while it holds no contact: a contact's notification finds
            # a link by its contact (Batch.linked_to_contact) or its email (linked_to_email), and only a hold
            # (hold_found) writes either before the finish does; reconciliation's requeue marks are the claim's, which
            # the finish ends. Then it is written whole, as the claim's update and this one would leave it. A link a
            # hold wrote (and so a notification may have written since: a merge's move, the contacts it left and the
            # event time; a deletion; a value armed or held back) a put would drop it from: refused, and `finish`
            # writes it as an update. (One attribute held to, not each a notification writes: moto parses conditions
            # in Python.)
            link = Put(LinkItem(*link_key(ref), campaign_id=ref.campaign_id, rf_user_id=ref.rf_user_id,
                                workspace=claim.workspace, status=result.status.value, joined_at=iso(claim.created_at),
                                updated_at=now, **{k: v for k, v in fields.items() if v is not None}),
                       (LinkItem.claim == claim.token) & LinkItem.contact_id.does_not_exist())
        else:
            link = Update(LinkItem(*link_key(ref)), [
                LinkItem.status.set(result.status.value), LinkItem.updated_at.set(now), LinkItem.claim.remove(),
                LinkItem.lease_until.remove(), LinkItem.overdue_pk.remove(), *_NOT_REQUEUED,
                # (no baseline_of: an earlier version's baseline, resumed; the rule stamp_rule recorded is kept)
                *(_assign(getattr(LinkItem, name), value) for name, value in fields.items()
                  if value is not None or name != "baseline_of")],
                (LinkItem.claim == claim.token) & holds)
        updates: list[Update | Put | Delete] = [link, *leave]
        if result.contact_id:
            updates.append(_add_ref(contact_key(claim.workspace, result.contact_id), ref))
        if result.email:
            updates.append(_add_ref(email_key(claim.workspace, result.email), ref))
        return updates

    def _finished(self, done: Sequence[tuple[JoinClaim, JoinResult, Sequence[Entry]]],
                  left: _Left = MappingProxyType({})) -> None:
        """The joins' writes, and one update per referrer they count for, all dated alike: a lead's
        link is counted when its count grows (and begins)."""
        self._counting_write(lambda at: [(claim.ref, entries, self._finish(claim, result, at, left))
                                         for claim, result, entries in done],
                             [PersonRef(claim.ref.campaign_id, result.counted_for) for claim, result, _ in done
                              if result.counted_for])

    def finish(self, claim: JoinClaim, result: JoinResult, entries: Sequence[Entry]) -> None:
        with _or_busy("lost the claim on this join to another worker"):
            # (joins of one referrer finishing at once write one count item: a conflict is tried again,
            # dated anew, and the claim's condition lets it apply once only; a contact held, as `move` does, reads
            # its pointer again when another person's link left it at that moment)
            left: Optional[_Left] = {}
            for tried in range(1, CONFLICT_TRIES + 1):
                try:
                    return self._finished([(claim, result, entries)], left or {})
                except TransactWriteError as exc:
                    if conditional(exc):     # (a link a hold wrote is not written whole: updated)
                        claim = dataclasses.replace(claim, created_at=None)
                    left = self._left(claim, result) if conditional(exc) and tried < CONFLICT_TRIES else None
                    if left is None:
                        raise

    @staticmethod
    def _left(claim: JoinClaim, result: JoinResult) -> Optional[dict[PersonRef, tuple[str, list[Update | Delete]]]]:
        """A claimed link that holds another contact than its result's (Intercom merged the one hold_found held into
        the one the join finished on): that contact, and the writes that take her off its pointer, read (a pointer
        left naming her would outlive `bridge forget`, which erases her link's contact's only); nothing to leave
        ({}) when the link holds the result's contact already (a merge's webhook moved it there meanwhile: the claim
        still ours, written again as it is); None when the claim is lost."""
        item = get(LinkItem, link_key(claim.ref), consistent=True)
        if item is None or item.claim != claim.token or not item.contact_id:
            return None
        if item.contact_id == result.contact_id:
            return {}
        held_in = item.contact_workspace or item.workspace    # (an earlier try's, in the workspace it wrote it in)
        return {claim.ref: (item.contact_id, _leave(contact_key(held_in, item.contact_id), claim.ref))}

    def finish_many(self, done: Sequence[tuple[JoinClaim, JoinResult, Sequence[Entry]]]) -> list[Optional[Exception]]:
        """In as few transactions as fit (100 items each); when one fails (a lost claim, two people
        pointing at one contact), each of its joins is finished alone to tell which."""
        at = self.clock()          # (the writes, to size the transactions: each is written dated anew)
        sizes = [len(entries) + len(self._finish(claim, result, at)) for claim, result, entries in done]
        answers: list[Optional[Exception]] = []
        start = 0
        while start < len(done):
            end, items = start, 0
            # (room for the item of the join's referrer's count, when it counts for one)
            while end < len(done) and items + (size := sizes[end] + bool(
                    done[end][1].counted_for)) <= MAX_TRANSACTION:
                items += size
                end += 1
            end = max(end, start + 1)
            try:
                if end - start == 1:
                    raise _Alone()
                self._finished(done[start:end])
                answers += [None] * (end - start)
            except (TransactWriteError, Busy, _Alone):
                answers += [answer_or_error(partial(self.finish, *d)) for d in done[start:end]]
            start = end
        return answers

    def _hold(self, claim: JoinClaim, found: FoundContact, left: Optional[str] = None,
              left_in: Optional[str] = None) -> list[Update | Delete]:
        """The hold's writes, held to the claim and to the contact the link holds: none or the one found, or the one
        `left` names (an earlier try's, whose pointer it leaves in the same write: in workspace `left_in`, the one
        that try wrote it in, when the campaign moved since; else the claim's)."""
        holds = LinkItem.contact_id == left if left else (
            LinkItem.contact_id.does_not_exist() | (LinkItem.contact_id == found.contact_id))
        condition = (LinkItem.claim == claim.token) & holds
        if found.held_read is not None:     # (held to what the link held as the try read it: FoundContact.held_read)
            condition = condition & _same(LinkItem.held_at, found.held_read[0]) \
                & _same(LinkItem.held_by, found.held_read[1])
        return [Update(LinkItem(*link_key(claim.ref)), [
            LinkItem.contact_id.set(found.contact_id), LinkItem.contact_workspace.set(claim.workspace),
            _assign(LinkItem.kind, found.kind),
            _assign(LinkItem.contact_role, found.role), LinkItem.contact_state.remove(),
            _assign(LinkItem.baseline, found.baseline), _assign(LinkItem.baseline_of, found.baseline_of),
            _assign(LinkItem.found_at, found.found_at), LinkItem.contact_found.set(True),
            # (none, or the keep carried: FoundContact.kept_at)
            *(_assign(getattr(LinkItem, name), None if value is False else value)
              for name, value in found.armed_fields().items()),
            LinkItem.updated_at.set(iso(self.clock()))], condition),
            _add_ref(contact_key(claim.workspace, found.contact_id), claim.ref),
            *(_leave(contact_key(left_in or claim.workspace, left), claim.ref) if left else ())]

    def hold_found(self, held: Sequence[tuple[JoinClaim, FoundContact]]) -> list[Optional[Exception]]:
        """One transaction for them all (up to 50 people); when it is refused (a lost claim) or conflicts, each
        is held alone to tell which."""
        if 1 < len(held) <= MAX_TRANSACTION // 2:
            try:
                self.history.transact_all([(claim.ref, [], self._hold(claim, found)) for claim, found in held])
                return [None] * len(held)
            except TransactWriteError:
                pass
        return [answer_or_error(partial(self._hold_one, claim, found)) for claim, found in held]

    def _hold_one(self, claim: JoinClaim, found: FoundContact) -> None:
        # (a contact's pointer another person's join writes too: a conflict is tried again; a link holding an earlier
        # try's contact, another one, leaves its pointer: read, and written again holding to it)
        with _or_busy("lost the claim on this join to another worker"):
            left: Optional[str] = None
            left_in: Optional[str] = None
            for tried in range(1, CONFLICT_TRIES + 1):
                try:
                    return self._retrying_conflicts(
                        lambda: self.history.transact(claim.ref, [], *self._hold(claim, found, left, left_in)))
                except TransactWriteError as exc:
                    item = get(LinkItem, link_key(claim.ref), consistent=True) if conditional(exc) else None
                    if tried == CONFLICT_TRIES or item is None or item.claim != claim.token or not item.contact_id:
                        raise
                    if found.held_read is not None and (item.held_at, item.held_by) != found.held_read:
                        raise Busy(KEPT_MEANWHILE, retry_after=1.0) from None   # (its retry carries the keep)
                    # (the link on the contact found already, a merge's webhook having moved it there meanwhile: held
                    # again as it is, nothing to leave)
                    left, left_in = (item.contact_id, item.contact_workspace or item.workspace) \
                        if item.contact_id != found.contact_id else (None, None)

    def reopen_ignored_many(self, ignored: Sequence[tuple[PersonRef, str, Sequence[Entry]]]) -> list[bool]:
        """In transactions of up to 50 people (the link and one entry each); when one is refused (a link
        no longer ignored), each of its people is reopened alone to tell which."""
        now = iso(self.clock())

        def reopen(ref: PersonRef, reason: str) -> Update:
            return Update(LinkItem(*link_key(ref)), [
                LinkItem.status.set(LinkStatus.WAITING.value), LinkItem.reason.set(reason),
                LinkItem.updated_at.set(now)], LinkItem.status == LinkStatus.IGNORED.value)

        answers: list[bool] = []
        for start in range(0, len(ignored), MAX_TRANSACTION // 2):
            chunk = ignored[start:start + MAX_TRANSACTION // 2]
            try:
                if len(chunk) > 1 and all(len(entries) <= 1 for _, _, entries in chunk) \
                        and len({PersonRef(*ref) for ref, _, _ in chunk}) == len(chunk):
                    self.history.transact_all([(PersonRef(*ref), entries, [reopen(PersonRef(*ref), reason)])
                                               for ref, reason, entries in chunk])
                    answers += [True] * len(chunk)
                    continue
            except TransactWriteError:
                pass
            answers += [applied(lambda: self.history.transact(PersonRef(*ref), entries, reopen(PersonRef(*ref), reason)))
                        for ref, reason, entries in chunk]
        return answers

    # --- referral counts -------------------------------------------------------------------
    def referrals(self, ref: PersonRef) -> Optional[ReferralCount]:
        # Strongly consistent: a write-back reads the count its PUT must match (after the join's ADD).
        item = get(ReferralItem, referrals_key(ref), consistent=True)
        return item.to_count() if item is not None else None

    def referrals_many(self, refs: Iterable[PersonRef]) -> dict[PersonRef, ReferralCount]:
        items = batch_get(ReferralItem, map(referrals_key, refs), consistent=True)
        return {referrer_of(i.pk, i.sk): i.to_count() for i in items}

    def referrals_in(self, campaign_id: str) -> dict[PersonRef, ReferralCount]:
        pk, prefix = campaign_referrals(campaign_id)
        items = ReferralItem.query(pk, ReferralItem.sk.startswith(prefix))
        return {referrer_of(i.pk, i.sk): i.to_count() for i in items}

    def referrer_contact(self, ref: PersonRef, contact_id: str, workspace: str) -> ReferralCount:
        item = ReferralItem(*referrals_key(ref))
        item.update(actions=[ReferralItem.contact_id.set(contact_id), ReferralItem.contact_workspace.set(workspace),
                             ReferralItem.updated_at.set(iso(self.clock()))])
        return item.to_count()                       # (update reads the whole item back)

    def drop_referrer_contact(self, ref: PersonRef, contact_id: str, workspace: Optional[str] = None) -> bool:
        recorded = ReferralItem.contact_workspace.does_not_exist()
        return applied(lambda: ReferralItem(*referrals_key(ref)).update(
            actions=[ReferralItem.contact_id.remove(), ReferralItem.contact_workspace.remove(),
                     ReferralItem.updated_at.set(iso(self.clock()))],
            condition=(ReferralItem.contact_id == contact_id) & (
                recorded if workspace is None else recorded | (ReferralItem.contact_workspace == workspace))))

    def forget_referrals(self, ref: PersonRef) -> bool:
        item = ReferralItem(*referrals_key(ref))
        return applied(lambda: item.delete(condition=ReferralItem.pk.exists()))

    def referrals_written(self, ref: PersonRef, n: int, attribute: str) -> None:
        applied(lambda: ReferralItem(*referrals_key(ref)).update(
            actions=[ReferralItem.written.set(n), ReferralItem.written_to.set(attribute)],
            condition=ReferralItem.pk.exists()))

    def count_applied_many(self, leads: Sequence[tuple[PersonRef, str, Sequence[Entry]]]) -> list[bool]:
        """In as few transactions as fit (_counting_chunks). When DynamoDB cancels one on some
        leads' conditions (counted meanwhile, by another run or their join; erased), its cancellation
        reasons name them: they are left out, and the others written again."""
        first: dict[PersonRef, int] = {}
        for i, (ref, _, _) in enumerate(leads):
            first.setdefault(PersonRef(*ref), i)          # (a lead named twice counts at its first)
        counted: set[int] = set()
        for chunk in _counting_chunks([(i, *leads[i]) for i in sorted(first.values())]):
            counted |= self._count_chunk(chunk)
        return [i in counted for i in range(len(leads))]

    @staticmethod
    def _counting(chunk: list[_Counting], at: float) -> _Groups:
        """The leads' link updates, counted `at` (their referrers' count updates follow them)."""
        return [(ref, entries, [_counts_for(ref, referrer, at)]) for _, ref, referrer, entries in chunk]

    def _count_chunk(self, chunk: list[_Counting]) -> set[int]:
        """Count the leads of one transaction: the positions of those counted. Each try after a
        cancelled one leaves out a lead at least (a conflict alone is tried again as such)."""
        while chunk:
            try:
                # (the count items are those finishing joins of these referrers write: a conflict is
                # retried, dated anew)
                self._counting_write(partial(self._counting, chunk), [_referrer(lead) for lead in chunk])
                return {i for i, *_ in chunk}
            except TransactWriteError as exc:
                if not conditional(exc):
                    raise
                refused = self.history.refused(exc, self._counting(chunk, 0.0))   # (the leads': theirs come first)
            if not refused:          # the reasons did not say whose: each alone (one alone was refused)
                return set().union(*(self._count_chunk([lead]) for lead in chunk)) if len(chunk) > 1 else set()
            chunk = [lead for n, lead in enumerate(chunk) if n not in refused]
        return set()

    # --- what Intercom says of the contact ---------------------------------------------------
    def move(self, link: Link, contact_id: str, entries: Sequence[Entry], role: Optional[str] = None,
             baseline: Any = KEEP, baseline_of: Optional[str] = KEEP, when: Optional[float] = None,
             left: bool = False, stays: bool = False) -> Optional[Link]:
        old = link.contact_id
        if old == contact_id:
            return link
        now = iso(self.clock())
        actions: list[Action] = [LinkItem.contact_id.set(contact_id), LinkItem.contact_workspace.set(link.workspace),
                                 LinkItem.updated_at.set(now),
                                 LinkItem.contact_state.remove()]   # the survivor is alive, whatever the old one's
        if role:
            actions.append(LinkItem.contact_role.set(role))
        changes: dict[str, Any] = {name: value for name, value in (("baseline", baseline), ("baseline_of", baseline_of))
                                   if value is not KEEP}
        actions += [_assign(getattr(LinkItem, name), value) for name, value in changes.items()]
        actions.append(LinkItem.contact_created.remove())      # (the contact it moves to is not one the join made)
        if old and left and not stays:      # (one staying in Intercom is a contact with her email as any other)
            actions.append(LinkItem.left_contacts.add({old}))
        moved_at = when if when is not None else by_the_second(self.clock())
        actions.append(LinkItem.last_moved_at.set(moved_at))     # (every move: one that records nothing it left too)
        changes["last_moved_at"] = moved_at
        if when is not None and (link.last_event_at is None or link.last_event_at < when):
            # (not held to the stored one: events of the contact it leaves, the only ones applied to it meanwhile, are
            # older than the merge that moves it; a later move reads the link first, which a Busy retry does too)
            actions.append(LinkItem.last_event_at.set(when))
            changes["last_event_at"] = when
        taken = bool(changes.keys() & {"baseline", "baseline_of"})
        # Named no role, the link keeps the stored one, and is returned with it (the memory twin's): the write holds
        # only while the role is the one known, and one set meanwhile (another event) is read back and known.
        known = link.contact_role
        # (the workspace whose pointer names the old contact, as read: the link's, or an earlier try's when the
        # campaign moved since; a first write holding to the link's is refused, and reads it)
        held_in: Optional[str] = None
        # What the link holds on the contact it leaves (`left`), recorded as read, and held to: one armed, or whose
        # baseline a backfill took, meanwhile is read again (a late notification of that contact is judged by it)
        then, kept = link, link.left_baselines
        for tried in range(1, CONFLICT_TRIES + 1):
            # (held to the values seen on her other contacts as read: one recorded meanwhile is read again, and
            # returned, for the merge to judge: contact_events._seen_before_merge)
            condition = (LinkItem.contact_id == old) & _pointed_in(held_in, link.workspace) \
                & _same(LinkItem.duplicates_seen, seen_stored(then.duplicates_seen))
            if not role:
                condition = condition & _same(LinkItem.contact_role, known)
            # A change her join kept for its finish (Link.keeps_for_join, as read) is hers: carried, with its arm, held
            # to the link not linked and armed as read. Else a value held back was the contact left's (an older change
            # away on this one is no change on that one): cleared; and the armed state with a baseline taken (a value
            # seen missing the target was the other contact's). A link not linked read without a keep is held to its
            # armed state as read too: a keep written meanwhile is read again, and carried.
            carried = then.keeps_for_join
            armed: dict[str, Any] = {} if carried else {
                **({"armed": False, "armed_by": None, "armed_at": None} if taken else {}),
                "held_at": None, "held_by": None}
            if then.status is not LinkStatus.LINKED:
                condition = condition & _armed_as(then) & (LinkItem.status != LinkStatus.LINKED.value)
            recorded: list[Action] = [*(getattr(LinkItem, name).remove() for name in armed)]
            if old and left:
                kept = left_with(then.left_baselines, LeftContact.of(then, moved_at, baseline_of, not taken,
                                                                     held=stays))
                recorded.append(LinkItem.left_baselines.set(left_stored(kept)))
                condition = condition & _same(LinkItem.left_baselines, left_stored(then.left_baselines)) \
                    & _same(LinkItem.baseline_of, then.baseline_of) \
                    & _armed_as(then)
            updates: list[Update | Delete] = [Update(LinkItem(*link_key(link.ref)), actions + recorded, condition)]
            if old:         # (the merged contact's pointer goes when it named her alone, as an email's does)
                updates += _leave(contact_key(held_in or link.workspace, old), link.ref)
            updates.append(_add_ref(contact_key(link.workspace, contact_id), link.ref))
            try:
                with _or_busy("the link moved meanwhile (another worker applied the merge)"):
                    self.history.transact(link.ref, entries, *updates)
                break
            except Busy:    # the link moved, or only the pointer changed: another person's link left it at once
                stored = get(LinkItem, link_key(link.ref), consistent=True)   # (two campaigns' links of one contact
                if stored is None:                                            # following one merge)
                    return None     # erased meanwhile (`bridge forget`): its condition wrote nothing back
                if tried == CONFLICT_TRIES or stored.contact_id != old:
                    raise
                known, held_in, then = stored.contact_role, stored.contact_workspace, stored.to_link()
        # (what it cleared, removed above, over the armed state as the write held it)
        kept_armed = {name: getattr(then, name) for name in ("armed", "armed_by", "armed_at", "held_at", "held_by")} \
            | armed
        return dataclasses.replace(link, contact_id=contact_id, contact_state=None, contact_created=False,
                                   contact_role=role or known, updated_at=now, **changes, **kept_armed,
                                   left_contacts=link.left_contacts | ({old} if old and left and not stays else set()),
                                   left_baselines=kept, duplicates_seen=then.duplicates_seen)

    def set_contact(self, link: Link, entries: Sequence[Entry], *, when: Optional[float] = None,
                    role: Optional[str] = KEEP, state: Optional[ContactState] = KEEP,
                    email: str = KEEP) -> Optional[Link]:
        changes: dict[str, Any] = {name: value for name, value in (("contact_role", role), ("contact_state", state),
                                                                   ("email", email)) if value is not KEEP}
        on_it = _same(LinkItem.contact_id, link.contact_id)      # what is set is that contact's
        if email is KEEP:
            return self._set(link, entries, when, changes, on_it)
        # The pointers follow the email in the same write, from the email the link still has (a condition).
        old = email_key(link.workspace, link.email) if link.email else None
        new = email_key(link.workspace, email)
        pointers = [_add_ref(new, link.ref), *(_leave(old, link.ref) if old else ())] if new != old else []
        return self._set(link, entries, when, changes, on_it & _same(LinkItem.email, link.email), *pointers)

    def stamp_rule(self, campaign_id: str, attribute: str, key: str) -> int:
        kept = LinkItem.pk.exists()
        unrecorded = (kept & LinkItem.baseline_of.does_not_exist() & (LinkItem.qualification.exists() | (
            (LinkItem.status != LinkStatus.LINKED.value) & LinkItem.contact_id.exists()
            & LinkItem.contact_found.does_not_exist())))  # Link.baseline_unrecorded
        unarmed = kept & (LinkItem.armed == True) & LinkItem.armed_by.does_not_exist()  # noqa: E712 (armed_unrecorded)
        left = kept & LinkItem.left_baselines.exists()      # (what it left may name neither: LeftContact.stamped)
        pk, prefix = campaign_links(campaign_id)
        stamped = 0
        for item in LinkItem.query(pk, LinkItem.sk.startswith(prefix), filter_condition=unrecorded | unarmed | left,
                                   page_size=LINKS_PAGE):
            link, stored = item.to_link(), LinkItem(item.pk, item.sk)
            writes = [*([(LinkItem.baseline_of.set(attribute), unrecorded)] if link.baseline_unrecorded else []),
                      *([(LinkItem.armed_by.set(key), unarmed)] if link.armed_unrecorded else [])]
            # (one write each, on its own condition: one a worker made moot meanwhile leaves the other's)
            done = [applied(partial(stored.update, actions=[action], condition=condition))
                    for action, condition in writes]
            stamped += any([*done, self._stamp_left(link, attribute, key)])
        return stamped

    def _stamp_left(self, link: Link, attribute: str, key: str) -> bool:
        """What `link` left, named the rule settings replace where an earlier version left it unnamed, held to the
        records as read: written meanwhile (a move, a late value armed), read again; erased, nothing written."""
        for _ in range(CONFLICT_TRIES):
            left = left_stamped(link, attribute, key)
            if left == link.left_baselines:
                return False
            if applied(partial(LinkItem(*link_key(link.ref)).update, actions=[
                    LinkItem.left_baselines.set(left_stored(left))], condition=LinkItem.pk.exists() & _same(
                        LinkItem.left_baselines, left_stored(link.left_baselines)))):
                return True
            item = get(LinkItem, link_key(link.ref), consistent=True)
            if item is None:
                return False
            link = item.to_link()
        raise Busy("what the link left changed while the rule was recorded on it (another worker): apply again")

    def arm(self, link: Link, entries: Sequence[Entry], by: str, at: Optional[float] = None,
            keep_held: bool = True, hold: Optional[float] = None) -> Link:
        # (armed on the contact `link` names: a link moved meanwhile is Busy; None: erased meanwhile; armed otherwise
        # meanwhile (since another time, under another rule, or at all: one armed since always by a value of no known
        # time is not narrowed by a worker that read it unarmed), Busy: its retry judges the value against it)
        # (a join's keep, `hold`: held to the link's status as read too, Busy: its join finished or moved on since)
        same = _same(LinkItem.contact_id, link.contact_id) & _armed_as(link)
        return self._set(link, entries, None, link.armed_fields(by, at, keep_held, hold),
                         same if hold is None else same & (LinkItem.status == link.status.value)) or link

    def hold_back(self, link: Link, entries: Sequence[Entry], at: float, by: str) -> Link:
        return self._set(link, entries, None, {"held_at": at, "held_by": by},
                         _same(LinkItem.contact_id, link.contact_id) & _armed_as(link)) or link

    def arm_left(self, link: Link, contact_id: str, entries: Sequence[Entry], by: str, at: Optional[float] = None,
                 carry: bool = False, keep_held: bool = True, drop_left_held: bool = False) -> Link:
        record = link.left_armed(contact_id, by, at, drop_left_held)
        return link if record is None else self._write_left(     # (None: nothing recorded of that contact)
            link, entries, record, link.armed_fields(by, at, keep_held) if carry else None)

    def hold_left(self, link: Link, contact_id: str, entries: Sequence[Entry], at: float, by: str) -> Link:
        record = link.left_held(contact_id, at, by)
        return link if record is None else self._write_left(link, entries, record, None)

    def _write_left(self, link: Link, entries: Sequence[Entry], record: LeftContact,
                    carried: Optional[dict[str, Any]]) -> Link:
        """`record` in place of the link's of its contact, held to the records as read; `carried`: the link's own
        armed fields too, held to its contact and armed state as read (arm_left's `carry`)."""
        carry = carried is not None
        kept = left_with(link.left_baselines, record)
        now = iso(self.clock())
        armed: dict[str, Any] = carried or {}
        condition = LinkItem.pk.exists() & _same(LinkItem.left_baselines, left_stored(link.left_baselines))
        if carry:       # (the link itself too, as arm: on the contact and armed as `link` reads)
            condition = condition & _same(LinkItem.contact_id, link.contact_id) & _armed_as(link)
        try:
            with _or_busy("what the link held on the contacts it left, or its armed state, changed meanwhile "
                          "(another worker)"):
                self.history.transact(link.ref, entries, Update(LinkItem(*link_key(link.ref)), [
                    LinkItem.left_baselines.set(left_stored(kept)), LinkItem.updated_at.set(now),
                    *(_assign(getattr(LinkItem, name), value) for name, value in armed.items())], condition))
        except Busy:
            stored = get(LinkItem, link_key(link.ref), consistent=True)
            if stored is None:
                return link             # erased meanwhile: nothing about the person is written back
            if carry and stored.contact_id != link.contact_id:     # (as arm says it: read again, soon)
                raise Busy(MOVED_SINCE_READ, retry_after=1.0) from None
            raise
        return dataclasses.replace(link, left_baselines=kept, updated_at=now, **armed)

    def see_duplicate(self, link: Link, seen: DuplicateSeen) -> Link:
        """(One conditional update, no transaction: nothing else is written with it.)"""
        kept = seen_with(link.duplicates_seen, seen)
        if kept == link.duplicates_seen:
            return link
        now = iso(self.clock())
        item = LinkItem(*link_key(link.ref))
        if applied(lambda: item.update(
                actions=[LinkItem.duplicates_seen.set(seen_stored(kept)), LinkItem.updated_at.set(now)],
                # (and to the contact it is on: one a merge moved it onto since, that merge judged without this
                # record; Busy, and the retry finds the link on that contact and judges the value as hers)
                condition=LinkItem.pk.exists() & _same(LinkItem.contact_id, link.contact_id)
                & _same(LinkItem.duplicates_seen, seen_stored(link.duplicates_seen)))):
            return dataclasses.replace(link, duplicates_seen=kept, updated_at=now)
        if get(LinkItem, link_key(link.ref), consistent=True) is None:
            return link                 # erased meanwhile: nothing about the person is written back
        raise Busy("the values seen on her other contacts, or the contact she is on, changed meanwhile "
                   "(another worker)")

    def take_baselines(self, taken: Sequence[tuple[Link, Any, str, Sequence[Entry]]],
                       read_at: Optional[float] = None) -> list[bool]:
        """One transaction per lead (the link and its history): a backfill's page of leads, read one contact each."""
        at = by_the_second(read_at if read_at is not None else self.clock())
        return [link.qualification in (None, QState.PENDING) and applied(lambda: self.history.transact(
            link.ref, entries, self._take_baseline(link, baseline, attribute, at)))
            for link, baseline, attribute, entries in taken]

    def _take_baseline(self, link: Link, baseline: Any, attribute: str, at: float) -> Update:
        now = iso(self.clock())
        return Update(LinkItem(*link_key(link.ref)), [
            _assign(LinkItem.baseline, baseline), LinkItem.baseline_of.set(attribute), LinkItem.baseline_at.set(at),
            LinkItem.armed.remove(),
            LinkItem.armed_by.remove(), LinkItem.armed_at.remove(), LinkItem.held_at.remove(), LinkItem.held_by.remove(),
            LinkItem.qualification.set(QState.PENDING.value),
            LinkItem.pending_pk.set(PENDING), LinkItem.pending_sk.set(f"{now}#{link.ref}"),
            LinkItem.updated_at.set(now)],
            (LinkItem.status == LinkStatus.LINKED.value) & _same(LinkItem.qualification, link.qualification)
            & _same(LinkItem.baseline_of, link.baseline_of))

    def _set(self, link: Link, entries: Sequence[Entry], when: Optional[float], changes: dict,
             same: Any = None, *pointers: Update) -> Optional[Link]:
        """The link's `changes`, in event time order (`when`) and while the stored link is the `same`,
        with the `pointers`' updates and the entries, at once."""
        now = iso(self.clock())
        actions = [LinkItem.updated_at.set(now)]
        actions += [_assign(getattr(LinkItem, name), getattr(v, "value", v)) for name, v in changes.items()]
        condition = LinkItem.pk.exists()
        if when is not None:
            actions.append(LinkItem.last_event_at.set(when))
            condition &= LinkItem.last_event_at.does_not_exist() | (LinkItem.last_event_at <= when)
            changes["last_event_at"] = when
        try:
            self.history.transact(link.ref, entries, Update(LinkItem(*link_key(link.ref)), actions,
                                                            condition if same is None else condition & same),
                                  *pointers)
        except TransactWriteError as exc:
            if not conditional(exc):
                raise
            stored = get(LinkItem, link_key(link.ref), consistent=True)
            if stored is None:
                return None             # erased meanwhile: nothing about the person is written back
            if stored.contact_id != link.contact_id:
                raise Busy(MOVED_SINCE_READ, retry_after=1.0) from None
            if when is None or stored.last_event_at is None or stored.last_event_at <= when:
                raise Busy("the link changed meanwhile (another worker applied an Intercom event)") from None
            self.note_repeat(link.ref, "older_event", "an Intercom event older than one already applied was ignored")
            return None
        return dataclasses.replace(link, updated_at=now, **changes)

    # --- qualification ------------------------------------------------------------------------
    def start_qualifying(self, link: Link, replay: bool = False, lease: Optional[float] = None) -> Claim | Link | None:
        now, token = self.clock(), uuid.uuid4().hex
        key = link_key(link.ref)
        try:
            answer = LinkItem._get_connection().update_item(
                *key, actions=[LinkItem.qualification.set(QState.QUALIFYING.value), LinkItem.claim.set(token),
                               LinkItem.lease_until.set(now + self._lease(lease)),
                               LinkItem.overdue_pk.set(OVERDUE), *_NOT_REQUEUED],
                condition=LinkItem.qualification.is_in(*(s.value for s in claimable(replay)))
                | ((LinkItem.qualification == QState.QUALIFYING.value) & _lease_ended(now)),
                return_values="ALL_OLD")
        except UpdateError as exc:
            if not conditional(exc):
                raise
            current = get(LinkItem, key)
            return current.to_link() if current is not None else None
        before = LinkItem.from_raw_data(answer["Attributes"]).to_link()
        return Claim(token, dataclasses.replace(before, qualification=QState.QUALIFYING),
                     took_over=before.qualification is QState.QUALIFYING, previous=before.qualification)

    def note(self, ref: PersonRef, entries: Sequence[Entry], enrolled: Optional[str] = None) -> None:
        kept = (_enrolled(ref, enrolled),) if enrolled is not None else _kept(ref)
        any(applied(partial(self.history.transact, ref, entries, check)) for check in kept)

    def note_many(self, noted: Sequence[tuple[PersonRef, Sequence[Entry]]], at: Optional[float] = None) -> None:
        # Who is kept is read first (a link, else a count: one batch read per NOTE_CHUNK people), then one
        # transaction per NOTE_CHUNK holds each entry to what was read: a replay of thousands of dead letters makes
        # a round trip per fifty of them, and none to note people the bridge does not keep.
        people: dict[PersonRef, list[Entry]] = {}
        for ref, entries in noted:        # (one person's letters in one item: a transaction names an item once)
            people.setdefault(PersonRef(*ref), []).extend(entries)
        wanted = [(ref, entries) for ref, entries in people.items() if entries]
        for start in range(0, len(wanted), NOTE_CHUNK):
            self._note_chunk(wanted[start:start + NOTE_CHUNK], at)

    def _note_chunk(self, chunk: Sequence[tuple[PersonRef, Sequence[Entry]]], at: Optional[float] = None) -> None:
        """Note the people of one transaction who are kept; one erased meanwhile (its check refused, as the
        cancellation reasons say) is left out, and the others written again."""
        refs = [ref for ref, _ in chunk]
        linked = set(self.get_many(refs, consistent=True))
        counted = set(self.referrals_many(r for r in refs if r not in linked))
        groups: list[tuple[PersonRef, Sequence[Entry], Sequence[Check]]] = [
            (ref, entries, [_kept(ref)[0 if ref in linked else 1]])
                           for ref, entries in chunk if ref in linked or ref in counted]
        while groups:
            try:
                self._retrying_conflicts(partial(self.history.transact_all, groups, at))
                return
            except TransactWriteError as exc:
                if not conditional(exc):
                    raise
                refused = self.history.refused(exc, groups)
            if not refused:         # the reasons did not say whose: each alone
                for ref, entries, checks in groups:
                    applied(partial(self.history.transact_all, [(ref, entries, checks)], at))
                return
            groups = [group for n, group in enumerate(groups) if n not in refused]

    def note_latest(self, ref: PersonRef, entry: Entry) -> None:
        # (its callers note a referrer's count: held to the count first, which a sync-enrolled referrer has without
        # a link, where trying the link first made a refused transaction of each note)
        latest = Put(self.history.latest(ref, entry))
        any(applied(partial(self.history.transact, ref, (), latest, kept)) for kept in reversed(_kept(ref)))

    def note_repeat(self, ref: PersonRef, event: str, reason: str, outcome: str = "ignored",
                    restart_after: Optional[float] = None) -> None:
        self.history.note_repeat(ref, event, reason, outcome, restart_after, while_there=_kept(ref))

    def finish_qualifying(self, claim: Claim, state: QState, entries: Sequence[Entry],
                          reason: Optional[str] = None, lease: Optional[float] = None,
                          rf_said_no: bool = False) -> Link:
        if state not in ENDINGS:
            raise ValueError(f"a qualification claim cannot end in {state}")
        link, at = claim.link, self.clock()
        now = iso(at)
        actions = [LinkItem.qualification.set(state.value), LinkItem.claim.remove(), LinkItem.updated_at.set(now),
                   _assign(LinkItem.reason, reason or None), LinkItem.pending_pk.remove(), LinkItem.pending_sk.remove(),
                   *_NOT_REQUEUED]
        if state is QState.QUALIFIED:
            actions.append(LinkItem.qualified_at.set(now))
        if state is QState.UNCONFIRMED:     # overdue once the lease runs, unless a retry finishes it first
            actions += [LinkItem.lease_until.set(at + self._lease(lease)),
                        LinkItem.overdue_pk.set(OVERDUE),
                        LinkItem.rf_said_no.set(True) if rf_said_no else LinkItem.rf_said_no.remove()]
        else:                               # qualified, or failed: a 4xx is not retried every run
            actions += [LinkItem.lease_until.remove(), LinkItem.overdue_pk.remove(), LinkItem.rf_said_no.remove()]
        actions += [LinkItem.letter_owed.set(True), LinkItem.refused_at.set(at)] if state is QState.FAILED else [
            LinkItem.letter_owed.remove()]
        actions += [LinkItem.refusal_discarded.remove(), LinkItem.rf_deleted_at.remove()]
        with _or_busy("lost the qualification claim to another worker"):
            self.history.transact(link.ref, entries, Update(LinkItem(*link_key(link.ref)), actions,
                                                            LinkItem.claim == claim.token))
        return dataclasses.replace(link, qualification=state, reason=reason or None, updated_at=now,
                                   qualified_at=now if state is QState.QUALIFIED else link.qualified_at,
                                   rf_said_no=rf_said_no if state is QState.UNCONFIRMED and rf_said_no else None,
                                   letter_owed=state is QState.FAILED, refusal_discarded=False, rf_deleted_at=None,
                                   refused_at=at if state is QState.FAILED else link.refused_at)

    def lettered(self, ref: PersonRef, reason: str) -> None:
        applied(lambda: LinkItem(*link_key(ref)).update(
            actions=[LinkItem.letter_owed.remove(), LinkItem.refused_at.set(self.clock())],
            condition=LinkItem.letter_owed.exists() & (LinkItem.reason == reason)))

    def discard_refusals(self, refs: Iterable[PersonRef]) -> None:
        for ref in dict.fromkeys(PersonRef(*r) for r in refs):
            applied(partial(LinkItem(*link_key(ref)).update, actions=[LinkItem.refusal_discarded.set(True)],
                            condition=LinkItem.qualification == QState.FAILED.value))

    def rf_deleted(self, found: Sequence[tuple[Link, Sequence[Entry]]]) -> list[bool]:
        at = self.clock()

        def as_read(link: Link) -> Condition:
            # (the refusal read: its date, or none and the last write's, which dates it; updated_at left as it is)
            if link.refused_at is not None:
                return LinkItem.refused_at == link.refused_at
            return LinkItem.refused_at.does_not_exist() & _same(LinkItem.updated_at, link.updated_at)
        return [applied(partial(self.history.transact, link.ref, entries, Update(
            LinkItem(*link_key(link.ref)), [LinkItem.rf_deleted_at.set(at)],
            (LinkItem.qualification == QState.FAILED.value) & as_read(link)))) for link, entries in found]

    def unpend(self, link: Link, reason: str) -> Link:
        applied(lambda: self.history.transact(link.ref, [Entry("reconciliation", "stopped", reason)], Update(
            LinkItem(*link_key(link.ref)), [LinkItem.pending_pk.remove(), LinkItem.pending_sk.remove()],
            LinkItem.pk.exists())))        # (erased meanwhile: nothing about the person is written back)
        return link

    def pending(self, after: Optional[str], limit: int) -> PendingPage:
        condition = LinkItem.pending_sk > after if after else None
        items = list(LinkItem.pending.query(PENDING, range_key_condition=condition, limit=limit))
        return PendingPage([i.to_link() for i in items], items[-1].pending_sk if items else None)

    def count_pending(self, before: Optional[str] = None, limit: Optional[int] = None) -> int:
        condition = LinkItem.pending_sk < before if before else None
        if limit is None:
            return LinkItem.pending.count(PENDING, range_key_condition=condition)
        # (a Count query reads on to the end whatever its Limit, which only sizes its pages: these stop at `limit`)
        return sum(1 for _ in LinkItem.pending.query(PENDING, range_key_condition=condition, limit=limit,
                                                     attributes_to_get=["pk", "sk"]))

    def overdue(self, now: float, limit: int) -> list[Overdue]:
        items = LinkItem.overdue.query(OVERDUE, range_key_condition=LinkItem.lease_until < now, limit=limit)
        return [Overdue(i.to_link(), float(i.lease_until if i.lease_ended is None else i.lease_ended),
                        due=float(i.lease_until), requeued=int(i.requeued or 0)) for i in items]

    def requeue(self, late: Overdue, retry_at: float, entries: Sequence[Entry]) -> bool:
        update = Update(LinkItem(*link_key(late.link.ref)), [
            LinkItem.lease_until.set(retry_at), LinkItem.lease_ended.set(LinkItem.lease_ended | late.due),
            LinkItem.requeued.add(1)], LinkItem.lease_until == late.due)
        return applied(lambda: self.history.transact(late.link.ref, entries, update))

    def unqueue(self, late: Overdue, retry_at: float, entries: Sequence[Entry]) -> bool:
        as_read = (LinkItem.lease_ended.set(late.lease_until), LinkItem.requeued.set(late.requeued)) if late.requeued \
            else _NOT_REQUEUED
        update = Update(LinkItem(*link_key(late.link.ref)), [LinkItem.lease_until.set(late.due), *as_read],
                        LinkItem.lease_until == retry_at)
        return applied(lambda: self.history.transact(late.link.ref, entries, update))

    # --- pointers earlier versions left (`bridge pointers`) ----------------------------------
    def pointers(self, after: Optional[str], limit: int) -> PointerPage:
        from ...domain.pointers import Placed, Pointer

        # A scan (one-off maintenance: the pointers have no index of their own), filtered to the pointer items.
        pointed = PointerItem.sk == "LINKS"
        pointed &= PointerItem.pk.startswith(POINTER_PREFIXES[0]) | PointerItem.pk.startswith(POINTER_PREFIXES[1])
        pages = PointerItem.scan(filter_condition=pointed, page_size=limit, consistent_read=True,
                                 last_evaluated_key=json.loads(after) if after else None).page_iter
        page = next(pages)
        pointers = []
        for raw in page.get(_FOUND, []):
            item = PointerItem.from_raw_data(raw)
            kind, workspace, value = pointer_of(item.pk)
            pointers.append(Pointer(kind, workspace, value, frozenset(PersonRef.parse(r) for r in item.links or ())))
        refs = sorted({ref for p in pointers for ref in p.refs})
        placed = {(i := item.to_link()).ref: Placed(i, item.contact_workspace)
                  for item in batch_get(LinkItem, map(link_key, refs), consistent=True)}
        start = pages.last_evaluated_key
        return PointerPage(pointers, placed, json.dumps(start, sort_keys=True) if start else None)

    def drop_reference(self, finding: Finding) -> bool:
        from ...domain.pointers import CONTACT

        pointer, ref = finding.pointer, finding.ref
        key = (contact_key if pointer.kind == CONTACT else email_key)(pointer.workspace, pointer.value)
        leave = _leave(key, ref)
        if not leave:
            return False
        check = Check(LinkItem, link_key(ref), _still_stale(finding))
        return applied(lambda: self._retrying_conflicts(lambda: self.history.transact(ref, (), check, *leave)))

    def place_contact(self, finding: Finding) -> bool:
        from ...domain.pointers import CONTACT

        pointer, ref, read = finding.pointer, finding.ref, finding.read
        if read is None or pointer.kind != CONTACT:
            return False
        named = Check(PointerItem, contact_key(pointer.workspace, pointer.value), PointerItem.links.contains(str(ref)))
        place = Update(LinkItem(*link_key(ref)), [LinkItem.contact_workspace.set(pointer.workspace)],
                       LinkItem.pk.exists() & LinkItem.contact_workspace.does_not_exist()
                       & (LinkItem.contact_id == pointer.value) & (LinkItem.workspace == read.workspace))
        return applied(lambda: self._retrying_conflicts(lambda: self.history.transact(ref, (), place, named)))

    # --- erasure --------------------------------------------------------------------------
    def erase(self, link: Link) -> Erased:
        lowered, stored, pointers, held_in = self._delete(link)
        self.forget_referrals(link.ref)
        # Last: an entry written with the link (a backfill counting the lead) while it was still there goes too.
        entries = self.history.erase(link.ref)
        contact = stored.contact_id if stored is not None else None
        return Erased(entries, pointers, lowered, contact, held_in if contact else None)

    def _delete(self, link: Link) -> tuple[Optional[PersonRef], Optional[Link], int, Optional[str]]:
        """Delete the link, and take its lead off the count they added to, at once (so that a join
        that comes again counts once again), with the reference of the contact pointer it holds (a move cannot
        come between: its own write holds to the contact the link is on). The referrer whose count it lowered,
        the link as deleted (None: gone already), the pointers' references taken off and the workspace of its
        contact's pointer. An email the link took
        after `link` was read leaves its pointer in that same write (the caller deletes the one it read, last: a
        pointer left for later would name her for good once a `bridge forget` of the one read is interrupted
        before it, as a run again finds nothing by that one). The count never goes
        below 0, nor for a count begun after the lead was counted (`since` later than `counted_at`, by
        more than COUNT_CLOCK_SLACK: the referrer was forgotten since), and a link already gone (a
        repeated forget) takes nothing off. Each delete holds only while the stored link counts for whom
        and since when `link` says, and is on its contact (in the workspace whose pointer names it), email and
        workspace: a link a worker wrote since it was read (a join that finished, a merge followed, an email
        changed) is read again (and so erased). The count lowered owes its write to Intercom from that same write (`counts_owed`)."""
        item, given = LinkItem(*link_key(link.ref)), normal_email(link.email)
        # (the workspace whose pointer names its contact, as read: the link's (None: unset, or as the link's), or an
        # earlier try's, the campaign moved since; a first delete holding to the link's is refused, and reads it)
        held_in: Optional[str] = None
        for _ in range(CONFLICT_TRIES):
            same = ((LinkItem.counted_for == link.counted_for if link.counted_for
                     else LinkItem.counted_for.does_not_exist())
                    & (LinkItem.counted_at == link.counted_at if link.counted_at is not None
                       else LinkItem.counted_at.does_not_exist())
                    & _same(LinkItem.contact_id, link.contact_id) & _same(LinkItem.email, link.email)
                    & (LinkItem.workspace == link.workspace)
                    & _pointed_in(held_in, link.workspace))
            leave = _leave(contact_key(held_in or link.workspace, link.contact_id), link.ref) if link.contact_id else []
            if link.email and normal_email(link.email) != given:    # (changed since: ≤ 4 items with the count's)
                leave += _leave(email_key(link.workspace, link.email), link.ref)
            delete: list[Update | Delete] = [Delete(item, LinkItem.pk.exists() & same), *leave]
            if link.counted_for:
                referrer, now = PersonRef(link.campaign_id, link.counted_for), self.clock()
                # (a count begun after the lead was counted, the referrer's since they were erased, holds
                # no lead counted before, but for COUNT_CLOCK_SLACK; undated, either side: as before the
                # bridge dated them)
                holds = (ReferralItem.n > 0 if link.counted_at is None else (ReferralItem.n > 0) & (
                    ReferralItem.since.does_not_exist() | (ReferralItem.since <= link.counted_at + COUNT_CLOCK_SLACK)))
                writes = (*delete, Update(ReferralItem(*referrals_key(referrer)), [
                    ReferralItem.n.add(-1), ReferralItem.updated_at.set(iso(now)),
                    ReferralItem.overdue_pk.set(COUNT_WRITES), ReferralItem.lease_until.set(now + COUNT_ASK_GRACE)],
                    holds))
                if applied(lambda: self._retrying_conflicts(lambda: self.history.transact(link.ref, (), *writes))):
                    return referrer, link, len(leave), held_in or link.workspace
            # (no count left to lower)
            if applied(lambda: self._retrying_conflicts(lambda: self.history.transact(link.ref, (), *delete))):
                return None, link, len(leave), held_in or link.workspace
            fresh = get(LinkItem, link_key(link.ref), consistent=True)
            if fresh is None:           # gone already: a reference to her on its contact's pointer goes, while it is
                return None, None, self._left_gone(link, held_in), None                     # (as the memory twin)
            link, held_in = fresh.to_link(), fresh.contact_workspace
        raise Busy("the link kept changing while it was erased: run `bridge forget` again")

    def _left_gone(self, link: Link, held_in: Optional[str]) -> int:
        """A link erased already (another erasure came between): the reference to her on the pointer of the contact
        `link` was read on (an earlier version's, left behind) goes, in a write holding while her link is still
        gone (a join of hers linking her again meanwhile keeps it). How many references went (0 or 1)."""
        leave = _leave(contact_key(held_in or link.workspace, link.contact_id), link.ref) if link.contact_id else []
        gone = Check(LinkItem, link_key(link.ref), LinkItem.pk.does_not_exist())
        return len(leave) if leave and applied(
            lambda: self._retrying_conflicts(lambda: self.history.transact(link.ref, (), gone, *leave))) else 0

    def counts_owed(self, now: float, limit: int) -> list[tuple[PersonRef, float]]:
        items = ReferralItem.owed.query(COUNT_WRITES, range_key_condition=ReferralItem.lease_until < now, limit=limit)
        return [(referrer_of(i.pk, i.sk), float(i.lease_until)) for i in items]

    def count_asked(self, ref: PersonRef, due: float) -> bool:
        return applied(lambda: ReferralItem(*referrals_key(ref)).update(
            actions=[ReferralItem.overdue_pk.remove(), ReferralItem.lease_until.remove()],
            condition=ReferralItem.lease_until == due))

    def _counting_write(self, writes: Callable[[float], _Groups], referrers: Sequence[PersonRef]) -> None:
        """One transaction: the people's `writes` dated `at`, and the referrers' counts grown by the
        leads they are named for, counted `at` (_with_counts). `at` is now, but never before a count
        began: when another worker began one later by its own clock, the count's condition refuses
        the transaction (nothing of it applied), and it is built again dated from that count's start
        (so a lead's `counted_at` is never before its count's `since`, and erasing it compares the two
        exactly). A conflict is tried again as such, dated anew; any other refusal (a claim's, a lead's
        counted meanwhile) raises, as does a count begun again at each try (Busy)."""
        floor, at = 0.0, 0.0
        groups: _Groups = []

        def write() -> None:
            nonlocal at, groups
            at = max(self.clock(), floor)
            groups = _with_counts(writes(at), referrers, at)
            self.history.transact_all(groups)
        for _ in range(CONFLICT_TRIES):
            try:
                return self._retrying_conflicts(write)
            except TransactWriteError as exc:
                began = self._began_later(exc, groups, referrers, at)
                if began is None:
                    raise
                floor = began
        raise Busy("the referrer's count began again while this lead was counted: try again")

    def _began_later(self, exc: TransactWriteError, groups: _Groups, referrers: Sequence[PersonRef],
                     at: float) -> Optional[float]:
        """The date to count from again, when a transaction of _counting_write was refused by a count's
        condition (the count began after `at`): the latest start of the referrers' counts (strongly
        consistent). None when it was refused for anything else, as its cancellation reasons say (or,
        when they say nothing, when no count began after `at`)."""
        if not referrers or not conditional(exc):
            return None
        refused = self.history.refused(exc, groups)
        if refused and len(groups) - 1 not in refused:        # (the counts' group is the last)
            return None
        starts = batch_get(ReferralItem, map(referrals_key, referrers), consistent=True)
        latest = max((float(i.since) for i in starts if i.since is not None), default=0.0)
        return latest if refused or latest > at else None

    def _retrying_conflicts(self, write: Callable[[], Any]) -> Any:
        """A transaction DynamoDB cancels only as a conflict with another (nothing of it applied) is
        tried again a few times, after a short jittered wait; a failed condition, or anything else,
        raises at once."""
        for retry in range(CONFLICT_TRIES):
            try:
                return write()
            except TransactWriteError as exc:
                if retry == CONFLICT_TRIES - 1 or not conflicted(exc):
                    raise
            self.sleep(random.uniform(0, CONFLICT_BACKOFF * 2 ** retry))


def _enrolled(ref: PersonRef, contact_id: str) -> Check:
    """A note of contact sync about the person holds only while the ledger entry of her contact names her (`bridge
    forget` deletes it, then erases her history once more)."""
    return Check(LedgerItem, ledger_key(ref.campaign_id, contact_id), LedgerItem.rf_user_id == ref.rf_user_id)


@contextmanager
def _or_busy(reason: str) -> Iterator[None]:
    """A write whose condition failed (another worker changed the item meanwhile) raises Busy, saying `reason`."""
    try:
        yield
    except TransactWriteError as exc:
        if conditional(exc):
            raise Busy(reason) from None
        raise


def _still_stale(finding: Finding) -> Condition:
    """The stored link still does not make `finding`'s reference its own (LinkRepository.drop_reference)."""
    from ...domain.pointers import EMAIL, Stale

    pointer = finding.pointer
    if pointer.kind == EMAIL:
        assert finding.read is not None
        return LinkItem.pk.exists() & _same(LinkItem.email, finding.read.email)
    if finding.stale is Stale.ERASED:
        return LinkItem.pk.does_not_exist()
    workspace = pointer.workspace
    return (LinkItem.pk.does_not_exist() | LinkItem.contact_id.does_not_exist() | (LinkItem.contact_id != pointer.value)
            | (LinkItem.contact_workspace.exists() & (LinkItem.contact_workspace != workspace))
            | (LinkItem.contact_workspace.does_not_exist() & (LinkItem.workspace != workspace)))


def _kept(ref: PersonRef) -> tuple[Check, Check]:
    """A note about the person holds only while they are kept: their link, or (a referrer) their referral count,
    exists. Each is the condition of a write of its own (a transaction cannot check one or the other); `bridge
    forget` deletes both before the history, so a note that held to either is erased with it, or not written."""
    return (Check(LinkItem, link_key(ref), LinkItem.pk.exists()),
            Check(ReferralItem, referrals_key(ref), ReferralItem.pk.exists()))
