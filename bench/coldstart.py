"""A cold start, run in a fresh process by the bench (bench/figures.cold_start):

    python -m bench.coldstart worker < event.json   import app, then app.worker(event) once
                                                    (as a Lambda container: the bench names the
                                                    function, so the app's init runs as on Lambda)
    python -m bench.coldstart floor                 import boto3, a client, one SQS receive
    python -m bench.coldstart stack                 the floor, after importing the stack the product
                                                    fixes (chalice, pydantic and one model, PynamoDB,
                                                    Powertools' logger and metrics, requests)

Timed from the first line of this module (after the interpreter's own start, which both share).
Prints one line: BENCH_COLDSTART {"import": s, "first": s, "total": s, "error": ...}.

With BENCH_COLDSTART_DETAIL=1, the worker's line also says what its botocore clients and AWS calls
took ({"clients": [n, s], "aws_calls": [n, s]}, from the import on; calls made at once overlap). To
time them, botocore is imported before the app: the import's share moves, not the total."""
import time

_STARTED = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402


def _timed(cls: type, name: str, into: list) -> None:
    """Every call of cls.name adds to into = [calls, seconds]."""
    original, lock = getattr(cls, name), threading.Lock()

    def timed(*args, **kw):
        started = time.perf_counter()
        try:
            return original(*args, **kw)
        finally:
            with lock:
                into[0] += 1
                into[1] += time.perf_counter() - started
    setattr(cls, name, timed)


def worker() -> dict:
    event = json.loads(sys.stdin.read())
    detail = None
    if os.environ.get("BENCH_COLDSTART_DETAIL"):
        import botocore.client
        import botocore.session

        detail = {"clients": [0, 0.0], "aws_calls": [0, 0.0]}
        _timed(botocore.session.Session, "create_client", detail["clients"])
        _timed(botocore.client.BaseClient, "_make_api_call", detail["aws_calls"])
    started = time.perf_counter()
    import app                                               # the Lambda's init: the handler module

    imported = time.perf_counter()
    from chalicelib import runtime
    from infra.local.context import FakeLambdaContext         # a plain object (not part of the app)

    prewarmed = runtime._default is not None                # the Lambda init made the clients

    context = FakeLambdaContext(function_name="worker", timeout_seconds=120)
    try:
        app.worker(event, context)
        error = None
    except Exception as exc:  # reported to the bench, which stops: a failed record is no cold start
        error = f"{type(exc).__name__}: {exc}"
    done = time.perf_counter()
    return {"import": imported - _STARTED, "first": done - imported, "total": done - _STARTED,
            "read_event": started - _STARTED, "prewarmed": prewarmed, "error": error,
            **({"detail": detail} if detail else {})}


def floor() -> dict:
    import boto3

    imported = time.perf_counter()
    boto3.client("sqs").receive_message(QueueUrl=os.environ["BENCH_FLOOR_QUEUE_URL"], WaitTimeSeconds=0)
    done = time.perf_counter()
    return {"import": imported - _STARTED, "first": done - imported, "total": done - _STARTED, "error": None}


def stack() -> dict:
    """What any worker on this stack pays before its own code: its libraries' imports (pydantic's
    first model builds pydantic's own machinery), then the floor's client and receive."""
    import boto3
    import chalice  # noqa: F401
    import pydantic
    import pynamodb.models  # noqa: F401
    import requests  # noqa: F401
    from aws_lambda_powertools import Logger, Metrics  # noqa: F401

    class One(pydantic.BaseModel):
        a: int

    One(a=1)
    imported = time.perf_counter()
    boto3.client("sqs").receive_message(QueueUrl=os.environ["BENCH_FLOOR_QUEUE_URL"], WaitTimeSeconds=0)
    done = time.perf_counter()
    return {"import": imported - _STARTED, "first": done - imported, "total": done - _STARTED, "error": None}


if __name__ == "__main__":
    result = {"worker": worker, "floor": floor, "stack": stack}[sys.argv[1]]()
    sys.stdout.flush()
    print("BENCH_COLDSTART " + json.dumps(result), flush=True)
