"""Secrets live in SSM Parameter Store (moto server), each function reads only its own part, and a
connected or rotated secret takes effect at once — without letting callers force reads."""
from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
from botocore.client import BaseClient

from chalicelib.adapters.secrets import RECHECK_SECONDS
from chalicelib.cli import main
from chalicelib.services.connections import connect_rf, connect_workspace
from tests.support.log_lines import written_lines

from .conftest import SECRET, WORKSPACE, join_body, lead_settings, new_lead, qualifying_settings
from .test_qualification import qualified_ids


@pytest.fixture
def aws_calls(monkeypatch):
    """Every AWS API call this process makes (boto3 and PynamoDB both go through BaseClient)."""
    calls: list[tuple[str, str, dict]] = []
    original = BaseClient._make_api_call

    def recording(client, operation, params):
        calls.append((client.meta.service_model.service_name, operation, dict(params)))
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return calls


def ssm_reads(calls) -> list[str]:
    return [params["Name"] for service, op, params in calls if service == "ssm"]


def path(bridge) -> str:
    return bridge.rt.config.secrets_path


def scan(bridge) -> list[dict]:
    return bridge.resources.client("dynamodb").scan(TableName=bridge.resources.table)["Items"]


def distinct_values(intercom, rf) -> dict:
    """Secrets that cannot be confused with anything else in the table, the simulators' tokens."""
    tag = uuid.uuid4().hex
    values = {"token": f"ic-tok-{tag}", "client_secret": f"ic-cs-{tag}", "rf_token": f"rf-tok-{tag}",
              "webhook_secret": f"rf-wh-{tag}"}
    intercom.tokens.add(values["token"])
    rf.token = values["rf_token"]
    return values


def distinct_secrets(bridge, intercom, rf) -> dict:
    """Connect everything with values that cannot be confused with anything else in the table."""
    values = distinct_values(intercom, rf)
    connect_workspace(bridge.operator(), WORKSPACE, values["token"], values["client_secret"])
    connect_rf(bridge.operator(), values["rf_token"], values["webhook_secret"])
    return values


def test_after_connecting_the_table_holds_no_secret_and_ssm_holds_them_encrypted(bridge, intercom, rf):
    given = distinct_secrets(bridge, intercom, rf)
    bridge.apply(qualifying_settings())
    lead = new_lead(rf)
    assert bridge.post_join(join_body(lead), secret=given["webhook_secret"]).status_code == 202
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    intercom.update_contact(contact["id"], signed_up="Yes")
    payload = intercom.webhook_payload("contact.lead.updated", contact["id"])
    assert bridge.post_intercom(payload, secret=given["client_secret"]).status_code == 200
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    secrets = set(given.values())
    items = scan(bridge)
    values = [v for item in items for attr in item.values() for v in (attr.get("S"), *attr.get("SS", ()))]
    assert any(item["pk"]["S"] == f"WORKSPACE#{WORKSPACE}" for item in items)   # the metadata is there
    assert not secrets & set(values)
    assert not any(s in json.dumps(items) for s in secrets)
    ssm = bridge.resources.client("ssm")
    stored = {p["Name"]: p["Type"] for p in ssm.describe_parameters(ParameterFilters=[
        {"Key": "Path", "Option": "Recursive", "Values": [path(bridge)]}])["Parameters"]}
    assert stored == {f"{path(bridge)}/edge/rf/webhook-secret": "SecureString",
                      f"{path(bridge)}/edge/intercom/{WORKSPACE}/client-secret": "SecureString",
                      f"{path(bridge)}/worker/rf/token": "SecureString",
                      f"{path(bridge)}/worker/intercom/{WORKSPACE}/token": "SecureString"}


def test_webhook_intake_reads_secrets_only_under_edge(bridge, intercom, rf, aws_calls):
    bridge.apply(lead_settings())
    bridge.rt.forget()                                              # a cold API container
    aws_calls.clear()
    lead = new_lead(rf)
    assert bridge.post_join(join_body(lead)).status_code == 202
    assert bridge.post_join(join_body(lead), secret="wrong").status_code == 401
    contact = intercom.add_contact("x@example.com")
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    for app_id in ("someone-else", "../worker/intercom/vne310wv", f"{WORKSPACE}/../../worker/rf", "a/b"):
        payload = intercom.webhook_payload("contact.lead.updated", contact["id"], app_id=app_id)
        assert bridge.post_intercom(payload).status_code == 401
    reads = ssm_reads(aws_calls)
    assert f"{path(bridge)}/edge/rf/webhook-secret" in reads
    assert f"{path(bridge)}/edge/intercom/{WORKSPACE}/client-secret" in reads
    assert all(name.startswith(f"{path(bridge)}/edge/") for name in reads), reads
    assert {op for service, op, _ in aws_calls if service == "ssm"} == {"GetParameter"}


def test_a_warm_edge_makes_one_aws_call_per_accepted_webhook(bridge, intercom, rf, aws_calls):
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    contact = intercom.add_contact("x@example.com")
    bridge.post_join(join_body(lead))
    bridge.notify("contact.lead.updated", contact["id"])             # warm
    aws_calls.clear()
    for _ in range(3):
        assert bridge.post_join(join_body(lead)).status_code == 202
        assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    assert [(s, op) for s, op, _ in aws_calls] == [("sqs", "SendMessage")] * 6


def test_connect_then_send_at_once_is_accepted(bridge, intercom, rf, other_workspaces):
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    contact = intercom.add_contact("x@example.com")
    bridge.rt.secrets.delete("edge/rf/webhook-secret")               # RF not connected yet
    bridge.rt.forget()
    assert bridge.post_join(join_body(lead), secret="first").status_code == 503   # "not configured" is cached
    payload = intercom.webhook_payload("contact.lead.updated", contact["id"], app_id="ws2")
    assert bridge.post_intercom(payload, secret="ws2-secret").status_code == 401  # so is "no such workspace"

    operator = bridge.operator()                                     # another process; same instant
    connect_rf(operator, "rf-token", "first")
    connect_workspace(operator, "ws2", "ws2-token", client_secret="ws2-secret", api_base=other_workspaces("ws2").base_url)

    assert bridge.post_join(join_body(lead), secret="first").status_code == 202
    assert bridge.post_intercom(payload, secret="ws2-secret").status_code == 200


def test_a_rotated_secret_is_accepted_at_once_and_the_old_one_refused(bridge, intercom, rf):
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    contact = intercom.add_contact("x@example.com")
    payload = intercom.webhook_payload("contact.lead.updated", contact["id"])
    assert bridge.post_join(join_body(lead)).status_code == 202
    assert bridge.post_intercom(payload).status_code == 200           # both secrets cached

    operator = bridge.operator()
    connect_rf(operator, webhook_secret="rotated-rf")
    connect_workspace(operator, WORKSPACE, client_secret="rotated-client")

    assert bridge.post_join(join_body(lead), secret="rotated-rf").status_code == 202
    assert bridge.post_intercom(payload, secret="rotated-client").status_code == 200
    assert bridge.post_join(join_body(lead), secret=SECRET).status_code == 401
    assert bridge.post_intercom(payload, secret="client-secret").status_code == 401


def test_a_burst_of_badly_signed_webhooks_reads_the_store_once_per_few_seconds(bridge, intercom, rf, clock,
                                                                               aws_calls):
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    contact = intercom.add_contact("x@example.com")
    payload = intercom.webhook_payload("contact.lead.updated", contact["id"])
    bridge.post_join(join_body(lead))
    bridge.post_intercom(payload)                                     # warm
    queued = bridge.queued()
    aws_calls.clear()
    for _ in range(15):
        assert bridge.post_join(join_body(lead), secret=f"forged-{uuid.uuid4()}").status_code == 401
        assert bridge.post_intercom(payload, secret=f"forged-{uuid.uuid4()}").status_code == 401
    assert len(ssm_reads(aws_calls)) == 2                             # one per secret
    clock.now += RECHECK_SECONDS
    for _ in range(15):
        bridge.post_join(join_body(lead), secret="forged")
        bridge.post_intercom(payload, secret="forged")
    assert len(ssm_reads(aws_calls)) == 4
    assert bridge.queued() == queued


def test_a_token_rotated_mid_flight_is_read_again_on_the_401_and_used(bridge, intercom, rf):
    bridge.apply(qualifying_settings())
    first = new_lead(rf)
    bridge.post_join(join_body(first))
    bridge.drain()                                                    # the worker's clients are warm
    operator = bridge.operator()
    intercom.tokens.add("ic-rotated")
    connect_workspace(operator, WORKSPACE, "ic-rotated")
    intercom.revoke("sim-token")
    rf.token = "rf-rotated"
    connect_rf(operator, token="rf-rotated")

    second = new_lead(rf, email="bob@example.com", first_name="Bob")
    bridge.post_join(join_body(second))
    [contact] = intercom.contacts_by_email("ann@example.com")
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    assert all(o.ok for o in bridge.drain())                          # first delivery, nothing retried
    assert len(intercom.contacts_by_email("bob@example.com")) == 1
    assert qualified_ids(rf) == [first["id"]]
    assert bridge.dead_letters() == []


def test_a_token_that_did_not_change_is_read_once_then_the_work_waits_for_a_reconnect(bridge, intercom, rf, aws_calls):
    bridge.apply(lead_settings())
    bridge.post_join(join_body(new_lead(rf)))
    bridge.drain()
    intercom.revoke("sim-token")
    aws_calls.clear()
    bob = new_lead(rf, email="bob@example.com")
    bridge.post_join(join_body(bob))
    [batch] = bridge.drain()
    assert ssm_reads(aws_calls) == [f"{path(bridge)}/worker/intercom/{WORKSPACE}/token"]
    assert batch.result == {"done": 0, "retry": 0, "dead": 0, "waiting": 1} and bridge.dead_letters() == []
    link = bridge.history(42, bob["id"])["link"]
    assert link["status"] == "waiting" and "Intercom answered 401" in link["reason"]


def test_reconnecting_keeps_what_it_is_not_given(bridge, intercom, rf, capsys, other_workspaces):
    operator = bridge.operator()
    eu = other_workspaces("ws2", "t-1", "t-2", app_name="Acme EU")     # a regional API base of its own
    assert main(["workspace", "connect", "ws2", "--token", "t-1", "--client-secret", "cs-1",
                 "--api-base", eu.base_url], rt=operator) == 0
    assert main(["workspace", "connect", "ws2", "--token", "t-2"], rt=operator) == 0
    out = capsys.readouterr().out
    # The second token was checked on the API base already configured, which it kept, as the client secret.
    assert f"workspace ws2 (Acme EU) connected: token set (from --token, checked with Intercom), client secret kept " \
           f"(none given), api base " \
           f"{eu.base_url}" in out
    assert eu.count("GET", "/me") == 2 and [r["headers"]["Authorization"] for r in eu.requests] == \
        ["Bearer t-1", "Bearer t-2"]
    assert not {"t-1", "t-2", "cs-1"} & set(out.split())
    conn = bridge.rt.store.connections.workspace("ws2")
    assert conn.api_base == eu.base_url and conn.secrets == {"token", "client-secret"}
    contact = intercom.add_contact("x@example.com")
    payload = intercom.webhook_payload("contact.lead.updated", contact["id"], app_id="ws2")
    assert bridge.post_intercom(payload, secret="cs-1").status_code == 200
    rf.token = "rf-2"                                                 # RF's token, regenerated
    assert main(["rf", "connect", "--token", "rf-2"], rt=operator) == 0
    assert "token set (from --token, checked with Referral Factory), webhook secret kept (none given)" in \
        capsys.readouterr().out
    assert bridge.post_join({"id": 1, "campaign_id": 42}, secret=SECRET).status_code == 404   # secret still good


def test_a_first_connect_without_a_token_is_one_clear_line(bridge, capsys):
    assert main(["workspace", "connect", "new-ws", "--client-secret", "cs"], rt=bridge.operator()) == 1
    err = capsys.readouterr().err
    assert err == ("bridge: workspace new-ws has no access token yet: `bridge workspace connect new-ws` asks for it "
                   "in a terminal (elsewhere, set INTERCOM_TOKEN)\n")


def test_secrets_never_reach_logs_cli_output_history_or_dead_letters(bridge, intercom, rf, capfd, caplog):
    with written_lines() as logged:                          # the lines as CloudWatch receives them
        operator = bridge.operator()
        given = distinct_values(intercom, rf)
        assert main(["workspace", "connect", WORKSPACE, "--token", given["token"], "--client-secret",
                     given["client_secret"]], rt=operator) == 0
        assert main(["rf", "connect", "--token", given["rf_token"], "--webhook-secret", given["webhook_secret"]],
                    rt=operator) == 0
        bridge.apply(qualifying_settings())
        ann = new_lead(rf)
        bridge.post_join(join_body(ann), secret=given["webhook_secret"])
        bridge.post_join(join_body(ann), secret="wrong")                  # refused: logged as such
        bridge.drain()
        [contact] = intercom.contacts_by_email("ann@example.com")
        intercom.update_contact(contact["id"], signed_up="Yes")
        payload = intercom.webhook_payload("contact.lead.updated", contact["id"])
        bridge.post_intercom(payload, secret=given["client_secret"])
        bridge.post_intercom(payload, secret="wrong")
        bridge.drain()
        assert qualified_ids(rf) == [ann["id"]]
        intercom.revoke(given["token"])                                   # a wait, then a letter, about a bad token
        bob = new_lead(rf, email="bob@example.com", first_name="Bob")
        bridge.post_join(join_body(bob), secret=given["webhook_secret"])
        bridge.drain()
        bridge.rt.config = replace(bridge.rt.config, outage_hours=0)     # (waited out: its letter now)
        bridge.poller.release_delayed()
        bridge.drain()
        for argv in (["history", "42", str(ann["id"])], ["history", "42", str(bob["id"])], ["dlq", "list"],
                     ["settings", "show", "42"], ["rf", "connect", "--webhook-secret", given["webhook_secret"]]):
            assert main(argv, rt=operator) == 0
        # Reconnecting with the revoked token is refused by Intercom's /me: one line, and the token is not in it.
        assert main(["workspace", "connect", WORKSPACE, "--token", given["token"]], rt=operator) == 1

    dead = bridge.dead_letters()
    assert len(dead) == 1 and "401" in dead[0]["reason"]
    captured = capfd.readouterr()
    seen = "\n".join([captured.out, captured.err, caplog.text, *logged(), json.dumps(dead, default=str),
                      json.dumps([bridge.history(42, p["id"]) for p in (ann, bob)], default=str)])
    assert '"outcome": "qualified"' in seen and "webhook rejected" in seen   # what was looked at is there
    assert any("webhook rejected" in line for line in logged()), logged()    # the log lines among them
    for value in given.values():
        assert value not in seen


def test_an_unspent_oauth_link_is_in_no_item_of_the_table_and_still_works_once(bridge):
    """The operator's one-time start link connects a workspace for whoever holds it: what the table keeps of
    its ticket (a backup, an export, a console's reader) must not be the link."""
    from chalicelib.services import oauth as flow
    from chalicelib.services.connections import configure_oauth

    configure_oauth(bridge.operator(), "app-id", "app-secret")
    ticket = flow.mint_link(bridge.operator(), "https://bridge.example/api", "ws1")["url"].split("ticket=", 1)[1]
    assert ticket not in json.dumps(scan(bridge))
    place = flow.Place("https://bridge.example/api", secure=True)
    assert flow.start(bridge.rt, place, ticket).status == 200
    assert flow.begin(bridge.rt, place, ticket).status == 303
    assert flow.begin(bridge.rt, place, ticket).status == 403 and flow.start(bridge.rt, place, ticket).status == 403
