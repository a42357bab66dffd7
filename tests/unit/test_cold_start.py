"""Issue 9, cold start: what a fresh container does before its first invocation (timed only by
`make bench`; here, what happens). Each runs in a fresh interpreter, as a new Lambda container."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PATH": "/usr/bin:/bin", "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1",  # as Lambda sets them
       "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
       "BRIDGE_TABLE": "t", "BRIDGE_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
       "BRIDGE_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/1/d"}
PROBE = """
import json, sys
import app
from chalicelib import runtime
from chalicelib.adapters.dynamo import models
rt = runtime._default
print(json.dumps({"worker": "chalicelib.services.worker" in sys.modules, "requests": "requests" in sys.modules,
                  "intake": "chalicelib.services.ingest" in sys.modules,
                  "pointers' audit": "chalicelib.domain.pointers" in sys.modules,
                  "boto3": "boto3" in sys.modules,
                  "dynamodb": len(models._clients), "sqs": bool(rt and rt.queue._client),
                  "ssm": bool(rt and rt.secrets._client)}))
"""


def container(function_name: str = "") -> dict:
    env = {**ENV, **({"AWS_LAMBDA_FUNCTION_NAME": function_name} if function_name else {})}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_workers_init_makes_its_clients_and_imports_what_its_records_need():
    """...and not the webhooks' intake (services/ingest.py), which no record needs, nor the domain of `bridge
    pointers`' audit (domain/pointers.py): ~2 ms of its init each."""
    assert container("rf-intercom-bridge-prod-worker") == {
        "worker": True, "requests": True, "intake": False, "pointers' audit": False, "boto3": False, "dynamodb": 1,
        "sqs": True, "ssm": True}


def test_the_webhook_functions_init_makes_its_aws_clients_and_leaves_the_http_clients_out():
    assert container("rf-intercom-bridge-prod") == {
        "worker": False, "requests": False, "intake": True, "pointers' audit": False, "boto3": False, "dynamodb": 1,
        "sqs": True, "ssm": True}


def test_reconciliations_init_leaves_the_webhooks_intake_out():
    assert container("rf-intercom-bridge-prod-reconcile")["intake"] is False


def test_outside_lambda_importing_the_app_makes_nothing():
    assert container() == {"worker": False, "requests": False, "intake": False, "pointers' audit": False,
                           "boto3": False, "dynamodb": 0, "sqs": False, "ssm": False}


def test_every_model_of_the_table_shares_one_client():
    """PynamoDB would give each model its own botocore session, each reading botocore's files again."""
    code = ("from chalicelib.adapters.dynamo import models; "
            "clients = {id(m._get_connection().connection.client) for m in models.MODELS}; print(len(clients))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_an_init_that_cannot_make_its_clients_logs_it_and_the_container_still_starts():
    env = {k: v for k, v in ENV.items() if "REGION" not in k}
    out = subprocess.run([sys.executable, "-c", "import app; print('started')"], cwd=ROOT,
                         env={**env, "AWS_LAMBDA_FUNCTION_NAME": "rf-intercom-bridge-prod-worker"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "started" and '"message":"prewarm failed"' in out.stdout


def test_each_functions_aws_clients_keep_to_its_bounds():
    """The API function's init arms adapters/aws.API before it makes a client: a hung AWS call gets its sender
    the bridge's 503 in time (tests/integration/test_aws_hangs.py), not API Gateway's 502. The worker's and
    reconciliation's arm aws.WORKER: a hung call fails its record's try in time, not the whole batch with the
    Lambda's timeout (tests/integration/test_worker_hangs.py)."""
    probe = ("import json, app; from chalicelib import runtime; from chalicelib.adapters.dynamo import models; "
             "rt = runtime._default; "
             "clients = [*models._clients.values(), rt.queue.client, rt.secrets.client]; "
             "print(json.dumps([[c.meta.config.connect_timeout, c.meta.config.read_timeout, "
             "c.meta.config.retries.get('total_max_attempts')] for c in clients]))")

    def bounds(function_name: str) -> list:
        out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                             env={**ENV, "AWS_LAMBDA_FUNCTION_NAME": function_name})
        return json.loads(out.stdout.strip().splitlines()[-1])
    assert bounds("rf-intercom-bridge-prod") == [[0.5, 2.0, 2]] * 3
    assert bounds("rf-intercom-bridge-prod-worker") == bounds("rf-intercom-bridge-prod-reconcile") == [[1, 5, 2]] * 3
