"""Run jobs every N seconds in background threads (the local stand-in for
EventBridge schedules driving ``@app.schedule`` handlers).

    sched = Scheduler([
        ("reconcile", 60, chalice_job(app_module.reconcile, "reconcile")),
    ]).start()
    ...
    sched.run_now("reconcile")   # synchronously, in the caller's thread
    sched.stop()
"""
from __future__ import annotations

import datetime as _dt
import logging
import threading
import uuid
from typing import Any, Callable

from infra.local.context import DEFAULT_ACCOUNT_ID, FakeLambdaContext

log = logging.getLogger(__name__)

Job = tuple[str, float, Callable[[], Any]]


class _JobState:
    def __init__(self, name: str, seconds: float, func: Callable[[], Any]) -> None:
        self.name = name
        self.seconds = seconds
        self.func = func
        self.lock = threading.Lock()  # one run of a job at a time
        self.runs = 0
        self.failures = 0
        self.last_error: BaseException | None = None


class Scheduler:
    """Each job runs every ``seconds`` (first run one period after start, like
    an EventBridge rate schedule) in its own daemon thread.  Exceptions are
    logged and counted and never stop the loop.  Runs of the same job never
    overlap (a run that overruns its period delays the next one)."""

    def __init__(self, jobs: list[Job], *, run_at_start: bool = False) -> None:
        self._jobs: dict[str, _JobState] = {}
        for name, seconds, func in jobs:
            if name in self._jobs:
                raise ValueError(f"duplicate job name {name!r}")
            if seconds <= 0:
                raise ValueError(f"job {name!r}: seconds must be > 0")
            self._jobs[name] = _JobState(name, float(seconds), func)
        self.run_at_start = run_at_start
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    def stats(self, name: str) -> dict[str, Any]:
        job = self._jobs[name]
        return {"runs": job.runs, "failures": job.failures, "last_error": job.last_error}

    def start(self) -> "Scheduler":
        if self._threads:
            raise RuntimeError("scheduler already started")
        for job in self._jobs.values():
            t = threading.Thread(
                target=self._loop, args=(job,), name=f"sched-{job.name}", daemon=True
            )
            self._threads.append(t)
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loops; waits up to ``timeout`` for a running job to finish."""
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)

    def __enter__(self) -> "Scheduler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _loop(self, job: _JobState) -> None:
        if self.run_at_start and not self.stop_event.is_set():
            self._run_logged(job)
        while not self.stop_event.wait(job.seconds):
            self._run_logged(job)

    def _run_logged(self, job: _JobState) -> None:
        try:
            self._run(job)
        except Exception:
            log.exception("scheduled job %r failed", job.name)

    def _run(self, job: _JobState) -> Any:
        with job.lock:
            job.runs += 1
            try:
                return job.func()
            except BaseException as exc:
                job.failures += 1
                job.last_error = exc
                raise

    def run_now(self, name: str) -> Any:
        """Run job ``name`` once, now, in the caller's thread (waiting for a
        scheduled run of it in progress).  Returns its result; its exception
        propagates to the caller (tests want to see it)."""
        try:
            job = self._jobs[name]
        except KeyError:
            raise KeyError(f"no job {name!r}; jobs: {self.names}") from None
        return self._run(job)


def scheduled_event(
    rule_name: str, region: str = "us-east-1", account_id: str = DEFAULT_ACCOUNT_ID
) -> dict[str, Any]:
    """The event EventBridge sends a Lambda for a scheduled rule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account_id}:rule/{rule_name}"],
        "detail": {},
    }


def chalice_job(
    handler: Callable[[dict, Any], Any],
    rule_name: str,
    region: str = "us-east-1",
    **context_kwargs: Any,
) -> Callable[[], Any]:
    """Wrap a Lambda-style handler (e.g. an ``@app.schedule`` function, which
    Chalice makes callable as ``handler(event, context)``) as a Scheduler job:
    each run gets a fresh scheduled event and FakeLambdaContext."""
    context_kwargs.setdefault("function_name", rule_name)

    def job() -> Any:
        ctx = FakeLambdaContext(region=region, **context_kwargs)
        return handler(scheduled_event(rule_name, region=region), ctx)

    return job
