"""The webhook routes and the reconciliation of the chaos run, in a process of their own: the app
served over HTTP (as `make run` does) and `app.reconcile` run when the parent asks.

Protocol: the parent writes "reconcile" lines on stdin; this process answers on CHAOS_STATUS_FD
with one JSON line per request ({"url": ...} first, then each run's result or {"error": ...})."""
from __future__ import annotations

import json
import os
import sys


def main() -> None:
    out = os.fdopen(int(os.environ["CHAOS_STATUS_FD"]), "w", buffering=1)
    import app
    from infra.local.http import serve_app
    from infra.local.scheduler import chalice_job

    server = serve_app(app.app, port=0)
    reconcile = chalice_job(app.reconcile, "reconcile")
    out.write(json.dumps({"url": server.url}) + "\n")
    for line in sys.stdin:
        if line.strip() == "reconcile":
            try:
                result = reconcile()
            except Exception as exc:  # reported, never fatal: the run goes on
                result = {"error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(result, default=str) + "\n")
    server.stop()


if __name__ == "__main__":
    main()
