"""The chaos run's moto (its own process, patched: infra/local/chaos/moto_patch.py) keeps DynamoDB's
transaction semantics: a cancelled transaction undoes its own writes and nothing else."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from infra.local.aws import client
from infra.local.chaos.processes import MotoProcess


@pytest.fixture(scope="module")
def ddb(tmp_path_factory):
    moto = MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log", patched=True)
    yield client("dynamodb", moto.endpoint)
    moto.stop()


def item(ddb, key):
    return ddb.get_item(TableName="t", Key={"pk": {"S": key}}).get("Item")


def test_a_cancelled_transaction_undoes_only_its_own_writes(ddb):
    ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    ddb.put_item(TableName="t", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    ddb.put_item(TableName="t", Item={"pk": {"S": "other"}, "n": {"N": "7"}})
    with pytest.raises(ClientError) as err:
        ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}}}},
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}}},
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "b"}}, "UpdateExpression": "SET n = :one",
                        "ConditionExpression": "attribute_exists(pk)", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        ])
    assert err.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "ConditionalCheckFailed" in str(err.value)
    assert item(ddb, "a")["n"] == {"N": "1"} and item(ddb, "new") is None and item(ddb, "b") is None
    assert item(ddb, "other")["n"] == {"N": "7"}
    ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": "t", "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        {"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}}}])
    assert item(ddb, "a")["n"] == {"N": "2"} and item(ddb, "new") == {"pk": {"S": "new"}}


def test_sqs_still_counts_sends_and_receives(ddb, tmp_path):
    sqs = client("sqs", ddb.meta.endpoint_url)
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert len(got) == 2
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("1", "2")
    assert attrs["VisibilityTimeout"] == "30" and attrs["MessageRetentionPeriod"] == "345600"


def test_a_transactions_conditions_are_checked_once_each_and_still_hold(monkeypatch):
    """Every local stack's moto (in this process, patched as the chaos run's): an item's condition is parsed and
    checked by the transaction, not again by the put or update it then makes (a first join's finish holds its
    link's put to several attributes not being there: twice, ~2 ms an item), and it still refuses what it must."""
    from moto.dynamodb.comparisons import ConditionExpressionParser

    from infra.local.aws import start_moto, stop_moto

    server, endpoint = start_moto(warm=False)
    try:
        ddb = client("dynamodb", endpoint)
        ddb.create_table(TableName="c", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        ddb.put_item(TableName="c", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        parsed: list[str] = []         # (moto parses "no condition" too: not counted)
        parse = ConditionExpressionParser.parse
        monkeypatch.setattr(ConditionExpressionParser, "parse", lambda self: (
            self.condition_expression and parsed.append(self.condition_expression)) or parse(self))

        def write(n: str) -> None:
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": "c", "Item": {"pk": {"S": "new"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Update": {"TableName": "c", "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :n",
                            "ConditionExpression": "attribute_exists(pk)", "ExpressionAttributeValues": {":n": {"N": n}}}}])
        write("2")
        # (moto's validation of the request parses each once too; the transaction's own check once; no third time)
        assert sorted(parsed) == ["attribute_exists(pk)"] * 2 + ["attribute_not_exists(pk)"] * 2
        assert ddb.get_item(TableName="c", Key={"pk": {"S": "new"}})["Item"] == {"pk": {"S": "new"}}
        assert ddb.get_item(TableName="c", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "2"}
        with pytest.raises(ClientError) as err:     # "new" exists now: the put's condition refuses the transaction
            write("3")
        assert "ConditionalCheckFailed" in str(err.value)
        assert ddb.get_item(TableName="c", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "2"}
    finally:
        stop_moto(server)


@pytest.mark.parametrize("patched", [True, False])
def test_moto_is_patched_only_when_asked(monkeypatch, patched):
    """`MOTO_PATCH=0` (a chaos run's moto as released, to see what the patch fixes) serves moto unpatched: the
    server's start installed the patch whatever it was told, in a process or a thread."""
    from infra.local.aws import start_moto, stop_moto
    from infra.local.chaos import moto_patch

    installed: list[bool] = []
    monkeypatch.setattr(moto_patch, "install", lambda: installed.append(True))
    server, _ = start_moto(warm=False, patched=patched)
    stop_moto(server)
    assert installed == ([True] if patched else [])
