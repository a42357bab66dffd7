"""A deployed stage's resources, read from its CloudFormation stack.

`make deploy STAGE=<stage>` creates the stack `rf-intercom-bridge-<stage>` and writes its outputs
into the stage's environment in .chalice/config.json; `bridge --stage <stage>` (or BRIDGE_STAGE)
reads the same outputs here, so the operator's CLI reaches the same table, queues and secrets as
the Lambdas, and nobody exports names by hand; it takes the stage's settings from infra/chalice-config.json,
as its worker is deployed with them.

Used by the CLI and the deploy tooling only: the Lambda functions never import this module (they
get these variables from their configuration)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Optional

APP_NAME = "rf-intercom-bridge"
#: the deployed settings of every stage (`make deploy` renders .chalice/config.json from it)
CHALICE_CONFIG = Path(__file__).resolve().parents[1] / "infra" / "chalice-config.json"

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


#: The function names Chalice appends to <app>-<stage>: a stage of that name would make its API function's name
#: (<app>-<stage>) read as another stage's function of that name.
FUNCTION_SUFFIXES = ("worker", "reconcile")


def check_stage(stage: str, new: bool = False) -> str:
    """`new`: a stage about to be deployed, which may not take a function's name either (one deployed before the
    rule is still reached and destroyed)."""
    if not _STAGE.match(stage or ""):
        raise StageError(f"stage {stage!r} is not a valid name: use up to 16 lowercase letters and digits, starting "
                         f"with a letter, e.g. dev or prod")
    if new and stage in FUNCTION_SUFFIXES:
        raise StageError(f"stage {stage!r} is not a valid name: not {' or '.join(FUNCTION_SUFFIXES)}, the names of "
                         "the bridge's functions (its API's would read as that function), e.g. dev or prod")
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
        raise StageError(aws_problem(exc, stage=True) or f"cannot read the stage's stack: {exc}") from None


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
        raise StageError(f"cannot read stack {name}: {aws_problem(exc, stage=True) or exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def resolve(stage: str, cloudformation: Any = None) -> dict[str, str]:
    """The environment variables the stage's Lambdas get, from its stack's outputs."""
    return env_from_outputs(stack_outputs(stage, cloudformation))


#: Where `make deploy` keeps Chalice's deployed state of a stage (the API's id and URL, the functions'), in the bucket
#: of the stage's stack (output StateBucket), and under .chalice/ in the checkout that deployed it.
STATE_KEY = "deployed/{stage}.json"
CHECKOUT = CHALICE_CONFIG.parents[1]


def state_path(project_dir: Path, stage: str) -> Path:
    """Chalice's deployed state of a stage in a checkout (`make deploy` keeps it there and at STATE_KEY)."""
    return Path(project_dir) / ".chalice" / "deployed" / f"{stage}.json"


def local_api_url(stage: str) -> Optional[str]:
    """The stage's API URL from the deployed state in this checkout (only one that ran `make deploy` of it has one)."""
    try:
        return rest_api_url(json.loads(state_path(CHECKOUT, stage).read_text(encoding="utf-8")))
    except (OSError, ValueError, AttributeError):
        return None


def rest_api_url(state: Mapping[str, Any]) -> Optional[str]:
    """The API's URL in Chalice's deployed state of a stage (None: it names no REST API)."""
    url = next((r.get("rest_api_url") for r in state.get("resources", []) if r.get("resource_type") == "rest_api"),
               None)
    return str(url) if url else None


def deployed_api_url(stage: str, cloudformation: Any = None, s3: Any = None,
                     outputs: Optional[Mapping[str, str]] = None) -> tuple[Optional[str], str]:
    """The stage's API URL from the deployed state `make deploy` keeps in its stack's bucket (Chalice's REST API is
    not in the stack: no output names it), and where it was looked for (said when it is not there: None). One
    that cannot be read (no StateBucket output, AWS refusing) is a StageError. `outputs`: the stack's, when this
    process read them already (use_stage): not asked again."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    cfn = cloudformation or cloudformation_client()
    bucket = (stack_outputs(stage, cfn) if outputs is None else outputs).get("StateBucket")
    if not bucket:
        raise StageError(f"stack {stack_name(stage)} has no output StateBucket: redeploy it with `make deploy`")
    where = f"s3://{bucket}/{STATE_KEY.format(stage=stage)}"
    try:
        s3 = s3 or boto3.client("s3", region_name=cfn.meta.region_name)   # the stack's (AWS_ENDPOINT_URL honoured)
        body = s3.get_object(Bucket=bucket, Key=STATE_KEY.format(stage=stage))["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404"):
            return None, where
        if code in ("AccessDenied", "403"):   # S3's answer for a missing object too, to whom may not list the bucket
            raise StageError(f"S3 refused to read {where} ({code}): it is not there yet (`make deploy STAGE={stage}` "
                             "stores it), or the operator's rights lack s3:GetObject on it (the policy `make deploy` "
                             f"writes, .chalice/policy-{stage}-operator.json, grants it)") from None
        raise StageError(f"cannot read {where}: {aws_problem(exc, stage=True) or exc}") from None
    except BotoCoreError as exc:
        raise StageError(f"cannot read {where}: {aws_problem(exc, stage=True) or exc}") from None
    try:
        return rest_api_url(json.loads(body)), where
    except (ValueError, AttributeError):
        return None, where


def deployed_environment(base: Mapping[str, Any], stage: str, function: str = "worker") -> dict[str, str]:
    """A function's environment variables in the stage as infra/chalice-config.json sets them, merged as Chalice
    merges them: the global ones, the stage's, the stage's function's."""
    stage_cfg = base.get("stages", {}).get(stage, {})
    env: dict[str, str] = {}
    for scope in (base, stage_cfg, stage_cfg.get("lambda_functions", {}).get(function, {})):
        env.update({k: str(v) for k, v in scope.get("environment_variables", {}).items()})
    return env


def use_stage(stage: str, environ: Optional[MutableMapping[str, str]] = None) -> dict[str, str]:
    """Point this process at the stage's resources (what `bridge --stage <stage>` does), with the settings the
    stage's worker is deployed with (its budgets, tries, vendors' URLs...: the CLI calls RF and Intercom within the
    same shared budgets) unless this process's environment sets them. Its functions' logging and metrics
    variables stay the CLI's own. The stack's outputs, read once (deployed_api_url takes them)."""
    target: MutableMapping[str, str] = os.environ if environ is None else environ
    check_stage(stage)
    cfn = cloudformation_client(target)
    outputs = stack_outputs(stage, cfn)
    env = env_from_outputs(outputs)
    # Every other client of this process (the queue's, PynamoDB's) must look in the same region.
    env["AWS_DEFAULT_REGION"] = cfn.meta.region_name
    target.update(env)
    base = json.loads(CHALICE_CONFIG.read_text()) if CHALICE_CONFIG.exists() else {}
    for name, value in deployed_environment(base, stage).items():
        if name not in env and not name.startswith("POWERTOOLS_"):
            target.setdefault(name, value)
    return outputs


def use_stage_or_exit(stage: str) -> dict[str, str]:
    """use_stage for the CLI: a stage that cannot be read ends the command with one line."""
    try:
        return use_stage(stage)
    except StageError as exc:
        raise SystemExit(f"bridge: {exc}") from None


def aws_problem(exc: BaseException, stage: bool = False) -> Optional[str]:
    """One line for an AWS failure (botocore's own, or wrapped by PynamoDB), else None: what the
    operator's shell lacks, or what AWS said. `stage`: reading a deployed stage's stack (no local stack
    to start; its region is the stage's)."""
    from botocore import exceptions as bx

    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        exc = current
        seen.add(id(exc))
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return ("no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                    + ("" if stage else "; for the local stack, start `make run`"))
        if isinstance(exc, bx.NoRegionError):
            return ("no AWS region: set AWS_REGION to the stage's region (or a region in your AWS profile)" if stage
                    else "no AWS region: set AWS_DEFAULT_REGION (or a region in your AWS profile)")
        if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                            bx.ConnectionClosedError)):
            where = os.environ.get("AWS_ENDPOINT_URL")
            return (f"AWS is unreachable ({type(exc).__name__}"
                    + (f" at AWS_ENDPOINT_URL={where}: is `make run` running?)" if where else "): check the network"))
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "error"), error.get("Message", "")
            if code == "ResourceNotFoundException":
                return f"AWS: {message or code} — is BRIDGE_TABLE (or the stage) right?"
            if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                return f"AWS: {message or code} — are BRIDGE_QUEUE_URL and BRIDGE_DLQ_URL (or the stage) right?"
            if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException"):
                return (f"AWS refused ({code}): {message} — the operator's rights are the policy `make deploy` "
                        f"writes, .chalice/policy-<stage>-operator.json (or .chalice/policy-<stage>-operator-readonly"
                        f".json, the commands that change nothing): attach it to your IAM user or role "
                        f"(docs/operating.md)")
            return f"AWS answered {code}: {message}"
        if isinstance(exc, bx.ParamValidationError):
            return (f"AWS call not sent: {exc} — is the stage's environment set (BRIDGE_TABLE, BRIDGE_QUEUE_URL, "
                    "BRIDGE_DLQ_URL)?")
        if isinstance(exc, bx.BotoCoreError):
            return f"AWS: {exc}"
        current = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def _region(client: Any) -> str:
    return getattr(getattr(client, "meta", None), "region_name", None) or "this region"
