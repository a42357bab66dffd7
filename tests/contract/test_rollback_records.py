"""A record this version reads and changes, holding no key unknown to it, is written back as the versions before
forward-compat write it: their writes held to the records as read (move's `left`, arm_left, stamp_rule) compare
their own JSON text, in their fixed order; after a rollback to one of them another order would refuse them for good
on every link whose record of a contact left this version armed (Busy, then a dead letter). Found by a review, shown
on the older version's own code."""
from __future__ import annotations

import json

import pytest

from chalicelib.domain.history import Entry
from chalicelib.domain.link import LeftContact
from tests.contract.test_store import ANN, SIGNED_UP, joined


def test_a_left_record_this_version_armed_is_stored_as_the_versions_before_write_it(store):
    if type(store.links).__name__ != "DynamoLinks":
        pytest.skip("the JSON text is DynamoDB's")
    from chalicelib.adapters.dynamo.keys import link_key
    from chalicelib.adapters.dynamo.models import LinkItem, _client
    store.links.move(joined(store, contact="c1", baseline_of=SIGNED_UP), "c2", [], role="user", when=200.0, left=True)
    read = store.links.get(ANN)                     # (as a worker has it: its records read, `read_as` set)
    store.links.arm_left(read, "c1", [Entry("evaluation", "not_met")], "rule-1", 120.0)
    pk, sk = link_key(ANN)
    text = _client().get_item(TableName=LinkItem.Meta.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                              ConsistentRead=True)["Item"]["left_baselines"]["S"]
    # As main's left_stored(left_read(...)) writes it: LeftContact(**held).as_stored(), the fixed order, which this
    # version's as_stored keeps for a record it made (read_as None)
    as_before = json.dumps({cid: LeftContact(cid, **held).as_stored() for cid, held in json.loads(text).items()})
    assert text == as_before        # here: `"kept": true, "armed_at": 120.0` where main writes armed_at after moved_at
