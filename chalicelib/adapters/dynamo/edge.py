"""The edge's log in DynamoDB (ports/edge.py): refusal counters, a ring of samples, and when each
webhook was last heard. Each count of refusals (one, or a batch's of one reason) is one UpdateItem,
plus one for each of its samples among the first SAMPLES of their reason and hour; every item lives in the scope's one
partition, and all but the last-heard notes expire."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Optional

from ...domain.history import iso
from ...domain.people import digest
from ...ports.edge import REFUSALS_KEEP_DAYS, SAMPLES, RefusalCount, Refusals, RefusalSample
from .keys import edge_pk, heard_sk, refusal_sk, sample_sk
from .models import EdgeItem, batch_delete, get


def hour_of(ts: float) -> str:
    return datetime.fromtimestamp(ts - ts % 3600, timezone.utc).strftime("%Y-%m-%dT%H:00Z")


class DynamoEdge:
    def __init__(self, clock: Callable[[], float]):
        self.clock = clock

    def refused(self, scope: str, *samples: RefusalSample, count: Optional[int] = None) -> None:
        now, first, last = self.clock(), samples[0], samples[-1]
        expires = int(now) + REFUSALS_KEEP_DAYS * 86400
        added = len(samples) if count is None else count
        counter = EdgeItem(edge_pk(scope), refusal_sk(first.reason, hour_of(now)))
        counter.update(actions=[
            EdgeItem.n.add(added), EdgeItem.reason.set(first.reason), EdgeItem.at.set(last.at),
            EdgeItem.first_at.set(EdgeItem.first_at | first.at), EdgeItem.expires_at.set(expires)])
        n = int(counter.n or added)             # the update answers the item as it is now
        for slot, sample in zip(range(n - added, min(n, SAMPLES)), samples):
            # An update each, not a batch write: the edge (the API function) may only update its items.
            EdgeItem(edge_pk(scope), sample_sk(first.reason, slot)).update(actions=[
                EdgeItem.reason.set(first.reason), EdgeItem.at.set(sample.at),
                EdgeItem.message.set(sample.message[:300]),
                *(_set_or_remove(EdgeItem.rf_user_id, sample.rf_user_id)),
                *(_set_or_remove(EdgeItem.email_hash, sample.email_hash)),
                *(_set_or_remove(EdgeItem.email_masked, sample.email_masked)),
                *(_set_or_remove(EdgeItem.contact_id, sample.contact_id)),
                *(_set_or_remove(EdgeItem.campaign_id, sample.campaign_id)),
                *(_set_or_remove(EdgeItem.rf_user_digest, sample.rf_user_digest)),
                *(_set_or_remove(EdgeItem.email_digest, sample.email_digest)),
                *(_set_or_remove(EdgeItem.contact_digest, sample.contact_digest)),
                EdgeItem.expires_at.set(expires)])

    def refusals(self, scope: str) -> Refusals:
        now = int(self.clock())
        counts, samples = [], []
        for item in EdgeItem.query(edge_pk(scope)):
            if item.expires_at is not None and item.expires_at < now:
                continue                       # DynamoDB's TTL deletes it within a day or two
            if item.sk.startswith("REFUSED#"):
                counts.append(RefusalCount(item.reason or "", int(item.n or 0), item.first_at or item.at or "",
                                           item.at or ""))
            elif item.sk.startswith("SAMPLE#"):
                samples.append(_sample(item))
        counts.sort(key=lambda c: c.last_at, reverse=True)
        samples.sort(key=lambda s: s.at, reverse=True)
        return Refusals(counts, samples)

    def forget(self, scope: str, about: Callable[[RefusalSample], bool]) -> int:
        gone = [item for item in EdgeItem.query(edge_pk(scope), EdgeItem.sk.startswith("SAMPLE#"))
                if about(_sample(item))]
        batch_delete(EdgeItem, ((item.pk, item.sk) for item in gone))
        return len(gone)

    def heard(self, scope: str, what: str) -> None:
        # Kept for good, one item per scope and kind (ports/edge.py): a note that expired made a campaign quiet for
        # months read as never heard. One written when it expired loses its TTL here.
        EdgeItem(edge_pk(scope), heard_sk(what)).update(actions=[
            EdgeItem.at.set(iso(self.clock())), EdgeItem.expires_at.remove()])

    def last_heard(self, scope: str, what: str) -> Optional[str]:
        item = get(EdgeItem, (edge_pk(scope), heard_sk(what)))
        return item.at if item is not None else None

    def digest(self, kind: str, value: str) -> str:
        return digest(EdgeItem.Meta.table_name, kind, value)


def _sample(item: EdgeItem) -> RefusalSample:
    return RefusalSample(item.reason or "", item.at or "", item.message or "", item.rf_user_id, item.email_hash,
                         item.email_masked, item.contact_id, item.campaign_id, item.rf_user_digest, item.email_digest,
                         item.contact_digest)


def _set_or_remove(attribute, value):
    return [attribute.set(value)] if value else [attribute.remove()]
