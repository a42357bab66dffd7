"""`bridge pointers` on the deployed table: a contact pointer an earlier version left naming Ann outlives `bridge
forget`; the dry run finds it and writes nothing, --apply drops it (a scan, this command's only), and nothing in the
table names her afterwards."""
from __future__ import annotations

import json

from chalicelib.adapters.dynamo.keys import contact_key
from chalicelib.cli import main

from .conftest import WORKSPACE
from .test_privacy import everything, item
from .test_secrets import aws_calls  # noqa: F401  (fixture)


def test_a_pointer_an_earlier_version_left_outlives_forget_until_bridge_pointers_apply(bridge, joined, capsys,
                                                                                       aws_calls):
    lead, contact = joined()
    ann = f"42#{lead['id']}"
    client = bridge.resources.client("dynamodb")
    # What an earlier version left: her earlier try's contact c_old, its pointer naming her (and Bob, erased since).
    pk, sk = contact_key(WORKSPACE, "c_old")
    client.put_item(TableName=bridge.resources.table, Item={"pk": {"S": pk}, "sk": {"S": sk},
                                                            "links": {"SS": [ann, "42#bob"]}})
    capsys.readouterr()
    assert main(["forget", "ann@example.com"], rt=bridge.rt) == 0
    assert json.loads(capsys.readouterr().out)["links"] == 1
    assert ann in everything(bridge)                              # survives forget

    aws_calls.clear()
    assert main(["pointers", "--json"], rt=bridge.rt) == 0
    dry = json.loads(capsys.readouterr().out)
    assert (dry["dry_run"], dry["found"]) == (True, {"erased": 2})
    assert not any(op in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems") for _, op, _ in aws_calls)
    assert any(op == "Scan" for _, op, _ in aws_calls)

    assert main(["pointers", "--apply", "--json"], rt=bridge.rt) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["outcomes"], done["changed_meanwhile"]) == ({"dropped": 2}, 0)
    assert item(bridge, (pk, sk)) is None                         # (it named nobody else: it went, key and all)
    assert ann not in everything(bridge) and "ann@example.com" not in everything(bridge)
    assert item(bridge, contact_key(WORKSPACE, contact["id"])) is None
    assert main(["pointers", "--json"], rt=bridge.rt) == 0
    assert json.loads(capsys.readouterr().out)["found"] == {}
