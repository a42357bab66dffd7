"""A cold start, run in a fresh process by the bench (bench/figures.cold_start):

    python -m bench.coldstart worker < event.json   import app, then app.worker(event) once
    python -m bench.coldstart floor                 import boto3, a client, one SQS receive

Timed from the first line of this module (after the interpreter's own start, which both share).
Prints one line: BENCH_COLDSTART {"import": s, "first": s, "total": s, "error": ...}."""
import time

_STARTED = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def worker() -> dict:
    event = json.loads(sys.stdin.read())
    started = time.perf_counter()
    import app                                               # the Lambda's init: the handler module

    imported = time.perf_counter()
    from infra.local.context import FakeLambdaContext         # a plain object (not part of the app)

    context = FakeLambdaContext(function_name="worker", timeout_seconds=120)
    try:
        app.worker(event, context)
        error = None
    except Exception as exc:  # reported to the bench, which stops: a failed record is no cold start
        error = f"{type(exc).__name__}: {exc}"
    done = time.perf_counter()
    return {"import": imported - _STARTED, "first": done - imported, "total": done - _STARTED,
            "read_event": started - _STARTED, "error": error}


def floor() -> dict:
    import boto3

    imported = time.perf_counter()
    boto3.client("sqs").receive_message(QueueUrl=os.environ["BENCH_FLOOR_QUEUE_URL"], WaitTimeSeconds=0)
    done = time.perf_counter()
    return {"import": imported - _STARTED, "first": done - imported, "total": done - _STARTED, "error": None}


if __name__ == "__main__":
    result = {"worker": worker, "floor": floor}[sys.argv[1]]()
    sys.stdout.flush()
    print("BENCH_COLDSTART " + json.dumps(result), flush=True)
