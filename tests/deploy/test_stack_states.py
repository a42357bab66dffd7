"""`make deploy` run again after CloudFormation rolled a stage's stack back. moto's CloudFormation rolls
nothing back: the states a rollback leaves are shown by rewriting what moto answers, and what the deploy
asks of CloudFormation is read from its requests."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from infra import deploy

from .conftest import aws_on, project_copy


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
