"""`make deploy` run again after CloudFormation rolled a stage's stack back. moto's CloudFormation rolls
nothing back: the states a rollback leaves are shown by rewriting what moto answers, and what the deploy
asks of CloudFormation is read from its requests."""
from __future__ import annotations

from typing import Any

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
