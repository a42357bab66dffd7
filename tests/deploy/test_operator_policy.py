"""The operator's policies `make deploy` renders (.chalice/policy-<stage>-operator.json, every command, and
policy-<stage>-operator-readonly.json, the commands that change nothing) grant what `bridge --stage <stage> ...`
does, on the stage's resources only: every command family runs on a stage `make deploy` made on a moto
server, as the operator runs it (the stage read from its stack, Intercom and RF the simulators), every botocore
call it makes is recorded (as tests/deploy/test_iam_coverage.py records the functions'), mapped to the IAM actions
and resources it needs, and checked against the rendered files: the full policy grants every call of every
command, and nothing no command did; the read-only one grants every call of the read-only commands (each item's
partition inside its statement's dynamodb:LeadingKeys), and refuses every write the others made."""
from __future__ import annotations

import contextlib
import io
import json
import os
from fnmatch import fnmatchcase

import pytest
import yaml

from chalicelib import cli
from chalicelib.stage import CHALICE_CONFIG, OUTPUT_ENV
from infra import deploy
from infra.local.aws import _no_expected_unsupported_warnings
from infra.local.counting import AwsCall, AwsCallRecorder
from infra.local.sims.intercom import IntercomSim
from infra.local.sims.referral_factory import RFSim
from tests.fakes import FakeClock
from tests.integration.conftest import WORKSPACE, qualifying_settings
from tests.integration.test_sync import sync_settings

from .conftest import Rendered, _no_sleep, aws_env, aws_on, chalice_deployed, project_copy
from .test_iam_coverage import allows, leading_keys, partitions, required, vendors, violations

STAGE = "ops"      # a stage of its own: the functions' tests write to prod's and dev's table and queues
FULL, READONLY = deploy.OPERATORS
ANN, ANN_EMAIL = "1002", "ann@example.com"

#: Every command family, in the order an operator would meet them: (what it is called here, its argv after
#: `bridge --stage ops`). The read-only ones are deploy.OPERATOR_READONLY_COMMANDS; `settings check` reads a file
#: only (no AWS call), and there is no `dlq show`: `dlq list --show-payload` shows a letter.
COMMANDS = [
    ("rf connect", ["rf", "connect"]),
    ("workspace connect", ["workspace", "connect", WORKSPACE]),
    ("settings check", ["settings", "check", "{settings42}"]),
    ("settings apply", ["settings", "apply", "{settings42}"]),
    ("settings apply", ["settings", "apply", "{settings43}"]),
    ("settings show", ["settings", "show", "42"]),
    ("workspace list", ["workspace", "list", "--json"]),
    ("workspace oauth-app", ["workspace", "oauth-app", "--client-id", "public-app"]),
    # Without --api-url: the API's URL read from the deployed state `make deploy` keeps in the stack's bucket.
    ("workspace oauth-link", ["workspace", "oauth-link", "--json"]),
    ("seed", []),                                   # a link, its history and two dead letters (not recorded)
    ("doctor", ["doctor", "42", "--json"]),
    ("explain", ["explain", ANN_EMAIL, "--json"]),
    ("history", ["history", "42", ANN, "--json"]),
    ("dlq list", ["dlq", "list", "--show-payload", "--workspace", WORKSPACE, "--json"]),   # (its settings read)
    ("sync start", ["sync", "start", "43", "--json"]),
    ("sync status", ["sync", "status", "43", "--json"]),
    ("sync report", ["sync", "report", "43", "--json"]),
    ("backfill", ["backfill", "42", "--json"]),
    ("backfill", ["backfill", "42", "--apply", "--json"]),
    ("dlq replay", ["dlq", "replay", "--reason", "replay me", "--json"]),
    ("dlq discard", ["dlq", "discard", "--reason", "discard me", "--yes", "--json"]),
    ("pointers", ["pointers", "--json"]),
    ("pointers", ["pointers", "--apply", "--json"]),
    ("forget", ["forget", ANN_EMAIL, "--json"]),
    ("settings delete", ["settings", "delete", "42", "--yes", "--json"]),
    ("workspace remove-app", ["workspace", "remove-app", WORKSPACE, "oauth", "--json"]),
    ("workspace disconnect", ["workspace", "disconnect", WORKSPACE, "--json"]),
]
FAMILIES = sorted({name for name, argv in COMMANDS if argv})


class Ran:
    def __init__(self, target: deploy.Target, recorder: AwsCallRecorder, answers: dict[str, list[tuple]]):
        self.target, self.recorder, self.answers = target, recorder, answers

    def calls(self, command: str) -> list[AwsCall]:
        return [call for call in self.recorder.calls if call.label == command]

    def pairs(self, command: str) -> set[tuple[str, str]]:
        return {pair for call in self.calls(command) for pair in required(call, self.target)}

    def touched(self, command: str) -> set[tuple[str, str]]:
        return {pair for call in self.calls(command) for pair in partitions(call)}


def _seed(target: deploy.Target, intercom: IntercomSim, rf: RFSim, clock: FakeClock) -> None:
    """What the functions would have left by now: Ann's link (a referrer her join linked) with its history, two
    dead letters about her (one to replay, one to discard), Bea not yet joined (for `backfill`), and the workspace
    connected by OAuth too (an app `workspace remove-app` may remove)."""
    from chalicelib.config import Config
    from chalicelib.domain import apps
    from chalicelib.domain.history import Entry
    from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
    from chalicelib.runtime import Runtime

    seed = Runtime(Config.from_env(dict(os.environ)), clock=clock)
    rf.add_user(42, "bea@example.com", "Bea")                          # for `backfill`
    user = rf.add_user(42, ANN_EMAIL, "Ann")
    assert str(user["id"]) == ANN, user                   # (RF numbers its users from 1001: Bea, Ann)
    contact = intercom.add_contact(ANN_EMAIL, role="user", name="Ann")
    joined = seed.store.links.claim(PersonRef("42", ANN), WORKSPACE)
    assert joined is not None
    seed.store.links.finish(joined, JoinResult(LinkStatus.LINKED, kind="referrer", email=ANN_EMAIL,
                                               contact_id=contact["id"], contact_role="user"),
                            [Entry("join", "linked")])
    body = json.dumps({"kind": "rf.join", "campaign_id": "42", "rf_user_id": ANN,
                       "person": {"id": ANN, "campaign_id": "42", "email": ANN_EMAIL}})
    for reason in ("replay me: Intercom answered 500", "discard me: Intercom answered 400"):
        seed.deps.dead_letter(body, reason, 5, person=("42", ANN), kind="rf.join")
    seed.store.connections.mark(WORKSPACE, {apps.MARKS["oauth"]})      # an admin connected it by OAuth too


@pytest.fixture(scope="module")
def rendered(moto_endpoint, tmp_path_factory) -> Rendered:
    """`make deploy STAGE=ops RENDER_ONLY=1` on the moto server, into a project copy of its own."""
    project = project_copy(tmp_path_factory.mktemp("operator") / "project")
    lines: list[str] = []
    with _no_expected_unsupported_warnings():
        target = deploy.deploy(STAGE, project_dir=project, render_only=True, aws=aws_on(moto_endpoint),
                               say=lines.append, sleep=_no_sleep)["target"]
    return Rendered(project, moto_endpoint, {STAGE: target}, lines)


@pytest.fixture(scope="module")
def ran(rendered, tmp_path_factory):
    """Every command of COMMANDS run once on the stage, as the operator runs it; what each did."""
    from chalicelib.runtime import reset_default_runtime

    clock = FakeClock()
    intercom, rf = vendors(clock)
    rf.add_campaign(43, "Acme customers")
    segment = intercom.add_segment("Customers", [intercom.add_contact("kim@example.com", role="user", name="Kim")["id"]])
    files = tmp_path_factory.mktemp("operator")
    settings = {"settings42": files / "42.yaml", "settings43": files / "43.yaml"}
    settings["settings42"].write_text(yaml.safe_dump(qualifying_settings()))
    settings["settings43"].write_text(yaml.safe_dump({**sync_settings(segment["id"]), "campaign_id": "43"}))
    target = rendered.targets[STAGE]
    recorder, answers = AwsCallRecorder(), {}
    deployed = json.loads(CHALICE_CONFIG.read_text())["environment_variables"]
    states = chalice_deployed(files, STAGE, "opsapi", target.region)     # as `make deploy` stored it (not recorded)
    aws_on(rendered.endpoint).client("s3").put_object(Bucket=target.outputs["StateBucket"],
                                                      Key=f"deployed/{STAGE}.json", Body=states.read_bytes())
    with pytest.MonkeyPatch.context() as mp, recorder.installed():
        mp.setattr("chalicelib.stage.CHECKOUT", files / "no checkout")   # not this checkout's state
        # The operator's shell: AWS credentials and region, the vendors' URLs; what `--stage` sets is undone after.
        for key in [k for k in os.environ if k.startswith(("BRIDGE_", "AWS_", "INTERCOM_", "RF_"))]:
            mp.delenv(key)
        for key in [*OUTPUT_ENV.values(), *deployed]:
            mp.setenv(key, "unset")
            mp.delenv(key)
        for key, value in {**aws_env(rendered.endpoint), "INTERCOM_BASE_URL": intercom.base_url,
                           "RF_BASE_URL": rf.base_url, "RF_TOKEN": "rf-token", "RF_WEBHOOK_SECRET": "rf-hook-secret",
                           "INTERCOM_TOKEN": "sim-token", "INTERCOM_CLIENT_SECRET": "client-secret",
                           "INTERCOM_OAUTH_CLIENT_SECRET": "public-app-secret"}.items():
            mp.setenv(key, value)
        try:
            for name, argv in COMMANDS:
                if not argv:
                    _seed(target, intercom, rf, clock)
                    continue
                recorder.label, out, err = name, io.StringIO(), io.StringIO()
                try:
                    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                        code = cli.main(["--stage", STAGE, *(a.format(**settings) for a in argv)])
                finally:
                    recorder.label = None
                    reset_default_runtime(None)
                answers.setdefault(name, []).append((code, out.getvalue(), err.getvalue()))
            yield Ran(target, recorder, answers)
        finally:
            intercom.stop()
            rf.stop()


def test_every_command_of_the_cli_is_run_here():
    """A new command gets its calls checked: it fails this until COMMANDS runs it (and the policies grant it)."""
    import argparse

    def commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> set[str]:
        found: set[str] = set()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found |= commands(sub, (*words, name)) or {" ".join((*words, name))}
        return found
    assert commands(cli._parser()) == set(FAMILIES)


def test_every_command_ran_and_answered_as_the_operator_would_see_it(ran):
    """The coverage below means something only if the commands really did their work."""
    codes = {name: [code for code, _, _ in answers] for name, answers in ran.answers.items()}
    # doctor finds problems (no join ever received, the dead letters...): it answers 1, with its whole report.
    assert codes == {name: [int(name == "doctor")] * sum(n == name for n, _ in COMMANDS) for name in FAMILIES}
    answer = {name: json.loads(answers[-1][1]) for name, answers in ran.answers.items()
              if name not in ("rf connect", "workspace connect", "settings check", "settings apply",
                              "workspace oauth-app", "workspace oauth-link")}
    checks = {f["check"]: f["ok"] for f in answer["doctor"]["findings"]}
    assert checks["intercom.token"] is True and checks["rf.campaign"] is True, checks   # it tested the tokens
    assert answer["dlq list"]["total"] == 2 and answer["explain"]["found"] is True
    assert answer["history"]["link"]["status"] == "linked" and answer["settings show"]["version"] == 1
    assert answer["dlq replay"]["replayed"] == 1 and answer["dlq discard"]["discarded"] == 1
    assert answer["backfill"]["queued"] == 1                                     # Bea (Ann's link was made)
    assert answer["sync start"]["run"] == answer["sync status"]["run"] == answer["sync report"]["run"]["run"] == 1
    assert answer["pointers"]["pointers_read"] == 2 and answer["workspace list"]["workspaces"]
    assert answer["forget"]["links"] == 1 and answer["settings delete"]["deleted_version"] == 1
    assert answer["workspace remove-app"]["removed"] == "oauth"
    assert answer["workspace disconnect"]["status"] == "disconnected"
    link = json.loads(ran.answers["workspace oauth-link"][-1][1])["url"]
    assert link.startswith(f"https://opsapi.execute-api.{ran.target.region}.amazonaws.com/api/oauth/intercom/start?")
    # Its API URL came from the stack's bucket, with the outputs `--stage` had read: one DescribeStacks, not two.
    assert [c.name for c in ran.calls("workspace oauth-link")
            if c.name.startswith(("cloudformation:", "s3:"))] == ["cloudformation:DescribeStacks", "s3:GetObject"]


# ------------------------------------------------------------------------------------------
# The policies against what the commands did
# ------------------------------------------------------------------------------------------

def permitted(policy: dict, call: AwsCall, target: deploy.Target) -> bool:
    """Whether IAM lets `policy` make the call: every (action, resource) it needs is granted, and every item's
    partition it touches falls inside the dynamodb:LeadingKeys of a statement granting that action on the table
    (a statement without the condition grants every partition; a Scan's is every partition: "*")."""
    table = target.outputs["TableArn"]
    def keys_allow(action: str, pk: str) -> bool:
        return any(fnmatchcase(action.lower(), a.lower()) and table in s["Resource"]
                   and (leading_keys(s) is None or any(fnmatchcase(pk, k) for k in leading_keys(s) or []))
                   for s in policy["Statement"] if s["Effect"] == "Allow" for a in s["Action"])
    return (all(allows(policy, *pair) for pair in required(call, target))
            and all(keys_allow(*pair) for pair in partitions(call)))


def refused(policy: dict, calls: list[AwsCall], target: deploy.Target) -> list[str]:
    return sorted({f"{c.name} {sorted(required(c, target))} {partitions(c)}" for c in calls
                   if not permitted(policy, c, target)})


@pytest.mark.parametrize("command", FAMILIES)
def test_the_operators_policy_allows_every_call_of_every_command(ran, rendered, command):
    calls = ran.calls(command)
    assert calls or command == "settings check", f"{command} made no AWS call: it did not run"
    assert refused(rendered.policy(STAGE, FULL), calls, ran.target) == []


@pytest.mark.parametrize("command", deploy.OPERATOR_READONLY_COMMANDS)
def test_the_read_only_policy_allows_every_call_of_the_read_only_commands(ran, rendered, command):
    assert command in FAMILIES, f"{command} is not run here: add it to COMMANDS"
    calls = ran.calls(command)
    assert calls or command == "settings check", f"{command} made no AWS call: it did not run"
    assert refused(rendered.policy(STAGE, READONLY), calls, ran.target) == []


def test_neither_policy_grants_what_no_command_does(ran, rendered):
    """Least privilege both ways: each (action, resource) granted was used by a command (by a read-only
    command, for the read-only policy), on the stage's stack, table, indexes, queues and secrets only."""
    def done(commands) -> set[tuple[str, str]]:
        return {pair for command in commands for pair in ran.pairs(command)}
    for name, commands in ((FULL, FAMILIES), (READONLY, deploy.OPERATOR_READONLY_COMMANDS)):
        found = violations(rendered.policy(STAGE, name), done(commands), ran.target, name)
        assert found == {"performed but not granted": [], "granted but never performed": [],
                         "listed but not granted": []}, name
    # The read-only policy's one write, the vendors' shared rate budgets, was spent by a read-only command.
    assert ("dynamodb:UpdateItem", "RATE#referral-factory") in ran.touched("doctor")


#: The IAM actions that change something (a transaction's items are authorised as the Put, Update or Delete they are).
WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
          "sqs:SendMessage", "sqs:DeleteMessage", "ssm:PutParameter", "ssm:DeleteParameter"}


def test_the_read_only_policy_refuses_every_write_the_other_commands_made(ran, rendered):
    """Every write of every command (a batch's, a transaction's), but the rate budgets' (RATE#: the read-only
    commands spend them too), is refused by the read-only policy; so are the edge's secrets (the webhooks'
    client secrets, the OAuth app's), which the connects and `workspace oauth-app` read."""
    def actions(call: AwsCall) -> set[str]:
        return {action for action, _ in required(call, ran.target)}
    writes = [c for c in ran.recorder.calls if c.label and actions(c) & WRITES
              and not all(pk.startswith("RATE#") for _, pk in partitions(c) or [("", "")])]
    assert set().union(*map(actions, writes)) & WRITES == WRITES, "a kind of write was not made"
    policy = rendered.policy(STAGE, READONLY)
    assert [c.name for c in writes if permitted(policy, c, ran.target)] == []
    edge = [c for c in ran.recorder.calls if c.name == "ssm:GetParameter" and "/edge/" in c.params["Name"]]
    assert edge and not any(permitted(policy, c, ran.target) for c in edge)
    assert all(permitted(rendered.policy(STAGE, FULL), c, ran.target) for c in writes + edge)


def test_the_check_catches_a_grant_removed(ran, rendered):
    """The comparison itself can fail: the read-only policy without the tokens' GetParameter refuses doctor's
    check of them, and lists it as performed but not granted; without the rate budgets' statement, doctor's
    spending of them."""
    policy = json.loads(json.dumps(rendered.policy(STAGE, READONLY)))
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] not in ("Tokens", "RateBudgets")]
    assert {line.split(" ")[0] for line in refused(policy, ran.calls("doctor"), ran.target)} == {
        "ssm:GetParameter", "dynamodb:UpdateItem"}
    found = violations(policy, ran.pairs("doctor"), ran.target, READONLY)
    assert {a for a, _ in found["performed but not granted"]} == {"ssm:GetParameter", "dynamodb:UpdateItem"}


def test_the_policies_are_rendered_beside_the_functions_and_named_by_make_deploy(rendered):
    for stage in rendered.targets:
        for name in deploy.OPERATORS:
            assert (rendered.project / ".chalice" / deploy.policy_file(stage, name)).exists()
            assert f"  .chalice/{deploy.policy_file(stage, name)}" in rendered.lines
