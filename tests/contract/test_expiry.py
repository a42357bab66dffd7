"""What outlives the table's TTL: a deployment that has run for months, its items past `expires_at` deleted as
DynamoDB deletes them (moto never does; the twin keeps what it keeps as the contract says)."""
from __future__ import annotations

import pytest

from chalicelib.adapters.memory import MemoryStore

DAY = 86400


def ttl_pass(store, now: float) -> int:
    """DynamoDB's TTL, run at `now`: every item whose `expires_at` has passed is deleted. How many."""
    if isinstance(store, MemoryStore):
        return 0
    from chalicelib.adapters.dynamo.models import EdgeItem, _client
    client, table, start, gone = _client(), EdgeItem.Meta.table_name, None, 0
    while True:
        page = client.scan(TableName=table, FilterExpression="expires_at < :now",
                           ExpressionAttributeValues={":now": {"N": str(int(now))}},
                           **({"ExclusiveStartKey": start} if start else {}))
        for item in page.get("Items", ()):
            client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
            gone += 1
        start = page.get("LastEvaluatedKey")
        if not start:
            return gone


def test_when_a_webhook_was_last_heard_outlives_a_quiet_season(store, clock):
    """A campaign that ended in spring (no join since, its leads still waiting to convert): in autumn `doctor` said
    `no join of campaign 42 was ever received` (a problem, exit 1, with the advice to set up RF's webhook), and of a
    quiet workspace `no Intercom contact notification was ever received … the topics are probably not subscribed`:
    the edge's note of the last one had expired 90 days after it was written."""
    store.edge.heard("campaign:42", "join")
    store.edge.heard("workspace:ws1", "notification")
    joined, notified = store.edge.last_heard("campaign:42", "join"), store.edge.last_heard("workspace:ws1", "notification")
    clock.now += 200 * DAY
    ttl_pass(store, clock())
    assert store.edge.last_heard("campaign:42", "join") == joined
    assert store.edge.last_heard("workspace:ws1", "notification") == notified


def test_a_last_heard_note_written_to_expire_before_is_kept_once_heard_again(store, clock):
    """A stage upgraded after months: its notes were written to expire 90 days on; the next webhook keeps it."""
    if isinstance(store, MemoryStore):
        pytest.skip("the twin has no note written by an earlier version")
    from chalicelib.adapters.dynamo.keys import edge_pk, heard_sk
    from chalicelib.adapters.dynamo.models import EdgeItem
    EdgeItem(edge_pk("campaign:42"), heard_sk("join"), at="2026-01-01T00:00:00.000Z",
             expires_at=int(clock()) + 90 * DAY).save()
    store.edge.heard("campaign:42", "join")
    heard = store.edge.last_heard("campaign:42", "join")
    clock.now += 200 * DAY
    assert ttl_pass(store, clock()) == 0 and store.edge.last_heard("campaign:42", "join") == heard
