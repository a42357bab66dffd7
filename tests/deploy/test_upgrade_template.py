"""`make deploy` over a stage deployed by an earlier version updates its stack in place: the table and the queues
keep what CloudFormation would replace them for (their names, the table's keys and the indexes stages already
have; DynamoDB adds one index per update), so the data and the work in flight stay. The shapes below are those
of every stack deployed from 2026-11-26 on (an earlier one has `pending` only: `overdue` is its one new index),
written out: a change to them fails here."""
from __future__ import annotations

from .test_template import load_template

DEPLOYED_KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
DEPLOYED_INDEXES = {
    "pending": [{"AttributeName": "pending_pk", "KeyType": "HASH"}, {"AttributeName": "pending_sk", "KeyType": "RANGE"}],
    "overdue": [{"AttributeName": "overdue_pk", "KeyType": "HASH"}, {"AttributeName": "lease_until", "KeyType": "RANGE"}],
}
DEPLOYED_NAMES = {"Table": "${Prefix}-table", "WorkQueue": "${Prefix}-work", "DeadLetterQueue": "${Prefix}-dlq"}


def test_an_upgrade_replaces_neither_the_table_nor_the_queues():
    resources = load_template()["Resources"]
    assert {name: resources[name]["Properties"][key]["Fn::Sub"]
            for name, key in (("Table", "TableName"), ("WorkQueue", "QueueName"), ("DeadLetterQueue", "QueueName"))
            } == DEPLOYED_NAMES
    assert not any(resources[name]["Properties"].get("FifoQueue") for name in ("WorkQueue", "DeadLetterQueue"))
    table = resources["Table"]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert table["Properties"]["KeySchema"] == DEPLOYED_KEYS


def test_an_upgrade_keeps_the_deployed_indexes_and_adds_at_most_one():
    indexes = {i["IndexName"]: i["KeySchema"] for i in load_template()["Resources"]["Table"]["Properties"]
               ["GlobalSecondaryIndexes"]}
    assert {name: indexes.get(name) for name in DEPLOYED_INDEXES} == DEPLOYED_INDEXES
    assert len(set(indexes) - set(DEPLOYED_INDEXES)) <= 1, "DynamoDB refuses an update that adds two indexes"
