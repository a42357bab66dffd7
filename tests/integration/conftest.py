"""The app on real parts: moto in server mode (real HTTP to DynamoDB and SQS) with
resources created from infra/template.yaml, the Chalice app served over HTTP, the worker
driven like Lambda's SQS event source, and simulators of Intercom and Referral Factory.
Every request sent to Intercom, and the simulator's answer to it, is validated against Intercom's OpenAPI
description."""
from __future__ import annotations

import json

import pytest
import requests
import yaml

from infra.local.aws import deploy, unique_prefix
from infra.local.counting import CallCounter
from infra.local.esm import QueuePoller
from infra.local.http import serve_app
from infra.local.sims.intercom import IntercomSim
from infra.local.sims.webhooks import sign
from infra.local.sims.referral_factory import RFSim
from tests.fakes import FakeClock
from tests.support.intercom_contract import validate_request, validate_response
from tests.support.moto_server import moto_endpoint  # noqa: F401 (a fixture)

WORKSPACE = "vne310wv"
SECRET = "rf-hook-secret"
MAX_ATTEMPTS = 3


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def intercom(clock):
    sim = IntercomSim(app_id=WORKSPACE, clock=clock, validator=validate_request,
                      answer_validator=validate_response).start()
    for name, dtype in (("referral_code", "string"), ("lead_source", "string"), ("signed_up", "string"),
                        ("referral_link", "string"), ("score", "float"), ("joined_on", "date")):
        sim.define_attribute(name, dtype)
    yield sim
    sim.stop()
    assert sim.contract_violations == [], \
        "requests sent to Intercom (or the simulator's answers) broke its OpenAPI contract"


@pytest.fixture
def other_workspaces(clock):
    """More Intercom workspaces, each its own simulator: `other_workspaces("ws2", "ws2-token")` answers
    the started sim (its `base_url` is the workspace's API base; `GET /me` names `app_id`)."""
    sims: list[IntercomSim] = []

    def start(app_id: str, *tokens: str, app_name: str | None = None) -> IntercomSim:
        sim = IntercomSim(tokens=tokens or (f"{app_id}-token",), app_id=app_id, clock=clock,
                          validator=validate_request, answer_validator=validate_response,
                          app_name=app_name or f"Workspace {app_id}").start()
        sims.append(sim)
        return sim
    yield start
    for sim in sims:
        sim.stop()
    assert [v for sim in sims for v in sim.contract_violations] == [], \
        "requests (or the simulators' answers) broke Intercom's OpenAPI contract"


@pytest.fixture
def rf(clock):
    sim = RFSim(clock=clock).start()
    sim.add_campaign(42, "Friends of Acme")
    yield sim
    sim.stop()
    assert not sim.blocked, "we got Referral Factory to block our IP"


class Later:
    """Follow-up work the bridge queues with a delay (a created lead's verification, after Intercom's
    search lag): SQS would deliver it that many real seconds later; here it is held until the test
    says the time has come (`release()`, which also moves the fake clock by the lag). A deferred
    record's copy (`queue.defer`) is not held: `poller.release_delayed()` frees those."""

    def __init__(self, rt):
        self.rt, self.held = rt, []

    def hold(self, send_many):
        self.send_many = send_many

        def held_or_sent(messages, delay=0):
            if delay:
                self.held.extend(messages)
            else:
                send_many(messages)
        return held_or_sent

    def release(self) -> int:
        self.rt.clock.now += self.rt.config.search_lag
        sent, self.held[:] = list(self.held), []
        if sent:
            self.send_many(sent)
        return len(sent)


class Bridge:
    def __init__(self, rt, server, poller, resources, intercom, rf):
        self.rt, self.server, self.poller, self.resources = rt, server, poller, resources
        self.intercom, self.rf = intercom, rf
        self.later = Later(rt)

    def post_join(self, body, secret=SECRET, raw: bytes | None = None, headers=None) -> requests.Response:
        hdrs = {"Content-Type": "application/json", **({"X-Bridge-Secret": secret} if secret else {}),
                **(headers or {})}
        data = raw if raw is not None else json.dumps(body).encode()
        return requests.post(f"{self.server.url}/webhooks/referral-factory", data=data, headers=hdrs, timeout=10)

    def post_intercom(self, payload=None, *, raw: bytes | None = None, secret="client-secret",
                      signature: str | None = None, method="POST") -> requests.Response:
        data = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if signature is not None or secret:
            headers["X-Hub-Signature"] = signature if signature is not None else sign(data, secret)
        return requests.request(method, f"{self.server.url}/webhooks/intercom", data=data, headers=headers,
                                timeout=10)

    def notify(self, topic, contact_id, **kw) -> requests.Response:
        """Intercom tells us about the contact's current state."""
        return self.post_intercom(self.intercom.webhook_payload(topic, contact_id, **kw))

    def reconcile(self) -> dict:
        from chalicelib.services.reconcile import reconcile
        return reconcile(self.rt)

    def apply(self, doc: dict) -> dict:
        from chalicelib.services.admin import apply_settings
        return apply_settings(self.rt, yaml.safe_dump(doc))

    def drain(self):
        return self.poller.drain()

    def queued(self) -> int:
        attrs = self.resources.client("sqs").get_queue_attributes(
            QueueUrl=self.resources.queue_url, AttributeNames=["ApproximateNumberOfMessages",
                                                              "ApproximateNumberOfMessagesNotVisible",
                                                              "ApproximateNumberOfMessagesDelayed"])
        return sum(int(v) for v in attrs["Attributes"].values())

    def dead_letters(self) -> list[dict]:
        """Every dead letter, each with its reason and its payload."""
        from chalicelib.services.dead_letters import look
        return [{"message_id": d.message_id, "body": d.body,
                 **{k: v for k, v in (("reason", d.reason), ("attempts", d.attempts), ("failed_at", d.failed_at))
                    if v is not None}} for d in look(self.rt).letters]

    def operator(self):
        """The operator's CLI runtime: another process, with its own (empty) caches, waiting on the
        test's clock as the workers do (a real sleep would only make the test slower)."""
        from chalicelib.config import Config
        from chalicelib.runtime import Runtime
        return Runtime(Config.from_env(), clock=self.rt.clock, sleeper=self.rt.sleeper)

    def history(self, campaign_id, rf_user_id) -> dict:
        from chalicelib.services.admin import person_history
        return person_history(self.rt, str(campaign_id), str(rf_user_id))


def connected_before(rt, clock, *, checked: bool = False) -> None:
    """The workspace and Referral Factory connected before the test began, as the operator's `connect_workspace(rt,
    WORKSPACE, "sim-token", client_secret="client-secret")` and `connect_rf(.., "rf-token", SECRET)` leave them:
    their own writes (store_workspace, store_rf), without the checks they make first (a dozen reads and Intercom's
    `GET /me`, half of every test's setup), which tests/integration/test_connect.py and
    test_fixture_connects_as_the_operator_would (`checked`: the connects themselves) keep proving. RF's token was
    stored long enough ago that no worker holds another (a replay waits for none)."""
    from chalicelib.config import Config
    from chalicelib.ports.secrets import KEPT_SECONDS
    from chalicelib.runtime import Runtime
    from chalicelib.services.connections import connect_rf, connect_workspace, store_rf, store_workspace

    earlier = Runtime(Config.from_env(), clock=lambda: clock() - 2 * KEPT_SECONDS)
    if checked:
        connect_workspace(rt, WORKSPACE, "sim-token", client_secret="client-secret")
        connect_rf(earlier, "rf-token", SECRET)
    else:
        store_workspace(rt, WORKSPACE, "sim-token", "client-secret", None)
        store_rf(earlier, "rf-token", SECRET)


@pytest.fixture
def bridge(moto_endpoint, monkeypatch, clock, intercom, rf):
    resources = deploy(moto_endpoint, unique_prefix())
    for key, value in {**resources.env(), "INTERCOM_BASE_URL": intercom.base_url, "RF_BASE_URL": rf.base_url,
                       "BRIDGE_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}.items():
        monkeypatch.setenv(key, value)
    from chalicelib.config import Config
    from chalicelib.runtime import Runtime, reset_default_runtime
    import app as app_module

    rt = Runtime(Config.from_env(), clock=clock, sleeper=clock.sleep)
    connected_before(rt, clock)
    reset_default_runtime(rt)
    server = serve_app(app_module.app)
    # The worker's time left runs on the test's clock: it shrinks by the waits the worker makes on it
    # (the rate limiter's), never by how loaded the machine is.
    poller = QueuePoller(resources.client("sqs"), resources.queue_url, resources.queue_arn, app_module.worker,
                         clock=clock)
    bridge = Bridge(rt, server, poller, resources, intercom, rf)
    monkeypatch.setattr(rt.queue, "send_many", bridge.later.hold(rt.queue.send_many))
    yield bridge
    server.stop()
    reset_default_runtime(None)


@pytest.fixture
def counter(intercom, rf):
    """Counts a scenario's calls: `with counter.measure() as counts: ...`, then `counts.as_dict()`
    gives {intercom, rf, dynamodb_writes, dynamodb_reads, sqs} (infra/local/counting.py)."""
    counter = CallCounter(intercom=intercom, rf=rf)
    with counter.installed():
        yield counter


def lead_settings(**leads) -> dict:
    return {"campaign_id": "42", "workspace": WORKSPACE,
            "leads": {"action": "create_lead", "duplicates": "update",
                      "fields": [{"from": "email", "to": "email"}, {"from": "first_name", "to": "name"},
                                 {"from": "code", "to": "custom_attributes.referral_code"},
                                 {"value": "referral", "to": "custom_attributes.lead_source"}], **leads},
            "referrers": {"action": "create_user", "duplicates": "skip",
                          "fields": [{"from": "email", "to": "email"},
                                     {"from": "url", "to": "custom_attributes.referral_link"}]}}


def qualifying_settings(**rule) -> dict:
    return {**lead_settings(), "qualification": {"attribute": "custom_attributes.signed_up", "value": "Yes",
                                                 "initial_value": "No", **rule}}


def join_body(user: dict) -> dict:
    """What RF's webhook sends, configured as docs/setup.md says."""
    return {k: user.get(k) for k in ("id", "campaign_id", "email", "first_name", "code", "url", "source",
                                     "referrer_id", "signed_up_at")}


def new_lead(rf, email="ann@example.com", first_name="Ann", **kw):
    """A lead of campaign 42 in RF, referred by Rita."""
    referrer = rf.add_user(42, "ref@example.com", "Rita")
    return rf.add_user(42, email, first_name, referrer_id=referrer["id"], **kw)


@pytest.fixture
def joined(bridge, intercom, rf):
    """A referred lead who joined and whose Intercom contact exists (signed_up = "No")."""
    def make(settings=None, email="ann@example.com", **kw):
        bridge.apply(settings or qualifying_settings())
        lead = new_lead(rf, email=email, **kw)
        bridge.post_join(join_body(lead))
        bridge.drain()
        [contact] = intercom.contacts_by_email(email)
        return lead, contact
    return make
