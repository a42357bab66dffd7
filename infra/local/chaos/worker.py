"""One worker process of the chaos run: Lambda's SQS event source over the work queue, driving
`app.worker` with batches of up to 10, until SIGTERM (or SIGKILL, which is the point).

Reads the stack from the environment (as the deployed worker does) plus CHAOS_QUEUE_ARN,
CHAOS_FUNCTION_TIMEOUT (the emulated Lambda timeout, seconds) and CHAOS_STATUS_FD (a pipe on
which it reports "R" when ready, "B <n>" when a batch of n arrives, "E <ok> <n>" when it ends)."""
from __future__ import annotations

import os
import signal
import sys
import time


def main() -> None:
    status = os.fdopen(int(os.environ["CHAOS_STATUS_FD"]), "w", buffering=1)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    import app
    from infra.local.aws import client
    from infra.local.esm import QueuePoller

    def handler(event, context):
        n = len(event["Records"])
        status.write(f"B {n}\n")
        ok = False
        try:
            result = app.worker(event, context)
            ok = True
            return result
        finally:
            status.write(f"E {int(ok)} {n}\n")

    poller = QueuePoller(client("sqs", os.environ["AWS_ENDPOINT_URL"]), os.environ["BRIDGE_QUEUE_URL"],
                         os.environ["CHAOS_QUEUE_ARN"], handler, batch_size=10,
                         timeout_seconds=float(os.environ.get("CHAOS_FUNCTION_TIMEOUT", "60")))
    status.write("R\n")
    parent = os.getppid()
    while not stop and os.getppid() == parent:   # an orphan (the run died) stops too
        try:
            poller.poll_once(wait_time_seconds=1)
        except Exception as exc:  # moto busy or gone: wait and go on, as the event source does
            print(f"poll failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            time.sleep(0.5)


if __name__ == "__main__":
    main()
