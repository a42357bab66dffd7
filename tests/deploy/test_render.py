"""Issue 6 §2: `make deploy STAGE=<stage>` needs no hand edits. Rendered against a moto server's
CloudFormation (RENDER_ONLY), the stage's Chalice config and policies carry the stack's real names,
account and region; `chalice package` of the result passes cfn-lint; a redeploy from another
checkout reuses Chalice's deployed state, so the API (and its URL) stays the same."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import pytest

from infra import deploy
from chalicelib.stage import OUTPUT_ENV

from tests.support.docs import section

from .conftest import REGION, ROOT, aws_env, aws_on, chalice_deployed, project_copy

# Built from parts so that this file is not itself a match.
PLACEHOLDER = re.compile(r"\b(" + "ACCOUNT" + "_ID|" + "REG" + "ION)\b")
BIN = Path(sys.executable).parent


def test_the_stage_config_holds_the_stacks_resources_and_nothing_to_fill_in(rendered):
    config = rendered.config()
    for stage, target in rendered.targets.items():
        env = config["stages"][stage]["environment_variables"]
        outputs = target.outputs
        assert env["BRIDGE_TABLE"] == outputs["TableName"] == f"rf-intercom-bridge-{stage}-table"
        assert env["BRIDGE_QUEUE_NAME"] == f"rf-intercom-bridge-{stage}-work"
        assert env["BRIDGE_QUEUE_URL"] == outputs["QueueUrl"] and f"/{target.account}/" in env["BRIDGE_QUEUE_URL"]
        assert env["BRIDGE_DLQ_URL"] == outputs["DeadLetterQueueUrl"]
        assert env["BRIDGE_SECRETS_PATH"] == f"/rf-intercom-bridge-{stage}"    # SECRETS-DESIGN.md
        assert env["POWERTOOLS_SERVICE_NAME"] == f"rf-intercom-bridge-{stage}"  # the dashboard's dimension
        functions = config["stages"][stage]["lambda_functions"]
        assert {fn: f["iam_policy_file"] for fn, f in functions.items()} == {
            fn: f"policy-{stage}-{fn}.json" for fn in deploy.FUNCTIONS}
        assert functions["api_handler"]["reserved_concurrency"] == deploy.DEFAULT_API_CONCURRENCY
        assert target.region == REGION and target.account == "123456789012"
    for path in (rendered.project / ".chalice").rglob("*"):
        if path.is_file():
            assert not PLACEHOLDER.search(path.read_text()), f"{path.name} still has a placeholder"


def test_the_repository_has_no_placeholder_left_anywhere():
    skip = {".venv", ".git", ".pytest_cache", ".local", "node_modules"}
    offenders = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if path.is_file() and not parts & skip and path.suffix in ("", ".json", ".py", ".md", ".yaml", ".yml", ".txt"):
            if path.parent == ROOT / ".chalice" and path.name != "README.md":
                continue   # rendered by a local `make deploy`: git-ignored
            if PLACEHOLDER.search(path.read_text(errors="ignore")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_policies_grant_only_their_own_stage(rendered):
    """dev and prod never share a right: no resource pattern of one stage matches anything of the other."""
    def patterns(stage):
        return [r for fn in deploy.FUNCTIONS for s in rendered.policy(stage, fn)["Statement"] for r in s["Resource"]]

    def samples(stage):   # concrete resources of the stage: every pattern with its wildcards filled in
        return [p.replace("*", "anything") for p in patterns(stage)]

    from fnmatch import fnmatchcase
    for mine, other in (("prod", "dev"), ("dev", "prod")):
        for pattern in patterns(mine):
            assert f"rf-intercom-bridge-{mine}" in pattern
            assert not [s for s in samples(other) if fnmatchcase(s, pattern)], pattern
        for fn in deploy.FUNCTIONS:
            for statement in rendered.policy(mine, fn)["Statement"]:
                # A condition may only narrow a grant to some of the table's partitions (dynamodb:LeadingKeys).
                assert statement["Effect"] == "Allow" and set(statement.get("Condition", {})) <= {
                    "ForAllValues:StringLike"}
                assert set(statement.get("Condition", {}).get("ForAllValues:StringLike", {})) <= {
                    "dynamodb:LeadingKeys"}
                assert all(not a.endswith("*") for a in statement["Action"]), "no action wildcards"


def test_rendering_again_updates_in_place_and_keeps_the_other_stage(rendered):
    before = rendered.config()
    lines = []
    again = deploy.deploy("prod", project_dir=rendered.project, render_only=True, aws=aws_on(rendered.endpoint),
                          say=lines.append)
    assert any("updating stack rf-intercom-bridge-prod" in line for line in lines)
    assert again["target"].outputs["QueueUrl"] == rendered.targets["prod"].outputs["QueueUrl"]
    assert rendered.config() == before, "same stack, same config: nothing moved"
    assert "RENDER_ONLY: `chalice deploy` skipped" in lines


def test_a_hand_made_config_is_replaced_not_merged(rendered):
    """A .chalice/config.json this tool did not write (e.g. the old one with placeholders) leaves nothing behind."""
    base = json.loads(deploy.BASE_CONFIG.read_text())
    old = {"app_name": "rf-intercom-bridge", "stages": {"dev": {"environment_variables": {
        "BRIDGE_QUEUE_URL": "https://sqs." + "REG" + "ION.amazonaws.com/x/y"}}}}
    fresh = deploy.chalice_config(rendered.targets["prod"], base, old, None)
    assert list(fresh["stages"]) == ["prod"] and not PLACEHOLDER.search(json.dumps(fresh))
    again = deploy.chalice_config(rendered.targets["dev"], base, fresh, None)
    assert list(again["stages"]) == ["prod", "dev"]


def test_chalice_package_of_the_rendered_stage_passes_cfn_lint(rendered, tmp_path):
    out = tmp_path / "package"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BRIDGE_"))}
    env["AWS_DEFAULT_REGION"] = REGION   # chalice package reads the region, and calls no AWS API
    subprocess.run([str(BIN / "chalice"), "--project-dir", str(rendered.project), "package", "--stage", "prod",
                    str(out)], check=True, env=env, capture_output=True)
    sam = (out / "sam.json").read_text()
    assert not PLACEHOLDER.search(sam)
    lint = subprocess.run([str(BIN / "cfn-lint"), str(out / "sam.json")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    resources = json.loads(sam)["Resources"]
    # Chalice loaded app.py with the stage's variables: the worker listens to the stage's queue.
    queue = resources["Worker"]["Properties"]["Events"]["WorkerSqsEventSource"]["Properties"]["Queue"]["Fn::Sub"]
    assert queue.endswith(":rf-intercom-bridge-prod-work")
    assert resources["APIHandler"]["Properties"]["ReservedConcurrentExecutions"] == deploy.DEFAULT_API_CONCURRENCY
    role = resources["ApiHandlerRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert role == rendered.policy("prod", "api_handler")


def test_make_deploy_render_only_runs_the_module_against_the_endpoint(moto_endpoint, tmp_path):
    """What `make deploy STAGE=... RENDER_ONLY=1` runs, as a process with AWS_ENDPOINT_URL set."""
    dry = subprocess.run(["make", "-n", "deploy", "STAGE=dev", "RENDER_ONLY=1", "ALARM_EMAIL=ops@example.com"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "-m infra.deploy deploy --stage dev --render-only" in dry and "--alarm-email ops@example.com" in dry
    project = project_copy(tmp_path / "p")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BRIDGE_"))}, **aws_env(moto_endpoint)}
    run = subprocess.run([sys.executable, "-m", "infra.deploy", "deploy", "--stage", "dev", "--render-only",
                          "--alarm-email", "ops@example.com", "--project-dir", str(project)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (project / ".chalice" / "policy-dev-worker.json").exists()
    parameters = aws_on(moto_endpoint).client("cloudformation").describe_stacks(
        StackName="rf-intercom-bridge-dev")["Stacks"][0]["Parameters"]
    assert {"ParameterKey": "AlarmEmail", "ParameterValue": "ops@example.com"} in parameters
    for goal in ("deploy", "destroy"):   # refused before anything runs (not even the install)
        missing_stage = subprocess.run(["make", goal], cwd=ROOT, capture_output=True, text=True,
                                       env={k: v for k, v in os.environ.items() if k != "STAGE"})
        assert missing_stage.returncode != 0 and f"make {goal} STAGE=dev (or prod)" in missing_stage.stderr


def test_a_redeploy_from_another_checkout_updates_the_same_api(moto_endpoint, tmp_path):
    """Chalice's deployed state lives in the stack's bucket: the second checkout starts from it."""
    aws = aws_on(moto_endpoint)
    seen = []

    def fake_chalice(project, args, region):      # stands in for `chalice deploy` (no Lambda in moto)
        state = deploy.state_path(project, "qa")
        before = json.loads(state.read_text()) if state.exists() else None
        seen.append((args, region, before))
        chalice_deployed(project, "qa", before["resources"][0]["rest_api_id"] if before else "a1b2c3", region)

    first = deploy.deploy("qa", project_dir=project_copy(tmp_path / "laptop"), aws=aws, api_concurrency=None,
                          chalice=fake_chalice, say=lambda _: None)
    lines = []
    second = deploy.deploy("qa", project_dir=project_copy(tmp_path / "ci"), aws=aws, api_concurrency=None,
                           chalice=fake_chalice, say=lines.append)
    assert seen[0] == (["deploy", "--stage", "qa"], REGION, None)
    assert seen[1][2]["resources"][0]["rest_api_id"] == "a1b2c3", "the second checkout got the first one's state"
    assert first["urls"] == second["urls"] == {
        "Referral Factory": f"https://a1b2c3.execute-api.{REGION}.amazonaws.com/api/webhooks/referral-factory",
        "Intercom": f"https://a1b2c3.execute-api.{REGION}.amazonaws.com/api/webhooks/intercom"}
    assert any(line.strip().startswith("Intercom") and line.endswith("/api/webhooks/intercom") for line in lines)

    deleted = []
    deploy.destroy("qa", project_dir=project_copy(tmp_path / "third"), aws=aws, say=lambda _: None,
                   chalice=lambda project, args, region: deleted.append(args))
    assert deleted == [["delete", "--stage", "qa"]]
    cfn = aws.client("cloudformation")
    assert not [s for s in cfn.list_stacks()["StackSummaries"]
                if s["StackName"] == "rf-intercom-bridge-qa" and s["StackStatus"] != "DELETE_COMPLETE"]
    # The table is kept (DeletionPolicy: Retain) unless PURGE=1.
    assert "rf-intercom-bridge-qa-table" in aws.client("dynamodb").list_tables()["TableNames"]


def test_destroy_with_purge_also_deletes_the_table_and_the_secrets(moto_endpoint, tmp_path):
    aws = aws_on(moto_endpoint)
    deploy.deploy("gone", project_dir=project_copy(tmp_path / "p"), render_only=True, aws=aws, say=lambda _: None)
    aws.client("ssm").put_parameter(Name="/rf-intercom-bridge-gone/worker/rf/token", Value="x", Type="SecureString")
    lines = []
    deploy.destroy("gone", project_dir=tmp_path / "p", purge=True, aws=aws, say=lines.append,
                   chalice=lambda *a: pytest.fail("nothing was deployed by chalice: nothing to delete"))
    assert "rf-intercom-bridge-gone-table" not in aws.client("dynamodb").list_tables()["TableNames"]
    assert aws.client("ssm").get_parameters_by_path(Path="/rf-intercom-bridge-gone", Recursive=True)["Parameters"] == []
    assert "  deleted 1 secret(s) under /rf-intercom-bridge-gone" in lines


def test_alarm_email_none_stops_the_emails_and_a_deploy_without_it_keeps_that(moto_endpoint, tmp_path):
    """ALARM_EMAIL is kept between deploys: left out, the last one given stays; `none` (as API_CONCURRENCY takes)
    removes it, where no make variable could before. The email's subscription is the template's only while the
    parameter is not empty (moto creates none: read from the template)."""
    template = deploy.TEMPLATE.read_text()
    assert 'HasAlarmEmail: !Not [!Equals [!Ref AlarmEmail, ""]]' in template
    assert re.search(r"\n  AlarmEmailSubscription:\n    Type: AWS::SNS::Subscription\n    Condition: HasAlarmEmail\n",
                     template)
    aws = aws_on(moto_endpoint)
    cfn = aws.client("cloudformation")

    def deployed(given: Optional[str]) -> str:
        lines: list[str] = []
        made = subprocess.run(["make", "-n", "deploy", "STAGE=mail", *([f"ALARM_EMAIL={given}"] if given else [])],
                              cwd=ROOT, capture_output=True, text=True, check=True).stdout
        argv = made.split("-m infra.deploy ")[1].split()
        args = dict(zip(argv[::2], argv[1::2]))
        deploy.ensure_stack(aws, "mail", json.loads(deploy.BASE_CONFIG.read_text()), say=lines.append,
                            alarm_email=deploy.alarm_email_given(args.get("--alarm-email")), sleep=lambda _: None)
        stack = cfn.describe_stacks(StackName="rf-intercom-bridge-mail")["Stacks"][0]
        return {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["AlarmEmail"]

    assert [deployed(given) for given in ("ops@example.com", None, "none", None, "new@example.com")] == [
        "ops@example.com", "ops@example.com", "", "", "new@example.com"]


@pytest.mark.parametrize("unreserved, current, wanted, refused", [
    (990, 0, 50, False),      # a normal account: 1000
    (10, 0, 50, True),        # a new account: 10 in all, none to spare
    (15, 50, 50, False),      # a redeploy: this function's own reservation counts as available
    (55, 0, 50, True),        # 5 would be left: AWS requires 10
])
def test_the_api_reservation_is_checked_against_the_accounts_concurrency(unreserved, current, wanted, refused):
    problem = deploy.concurrency_problem(unreserved, current, wanted, total=unreserved + current)
    assert (problem is not None) == refused
    if refused:
        assert "API_CONCURRENCY" in problem


def test_stack_parameters_follow_the_chalice_config_and_keep_earlier_values():
    base = json.loads(deploy.BASE_CONFIG.read_text())
    declared = deploy.template_parameters(deploy.TEMPLATE.read_text())
    fresh = {p["ParameterKey"]: p["ParameterValue"] for p in deploy.stack_parameters("prod", base, None, None, declared)}
    assert fresh == {"Prefix": "rf-intercom-bridge-prod", "ApiName": "rf-intercom-bridge", "ApiStage": "api",
                     "VisibilityTimeout": str(6 * base["lambda_timeout"]), "MaxReceiveCount": "10",
                     "ReconcilePeriod": "900"}
    # The reconcile-failing alarm's period is the stage's schedule (RECONCILE_EVERY_MINUTES, as app.py reads it).
    base["stages"]["prod"] = {"environment_variables": {"RECONCILE_EVERY_MINUTES": "5"}}
    assert {"ParameterKey": "ReconcilePeriod", "ParameterValue": "300"} in deploy.stack_parameters(
        "prod", base, None, None, declared)
    existing = {"Parameters": [{"ParameterKey": "AlarmEmail", "ParameterValue": "ops@example.com"},
                               {"ParameterKey": "LogRetentionDays", "ParameterValue": "30"},
                               {"ParameterKey": "Removed", "ParameterValue": "x"}]}
    kept = {p["ParameterKey"]: p["ParameterValue"] for p in deploy.stack_parameters("prod", base, existing, None, declared)}
    assert kept["AlarmEmail"] == "ops@example.com" and kept["LogRetentionDays"] == "30" and "Removed" not in kept
    changed = deploy.stack_parameters("prod", base, existing, "new@example.com", declared)
    assert {"ParameterKey": "AlarmEmail", "ParameterValue": "new@example.com"} in changed


def test_the_output_names_the_cli_reads_are_outputs_of_the_template():
    assert set(OUTPUT_ENV) <= set(re.findall(r"^  (\w+):\n", deploy.TEMPLATE.read_text().split("\nOutputs:\n")[1],
                                             re.M))


def test_the_shipped_config_gives_every_stage_a_lease_at_least_the_workers_timeout():
    """A claim shorter than the worker's run lets a second worker take over a person still being
    worked on. What is deployed: infra/chalice-config.json's worker timeout, and the lease the worker
    reads (BRIDGE_LEASE_SECONDS, or its default); the queue's visibility timeout is six times it."""
    base = json.loads(deploy.BASE_CONFIG.read_text())
    for stage in base["stages"]:
        assert deploy.lease_problem(base, stage) is None and deploy.budget_problem(base, stage) is None
        assert deploy.config_problem(base, stage) is None and deploy.api_timeout_problem(base, stage) is None
        assert deploy.worker_timeout(base, stage) <= 120      # the default lease, unless the config sets one


@pytest.mark.parametrize("change, says", [
    ({"lambda_timeout": 300}, "BRIDGE_LEASE_SECONDS is 120 s, shorter than the worker's lambda_timeout of 300 s"),
    ({"stages": {"prod": {"environment_variables": {"BRIDGE_LEASE_SECONDS": "60"}}}},
     "BRIDGE_LEASE_SECONDS is 60 s, shorter than the worker's lambda_timeout of 120 s"),
    ({"stages": {"prod": {"lambda_functions": {"worker": {"lambda_timeout": 900}}}}},
     "BRIDGE_LEASE_SECONDS is 120 s, shorter than the worker's lambda_timeout of 900 s"),
    ({"stages": {"prod": {"environment_variables": {"BRIDGE_LEASE_SECONDS": "2 minutes"}}}},
     "BRIDGE_LEASE_SECONDS is '2 minutes' (stage prod), not a number of seconds"),
    # The worker starts no record with less than BRIDGE_RECORD_BUDGET_MS left: with a timeout no longer than
    # that, it never starts one, and every record waits in the queue for good (a wait uses up no try).
    ({"stages": {"prod": {"lambda_functions": {"worker": {"lambda_timeout": 30}}}}},
     "BRIDGE_RECORD_BUDGET_MS is 30000 ms, no less than the worker's lambda_timeout of 30 s"),
    ({"environment_variables": {"BRIDGE_RECORD_BUDGET_MS": "120000"}},
     "BRIDGE_RECORD_BUDGET_MS is 120000 ms, no less than the worker's lambda_timeout of 120 s"),
    # A record started with the budget's time left must hold one AWS call, retries and all, and the settling after
    # it: with less, a call that hangs gets no retry, or the record's failed try no time to be counted.
    ({"environment_variables": {"BRIDGE_RECORD_BUDGET_MS": "20000"}},
     "BRIDGE_RECORD_BUDGET_MS is 20000 ms (stage prod), less than the 26000 ms a record needs for one AWS call, "
     "retries and all, and the worker's settling after it"),
    # ...and one vendor call (BRIDGE_HTTP_TIMEOUT) with the record's own AWS write and the settling after it: with
    # less, a record started with the budget's time left never calls Intercom or RF (it waits, again and again).
    ({"environment_variables": {"BRIDGE_HTTP_TIMEOUT": "25"}},
     "BRIDGE_RECORD_BUDGET_MS is 30000 ms (stage prod), less than the 39000 ms a record needs for one call to "
     "Intercom or RF (BRIDGE_HTTP_TIMEOUT), its own AWS write and the worker's settling after it"),
    # The API function answers within its time: past API Gateway's 29 s, the sender (or the admin) got its 504
    # (the answer saying what happened never came); with less than one AWS call at the API's bounds and the answer
    # after it, a webhook's first hung call would get no retry.
    ({"stages": {"prod": {"lambda_functions": {"api_handler": {"lambda_timeout": 30}}}}},
     "the API function's (api_handler's) lambda_timeout is 30 s (stage prod): it must be under API Gateway's 29 s"),
    ({"lambda_functions": {"api_handler": {"lambda_timeout": 12}}},
     "the API function's (api_handler's) lambda_timeout is 12 s (stage prod): it must be under API Gateway's 29 s, "
     "and over the 12 s an AWS call may take, retries and all, with the answer after it"),
])
def test_make_deploy_refuses_worker_settings_that_cannot_hold_in_one_line_before_touching_aws(
        tmp_path, change, says):
    assert says in refused_deploy(tmp_path, change)
    longer = {"stages": {"prod": {"lambda_functions": {"worker": {"environment_variables": {
        "BRIDGE_LEASE_SECONDS": "900"}}}}}}                 # the worker's own setting wins, as in Chalice
    base = json.loads(deploy.BASE_CONFIG.read_text())
    assert deploy.lease_problem(deploy._merge(deploy._merge(base, change), longer), "prod") is None


@pytest.mark.parametrize("bounds, problem, says", [
    ("API", deploy.api_timeout_problem, "an AWS call may take, retries and all"),
    # The worker's and reconciliation's: within the time a record is started with, and the settling after it.
    ("WORKER", deploy.budget_problem, "a record needs for one AWS call, retries and all"),
])
def test_a_functions_aws_bounds_are_not_raised_past_its_time(monkeypatch, bounds, problem, says):
    """Each AWS call of a function keeps to its bounds (adapters/aws.API, WORKER): longer timeouts or more attempts
    without more time (the API's lambda_timeout, the worker's BRIDGE_RECORD_BUDGET_MS) are refused, as less time
    is that leaves them no room."""
    from chalicelib.adapters import aws
    base = json.loads(deploy.BASE_CONFIG.read_text())
    assert problem(base, "prod") is None
    shipped = getattr(aws, bounds)
    for raised in ({"read": shipped.read + 5}, {"attempts": shipped.attempts + 1}):
        monkeypatch.setattr(aws, bounds, replace(shipped, **raised))
        assert says in problem(base, "prod")


@pytest.mark.parametrize("change, says", [
    ({"environment_variables": {"INTERCOM_BASE_URL": "http://api.intercom.io"}},
     "infra/chalice-config.json (stage prod, function api_handler): INTERCOM_BASE_URL must be an https:// URL, e.g. "
     "https://api.intercom.io (plain http:// only to localhost or 127.0.0.1): tokens would travel in clear"),
    ({"stages": {"prod": {"environment_variables": {"INTERCOM_OAUTH_URL": "http://app.intercom.com/oauth"}}}},
     "(stage prod, function api_handler): INTERCOM_OAUTH_URL must be an https:// URL"),
    ({"stages": {"prod": {"lambda_functions": {"worker": {"environment_variables": {
        "RF_BASE_URL": "http://api.referral-factory.com/api/v2"}}}}}},
     "(stage prod, function worker): RF_BASE_URL must be an https:// URL"),
    ({"stages": {"prod": {"lambda_functions": {"api_handler": {"environment_variables": {
        "BRIDGE_OUTAGE_HOURS": "nan"}}}}}},
     "(stage prod, function api_handler): BRIDGE_OUTAGE_HOURS must be a number of hours greater than 0"),
])
def test_make_deploy_refuses_a_url_that_would_carry_tokens_in_clear_in_one_line_before_touching_aws(
        tmp_path, change, says):
    """Caught at the deploy, not by each worker's try (its work waits in the dead-letter queue) or OAuth page."""
    assert says in refused_deploy(tmp_path, change)


def stage_env(**variables: str) -> dict:
    return {"stages": {"prod": {"environment_variables": variables}}}


@pytest.mark.parametrize("change, says", [
    # `chalice deploy` loads app.py, whose int() took no "2.5": a traceback inside chalice, after the stack's update.
    (stage_env(RECONCILE_EVERY_MINUTES="2.5"), "infra/chalice-config.json (stage prod): RECONCILE_EVERY_MINUTES "
     "must be a whole number of minutes from 1 to 720 (the reconciliation schedule, e.g. 15), not '2.5'"),
    (stage_env(RECONCILE_EVERY_MINUTES="0"), "from 1 to 720 (the reconciliation schedule, e.g. 15), not '0'"),
    ({"environment_variables": {"RECONCILE_EVERY_MINUTES": "a quarter"}}, "not 'a quarter'"),
    # The alarm watches two runs, and CloudWatch evaluates an alarm over at most a day: the stack update would fail.
    (stage_env(RECONCILE_EVERY_MINUTES="1440"), "not '1440'"),
    # The alarm's period came from it, the schedule never: the alarm watched 5-minute periods of a 15-minute schedule.
    (stage_env(RECONCILE_EVERY_SECONDS="300"), "RECONCILE_EVERY_SECONDS is `make run`'s only: the deployed schedule "
     "is RECONCILE_EVERY_MINUTES, in whole minutes — set that instead"),
    # app.py is loaded with the file's and the stage's variables, not the reconcile function's, which the alarm read.
    ({"stages": {"prod": {"lambda_functions": {"reconcile": {"environment_variables": {
        "RECONCILE_EVERY_MINUTES": "5"}}}}}},
     "RECONCILE_EVERY_MINUTES is set for the function reconcile only (stages.prod.lambda_functions)"),
])
def test_make_deploy_refuses_a_schedule_app_py_would_not_run_in_one_line_before_touching_aws(tmp_path, change, says):
    assert says in refused_deploy(tmp_path, change)


@pytest.mark.parametrize("change, minutes", [
    ({}, 15), (stage_env(RECONCILE_EVERY_MINUTES="5"), 5), (stage_env(RECONCILE_EVERY_MINUTES="1"), 1),
    ({"environment_variables": {"RECONCILE_EVERY_MINUTES": "30"}}, 30),
    (stage_env(RECONCILE_EVERY_MINUTES="10.0"), 10), (stage_env(RECONCILE_EVERY_MINUTES=""), 15),
])
def test_the_schedule_app_py_runs_is_the_reconcile_alarms_period(monkeypatch, change, minutes):
    """What `chalice deploy` schedules (app.py, loaded with the variables Chalice gives it, however the operator's
    shell sets them: `make deploy` leaves those out) and the period `make deploy` gives the reconcile-failing alarm."""
    base = deploy._merge(json.loads(deploy.BASE_CONFIG.read_text()), change)
    assert deploy.schedule_problem(base, "prod") is None
    declared = deploy.template_parameters(deploy.TEMPLATE.read_text())
    params = {p["ParameterKey"]: p["ParameterValue"] for p in deploy.stack_parameters("prod", base, None, None,
                                                                                       declared)}
    ran: list = []
    monkeypatch.setenv("RECONCILE_EVERY_MINUTES", "7")
    monkeypatch.setenv("RECONCILE_EVERY_SECONDS", "60")
    monkeypatch.setattr(deploy.subprocess, "run", lambda command, env: ran.append(env) or subprocess.CompletedProcess(
        command, 0))
    deploy.run_chalice(ROOT, ["deploy", "--stage", "prod"], REGION)
    monkeypatch.undo()
    env = {**ran[0], **deploy.schedule_environment(base, "prod")}   # as Chalice's load_chalice_app updates it
    schedule = subprocess.run(
        [sys.executable, "-c", "import app; print(next(s.schedule_expression.to_string() for s in "
         "app.app.event_sources if s.name == 'reconcile'))"], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True).stdout.strip()
    assert len(ran) == 1 and schedule == f"rate({minutes} minute{'s' if minutes > 1 else ''})"
    assert params["ReconcilePeriod"] == str(60 * minutes)


def refused_deploy(tmp_path, change: dict) -> str:
    """Why `make deploy STAGE=prod` refuses infra/chalice-config.json changed by `change`: one line, said before
    any AWS call and before anything is written."""
    config = tmp_path / "chalice-config.json"
    config.write_text(json.dumps(deploy._merge(json.loads(deploy.BASE_CONFIG.read_text()), change)))

    class NoAws:
        def client(self, service):
            raise AssertionError(f"{service} was called")
    with pytest.raises(deploy.DeployError) as refused:
        deploy.deploy("prod", project_dir=tmp_path, aws=NoAws(), base_config=config)   # type: ignore[arg-type]
    assert "\n" not in str(refused.value)
    assert not (tmp_path / ".chalice").exists()
    return str(refused.value)


def test_purge_after_a_destroy_that_kept_the_table_deletes_it_and_the_stage_deploys_again(moto_endpoint, tmp_path):
    """`make destroy STAGE=x` keeps the table and the secrets and says PURGE=1 deletes them: with the
    stack gone, `make destroy STAGE=x PURGE=1` still does (it did nothing, and the next deploy failed)."""
    aws = aws_on(moto_endpoint)
    deploy.deploy("kept", project_dir=project_copy(tmp_path / "p"), render_only=True, aws=aws, say=lambda _: None)
    aws.client("ssm").put_parameter(Name="/rf-intercom-bridge-kept/worker/rf/token", Value="x", Type="SecureString")
    no_chalice = lambda *a: pytest.fail("nothing was deployed by chalice: nothing to delete")  # noqa: E731
    deploy.destroy("kept", project_dir=tmp_path / "p", aws=aws, say=lambda _: None, chalice=no_chalice)
    assert "rf-intercom-bridge-kept-table" in aws.client("dynamodb").list_tables()["TableNames"]

    again: list[str] = []       # without PURGE, a second destroy names what is still there
    deploy.destroy("kept", project_dir=tmp_path / "p", aws=aws, say=again.append, chalice=no_chalice)
    assert "PURGE=1" in again[0] and "  table rf-intercom-bridge-kept-table" in again[1]
    assert "  1 secret(s) under SSM path /rf-intercom-bridge-kept" in again

    purged: list[str] = []
    deploy.destroy("kept", project_dir=tmp_path / "p", purge=True, aws=aws, say=purged.append, chalice=no_chalice)
    assert "rf-intercom-bridge-kept-table" not in aws.client("dynamodb").list_tables()["TableNames"]
    assert aws.client("ssm").get_parameters_by_path(Path="/rf-intercom-bridge-kept", Recursive=True)["Parameters"] == []
    assert purged[:2] == ["  deleted table rf-intercom-bridge-kept-table",
                          "  deleted 1 secret(s) under /rf-intercom-bridge-kept"]
    assert not any("nothing to destroy" in line for line in purged)

    nothing: list[str] = []
    deploy.destroy("kept", project_dir=tmp_path / "p", purge=True, aws=aws, say=nothing.append, chalice=no_chalice)
    assert len(nothing) == 1 and "nothing to destroy" in nothing[0]
    deploy.deploy("kept", project_dir=tmp_path / "p", render_only=True, aws=aws, say=lambda _: None)


@pytest.mark.parametrize("attempts", ["5", "12", "30"])
def test_the_redrive_backstop_leaves_the_worker_every_try_it_is_configured_with(attempts):
    """The worker dead-letters a record after BRIDGE_MAX_ATTEMPTS tries, with its reason and a history entry; SQS's
    redrive moves a message received MaxReceiveCount times, as "the worker crashed or timed out each time". With
    BRIDGE_MAX_ATTEMPTS raised in infra/chalice-config.json (docs/deploying.md invites it) past the redrive's 10, every
    failing record was moved by SQS at its 11th receive, with that false reason and no entry in the history."""
    base = deploy._merge(json.loads(deploy.BASE_CONFIG.read_text()),
                         {"stages": {"prod": {"environment_variables": {"BRIDGE_MAX_ATTEMPTS": attempts}}}})
    declared = deploy.template_parameters(deploy.TEMPLATE.read_text())
    existing = {"Parameters": [{"ParameterKey": "MaxReceiveCount", "ParameterValue": "10"}]}
    params = {p["ParameterKey"]: p["ParameterValue"] for p in deploy.stack_parameters("prod", base, existing, None,
                                                                                       declared)}
    assert int(params["MaxReceiveCount"]) >= 2 * int(attempts)       # a backstop: twice the worker's tries


def test_what_make_deploy_prints_at_its_end_is_what_the_docs_show(moto_endpoint, tmp_path):
    """docs/deploying.md's step 6 shows what a deploy prints once `chalice deploy` is done, line by line: a user
    compares it with their terminal (the alarms' topic and email confirmation, and what to do next, were left out)."""
    aws = aws_on(moto_endpoint)

    def fake_chalice(project, args, region):      # stands in for `chalice deploy` (no Lambda in moto)
        chalice_deployed(project, "docs", "abc123", region)

    lines: list[str] = []
    done = deploy.deploy("docs", project_dir=project_copy(tmp_path / "p"), aws=aws, api_concurrency=None,
                         alarm_email="ops@example.com", chalice=fake_chalice, say=lines.append)
    printed = [re.sub(r"\bdocs\b(?!/)", "prod", line).replace(done["target"].account, "123456789012")
               for line in lines[len(lines) - lines[::-1].index(""):]]
    step = section("What `make deploy STAGE=prod` does").split("6. It prints")[1]
    shown = [line.strip() for line in step.split("```")[1].splitlines()[1:] if line.strip()]
    assert len(printed) == 6 and [line.strip() for line in printed] == shown


@pytest.mark.parametrize("state", [{"resources": [{"name": "worker", "resource_type": "lambda_function"}]}, None])
def test_a_deployed_state_without_the_api_says_what_to_do_not_chalice_url_which_reads_the_same_state(tmp_path, state):
    """`chalice url --stage` reads the same file, and fails the same way: the deploy itself is what prints the URLs."""
    if state is not None:
        deploy.state_path(tmp_path, "prod").parent.mkdir(parents=True)
        deploy.state_path(tmp_path, "prod").write_text(json.dumps(state))
    with pytest.raises(deploy.DeployError) as refused:
        deploy.webhook_urls(tmp_path, "prod")
    said = str(refused.value)
    assert "chalice url" not in said and "\n" not in said
    assert said.startswith("Chalice's deployed state of stage prod (.chalice/deployed/prod.json) names no REST API, "
                           "so the webhook URLs are not known: run `make deploy STAGE=prod` again, which prints them")


@pytest.mark.parametrize("goal, knob, flag", [("destroy", "PURGE", "--purge"),
                                              ("deploy", "RENDER_ONLY", "--render-only")])
def test_a_yes_no_knob_other_than_1_is_refused_before_anything_runs(goal, knob, flag):
    """The docs give PURGE=1 and RENDER_ONLY=1; make took any value as yes, so `make destroy STAGE=prod PURGE=0` (or
    `PURGE=no`) deleted the kept table and secrets, with the data. Only 1 (or nothing) is taken; any other value is
    refused in one line naming the knob, before the install or any AWS call."""
    for value in ("0", "no", "false"):
        run = subprocess.run(["make", "-n", goal, "STAGE=dev", f"{knob}={value}"], cwd=ROOT, capture_output=True,
                             text=True)
        assert run.returncode != 0 and flag not in run.stdout, run.stdout
        assert f"{knob}={value}" in run.stderr and f"{knob}=1" in run.stderr and run.stderr.count("\n") == 1, run.stderr
    given = subprocess.run(["make", "-n", goal, "STAGE=dev", f"{knob}=1"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout
    left_out = subprocess.run(["make", "-n", goal, "STAGE=dev"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    assert flag in given and flag not in left_out


def test_a_deploy_copies_each_campaigns_settings_to_their_own_partition_before_the_code_goes_live(moto_endpoint, tmp_path):
    """The API function of this version reads settings in their own partition (SETTINGS#<campaign>) and may not read
    the campaign's (CAMPAIGN#<campaign>), where the version deployed before kept them: `make deploy` copies them
    there before `chalice deploy` puts the code (and its policies) in place. A campaign's item the earlier version
    changed since the last deploy (rolled back to) is copied again, one it deleted is removed from the new
    partition, a link is left alone; a deploy run again writes nothing and says nothing of it."""
    aws = aws_on(moto_endpoint)
    ddb, table = aws.client("dynamodb"), "rf-intercom-bridge-mirror-table"
    seen: list[dict] = []

    def items() -> dict:
        return {(i["pk"]["S"], i["sk"]["S"]): i for i in ddb.scan(TableName=table, ConsistentRead=True)["Items"]}

    def fake_chalice(project, args, region):      # stands in for `chalice deploy`: what the table holds then
        seen.append(items())
        chalice_deployed(project, "mirror", "m1", region)

    def deployed() -> list[str]:
        lines: list[str] = []
        deploy.deploy("mirror", project_dir=project_copy(tmp_path / f"p{len(seen)}"), aws=aws, api_concurrency=None,
                      chalice=fake_chalice, say=lines.append)
        return [line.strip() for line in lines if "own partition" in line]

    assert deployed() == [] and seen[-1] == {}                 # a new stage: nothing to copy, nothing said

    def settings(pk: str, version: int, initial: str) -> dict:
        return {"pk": {"S": pk}, "sk": {"S": "SETTINGS"}, "version": {"N": str(version)}, "workspace": {"S": "ws"},
                "updated_at": {"S": "2026-09-21T14:13:20.000Z"}, "document": {"S": json.dumps({"initial": initial})}}
    link = {"pk": {"S": "CAMPAIGN#42"}, "sk": {"S": "PERSON#1001"}, "email": {"S": "ann@example.com"}}
    stale = settings("SETTINGS#7", 1, "No")
    for item in (settings("CAMPAIGN#42", 1, "No"), link, settings("CAMPAIGN#7", 2, "Yes"), stale,
                 settings("SETTINGS#9", 1, "No")):     # campaign 7 applied anew, campaign 9 deleted, rolled back to
        ddb.put_item(TableName=table, Item=item)
    assert deployed() == ["settings in their own partition: 2 campaign(s) copied, 1 removed (deleted by the "
                          "version deployed before), 0 as they were"]
    upgraded = seen[-1]                                        # as `chalice deploy` found it
    assert upgraded[("SETTINGS#42", "SETTINGS")] == {**settings("CAMPAIGN#42", 1, "No"), "pk": {"S": "SETTINGS#42"}}
    assert upgraded[("SETTINGS#7", "SETTINGS")] == settings("SETTINGS#7", 2, "Yes")
    assert ("SETTINGS#9", "SETTINGS") not in upgraded
    assert upgraded[("CAMPAIGN#42", "PERSON#1001")] == link
    assert {k for k in upgraded if k[0].startswith("SETTINGS#")} == {("SETTINGS#42", "SETTINGS"), ("SETTINGS#7", "SETTINGS")}
    assert deployed() == [] and seen[-1] == upgraded           # run again: as it was
    assert len(upgraded) == 5


def test_the_settings_copy_never_overwrites_a_write_made_while_it_reads(moto_endpoint, tmp_path):
    """The copy reads the new partition's item and the campaign's, and writes only while both are as it read them
    (one transaction): settings this version applies meanwhile (at both keys at once) are read again, never
    overwritten with what the campaign's item held before them."""
    from chalicelib.adapters.dynamo.upgrade import mirror_settings
    aws = aws_on(moto_endpoint)
    ddb = aws.client("dynamodb")
    table = "mirror-race"
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])

    def settings(pk: str, version: int) -> dict:
        return {"pk": {"S": pk}, "sk": {"S": "SETTINGS"}, "version": {"N": str(version)}, "workspace": {"S": "ws"},
                "updated_at": {"S": f"2026-09-21T14:13:2{version}.000Z"}, "document": {"S": "{}"}}
    ddb.put_item(TableName=table, Item=settings("CAMPAIGN#42", 1))

    class Racing:
        """The DynamoDB client, but an apply of this version (version 2, both keys) lands right after the copy read
        both items (the new partition's absent, the campaign's at version 1), before it writes."""
        def __init__(self):
            self.reads = 0

        def __getattr__(self, name):
            return getattr(ddb, name)

        def get_item(self, **kw):
            answer = ddb.get_item(**kw)
            self.reads += 1
            if self.reads == 2:
                ddb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": settings(pk, 2)}}
                                                        for pk in ("SETTINGS#42", "CAMPAIGN#42")])
            return answer

    racing = Racing()
    done = mirror_settings(racing, table)
    assert (done.copied, done.removed, done.kept) == (0, 0, 1) and racing.reads == 4    # read again, once
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "SETTINGS#42"}, "sk": {"S": "SETTINGS"}})["Item"] == \
        settings("SETTINGS#42", 2)
