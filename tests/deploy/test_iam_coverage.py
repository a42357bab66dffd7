"""Issue 6 §2 "Must show": every AWS action the code performs is granted by the rendered policy of
the function that performs it (action AND resource), and nothing else is granted.

Each function's real handler runs as Lambda would run it, with the environment `make deploy` rendered
for the prod stage (from its stack on a moto server): the API routes through Chalice's local
gateway, the worker on SQS events built from real messages of the work queue, reconcile on a
scheduled event. Every botocore call they make (boto3's and PynamoDB's own session alike go through
BaseClient._make_api_call) is recorded, mapped to the IAM actions and resources it needs, and compared
with the rendered policy statements, in both directions; so are the partitions each call touches (its
items' partition keys) with the statements' dynamodb:LeadingKeys. The rendered policies alone (no AWS) never
let the API function update a link, a history or settings."""
from __future__ import annotations

import contextlib
import json
import os
import re
from fnmatch import fnmatchcase
from urllib.parse import parse_qsl, urlparse

import pytest
import yaml

from infra import deploy
from infra.local.aws import client as moto_client
from infra.local.context import FakeLambdaContext
from infra.local.counting import AwsCall as Call, AwsCallRecorder
from infra.local.esm import build_sqs_event
from infra.local.scheduler import scheduled_event
from tests.fakes import FakeClock
from tests.integration.conftest import join_body, qualifying_settings
from tests.integration.test_sync import sync_settings
from infra.local.sims.intercom import IntercomSim
from infra.local.sims.referral_factory import RFSim
from infra.local.sims.webhooks import sign
from tests.support.intercom_contract import validate_request

from .conftest import REGION, aws_env

STAGE = "prod"
WORKSPACE = "vne310wv"
CLIENT_SECRET = "client-secret"
RF_SECRET = "rf-hook-secret"

#: Granted, but performed by the Lambda service for the function rather than by our code: writing
#: the function's logs, and (worker) the SQS event source polling the work queue with the function's
#: role (ReceiveMessage, GetQueueAttributes, DeleteMessage after a successful batch). Lambda refuses
#: to create the event source without them.
PLATFORM_GRANTS = {
    fn: {("logs:CreateLogStream", "{logs}:*"), ("logs:PutLogEvents", "{logs}:*")} for fn in deploy.FUNCTIONS
}
PLATFORM_GRANTS["worker"] |= {("sqs:ReceiveMessage", "{work}"), ("sqs:GetQueueAttributes", "{work}"),
                              ("sqs:DeleteMessage", "{work}")}



# ------------------------------------------------------------------------------------------
# AWS calls -> IAM actions and resources
# ------------------------------------------------------------------------------------------

class UnmappedCall(AssertionError):
    pass


_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
_SQS_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def required(call: Call, target: deploy.Target) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS authorizes for one API call."""
    p, op = call.params, call.operation
    if call.service == "dynamodb":
        def table(name, index=None):
            return target.arn("dynamodb", f"table/{name}" + (f"/index/{index}" if index else ""))
        if op in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "DescribeTable"):
            return [(f"dynamodb:{op}", table(p["TableName"]))]
        if op in ("Query", "Scan"):
            return [(f"dynamodb:{op}", table(p["TableName"], p.get("IndexName")))]
        if op in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{op}", table(name)) for name in p["RequestItems"]]
        if op == "TransactWriteItems":   # authorized item by item, with the item's own action
            return [(f"dynamodb:{_TRANSACT[kind]}", table(body["TableName"]))
                    for item in p["TransactItems"] for kind, body in item.items()]
        if op == "TransactGetItems":
            return [("dynamodb:GetItem", table(item["Get"]["TableName"])) for item in p["TransactItems"]]
    if call.service == "sqs":
        if op == "GetQueueUrl":
            return [("sqs:GetQueueUrl", target.arn("sqs", p["QueueName"]))]
        account, name = urlparse(p["QueueUrl"]).path.strip("/").split("/")
        arn = f"arn:{target.partition}:sqs:{target.region}:{account}:{name}"
        return [(f"sqs:{_SQS_BATCH.get(op, op)}", arn)]
    if call.service == "ssm":
        def parameter(name):
            return target.arn("ssm", f"parameter{name}")
        if op in ("GetParameter", "PutParameter", "DeleteParameter"):
            return [(f"ssm:{op}", parameter(p["Name"]))]
        if op in ("GetParameters", "DeleteParameters"):
            return [(f"ssm:{op}", parameter(name)) for name in p["Names"]]
        if op == "GetParametersByPath":
            return [("ssm:GetParametersByPath", parameter(p["Path"]))]
    if call.service == "cloudformation" and op == "DescribeStacks":     # the operator's `--stage` (by name)
        return [("cloudformation:DescribeStacks", target.arn("cloudformation", f"stack/{p['StackName']}/<id>"))]
    if call.service == "s3" and op == "GetObject":      # the operator's read of the stage's deployed state
        return [("s3:GetObject", f"arn:{target.partition}:s3:::{p['Bucket']}/{p['Key']}")]
    if call.service == "sts" and op == "GetCallerIdentity":
        return []   # needs no permission
    raise UnmappedCall(f"{call.service}:{op} is not mapped to IAM: add it to required()")


def granted(policy: dict) -> set[tuple[str, str]]:
    return {(action, resource) for s in policy["Statement"] if s["Effect"] == "Allow"
            for action in s["Action"] for resource in s["Resource"]}


def allows(policy: dict, action: str, resource: str) -> bool:
    return any(fnmatchcase(action.lower(), a.lower()) and fnmatchcase(resource, r) for a, r in granted(policy))


def placeholders(target: deploy.Target, function: str) -> dict[str, str]:
    o = target.outputs
    return {"logs": target.arn("logs", f"log-group:/aws/lambda/{deploy.function_name(target.prefix, function)}"),
            "work": o["QueueArn"], "dlq": o["DeadLetterQueueArn"], "table": o["TableArn"],
            "secrets": target.arn("ssm", f"parameter{o['SecretsPath']}")}


def expand(grants: dict, target: deploy.Target, function: str) -> set[tuple[str, str]]:
    values = placeholders(target, function)
    return {(action, pattern.format(**values)) for action, pattern in grants.get(function, ())}


def violations(policy: dict, performed: set[tuple[str, str]], target: deploy.Target, function: str) -> dict:
    """What the policy lacks (performed, not granted) and what it grants beyond need."""
    missing = sorted(pair for pair in performed if not allows(policy, *pair))
    explained = expand(PLATFORM_GRANTS, target, function)
    unused = sorted((action, pattern) for action, pattern in granted(policy)
                    if (action, pattern) not in explained
                    and not any(fnmatchcase(a.lower(), action.lower()) and fnmatchcase(r, pattern)
                                for a, r in performed))
    absent = sorted(explained - granted(policy))
    return {"performed but not granted": missing, "granted but never performed": unused,
            "listed but not granted": absent}


# ------------------------------------------------------------------------------------------
# dynamodb:LeadingKeys: the partitions each call touches
# ------------------------------------------------------------------------------------------

def _pk(key: dict) -> str:
    return key["pk"]["S"]


def partitions(call: Call) -> list[tuple[str, str]]:
    """The (IAM action, partition key) pairs AWS matches against dynamodb:LeadingKeys for one call on the
    table's items: a batch's and a transaction's item by item (a transaction's with the item's own action), a
    query's from its key condition. A query of an index is left to its resource (its statement names no keys)."""
    p, op = call.params, call.operation
    if call.service != "dynamodb" or op == "DescribeTable" or "IndexName" in p:
        return []
    if op in ("GetItem", "UpdateItem", "DeleteItem"):
        return [(f"dynamodb:{op}", _pk(p["Key"]))]
    if op == "PutItem":
        return [(f"dynamodb:{op}", _pk(p["Item"]))]
    if op == "BatchGetItem":
        return [(f"dynamodb:{op}", _pk(key)) for asked in p["RequestItems"].values() for key in asked["Keys"]]
    if op == "BatchWriteItem":
        return [(f"dynamodb:{op}", _pk(body.get("Item") or body["Key"]))
                for writes in p["RequestItems"].values() for write in writes for body in write.values()]
    if op == "TransactWriteItems":
        return [(f"dynamodb:{_TRANSACT[kind]}", _pk(body.get("Item") or body["Key"]))
                for item in p["TransactItems"] for kind, body in item.items()]
    if op == "TransactGetItems":
        return [("dynamodb:GetItem", _pk(item["Get"]["Key"])) for item in p["TransactItems"]]
    if op == "Scan":            # every partition (`bridge pointers`): no dynamodb:LeadingKeys can allow it
        return [(f"dynamodb:{op}", "*")]
    if op == "Query":
        [name] = [n for n, attribute in p["ExpressionAttributeNames"].items() if attribute == "pk"]
        value = re.search(rf"{re.escape(name)} = (:\w+)", p["KeyConditionExpression"])
        assert value, p["KeyConditionExpression"]
        return [(f"dynamodb:{op}", p["ExpressionAttributeValues"][value.group(1)]["S"])]
    raise UnmappedCall(f"dynamodb:{op}: which partitions it touches is not known: add it to partitions()")


def leading_keys(statement: dict) -> list[str] | None:
    return statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")


def key_violations(policy: dict, touched: set[tuple[str, str]], table: str) -> dict:
    """Both ways, as violations() for the actions: each statement on the table's items names its partitions
    (without dynamodb:LeadingKeys, it grants every partition: an OAuth state, an operator's ticket, the edge's
    log); each partition a call touched is named by a statement granting that call's action; and each name
    was touched by each of its statement's actions (else the statement grants that action on a partition the
    code never uses it on: a batch write, say, that could delete links because reads of them are granted
    beside it)."""
    items = [s for s in policy["Statement"] if table in s["Resource"]]
    named = {s["Sid"]: leading_keys(s) or [] for s in items}

    def names(statement: dict, action: str, pk: str, patterns: list[str]) -> bool:
        return action in statement["Action"] and any(fnmatchcase(pk, p) for p in patterns)
    return {"without dynamodb:LeadingKeys": sorted(s["Sid"] for s in items if leading_keys(s) is None),
            "touched but not named": sorted(pair for pair in touched
                                            if not any(names(s, *pair, named[s["Sid"]]) for s in items)),
            "named but never touched": sorted((s["Sid"], action, p) for s in items for action in s["Action"]
                                              for p in named[s["Sid"]]
                                              if not any(a == action and fnmatchcase(pk, p) for a, pk in touched))}


# ------------------------------------------------------------------------------------------
# Recording what each function does
# ------------------------------------------------------------------------------------------

class Recorder(AwsCallRecorder):
    """Every botocore call the code makes (infra/local/counting.py), labelled with the function
    that was running; the harness's own clients (the event source's receives) are left out."""

    def of(self, function: str) -> list[Call]:
        return [call for call in self.calls if call.label == function]


class Stage:
    """The prod stage's three functions, run in the environment `make deploy` rendered for them."""

    def __init__(self, rendered, recorder, intercom, rf, clock):
        from chalice.cli.factory import CLIFactory
        from chalice.local import LocalGateway

        import app as app_module

        self.app, self.recorder, self.clock = app_module, recorder, clock
        self.intercom, self.rf = intercom, rf
        self.target = rendered.targets[STAGE]
        config = CLIFactory(str(rendered.project)).create_config_obj(chalice_stage_name=STAGE)
        self.env = {fn: config.scope(STAGE, fn).environment_variables for fn in deploy.FUNCTIONS}
        # Chalice's local API Gateway. (Not chalice.test.Client: it swaps os.environ for a copy while
        # a request runs, and a botocore session first made then keeps reading that copy for good.)
        self.gateway = LocalGateway(app_module.app, config.scope(STAGE, "api_handler"))
        self.sqs = moto_client("sqs", rendered.endpoint, REGION)
        self.work_url = self.target.outputs["QueueUrl"]
        # One warm container per function. Built up front: every Runtime re-binds PynamoDB's models,
        # which drops their clients, and a botocore client costs ~0.1 s to make.
        self._warm = {fn: self.runtime(fn) for fn in deploy.FUNCTIONS}
        self.operator = self.runtime("worker")

    def runtime(self, function: str):
        from chalicelib.config import Config
        from chalicelib.runtime import Runtime

        # The third-party APIs are the simulators; everything AWS is as rendered.
        env = {**self.env[function], "INTERCOM_BASE_URL": self.intercom.base_url, "RF_BASE_URL": self.rf.base_url}
        return Runtime(Config.from_env(env), clock=self.clock, sleeper=self.clock.sleep)

    @contextlib.contextmanager
    def running(self, function: str):
        """As in the function's own (warm) container: its environment, its runtime, its calls recorded."""
        from chalicelib.runtime import reset_default_runtime

        saved = dict(os.environ)
        os.environ.update(self.env[function])
        reset_default_runtime(self._warm[function])
        self.recorder.label = function
        try:
            yield
        finally:
            self.recorder.label = None
            reset_default_runtime(None)
            os.environ.clear()
            os.environ.update(saved)

    # --- the functions -------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes, headers: dict) -> int:
        with self.running("api_handler"):
            return self.gateway.handle_request(method=method, path=path, headers=headers, body=body)["statusCode"]

    def get(self, path: str, headers: dict, method: str = "GET", body: bytes = b"") -> dict:
        with self.running("api_handler"):
            return self.gateway.handle_request(method=method, path=path, headers=headers, body=body)

    def post_join(self, body, secret=RF_SECRET) -> int:
        return self.request("POST", "/webhooks/referral-factory", json.dumps(body).encode(),
                            {"Content-Type": "application/json", "X-Bridge-Secret": secret})

    def post_intercom(self, payload, secret=CLIENT_SECRET, method="POST") -> int:
        raw = json.dumps(payload).encode()
        return self.request(method, "/webhooks/intercom", raw,
                            {"Content-Type": "application/json", "X-Hub-Signature": sign(raw, secret)})

    def drain(self, max_batches: int = 20) -> list:
        """The SQS event source: receive (not recorded: the platform does it), invoke the worker,
        delete the batch when it returns."""
        from chalicelib.services.worker import RetryBatch

        results = []
        for _ in range(max_batches):
            messages = self.sqs.receive_message(QueueUrl=self.work_url, MaxNumberOfMessages=10,
                                                AttributeNames=["All"], MessageAttributeNames=["All"],
                                                WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return results
            context = FakeLambdaContext(function_name=deploy.function_name(self.target.prefix, "worker"),
                                        timeout_seconds=120, region=REGION)
            with self.running("worker"):
                try:
                    results.append(self.app.worker(build_sqs_event(messages, self.target.outputs["QueueArn"]),
                                                   context))
                    retried = False
                except RetryBatch as exc:
                    results.append(str(exc))
                    retried = True
            if not retried:
                self.sqs.delete_message_batch(QueueUrl=self.work_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        raise AssertionError("the work queue did not drain")

    def reconcile(self):
        context = FakeLambdaContext(function_name=deploy.function_name(self.target.prefix, "reconcile"),
                                    timeout_seconds=120, region=REGION)
        with self.running("reconcile"):
            return self.app.reconcile(scheduled_event("reconcile", region=REGION), context)


def new_lead(rf, email):
    referrer = rf.add_user(42, f"ref-{email}", "Rita")
    return rf.add_user(42, email, email.split("@")[0].title(), referrer_id=referrer["id"])


def vendors(clock: FakeClock) -> tuple[IntercomSim, RFSim]:
    """Intercom (the workspace, with the attributes the settings map to) and RF (campaign 42), started."""
    intercom = IntercomSim(app_id=WORKSPACE, clock=clock, validator=validate_request).start()
    for name, dtype in (("referral_code", "string"), ("lead_source", "string"), ("signed_up", "string"),
                        ("referral_link", "string")):
        intercom.define_attribute(name, dtype)
    rf = RFSim(clock=clock).start()
    rf.add_campaign(42, "Friends of Acme")
    return intercom, rf


@pytest.fixture(scope="module")
def performed(rendered):
    """Drive every flow of the three functions once; return what each function did."""
    clock = FakeClock()
    intercom, rf = vendors(clock)
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as mp, recorder.installed():
        for key in [k for k in os.environ if k.startswith(("BRIDGE_", "AWS_"))]:
            mp.delenv(key)
        for key, value in aws_env(rendered.endpoint).items():
            mp.setenv(key, value)
        stage = Stage(rendered, recorder, intercom, rf, clock)
        try:
            yield drive(stage), stage, recorder
        finally:
            intercom.stop()
            rf.stop()
    assert intercom.contract_violations == []


def drive(stage: Stage) -> dict:
    """The flows: a join (and its repeat), a join finding its contact, a deferred retry, a permanent failure and an unreadable
    message (both dead-lettered), a qualification, an unlinked contact, reconciliation, a join with a
    field it could not write, the OAuth connection, a sync page tried again."""
    from chalicelib.services import admin
    from chalicelib.services.connections import connect_rf, connect_workspace

    intercom, rf, outcome = stage.intercom, stage.rf, {}
    seed = stage.operator                   # the operator's setup, not recorded
    connect_workspace(seed, WORKSPACE, "sim-token", client_secret=CLIENT_SECRET, api_base=intercom.base_url)
    connect_rf(seed, "rf-token", RF_SECRET)
    admin.apply_settings(seed, yaml.safe_dump(qualifying_settings()))

    ann = new_lead(rf, "ann@example.com")
    outcome["join"] = [stage.post_join(join_body(ann)) for _ in range(2)]       # + a repeat
    outcome["wrong secret"] = stage.post_join(join_body(ann), secret="nope")
    outcome["head"] = stage.post_intercom({}, method="HEAD")
    stage.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    # A join that finds the person's contact: held on the link, with its baseline, before it is marked.
    gil, known = new_lead(rf, "gil@example.com"), intercom.add_contact("gil@example.com", role="user")
    stage.post_join(join_body(gil))
    stage.drain()
    outcome["gil"] = [c["id"] for c in intercom.contacts_by_email("gil@example.com")] == [known["id"]]

    # Waits: a 429 (the worker sends a delayed copy back) and RF's 503 asking an hour (an outage,
    # waited out the same way), beside a handled message.
    bob, eve = new_lead(rf, "bob@example.com"), new_lead(rf, "eve@example.com")
    intercom.fail_next("POST", r"^/contacts$", 429, headers={"Retry-After": "30"})     # longer than a Lambda waits
    rf.fail_next("GET", rf"^/users/{eve['id']}$", 503, headers={"Retry-After": "3600"})
    stage.post_join(join_body(bob))
    stage.post_join({"id": eve["id"], "campaign_id": 42})
    stranger = intercom.add_contact("who@example.com")
    outcome["unlinked"] = stage.post_intercom(intercom.webhook_payload("contact.lead.updated", stranger["id"]))
    outcome["waits"] = stage.drain()
    stage.clock.now += 60                   # the 429's pause (every Intercom call waited for it) is over

    # A permanent failure (dead-lettered with the person's history) and an unreadable message.
    cid = new_lead(rf, "cid@example.com")
    intercom.fail_next("POST", r"^/contacts$", 400)
    stage.post_join(join_body(cid))
    stage.sqs.send_message(QueueUrl=stage.work_url, MessageBody="{not json")
    stage.drain()

    # Qualification.
    intercom.update_contact(contact["id"], signed_up="Yes")
    outcome["notify"] = stage.post_intercom(intercom.webhook_payload("contact.lead.updated", contact["id"]))
    stage.drain()
    outcome["qualified"] = [user_id for user_id, _ in rf.qualification_events]
    outcome["ann"] = ann["id"]
    # Ann changes her email in Intercom: her link's pointer moves, the old address's (left empty) is deleted.
    intercom.update_contact(contact["id"], email="ann@work.example")
    stage.post_intercom(intercom.webhook_payload("contact.email.updated", contact["id"]))
    stage.drain()

    # Reconciliation: a pending lead's check, the workspace's search of changed contacts, and a join
    # whose worker died holding its claim (queued again, its history written by reconcile).
    from chalicelib.domain.link import PersonRef
    dee, eve = new_lead(rf, "dee@example.com"), new_lead(rf, "eve@example.com")
    stage.post_join({**join_body(dee), "code": "x" * 300})   # past Intercom's 255: counted for doctor
    stage.drain()
    seed.store.links.claim(PersonRef("42", str(eve["id"])), WORKSPACE)
    # The operator tried another target and went back (not recorded): the search looks back to the oldest
    # pending lead (reconcile reads it), and the worker clears the rule change once the search completes.
    for rule in ({"value": "Premium"}, {}):
        admin.apply_settings(seed, yaml.safe_dump(qualifying_settings(**rule)), check_workspace=False)
    stage.clock.now += 301       # its lease (120 s) is over, and after it Intercom's search lag (180 s):
    #                              it may have created eve's contact before its lease ran out
    outcome["reconcile"] = stage.reconcile()
    stage.drain()
    outcome["looked back"] = seed.store.cursor.get(f"changes#{WORKSPACE}#back")
    outcome["eve"] = [c["id"] for c in intercom.contacts_by_email("eve@example.com")]

    # A failed try beside a handled message: the next run's search of changed contacts answered 503 asking
    # an hour (that kind does not wait out an outage: the queue tries it again, its visibility set to the
    # hour) while an unlinked contact's notification is handled: the worker deletes that one itself.
    stage.clock.now += 3600
    intercom.fail_next("POST", r"^/contacts/search$", 503, headers={"Retry-After": "3600"}, times=5)
    stage.reconcile()
    stage.post_intercom(intercom.webhook_payload("contact.lead.updated", stranger["id"]))
    outcome["retry"] = stage.drain()
    intercom.clear_faults()
    outcome["oauth"] = oauth_connect(stage)
    outcome["sync"] = sync_after_a_lost_try(stage)
    # RF answers a look-up 429 (waited out in the Lambda): a strike's first reads what every caller used.
    fay = new_lead(rf, "fay@example.com")
    rf.fail_next("GET", rf"^/users/{fay['id']}$", 429, headers={"Retry-After": "1"})
    stage.post_join({"id": fay["id"], "campaign_id": 42})
    stage.drain()
    outcome["fay"] = [c["id"] for c in intercom.contacts_by_email("fay@example.com")]
    # A join another worker holds (its claim's lease still runs): the worker's claim, refused, reads the link to say
    # until when it waits (links.py _claim_one: the worker's one read of a link by itself, in the campaign's
    # partition, since its settings have their own).
    hal = new_lead(rf, "hal@example.com")
    seed.store.links.claim(PersonRef("42", str(hal["id"])), WORKSPACE)
    stage.post_join({"id": hal["id"], "campaign_id": 42})
    outcome["held"] = stage.drain()
    dlq = stage.sqs.receive_message(QueueUrl=stage.target.outputs["DeadLetterQueueUrl"], MaxNumberOfMessages=10,
                                    MessageAttributeNames=["All"], VisibilityTimeout=0)
    outcome["dead letters"] = [m["MessageAttributes"]["reason"]["StringValue"] for m in dlq.get("Messages", [])]
    return outcome


def oauth_connect(stage: Stage) -> list[int]:
    """The operator stores the public app (not recorded); an admin's browser opens the start link,
    clicks Continue (a POST of its ticket), authorizes on Intercom's page and comes back to the
    callback, which connects the workspace; the admin reloads that page."""
    import requests

    from chalicelib.services.connections import configure_oauth
    from chalicelib.services.oauth import mint_link

    configure_oauth(stage.operator, "public-app", "public-app-secret")
    link = urlparse(mint_link(stage.operator, "https://abc.execute-api.example")["url"])    # `bridge workspace oauth-link`
    stage._warm["api_handler"].forget()
    host = {"Host": "abc.execute-api.example", "X-Forwarded-Proto": "https"}
    page = stage.get(f"{link.path}?{link.query}", host)
    start = stage.get(link.path, {**host, "Content-Type": "application/x-www-form-urlencoded"}, "POST",
                      link.query.encode())                      # the page's form: ticket=...
    location, cookie = start["headers"]["Location"], start["headers"]["Set-Cookie"].split(";")[0]
    query = dict(parse_qsl(urlparse(location).query))
    decided = requests.post(f"{stage.intercom.base_url}/oauth", data={**query, "decision": "allow"},
                            allow_redirects=False, timeout=10)
    back = urlparse(decided.headers["Location"])
    done = stage.get(f"{back.path}?{back.query}", {"Host": "abc.execute-api.example", "Cookie": cookie})
    again = stage.get(f"{back.path}?{back.query}", {"Host": "abc.execute-api.example", "Cookie": cookie})  # a reload
    assert "This sign-in link was already used: it connected" in again["body"], again
    return [page["statusCode"], start["statusCode"], done["statusCode"], again["statusCode"]]


def sync_after_a_lost_try(stage: Stage) -> list[str]:
    """Contact sync, on a campaign of its own: the operator starts a run of a segment (not recorded) whose one
    contact's page was tried before by a worker that died once RF had created the user (the ledger still says
    `creating`). RF answers that the email is in the campaign; the page asks the ledger whether another contact
    with that email was enrolled (a query), then adopts the user and writes the link back. Another contact of the
    segment is a referrer her own join linked: the page adopts her (her entry held to her join's link)."""
    from chalicelib.domain.history import Entry, iso
    from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
    from chalicelib.ports.store import LedgerEntry
    from chalicelib.services import admin, sync

    seed, intercom, rf = stage.operator, stage.intercom, stage.rf
    rf.add_campaign(43, "Acme customers")
    kim = intercom.add_contact("kim@example.com", role="user", name="Kim")
    lee = intercom.add_contact(None, role="user", name="Lee")      # no email: skipped
    mia = intercom.add_contact("mia@example.com", role="user", name="Mia")
    segment = intercom.add_segment("Customers", [kim["id"], lee["id"], mia["id"]])["id"]
    admin.apply_settings(seed, yaml.safe_dump({**sync_settings(segment), "campaign_id": "43"}))
    joined = seed.store.links.claim(PersonRef("43", str(rf.add_user(43, "mia@example.com", "Mia")["id"])), WORKSPACE)
    assert joined is not None                                            # (her own join linked her contact)
    seed.store.links.finish(joined, JoinResult(LinkStatus.LINKED, kind="referrer", email="mia@example.com",
                                               contact_id=mia["id"], contact_role="user"), [Entry("join", "linked")])
    run = sync.start(seed.deps, "43")                                    # `bridge sync start 43`
    assert seed.store.sync.intend("43", [LedgerEntry(kim["id"], "creating", email="kim@example.com", run=run.number,
                                                     seen_run=run.number, at=iso(stage.clock.now))]) == {kim["id"]}
    rf.add_user(43, "kim@example.com", "Kim")                            # the lost try's create
    stage.drain()
    written = intercom.get(kim["id"])["custom_attributes"].get("referral_link")
    # Intercom merges Kim's contact into another: her ledger entry moves to the survivor (a transaction's put
    # and delete of the ledger's items). The next run writes her link there (its entry rewritten, held to her RF user).
    survivor = intercom.add_contact(None, role="user", name="Kim K")
    intercom.merge(kim["id"], survivor["id"])
    stage.post_intercom(intercom.webhook_payload("contact.merged", {**intercom.get(survivor["id"]),
                                                                    "merged_from": {"type": "contact", "id": kim["id"]}}))
    stage.drain()
    intercom.segment_members[segment].add(survivor["id"])
    sync.start(seed.deps, "43")                                          # `bridge sync start 43` again
    stage.drain()
    moved = [e.rf_user_id for e in seed.store.sync.ledger("43") if e.contact_id == survivor["id"]]
    # Mia's contact, which her link is on, is merged too: her link follows it, and leaves the merged contact's
    # pointer, read first and deleted in the move's transaction (it named her alone).
    mia_survivor = intercom.add_contact(None, role="user", name="Mia M")
    intercom.merge(mia["id"], mia_survivor["id"])
    stage.post_intercom(intercom.webhook_payload("contact.merged", {
        **intercom.get(mia_survivor["id"]), "merged_from": {"type": "contact", "id": mia["id"]}}))
    stage.drain()
    assert seed.store.links.get(joined.ref).contact_id == mia_survivor["id"]
    return [written, *(u["url"] for u in rf.users_by_email("kim@example.com", 43)), len(moved),
            intercom.get(survivor["id"])["custom_attributes"].get("referral_link")]


def performed_pairs(stage: Stage, recorder: Recorder, function: str) -> set[tuple[str, str]]:
    return {pair for call in recorder.of(function) for pair in required(call, stage.target)}


# ------------------------------------------------------------------------------------------
# The tests
# ------------------------------------------------------------------------------------------

def test_the_flows_ran_as_a_user_would_see_them(performed):
    """The coverage below means something only if the flows really happened."""
    outcome, _, _ = performed
    assert outcome["join"] == [202, 202] and outcome["wrong secret"] == 401 and outcome["head"] == 200
    assert outcome["gil"]
    assert outcome["unlinked"] == 200 and outcome["notify"] == 200
    assert [r.get("waiting") for r in outcome["waits"]] == [2], outcome["waits"]
    assert any("will be retried" in str(r) for r in outcome["retry"]), outcome["retry"]
    assert outcome["qualified"] == [outcome["ann"]]
    assert outcome["reconcile"] == {"queued": 2, "round_complete": True, "searches": 1, "overdue": 1}   # (dee, gil)
    assert outcome["looked back"] is None
    assert len(outcome["eve"]) == 1 and len(outcome["fay"]) == 1
    assert [r.get("waiting") for r in outcome["held"]] == [1], outcome["held"]
    assert len(outcome["dead letters"]) == 2 and any("unreadable" in r for r in outcome["dead letters"])
    assert outcome["oauth"] == [200, 303, 200, 200]
    written, *made, moved, there = outcome["sync"]  # the lost try's user adopted, and its link written back,
    assert written and made == [written] and moved == 1 and there == written, outcome["sync"]   # then to the survivor


@pytest.mark.parametrize("function", deploy.FUNCTIONS)
def test_the_rendered_policy_grants_exactly_what_the_function_does(performed, rendered, function):
    _, stage, recorder = performed
    done = performed_pairs(stage, recorder, function)
    assert done, f"{function} performed no AWS call: the flows did not reach it"
    policy = rendered.policy(STAGE, function)
    assert violations(policy, done, stage.target, function) == {
        "performed but not granted": [], "granted but never performed": [], "listed but not granted": []}


def test_what_each_function_does(performed):
    """The actions, per function, as read from the recording (a readable summary of the above)."""
    _, stage, recorder = performed
    actions = {fn: sorted({a for a, _ in performed_pairs(stage, recorder, fn)}) for fn in deploy.FUNCTIONS}
    assert actions["api_handler"] == ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem",
                                      "dynamodb:UpdateItem", "sqs:SendMessage", "ssm:GetParameter", "ssm:PutParameter"]
    assert actions["reconcile"] == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem",
                                    "sqs:SendMessage"]
    assert {"sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:SendMessage", "dynamodb:UpdateItem",
            "dynamodb:Query", "ssm:GetParameter"} <= set(actions["worker"])
    assert "dynamodb:BatchWriteItem" not in actions["worker"]      # (a batch write may delete: each write is held)
    # The worker sends to the work queue only what waits (a copy with a delay): see services/worker.py.
    work = stage.target.outputs["QueueArn"]
    assert ("sqs:SendMessage", work) in performed_pairs(stage, recorder, "worker")
    # Secrets: the API function reads only edge/, the worker only worker/ (an access token never reaches the edge).
    secrets = stage.target.arn("ssm", f"parameter{stage.target.outputs['SecretsPath']}")
    reads = {fn: {r for a, r in performed_pairs(stage, recorder, fn) if a == "ssm:GetParameter"} for fn in deploy.FUNCTIONS}
    assert reads["api_handler"] and all(r.startswith(secrets + "/edge/") for r in reads["api_handler"])
    assert reads["worker"] and all(r.startswith(secrets + "/worker/") for r in reads["worker"])
    assert reads["reconcile"] == set()
    # The dead-letter queue is written by the worker alone; the indexes are read by reconcile alone.
    dlq, table = stage.target.outputs["DeadLetterQueueArn"], stage.target.outputs["TableArn"]
    indexes = {table + "/index/pending", table + "/index/overdue"}
    for fn in deploy.FUNCTIONS:
        resources = {r for _, r in performed_pairs(stage, recorder, fn)}
        assert (dlq in resources) == (fn == "worker") and (indexes <= resources) == (fn == "reconcile")
        assert fn == "reconcile" or not indexes & resources


def test_the_check_catches_a_missing_and_a_superfluous_grant(performed, rendered):
    """The comparison itself can fail: a policy without UpdateItem, or with Scan, is refused."""
    _, stage, recorder = performed
    done = performed_pairs(stage, recorder, "worker")
    policy = json.loads(json.dumps(rendered.policy(STAGE, "worker")))
    table = next(s for s in policy["Statement"] if s["Sid"] == "ItemUpdates")
    table["Action"] = ["dynamodb:Scan"]
    found = violations(policy, done, stage.target, "worker")
    assert [a for a, _ in found["performed but not granted"]] == ["dynamodb:UpdateItem"]
    assert found["granted but never performed"] == [("dynamodb:Scan", stage.target.outputs["TableArn"])]
    with pytest.raises(UnmappedCall):
        required(Call("s3", "PutObject", {"Bucket": "b", "Key": "k"}), stage.target)


def touched_partitions(recorder: Recorder, function: str) -> set[tuple[str, str]]:
    return {pair for call in recorder.of(function) for pair in partitions(call)}


@pytest.mark.parametrize("function", deploy.FUNCTIONS)
def test_each_item_statement_names_exactly_the_partitions_the_function_touches(performed, rendered, function):
    """Least privilege inside the one table: every statement on its items carries dynamodb:LeadingKeys, every
    partition each DynamoDB call of the flows touched (each item of a batch or a transaction) falls inside a
    statement granting that call's action, and every partition a statement names was touched by the flows."""
    _, stage, recorder = performed
    touched = touched_partitions(recorder, function)
    assert touched, f"{function} touched no partition: the flows did not reach it"
    assert key_violations(rendered.policy(STAGE, function), touched, stage.target.outputs["TableArn"]) == {
        "without dynamodb:LeadingKeys": [], "touched but not named": [], "named but never touched": []}


def test_the_key_check_catches_a_missing_an_unused_and_an_unconditioned_partition(performed, rendered):
    """The comparison itself can fail: the worker's batch reads without the ledger, with OAuth states, the ledger's
    query without its condition, or granting an action on partitions only its other actions touch (batch writes
    beside the reads of links and settings: a batch could delete them), are refused."""
    _, stage, recorder = performed
    table = stage.target.outputs["TableArn"]
    touched = touched_partitions(recorder, "worker")
    policy = json.loads(json.dumps(rendered.policy(STAGE, "worker")))
    batched, reads, ledger = (next(s for s in policy["Statement"] if s["Sid"] == sid)
                              for sid in ("BatchReads", "ItemReads", "Ledger"))
    keys = leading_keys(batched)
    assert keys is not None
    keys[keys.index("SYNC#*")] = "OAUTH#*"
    reads["Action"].append("dynamodb:BatchWriteItem")
    del ledger["Condition"]
    found = key_violations(policy, touched, table)
    assert found["without dynamodb:LeadingKeys"] == ["Ledger"]
    assert {(action, pk.split("#")[0]) for action, pk in found["touched but not named"]} == {
        ("dynamodb:BatchGetItem", "SYNC"), ("dynamodb:Query", "SYNC")}
    assert found["named but never touched"] == [("BatchReads", "dynamodb:BatchGetItem", "OAUTH#*"), *(
        ("ItemReads", "dynamodb:BatchWriteItem", k) for k in sorted(leading_keys(reads) or []))]


def test_transactions_are_authorized_item_by_item(rendered):
    target = rendered.targets[STAGE]
    call = Call("dynamodb", "TransactWriteItems", {"TransactItems": [
        {"Update": {"TableName": "t"}}, {"Put": {"TableName": "t"}}, {"ConditionCheck": {"TableName": "t"}}]})
    assert [a for a, _ in required(call, target)] == ["dynamodb:UpdateItem", "dynamodb:PutItem",
                                                      "dynamodb:ConditionCheckItem"]


def test_the_api_function_cannot_read_an_access_token(rendered):
    """SECRETS-DESIGN: the edge reads only <path>/edge/*; tokens live under <path>/worker/."""
    target = rendered.targets[STAGE]
    secrets = target.outputs["SecretsPath"]
    token = target.arn("ssm", f"parameter{secrets}/worker/intercom/{WORKSPACE}/token")
    edge = target.arn("ssm", f"parameter{secrets}/edge/intercom/{WORKSPACE}/client-secret")
    assert not allows(rendered.policy(STAGE, "api_handler"), "ssm:GetParameter", token)
    assert allows(rendered.policy(STAGE, "api_handler"), "ssm:GetParameter", edge)
    # The OAuth callback writes the token only: the public app's client secret is referenced, never copied.
    assert not allows(rendered.policy(STAGE, "api_handler"), "ssm:PutParameter", edge)
    assert allows(rendered.policy(STAGE, "worker"), "ssm:GetParameter", token)
    assert not allows(rendered.policy(STAGE, "worker"), "ssm:GetParameter", edge)
    assert not any(a.startswith("ssm:") for a, _ in granted(rendered.policy(STAGE, "reconcile")))


@pytest.mark.parametrize("sid, operation", [("OAuthTable", "PutItem"), ("EdgeTable", "UpdateItem"),
                                           ("OAuthTickets", "DeleteItem")])
def test_the_api_functions_writes_stay_within_its_leading_keys(performed, rendered, sid, operation):
    """The API function's writes are each narrowed to their keys (dynamodb:LeadingKeys): the OAuth
    state's put, the start ticket's delete, and its updates (the edge's log, the workspace the OAuth
    callback connected). Every such write it made falls inside its statement, so the condition would not
    refuse the real webhooks, start or callback; one statement grants each, and no two share keys."""
    _, stage, recorder = performed
    policy = rendered.policy(STAGE, "api_handler")["Statement"]
    statements = [s for s in policy if f"dynamodb:{operation}" in s["Action"]]
    assert [s["Sid"] for s in statements] == [sid] and statements[0]["Action"] == [f"dynamodb:{operation}"]
    allowed = leading_keys(statements[0]) or []
    writes = [c for c in recorder.of("api_handler") if c.service == "dynamodb" and c.operation == operation]
    keys = {(c.params.get("Item") or c.params["Key"])["pk"]["S"] for c in writes}
    assert keys and all(any(fnmatchcase(k, pattern) for pattern in allowed) for k in keys), keys
    if operation == "UpdateItem":        # the edge's log and the OAuth callback's connection were both seen
        assert {k.split("#")[0] for k in keys} >= {"EDGE", "WORKSPACE", "WORKSPACES"}, keys
    others = [p for s in policy if s.get("Sid") != sid and s["Action"] != ["dynamodb:GetItem"]   # other writes
              for p in leading_keys(s) or []]
    assert not [k for k in keys if any(fnmatchcase(k, p) for p in others)], "two statements share these keys"


def test_the_api_functions_reads_leave_out_peoples_partitions_and_the_rate_budgets(rendered):
    """The internet-facing function reads only the partitions its webhooks, OAuth start and callback check
    callers with (the flows read each, above): its one GetItem statement leaves out the partitions of people
    (histories, links by contact or email, the sync ledger, applied notifications) and the rate budgets."""
    [statement] = [s for s in rendered.policy(STAGE, "api_handler")["Statement"] if "dynamodb:GetItem" in s["Action"]]
    allowed = leading_keys(statement) or ["*"]                              # no condition: every partition
    for kept_out in ("HISTORY#42#1001", f"EMAIL#{WORKSPACE}#ann@example.com", f"CONTACT#{WORKSPACE}#6ab1",
                     "SYNC#42", "RATE#intercom", f"NOTIFICATION#{WORKSPACE}#notif_1", "RECONCILE", "RF"):
        assert not any(fnmatchcase(kept_out, pattern) for pattern in allowed), kept_out


# --- the rendered policies alone (no AWS) ---------------------------------------------------------------
PROD_OUTPUTS = {"TableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/rf-intercom-bridge-prod-table",
                "QueueArn": "arn:aws:sqs:eu-west-1:123456789012:rf-intercom-bridge-prod-work",
                "DeadLetterQueueArn": "arn:aws:sqs:eu-west-1:123456789012:rf-intercom-bridge-prod-dlq",
                "SecretsPath": "/rf-intercom-bridge/prod"}

# Partition keys of what only the worker and the operator may change: a link (its contact, baseline and
# qualification state), a person's history, a campaign's settings, the contact/email pointers, a rate budget.
NOT_THE_EDGES = ("CAMPAIGN#42", "SETTINGS#42", "HISTORY#42#1001", "CONTACT#vne310wv#6ab1", "EMAIL#vne310wv#ann@example.com",
                 "RATE#referral-factory", "RECONCILE")


def _granted_on(statement: dict, pk: str, actions: tuple[str, ...]) -> list[str]:
    """Those of `actions` a statement grants on the partition `pk` (every partition: no dynamodb:LeadingKeys)."""
    allowed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    keys = leading_keys(statement)
    if statement["Effect"] != "Allow" or not (keys is None or any(fnmatchcase(pk, p) for p in keys)):
        return []
    return [action for action in actions if any(fnmatchcase(action, a) for a in allowed)]


def test_the_public_api_function_cannot_update_links_history_or_settings():
    """Least privilege: the API function is the one that faces the internet (webhooks, OAuth). It only
    updates its own edge log (EDGE#...) and, from the OAuth callback, a workspace's connection record and
    the workspace index (WORKSPACE#..., WORKSPACES). A statement granting it dynamodb:UpdateItem on the whole
    table with no dynamodb:LeadingKeys condition (its `Table` statement once did) would let a flaw in the
    edge (or a leaked role session) rewrite any link — mark a referral qualified, point it at another
    workspace's contact — or any settings document.
    Expected: every statement of the API function that grants UpdateItem is narrowed by
    dynamodb:LeadingKeys to those partitions (as OAuthTable and reconcile's LinkTable already are)."""
    target = deploy.Target("prod", "123456789012", "eu-west-1", PROD_OUTPUTS)
    policy = deploy.policies(target)["api_handler"]
    reach = {pk: [s.get("Sid") for s in policy["Statement"] if _granted_on(s, pk, ("dynamodb:UpdateItem",))]
             for pk in NOT_THE_EDGES}
    assert {pk: sids for pk, sids in reach.items() if sids} == {}, "the API function may update these partitions"


_ITEM_READS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan")


def _reads(statement: dict, pk: str) -> list[str]:
    """The item reads a statement grants on the partition `pk`."""
    return _granted_on(statement, pk, _ITEM_READS)


def test_the_public_api_function_reads_a_campaigns_settings_and_never_its_links():
    """Security audit: the API function read a join's campaign settings with a GetItem on CAMPAIGN#*, the partition
    that also holds every link of the campaign (an RF person's email and Intercom contact id), its referrers' counts
    and its sync runs: dynamodb:LeadingKeys names partitions, not sort keys. Settings have their own partition
    (SETTINGS#<campaign>, adapters/dynamo/keys.py): the API function may read it, and no read of any kind reaches a
    campaign's partition, whether a link, a referral count, a sync run, or the settings kept there for a version
    rolled back to."""
    from chalicelib.adapters.dynamo.keys import (campaign_links, referrals_key, rollback_settings_key, settings_key,
                                                 sync_run_key)
    from chalicelib.domain.link import PersonRef
    target = deploy.Target("prod", "123456789012", "eu-west-1", PROD_OUTPUTS)
    statements = deploy.policies(target)["api_handler"]["Statement"]
    settings = settings_key("42")[0]
    assert [r for s in statements for r in _reads(s, settings)] == ["dynamodb:GetItem"]
    campaign = {campaign_links("42")[0], referrals_key(PersonRef("42", "1001"))[0], sync_run_key("42")[0],
                rollback_settings_key("42")[0]}
    assert campaign == {"CAMPAIGN#42"}, "a campaign's links, counts, runs and the rollback's settings share it"
    assert {pk: [(s.get("Sid"), r) for s in statements for r in _reads(s, pk)] for pk in campaign} == {"CAMPAIGN#42": []}
    # ... while the worker and reconcile read settings in their own partition too (the flows above read them there).
    for function in ("worker", "reconcile"):
        assert any(_reads(s, settings) for s in deploy.policies(target)[function]["Statement"]), function
