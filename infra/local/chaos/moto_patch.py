"""Make moto's DynamoDB behave like DynamoDB under concurrent callers (moto 5.2.5).

Found by the chaos run, which is the first local run with many writers at once:

1. ``TransactWriteItems`` backs up by deep-copying the *whole table* once per item of the
   transaction, and rolls back (any condition failing) by putting that copy in place of the
   table. Cost: O(items in the table) per transaction item, so a run slows down as its table
   grows (this, not the bridge, was moto's 100% CPU). Worse, the rollback throws away every
   write other requests made meanwhile (a claim, a finished join): lost writes that real
   DynamoDB never has.
2. Requests run in parallel threads over plain dicts: a scan or a deep copy racing a write fails
   with "dictionary changed size during iteration" (a 500 that DynamoDB does not send).

3. SQS computes *all* a queue's attributes, the three O(messages) counts included, to read one
   static attribute: ``SendMessage`` for ContentBasedDeduplication, ``ReceiveMessage`` for the
   retention period of each message it returns (three times over). Every send and receive costs
   O(messages in the queue): once a backlog of a few thousand builds, moto spends its core
   counting and the workers wait idle for their batches.
4. CloudFormation parses a stack's template with PyYAML's pure-Python loader at each CreateStack:
   26 ms of the 45 a stack of infra/template.yaml takes, and the tests create one each.
5. The server names the service a request is for by listing moto's package folder and checking each of its
   ~170 entries is a folder, at every request (~0.2 ms of each call's ~5 ms).

6. A transaction's item with a condition has it parsed and checked twice: once by the transaction, then again
   by the put, update or delete it makes (~2 ms an item of a first join's finish, when its put held to several
   attributes not being there).

The patch serialises DynamoDB requests (DynamoDB is linearizable per item; moto is one process
anyway), rolls a failed transaction back item by item, checks a transaction's conditions once, lets SQS read static attributes without
counting the messages, parses a template once (each stack gets its own copy of what it says), and lists moto's services once.
Applied by every local stack's moto (infra/local/aws.py's ``start_moto``: tests, ``make run``) and the
chaos run's (``moto_process.py``, or ``moto=thread``; ``MOTO_PATCH=0`` runs moto as released);
``install()`` is idempotent.
"""
from __future__ import annotations

import copy
import json
import threading
from typing import Any

LOCK = threading.RLock()
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    def call_action(self):
        with LOCK:
            return original(self)

    DynamoHandler.call_action = call_action
    DynamoDBBackend.transact_write_items = _transact_write_items

    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self, queue_name: str, message) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return period + message.sent_timestamp / 1000 > unix_time()

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period

    from moto.sqs.models import Queue

    counting = Queue.attributes.fget
    static = threading.local()

    def attributes(self) -> dict:
        """moto's Queue.attributes, without the three counts while `static.on` (send_message)."""
        if not getattr(static, "on", False):
            return counting(self)
        names = list(self.BASE_ATTRIBUTES)
        if self.fifo_queue:
            names += self.FIFO_ATTRIBUTES
        if self.kms_master_key_id:
            names += self.KMS_ATTRIBUTES
        result = {n: getattr(self, _snake(n)) for n in names if n not in _COUNT_NAMES}
        if self.policy:
            result["Policy"] = self.policy
        if self.redrive_policy:
            result["RedrivePolicy"] = json.dumps(self.redrive_policy)
        return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in result.items()}

    def without_counts(method):
        def wrapper(self, *args, **kwargs):
            static.on = True
            try:
                return method(self, *args, **kwargs)
            finally:
                static.on = False
        return wrapper

    Queue.attributes = property(attributes)
    SQSBackend.send_message = without_counts(SQSBackend.send_message)

    from moto.cloudformation.models import Stack

    parse, parsed = Stack.parse_template, {}

    def parse_template(template: str) -> dict[str, Any]:
        if template not in parsed:
            parsed[template] = parse(template)
        return copy.deepcopy(parsed[template])

    Stack.parse_template = staticmethod(parse_template)

    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    _installed = True


_COUNT_NAMES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed",
                "ApproximateNumberOfMessagesNotVisible")


def _snake(name: str) -> str:
    from moto.core.utils import camelcase_to_underscores
    return camelcase_to_underscores(name)


def _transact_write_items(self, transact_items: list[dict[str, Any]]) -> None:
    """moto's own implementation, with an item-by-item backup instead of whole-table copies."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (ConditionalCheckFailed, MockValidationException,
                                          MultipleTransactionsException, TooManyTransactionsException,
                                          TransactionCanceledException, TransactWriteSingleOpException)

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    backup: list[tuple[str, dict, Any]] = []      # (table, key, the item before, or None)
    target_items: set[tuple[str, str]] = set()

    def rollback() -> None:
        for table_name, key, before in reversed(backup):
            if before is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before)

    def check_unicity(table_name: str, key: dict[str, Any]) -> None:
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    errors: list = []
    for item in transact_items:
        original_item = None
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if op_type == "Put":
                attrs = op["Item"]
                table = self.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            check_unicity(table_name, key)
            current = self.get_item(table_name, key)
            if condition_expression is not None:
                condition_op = get_filter_expression(condition_expression, names, values)
                if not condition_op.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            if op_type != "ConditionCheck":
                backup.append((table_name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
            # The condition was checked just above, on the item as it is (DynamoDB requests are serialised: nothing
            # wrote it since): moto's own put, delete and update would parse and check it once more.
            if op_type == "Put":
                self.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            elif op_type == "Update":
                self.update_item(table_name, key, update_expression=op["UpdateExpression"],
                                 expression_attribute_names=names, expression_attribute_values=values)
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            rollback()
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:  # noqa: BLE001 - as moto does: reported per item
            errors.append((type(e).__name__, str(e), original_item))
    if any(code is not None for code, _, _ in errors):
        rollback()
        raise TransactionCanceledException(errors)
