"""`make deploy` where a stage already stands: its stack rolled back by CloudFormation, or the stage deployed
in another region of the account. moto's CloudFormation rolls nothing back: the states a rollback leaves are
shown by rewriting what moto answers, and what the deploy asks of CloudFormation is read from its requests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError

from infra import deploy

from .conftest import aws_env, aws_on, chalice_deployed, project_copy


def _calls(cfn: Any, operation: str) -> list[dict]:
    """The parameters of every `operation` request the client sends from now on."""
    sent: list[dict] = []
    cfn.meta.events.register(f"provide-client-params.cloudformation.{operation}",
                             lambda params, **_: sent.append(dict(params)))
    return sent


def test_a_first_creation_that_rolls_back_takes_its_table_with_it(moto_endpoint, tmp_path):
    """The table is kept when its stack is deleted (DeletionPolicy: Retain), and CloudFormation keeps it
    on the rollback of a failed creation too, unless asked not to. `make deploy` deletes a stack left in
    ROLLBACK_COMPLETE and creates it again: a table kept by the rollback would make that creation fail on
    the table's name, on every try, until someone deleted the table by hand."""
    aws = aws_on(moto_endpoint)
    created = _calls(aws.client("cloudformation"), "CreateStack")
    deploy.deploy("fresh", project_dir=project_copy(tmp_path / "p"), render_only=True, aws=aws, say=lambda _: None)
    assert [c["StackName"] for c in created] == ["rf-intercom-bridge-fresh"]
    assert created[0].get("RetainExceptOnCreate") is True


def test_a_redeploy_with_nothing_to_change_after_an_upgrade_rolled_back_goes_on(moto_endpoint, tmp_path):
    """An upgrade's stack update failed and CloudFormation rolled it back (UPDATE_ROLLBACK_COMPLETE: the
    stack is whole, as before the upgrade). A deploy of the version the stack holds has nothing to change in
    it, and must go on to render and deploy the functions, not stop on the earlier update's failure."""
    aws = aws_on(moto_endpoint)
    project = project_copy(tmp_path / "p")
    deploy.deploy("back", project_dir=project, render_only=True, aws=aws, say=lambda _: None)
    cfn = aws.client("cloudformation")

    def rolled_back(parsed, **_):
        for stack in parsed.get("Stacks", []):
            stack["StackStatus"] = "UPDATE_ROLLBACK_COMPLETE"

    def an_earlier_failure(parsed, **_):
        parsed["StackEvents"] = [{"LogicalResourceId": "NewThing", "ResourceStatus": "UPDATE_FAILED",
                                  "ResourceStatusReason": "not authorized to create it"}] + parsed["StackEvents"]
    def unchanged(**_):      # CloudFormation's answer to the same template and parameters (moto's compares more)
        raise ClientError({"Error": {"Code": "ValidationError", "Message": "No updates are to be performed."}},
                          "UpdateStack")
    cfn.meta.events.register("after-call.cloudformation.DescribeStacks", rolled_back)
    cfn.meta.events.register("before-call.cloudformation.UpdateStack", unchanged)
    cfn.meta.events.register("after-call.cloudformation.DescribeStackEvents", an_earlier_failure)
    lines: list[str] = []
    again = deploy.deploy("back", project_dir=project, render_only=True, aws=aws, say=lines.append)
    assert "  stack rf-intercom-bridge-back: no changes" in lines
    assert again["target"].outputs["TableName"] == "rf-intercom-bridge-back-table"
    assert "RENDER_ONLY: `chalice deploy` skipped" in lines


def test_a_deploy_run_again_while_the_last_ones_stack_change_still_runs_waits_for_it_then_goes_on(moto_endpoint, tmp_path):
    """Ctrl-C during `make deploy` stops the command, not CloudFormation's change of the stack, and docs/deploying.md
    says to run the same command again. It stopped at once on "stack ... is in UPDATE_IN_PROGRESS state and can not
    be updated" (CloudFormation takes no second change meanwhile), where destroy waits for such a change."""
    aws = aws_on(moto_endpoint)
    project = project_copy(tmp_path / "p")
    deploy.deploy("again", project_dir=project, render_only=True, aws=aws, say=lambda _: None)
    cfn = aws.client("cloudformation")
    running = {"reads": 2}                              # CloudFormation still updating for the next two reads

    def still_updating(parsed, **_):
        if running["reads"] > 0:
            running["reads"] -= 1
            for stack in parsed.get("Stacks", []):
                stack["StackStatus"] = "UPDATE_IN_PROGRESS"

    def refused_meanwhile(**_):
        if running["reads"] > 0:
            raise ClientError({"Error": {"Code": "ValidationError", "Message": "Stack:arn:... is in UPDATE_IN_PROGRESS "
                                         "state and can not be updated."}}, "UpdateStack")
    cfn.meta.events.register("after-call.cloudformation.DescribeStacks", still_updating)
    cfn.meta.events.register("before-call.cloudformation.UpdateStack", refused_meanwhile)
    lines: list[str] = []
    slept: list[float] = []
    again = deploy.deploy("again", project_dir=project, render_only=True, aws=aws, say=lines.append, sleep=slept.append)
    assert any("UPDATE_IN_PROGRESS" in line and "waiting" in line for line in lines), lines
    assert slept and again["target"].outputs["TableName"] == "rf-intercom-bridge-again-table"
    assert "RENDER_ONLY: `chalice deploy` skipped" in lines


#: A Lambda function's role's trust policy, as Chalice makes the role.
LAMBDA_TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def chalice_creating_roles(aws: deploy.Aws) -> Callable[[Path, list[str], str], None]:
    """Stands in for `chalice deploy` (no Lambda in moto) as far as IAM goes: each function's role, named
    <app>-<stage>-<function>, with its rendered policy as the inline policy of the role's name."""
    def chalice(project: Path, args: list[str], region: str) -> None:
        stage = args[args.index("--stage") + 1]
        iam = aws.client("iam")
        for function in deploy.FUNCTIONS:
            role = f"{deploy.stage_prefix(stage)}-{function}"
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=LAMBDA_TRUST)
            iam.put_role_policy(RoleName=role, PolicyName=role,
                                PolicyDocument=(project / ".chalice" / deploy.policy_file(stage, function)).read_text())
        chalice_deployed(project, stage, "a1", region)
    return chalice


def test_a_stage_deployed_in_another_region_of_the_account_is_refused_before_anything_is_made(moto_endpoint, tmp_path):
    """Chalice names a function's IAM role <app>-<stage>-<function>, and IAM is the account's, not a region's:
    the same stage deployed in a second region would find the first region's roles and replace their policies
    with its own region's resources (the first region's functions then refused everything), and its destroy
    would delete them. `make deploy` says so, in one line, before it creates anything."""
    there = aws_on(moto_endpoint, "us-east-1")
    deploy.deploy("twice", project_dir=project_copy(tmp_path / "first"), aws=there, api_concurrency=None,
                  chalice=chalice_creating_roles(there), say=lambda _: None)
    here = aws_on(moto_endpoint)
    with pytest.raises(deploy.DeployError) as refused:
        deploy.deploy("twice", project_dir=project_copy(tmp_path / "second"), aws=here, api_concurrency=None,
                      chalice=lambda *a: pytest.fail("chalice would replace the other region's roles' policies"),
                      say=lambda _: None)
    said = str(refused.value)
    assert "stage twice is deployed in us-east-1" in said and "\n" not in said
    assert "rf-intercom-bridge-twice" not in [s["StackName"] for s in here.client("cloudformation").list_stacks()[
        "StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    # Its own region again is a redeploy, as before.
    deploy.deploy("twice", project_dir=tmp_path / "first", aws=there, api_concurrency=None,
                  chalice=lambda *a: None, say=lambda _: None)


def test_a_stage_is_destroyed_from_a_checkout_that_never_deployed_it(moto_endpoint, tmp_path, monkeypatch):
    """`make destroy` from a fresh clone (a colleague's, CI's): the deployed state comes from the stack's bucket,
    and the real `chalice delete` (against the moto server) deletes what it lists. Chalice loads the stage from
    .chalice/config.json, which only a deploy from that checkout had written: it stopped with "Unable to load
    the project config file", and the stage could not be destroyed."""
    for key, value in aws_env(moto_endpoint).items():
        monkeypatch.setenv(key, value)
    aws = aws_on(moto_endpoint)
    api = aws.client("apigateway").create_rest_api(name="rf-intercom-bridge")["id"]

    def chalice_made_an_api(project: Path, args: list[str], region: str) -> None:   # what `chalice deploy` records
        chalice_deployed(project, "elsewhere", api, region)
    deploy.deploy("elsewhere", project_dir=project_copy(tmp_path / "laptop"), aws=aws, api_concurrency=None,
                  chalice=chalice_made_an_api, say=lambda _: None)
    fresh = project_copy(tmp_path / "fresh-clone")
    assert not (fresh / ".chalice").exists()
    deploy.destroy("elsewhere", project_dir=fresh, aws=aws, say=lambda _: None)
    assert api not in [a["id"] for a in aws.client("apigateway").get_rest_apis()["items"]]
    assert "rf-intercom-bridge-elsewhere" not in [s["StackName"] for s in aws.client("cloudformation").list_stacks()[
        "StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]


def _api_reads(policy: dict) -> set[str]:
    """The partitions a function's policy lets it GetItem."""
    return {key for s in policy["Statement"] if "dynamodb:GetItem" in s["Action"]
            for key in s.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys", [])}


def test_an_upgrade_keeps_the_running_api_codes_settings_read_until_chalice_has_replaced_that_code(moto_endpoint, tmp_path):
    """Chalice puts a function's role policy before its code. The API function of a version before 2026-11-28 reads
    settings in the campaign's partition (CAMPAIGN#), which this version's policy no longer grants (its links are
    there): put first, it would refuse that code's reads for the seconds until its code is replaced, and answer those
    joins 503 (reconcile's run would fail). So a deploy over such a version runs `chalice deploy` twice: with that
    read kept (the API function's and reconcile's), then without it. A new stage, and a deploy over this version, run
    it once; the role's policy ends without it each time."""
    aws = aws_on(moto_endpoint)
    iam = aws.client("iam")
    role = f"{deploy.stage_prefix('upg')}-api_handler"
    given: list[set[str]] = []                    # the API function's reads, at each `chalice deploy`
    steps: list[str] = []                         # the waits for IAM, and what the API role read at each deploy

    def chalice(project: Path, args: list[str], region: str) -> None:
        policy = json.loads((project / ".chalice" / deploy.policy_file("upg", "api_handler")).read_text())
        given.append(_api_reads(policy))
        try:
            had = iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
            steps.append(f"chalice over {sorted(_api_reads(json.loads(had) if isinstance(had, str) else had))}")
        except ClientError:
            steps.append("chalice over no role")
        reconciles = _api_reads(json.loads((project / ".chalice" / deploy.policy_file("upg", "reconcile")).read_text()))
        assert ("CAMPAIGN#*" in reconciles) == ("CAMPAIGN#*" in given[-1]), reconciles
        try:
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=LAMBDA_TRUST)
        except ClientError:
            pass                                  # there since the first deploy
        iam.put_role_policy(RoleName=role, PolicyName=role, PolicyDocument=json.dumps(policy))
        chalice_deployed(project, "upg", "u1", region)

    def deployed() -> list[str]:
        lines: list[str] = []
        deploy.deploy("upg", project_dir=project_copy(tmp_path / f"p{len(given)}"), aws=aws, api_concurrency=None,
                      chalice=chalice, say=lines.append, sleep=lambda seconds: steps.append(f"wait {seconds:g}"))
        return lines

    now = {"SETTINGS#*", "WORKSPACE#*", "TICKET#*", "OAUTH#*"}
    deployed()
    assert given == [now]                                         # a new stage: one pass
    earlier = iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
    earlier = json.loads(earlier) if isinstance(earlier, str) else earlier
    for statement in earlier["Statement"]:                        # as the version before rendered it
        if "dynamodb:GetItem" in statement["Action"]:
            statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] = [
                "CAMPAIGN#*", "WORKSPACE#*", "TICKET#*", "OAUTH#*"]
    iam.put_role_policy(RoleName=role, PolicyName=role, PolicyDocument=json.dumps(earlier))
    assert deploy.reads_settings_before(aws, "upg")
    steps.clear()
    lines = deployed()
    assert given[1:] == [now | {"CAMPAIGN#*"}, now], given        # the upgrade: two passes
    # (the first pass's policy put on the role, and IAM given time to apply it, before Chalice replaces the code:
    # a put not applied everywhere yet would refuse the new code's settings reads for those seconds)
    assert steps == [f"wait {deploy.IAM_SETTLE_SECONDS:g}", f"chalice over {sorted(now | {'CAMPAIGN#*'})}",
                     f"chalice over {sorted(now | {'CAMPAIGN#*'})}"], steps
    assert sum(line == "chalice deploy --stage upg" for line in lines) == 2
    assert not deploy.reads_settings_before(aws, "upg")
    deployed()
    assert given[3:] == [now]                                     # over this version: one pass


def test_a_version_whose_api_policy_reads_the_whole_table_is_one_that_reads_settings_in_the_campaigns_partition(
        moto_endpoint):
    """Versions before 2026-11-26 (48af603) let the API function GetItem on the whole table, no dynamodb:LeadingKeys:
    their code reads settings in the campaign's partition as the later ones before 2026-11-28 do. Taken for this
    version, the upgrade ran `chalice deploy` once, and its policy, put before the code, refused that code's settings
    read (its joins answered 503, reconcile's run failed) until the code was replaced. Any policy that lets the
    function read CAMPAIGN#<id> is such a version's (or an upgrade's first pass, stopped); only one that does not is
    this version's."""
    aws = aws_on(moto_endpoint)
    iam = aws.client("iam")
    role = f"{deploy.stage_prefix('old')}-api_handler"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=LAMBDA_TRUST)
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/rf-intercom-bridge-old-table"

    def reads(*statements: dict) -> bool:
        iam.put_role_policy(RoleName=role, PolicyName=role, PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": list(statements)}))
        return deploy.reads_settings_before(aws, "old")

    def keyed(action: Any, keys: list[str]) -> dict:
        return {"Sid": "Table", "Effect": "Allow", "Action": action, "Resource": [table],
                "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": keys}}}

    whole = {"Sid": "Table", "Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": [table]}
    assert reads(whole)                                                                  # before 48af603
    assert reads({**whole, "Action": "dynamodb:GetItem"})                                # one action, as a string
    assert reads(keyed(["dynamodb:GetItem"], ["CAMPAIGN#*", "WORKSPACE#*", "TICKET#*", "OAUTH#*"]))
    assert reads(keyed(["dynamodb:GetItem"], ["SETTINGS#*", "WORKSPACE#*", "TICKET#*", "OAUTH#*", "CAMPAIGN#*"]))
    assert not reads(keyed(["dynamodb:GetItem"], ["SETTINGS#*", "WORKSPACE#*", "TICKET#*", "OAUTH#*"]))
    assert not reads({**keyed(["dynamodb:UpdateItem"], ["CAMPAIGN#*"]), "Sid": "EdgeTable"},
                     keyed(["dynamodb:GetItem"], ["SETTINGS#*", "WORKSPACE#*", "TICKET#*", "OAUTH#*"]))
