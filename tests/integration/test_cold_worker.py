"""Issue 9, cold start: what a fresh worker container does for its first record, counted (the time
is `make bench`'s). The record is real (queued by the webhook, received from the work queue); a
fresh interpreter imports the app and runs the worker on it, as a new Lambda container would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from chalicelib.domain.mapping import MARKER_NAME
from chalicelib.runtime import CACHE_SECONDS
from infra.local.esm import build_sqs_event

from .test_call_counts import demo_settings
from .conftest import WORKSPACE, join_body, new_lead

ROOT = Path(__file__).resolve().parents[2]

# Counts what the container does: botocore sessions and clients made, AWS calls (by operation),
# modules imported. The runtime's clock is frozen (at the time given, the test's clock), so that the
# rate limiter's calls do not depend on whether the record straddles one of its slices.
CONTAINER = r"""
import gc, json, sys, time
from collections import Counter
import botocore.client, botocore.session

made = Counter()
session_init, create_client = botocore.session.Session.__init__, botocore.session.Session.create_client
def counted_session(self, *args, **kw):
    made["sessions"] += 1
    session_init(self, *args, **kw)
def counted_client(self, service_name, *args, **kw):
    made[f"client:{service_name}"] += 1
    return create_client(self, service_name, *args, **kw)
botocore.session.Session.__init__, botocore.session.Session.create_client = counted_session, counted_client
calls = Counter()
call = botocore.client.BaseClient._make_api_call
def counted_call(client, operation, params):
    calls[f"{client.meta.service_model.service_name}:{operation}"] += 1
    return call(client, operation, params)
botocore.client.BaseClient._make_api_call = counted_call
import botocore.loaders
listing = botocore.loaders.Loader.list_available_services
def counted_listing(loader, type_name):
    made[f"listed:{type_name}"] += 1
    return listing(loader, type_name)
botocore.loaders.Loader.list_available_services = counted_listing
read = botocore.loaders.Loader.load_data_with_path
def counted_read(loader, name):
    if name.endswith("service-2") or name == "endpoints":
        made[f"botocore's file:{name}"] += 1
    return read(loader, name)
botocore.loaders.Loader.load_data_with_path = counted_read

import app
imported = set(sys.modules)
init = {"boto3": "boto3" in sys.modules, "gc_enabled": gc.isenabled(), "gc_frozen": gc.get_freeze_count()}
from chalicelib.config import Config
from chalicelib.runtime import Runtime, reset_default_runtime
from infra.local.context import FakeLambdaContext
from tests.fakes import FakeClock

clock = FakeClock(float(sys.argv[1]))
reset_default_runtime(Runtime(Config.from_env(), clock=clock, sleeper=clock.sleep))
before = set(sys.modules)
app.worker(json.loads(sys.stdin.read()), FakeLambdaContext(function_name="worker", timeout_seconds=120))
imported |= set(sys.modules) - before
# Modules no record of a worker needs (the webhooks' intake, the pointers' audit), imported by its init or its
# first record (tests.fakes, above, imports the in-memory twin, and with it the pointers' domain).
unneeded = [m for m in ("chalicelib.services.ingest", "chalicelib.domain.pointers") if m in imported]
print(json.dumps({"init": init, "made": made, "calls": calls, "boto3": "boto3" in sys.modules, "unneeded": unneeded}))
"""


def first_record(bridge, counter, at: Optional[float] = None) -> tuple[dict, list[str]]:
    """The one queued message, taken by a fresh container (its clock at `at`, default the test's):
    what it reported, and its Intercom calls."""
    sqs = bridge.resources.client("sqs")
    [message] = sqs.receive_message(QueueUrl=bridge.resources.queue_url, MaxNumberOfMessages=10,
                                    AttributeNames=["All"], MessageAttributeNames=["All"], VisibilityTimeout=120,
                                    WaitTimeSeconds=1)["Messages"]
    event = build_sqs_event([message], bridge.resources.queue_arn)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    with counter.measure() as counts:
        done = subprocess.run([sys.executable, "-c", CONTAINER, repr(bridge.rt.clock() if at is None else at)], input=json.dumps(event), env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    sqs.delete_message(QueueUrl=bridge.resources.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return json.loads(done.stdout.strip().splitlines()[-1]), counts.intercom_requests


def test_a_fresh_workers_first_join(bridge, intercom, rf, counter, clock):
    bridge.apply(demo_settings())
    assert bridge.post_join(join_body(new_lead(rf, email="cold@example.com"))).status_code == 202
    report, intercom_calls = first_record(bridge, counter, clock.now + CACHE_SECONDS)   # apply's list is 5 min old

    [contact] = intercom.contacts_by_email("cold@example.com")          # the join was applied
    assert [t["name"] for t in contact["tags"]["data"]] == ["Referred"]
    # Its init imports no boto3 (clients come from botocore: adapters/aws.py), and leaves what it made
    # frozen, out of the garbage collector's walks, which run again after it.
    assert report["init"]["boto3"] is False and report["boto3"] is False
    assert report["init"]["gc_enabled"] is True and report["init"]["gc_frozen"] > 10_000
    # Nor, its first record included, the webhooks' intake or the pointers' audit.
    assert report["unneeded"] == []
    # One botocore session: each service's files are read once. One client per service. botocore's
    # ~440 service directories are never listed (adapters/aws.py: each name is checked in its own).
    # No botocore service model is read: each client parses its model trimmed to the bridge's operations
    # (adapters/aws_models, `make models`; SSM's whole is ~950 KB), nor botocore's endpoints.json (1.25 MB):
    # the session's resolver reads a copy cut to these three services.
    assert report["made"] == {"sessions": 1, "client:dynamodb": 1, "client:ssm": 1, "client:sqs": 1}
    # The calls: the join's own (its link and settings read, the bridge's email pointers of the email search did
    # not show, its claim, the verification queued, the finishing transaction), and what a cold container reads once: the workspace's connection, its
    # token, the rate budget's state, Intercom's attribute list; the rate limiter reserves the 4
    # Intercom calls' slots in one write (its first block: was 1, 1, 2 slots in three). No container
    # read the list in the last 5 minutes: this one does, and keeps it on the connection (1 write).
    assert report["calls"] == {"dynamodb:BatchGetItem": 3, "dynamodb:UpdateItem": 1 + 1 + 1, "dynamodb:GetItem": 2,
                               "ssm:GetParameter": 1, "sqs:SendMessageBatch": 1, "dynamodb:TransactWriteItems": 1}
    assert sorted(intercom_calls) == ["GET /data_attributes", "POST /contacts", "POST /contacts/search",
                                      "POST /tags"]


def test_a_fresh_worker_uses_the_attribute_list_another_read_less_than_5_minutes_ago(bridge, intercom, rf, counter,
                                                                                    clock):
    """The list comes with the connection record a cold container reads anyway: no call, no read.
    `settings apply` keeps the list it checked the settings with; a worker that reads it keeps it too."""
    bridge.apply(demo_settings())
    read_at = clock.now
    firsts = []
    for email, at in (("cold@example.com", read_at), ("colder@example.com", read_at + CACHE_SECONDS - 1)):
        assert bridge.post_join(join_body(new_lead(rf, email=email))).status_code == 202
        firsts.append(first_record(bridge, counter, at))
    (_, first), (report, second) = firsts

    assert len(intercom.contacts_by_email("colder@example.com")) == 1
    assert sorted(first) == sorted(second) == ["POST /contacts", "POST /contacts/search", "POST /tags"]
    # What a cold join read before, less the list's call: nothing more read or written for it.
    assert report["calls"] == {"dynamodb:BatchGetItem": 3, "dynamodb:UpdateItem": 1 + 1, "dynamodb:GetItem": 2,
                               "ssm:GetParameter": 1, "sqs:SendMessageBatch": 1, "dynamodb:TransactWriteItems": 1}
    assert bridge.rt.store.connections.workspace(WORKSPACE).attribute_list.read_at == read_at

    # 5 minutes after that read, the next cold container reads the list itself, and keeps it.
    assert bridge.post_join(join_body(new_lead(rf, email="coldest@example.com"))).status_code == 202
    report, third = first_record(bridge, counter, read_at + CACHE_SECONDS)
    assert "GET /data_attributes" in third and report["calls"]["dynamodb:UpdateItem"] == 1 + 1 + 1
    assert bridge.rt.store.connections.workspace(WORKSPACE).attribute_list.read_at == read_at + CACHE_SECONDS


def test_the_marker_a_fresh_worker_creates_is_not_missing_from_the_list_it_keeps(bridge, intercom, rf, counter):
    """The bridge's marker attribute, deleted in Intercom since the settings were applied: the first
    cold container (5 minutes after apply kept its list) creates it and keeps the list read again; the
    next neither reads nor creates it."""
    bridge.apply(demo_settings())
    del intercom.attributes[f"custom_attributes.{MARKER_NAME}"]
    later = bridge.rt.clock() + CACHE_SECONDS
    firsts = []
    for email in ("cold@example.com", "colder@example.com"):          # each by a fresh container
        assert bridge.post_join(join_body(new_lead(rf, email=email))).status_code == 202
        firsts.append(first_record(bridge, counter, later)[1])
    first, second = firsts

    assert len(intercom.contacts_by_email("colder@example.com")) == 1
    assert sorted(first) == ["GET /data_attributes", "GET /data_attributes", "POST /contacts",
                             "POST /contacts/search", "POST /data_attributes", "POST /tags"]
    assert sorted(second) == ["POST /contacts", "POST /contacts/search", "POST /tags"]


def test_a_type_changed_in_intercom_is_used_once_the_kept_list_is_5_minutes_old(bridge, intercom, rf, counter, clock):
    """Intercom's UI can change an attribute's type. The initial value is written as the attribute's
    type says: text "0", then the number 0 (Intercom refuses text in a number attribute) — by a cold
    container 5 minutes after the kept list was read, and by a warm one once its own list expires."""
    intercom.define_attribute("visits", "string")
    bridge.apply({**demo_settings(), "qualification": {"attribute": "custom_attributes.visits", "value": "5",
                                                       "initial_value": "0"}})
    read_at = clock.now
    bridge.post_join(join_body(new_lead(rf, email="warm@example.com")))
    bridge.drain()                                       # a warm container read the list, and kept it
    assert intercom.contacts_by_email("warm@example.com")[0]["custom_attributes"]["visits"] == "0"

    intercom.attributes["custom_attributes.visits"]["data_type"] = "integer"    # changed in Intercom's UI
    assert bridge.post_join(join_body(new_lead(rf, email="cold@example.com"))).status_code == 202
    _, cold_calls = first_record(bridge, counter, read_at + CACHE_SECONDS)
    assert intercom.contacts_by_email("cold@example.com")[0]["custom_attributes"]["visits"] == 0
    assert "GET /data_attributes" in cold_calls

    clock.now = read_at + CACHE_SECONDS                  # the warm container's list expires
    bridge.post_join(join_body(new_lead(rf, email="warmer@example.com")))
    bridge.drain()
    assert intercom.contacts_by_email("warmer@example.com")[0]["custom_attributes"]["visits"] == 0


def test_a_fresh_workers_first_intercom_event(bridge, intercom, rf, counter):
    bridge.apply(demo_settings())
    bridge.post_join(join_body(new_lead(rf, email="cold@example.com")))
    bridge.drain()
    [contact] = intercom.contacts_by_email("cold@example.com")
    intercom.update_contact(contact["id"], name="Renamed")                # a change that does not qualify
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    report, intercom_calls = first_record(bridge, counter)

    assert report["init"]["boto3"] is False and report["boto3"] is False and report["unneeded"] == []
    # No message to queue: no SQS client.
    assert report["made"] == {"sessions": 1, "client:dynamodb": 1, "client:ssm": 1}
    # The batch's reads (the contact's and email's links with the notification's mark, the person's
    # link, the settings), the connection, token and budget state, 1 reservation for the 2 Intercom
    # calls (was 2); the history of the judged value and the notification marked done.
    assert report["calls"] == {"dynamodb:BatchGetItem": 3, "dynamodb:GetItem": 2, "ssm:GetParameter": 1,
                               "dynamodb:UpdateItem": 1, "dynamodb:TransactWriteItems": 1, "dynamodb:PutItem": 1}
    # Not Intercom's attribute list (was its first call): the join's container read it a moment ago
    # and kept it on the workspace's connection record, which this one reads anyway.
    assert intercom_calls == [f"GET /contacts/{contact['id']}"]
