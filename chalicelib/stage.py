"""A deployed stage's resources, read from its CloudFormation stack.

`make deploy STAGE=<stage>` creates the stack `rf-intercom-bridge-<stage>` and writes its outputs
into the stage's environment in .chalice/config.json; `bridge --stage <stage>` (or BRIDGE_STAGE)
reads the same outputs here, so the operator's CLI reaches the same table, queues and secrets as
the Lambdas, and nobody exports names by hand.

Used by the CLI and the deploy tooling only: the Lambda functions never import this module (they
get these variables from their configuration)."""
from __future__ import annotations

import os
import re
from typing import Any, Mapping, MutableMapping, Optional

APP_NAME = "rf-intercom-bridge"

#: stack output -> the environment variable the app reads (chalicelib/config.py, app.py)
OUTPUT_ENV = {
    "TableName": "BRIDGE_TABLE",
    "QueueName": "BRIDGE_QUEUE_NAME",
    "QueueUrl": "BRIDGE_QUEUE_URL",
    "DeadLetterQueueUrl": "BRIDGE_DLQ_URL",
    "SecretsPath": "BRIDGE_SECRETS_PATH",
}

_STAGE = re.compile(r"^[a-z][a-z0-9]{0,15}$")


class StageError(RuntimeError):
    """The stage is not deployed, or its stack cannot be read (the message says why, in one line)."""


def check_stage(stage: str) -> str:
    if not _STAGE.match(stage or ""):
        raise StageError(f"stage {stage!r} is not a valid name: use lowercase letters and digits, e.g. dev or prod")
    return stage


def prefix(stage: str) -> str:
    """The resource prefix, the stack's name and Chalice's function-name prefix (<app>-<stage>)."""
    return f"{APP_NAME}-{check_stage(stage)}"


def stack_name(stage: str) -> str:
    return prefix(stage)


def env_from_outputs(outputs: dict[str, str]) -> dict[str, str]:
    missing = sorted(k for k in OUTPUT_ENV if k not in outputs)
    if missing:
        raise StageError(f"the stack has no output {', '.join(missing)}: redeploy it with `make deploy`")
    return {env: outputs[key] for key, env in OUTPUT_ENV.items()}


def cloudformation_client(environ: Optional[Mapping[str, str]] = None) -> Any:
    """In AWS_REGION as the AWS CLI reads it (boto3 alone reads AWS_DEFAULT_REGION or the profile's)."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.client("cloudformation", region_name=(environ or os.environ).get("AWS_REGION") or None)
    except BotoCoreError as exc:   # no region
        raise StageError(_aws_missing(exc) or f"cannot read the stage's stack: {exc}") from None


def stack_outputs(stage: str, cloudformation: Any = None) -> dict[str, str]:
    """DescribeStacks of the stage's stack -> {output key: value}."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = stack_name(stage)
    cfn = cloudformation or cloudformation_client()
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise StageError(f"stage {stage} is not deployed in {_region(cfn)} (no stack {name}): "
                             f"run `make deploy STAGE={stage}`, or set AWS_REGION to its region") from None
        raise StageError(f"cannot read stack {name}: {exc}") from None
    except BotoCoreError as exc:  # no credentials, no region, no network
        raise StageError(f"cannot read stack {name}: {_aws_missing(exc) or exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def resolve(stage: str, cloudformation: Any = None) -> dict[str, str]:
    """The environment variables the stage's Lambdas get, from its stack's outputs."""
    return env_from_outputs(stack_outputs(stage, cloudformation))


def use_stage(stage: str, environ: Optional[MutableMapping[str, str]] = None, cloudformation: Any = None) -> dict[str, str]:
    """Point this process at the stage's resources (what `bridge --stage <stage>` does)."""
    target: MutableMapping[str, str] = os.environ if environ is None else environ
    check_stage(stage)
    cfn = cloudformation or cloudformation_client(target)
    env = resolve(stage, cfn)
    # Every other client of this process (the queue's, PynamoDB's) must look in the same region.
    env["AWS_DEFAULT_REGION"] = cfn.meta.region_name
    target.update(env)
    return env


def use_stage_or_exit(stage: str) -> dict[str, str]:
    """use_stage for the CLI: a stage that cannot be read ends the command with one line."""
    try:
        return use_stage(stage)
    except StageError as exc:
        raise SystemExit(f"bridge: {exc}") from None


def _aws_missing(exc: BaseException) -> Optional[str]:
    """What the operator's shell lacks, for the AWS failures that mean it (else None)."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoRegionError):
        return "no AWS region: set AWS_REGION to the stage's region (or a region in your AWS profile)"
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return "no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
        return f"AWS is unreachable ({exc}): check the network"
    return None


def _region(client: Any) -> str:
    return getattr(getattr(client, "meta", None), "region_name", None) or "this region"
