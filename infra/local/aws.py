"""moto in server mode, and the bridge's resources created from infra/template.yaml.

Typical test wiring (one server per session, one fresh stack per test)::

    server, endpoint = start_moto()          # session scope
    res = deploy(endpoint, unique_prefix())  # function scope
    monkeypatch.setattr(os, "environ", {**os.environ, **res.env()})  # or setenv each
    ...
    destroy(res)                             # optional, frees moto memory
    stop_moto(server)

Everything talks to moto over real HTTP (``endpoint_url``); nothing here patches
botocore.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.request
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import boto3
from botocore.config import Config as BotoConfig

log = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
DEFAULT_REGION = "us-east-1"
DUMMY_KEY = "testing"

#: Resource types in the template that moto's CloudFormation cannot create.
#: Their "not supported" log line and UserWarning are silenced; any other
#: unsupported type still warns (so a new resource type is noticed).
EXPECTED_UNSUPPORTED_TYPES = frozenset({
    "AWS::CloudWatch::Alarm",
    "AWS::S3::BucketPolicy",      # the deployed-state bucket's TLS-only policy
    "AWS::SQS::QueuePolicy",      # the queues' TLS-only policies
    "AWS::SNS::Subscription",     # the alarm email (only when AlarmEmail is given)
})

_REQUIRED_OUTPUTS = (
    "TableName",
    "QueueUrl",
    "QueueArn",
    "DeadLetterQueueUrl",
    "DeadLetterQueueArn",
)


class DeployError(RuntimeError):
    """The stack did not reach CREATE_COMPLETE (or lacks an expected output)."""


# --------------------------------------------------------------------------
# boto3 clients
# --------------------------------------------------------------------------

_session_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: dict[tuple[str, str, str], Any] = {}


def client(service: str, endpoint_url: str, region: str = DEFAULT_REGION) -> Any:
    """A boto3 client for ``service`` on the moto endpoint, with dummy credentials.

    Clients are cached per (service, endpoint, region) on one private boto3
    session: creating a client costs ~10-100 ms, and clients are thread-safe.
    Credentials are explicit, so the caller's environment (AWS_PROFILE, real
    keys) can never leak into a test.
    """
    global _session
    key = (service, endpoint_url, region)
    with _session_lock:
        found = _clients.get(key)
        if found is None:
            if _session is None:
                _session = boto3.session.Session()
            found = _session.client(
                service,
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=DUMMY_KEY,
                aws_secret_access_key=DUMMY_KEY,
                config=BotoConfig(retries={"max_attempts": 2, "mode": "standard"}),
            )
            _clients[key] = found
        return found


# --------------------------------------------------------------------------
# moto server
# --------------------------------------------------------------------------


class _DropExpectedUnsupported(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "No Moto CloudFormation support for %s" and record.args:
            return record.args[0] not in EXPECTED_UNSUPPORTED_TYPES
        return True


_quiet_done = False


def quiet_moto_logging() -> None:
    """Silence moto's per-request access log and the expected CFN warnings.

    * werkzeug (moto's HTTP server) logs every request at INFO: raise it to
      WARNING (errors and tracebacks still show).
    * moto's "No Moto CloudFormation support for AWS::CloudWatch::Alarm" log
      line is filtered out (only for EXPECTED_UNSUPPORTED_TYPES).
    The matching UserWarning is suppressed around the create_stack call in
    :func:`deploy` (warning filters are reset by pytest per test, so a global
    filter would not stick).
    """
    global _quiet_done
    if _quiet_done:
        return
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("moto").addFilter(_DropExpectedUnsupported())
    _quiet_done = True


def _warm_up() -> None:
    # moto's CloudFormation builds a map of every resource model on first use,
    # importing every moto backend: ~0.8 s, once per process.  The server runs
    # in this process, so doing it here moves the cost out of the first deploy.
    from moto.cloudformation.parsing import get_model_map

    get_model_map()


def start_moto(
    host: str = "127.0.0.1", port: int = 0, *, warm: bool = True, patched: bool = True
) -> tuple[Any, str]:
    """Start moto's server application in this process, on kept-alive connections (moto_http); return (server, endpoint_url).

    ``port=0`` picks a free port.  Stop it with :func:`stop_moto`.
    ``warm`` pre-imports moto's CloudFormation model map (see _warm_up).
    ``patched=False`` serves moto as released (the chaos run's MOTO_PATCH=0: what the patch fixes shows).
    """
    from .moto_http import KeepAliveMotoServer

    quiet_moto_logging()
    # moto's DynamoDB is not safe for concurrent requests (a transaction deep-copies the whole table
    # while other threads write to it, and rolls back by putting the copy back): the worker runs a
    # batch's records at once, so every local stack serialises DynamoDB as the chaos run's does.
    if patched:
        from infra.local.chaos import moto_patch
        moto_patch.install()
    if warm:
        _warm_up()
    server = KeepAliveMotoServer(host, port)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{bound_host}:{bound_port}"


def stop_moto(server: Any) -> None:
    """Stop the server and close its listening socket."""
    server.stop()


def reset_moto(endpoint_url: str) -> None:
    """Drop every resource in the moto server (its /moto-api/reset endpoint)."""
    req = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


# --------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """The deployed resources, as the template's outputs report them."""

    table: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    prefix: str
    endpoint_url: str
    region: str = DEFAULT_REGION
    stack_name: str = ""
    outputs: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def env(self) -> dict[str, str]:
        """Environment variables the app reads to reach these resources.

        AWS_ENDPOINT_URL is honoured by every boto3 (>= 1.28) client; region
        and dummy credentials keep boto3 from looking anywhere else.
        AWS_REGION is what the Lambda runtime sets, so it is included too.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
            "BRIDGE_TABLE": self.table,
            "BRIDGE_QUEUE_URL": self.queue_url,
            "BRIDGE_DLQ_URL": self.dlq_url,
            "BRIDGE_SECRETS_PATH": f"/{self.prefix}",   # as deployed: /<Prefix>
            "BRIDGE_DLQ_POLL_SECONDS": "0",     # moto is one server: a short poll sees every dead letter
        }

    def client(self, service: str) -> Any:
        """A (cached) boto3 client for ``service`` on this stack's endpoint."""
        return client(service, self.endpoint_url, self.region)


def unique_prefix(base: str = "t") -> str:
    """A fresh resource prefix, e.g. ``t-3f9a0c1b2d``; matches [a-zA-Z0-9-]+."""
    return f"{base}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def _no_expected_unsupported_warnings() -> Iterator[None]:
    # moto runs in-process, so the UserWarning it raises while handling the
    # request is subject to this process's (global) warning filters.
    with warnings.catch_warnings():
        for rtype in EXPECTED_UNSUPPORTED_TYPES:
            warnings.filterwarnings(
                "ignore",
                message=rf"Tried to parse {rtype} but it's not supported",
            )
        yield


_template_cache: dict[Path, str] = {}


def _template_body(path: Path) -> str:
    body = _template_cache.get(path)
    if body is None:
        body = path.read_text(encoding="utf-8")
        _template_cache[path] = body
    return body


def deploy(
    endpoint_url: str,
    prefix: str,
    visibility_timeout: int | None = None,
    max_receive_count: int | None = None,
    region: str = DEFAULT_REGION,
    *,
    stack_name: str | None = None,
    template_path: str | Path | None = None,
    timeout: float = 30.0,
) -> Resources:
    """Create a CloudFormation stack from infra/template.yaml; return its Resources.

    ``visibility_timeout`` / ``max_receive_count`` of None keep the template's
    defaults (180 s / 10).  The stack is named ``prefix`` (``stack-<prefix>``
    if prefix does not start with a letter, as CFN requires).
    """
    quiet_moto_logging()
    path = Path(template_path) if template_path else TEMPLATE_PATH
    if stack_name is None:
        stack_name = prefix if prefix[:1].isalpha() else f"stack-{prefix}"
    params = [{"ParameterKey": "Prefix", "ParameterValue": prefix}]
    if visibility_timeout is not None:
        params.append(
            {"ParameterKey": "VisibilityTimeout", "ParameterValue": str(visibility_timeout)}
        )
    if max_receive_count is not None:
        params.append(
            {"ParameterKey": "MaxReceiveCount", "ParameterValue": str(max_receive_count)}
        )

    cfn = client("cloudformation", endpoint_url, region)
    with _no_expected_unsupported_warnings():
        cfn.create_stack(
            StackName=stack_name, TemplateBody=_template_body(path), Parameters=params
        )
    stack = _wait_for_stack(cfn, stack_name, timeout)

    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = [k for k in _REQUIRED_OUTPUTS if k not in outputs]
    if missing:
        raise DeployError(f"stack {stack_name} lacks outputs {missing}: {outputs}")
    return Resources(
        table=outputs["TableName"],
        queue_url=outputs["QueueUrl"],
        queue_arn=outputs["QueueArn"],
        dlq_url=outputs["DeadLetterQueueUrl"],
        dlq_arn=outputs["DeadLetterQueueArn"],
        prefix=prefix,
        endpoint_url=endpoint_url,
        region=region,
        stack_name=stack_name,
        outputs=outputs,
    )


def _wait_for_stack(cfn: Any, stack_name: str, timeout: float) -> dict[str, Any]:
    # moto creates stacks synchronously, so this normally returns at once; the
    # loop is for an external/slower endpoint.
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return stack
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            reasons = [
                f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}"
                for e in cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
                if e.get("ResourceStatus", "").endswith("FAILED")
            ]
            raise DeployError(f"stack {stack_name} is {status}: {reasons}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def destroy(resources: Resources) -> None:
    """Delete the stack and the table it retains (DeletionPolicy: Retain).

    Optional in tests (stacks have unique prefixes); frees moto's memory.
    """
    cfn = resources.client("cloudformation")
    if resources.stack_name:
        cfn.delete_stack(StackName=resources.stack_name)
    ddb = resources.client("dynamodb")
    with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
        ddb.delete_table(TableName=resources.table)
    sqs = resources.client("sqs")
    for url in (resources.queue_url, resources.dlq_url):
        with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
            sqs.delete_queue(QueueUrl=url)
