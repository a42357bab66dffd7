"""The figures. Each runs the project and its floor in one run, interleaved sample by sample (the
machine is shared and noisy: both see the same noise), and returns rows of (floor, project)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from infra.local.esm import PollerThread, QueuePoller, build_sqs_event

from .floors import FloorWorker, RoundTrip, aws_client
from .report import Row, median, pct
from .stack import CAMPAIGN, BenchStack, wait_until

ROOT = Path(__file__).resolve().parents[1]
BATCH = 10


@dataclass(frozen=True)
class Mode:
    """How many samples: the full run stays within a few minutes; quick is a smoke check."""

    ack_samples: int = 300         # per route (and as many floor samples)
    ack_round: int = 50            # queues are purged after each round of this many
    e2e_samples: int = 30          # per kind (join, qualification), each beside a round trip
    throughput_rounds: int = 7     # alternating which goes first; the median of each
    throughput_batches: int = 3    # batches of 10 joins per round
    latency: float = 0.1           # seconds the simulators take to answer, for joins/min
    budget_clients: int = 4        # limiter clients (containers) in parallel
    budget_windows: int = 3        # complete RF windows measured
    budget_speed: float = 6.0      # simulated seconds per real second (the clients must outrun RF's
                                   # limit at this speed: about 120 calls/s here, 60/s needed)
    cold_samples: int = 11         # per kind (after one discarded warm-up each): medians of few move by ~10%
    sync_contacts: int = 2400      # a segment: about 4 of RF's minutes, so that 3 windows are complete
    sync_workers: int = 3
    sync_speed: float = 2.0        # the sync's simulated seconds per real second (moto sets the pace above)


FULL = Mode()
QUICK = Mode(ack_samples=40, ack_round=20, e2e_samples=5, throughput_rounds=1, throughput_batches=1,
             budget_windows=1, budget_speed=6.0, cold_samples=1, sync_contacts=900)


def _ms(seconds: float) -> float:
    return seconds * 1000


# --- webhook ack -----------------------------------------------------------------------------------

def webhook_ack(stack: BenchStack, mode: Mode) -> list[Row]:
    """Both routes against a bare Chalice route doing one SQS send, on the same server class and
    moto; each from its own keep-alive connection. Queues are purged between rounds."""
    lead = stack.new_lead()
    contact = stack.intercom.add_contact("ack@example.com")
    sessions = {k: requests.Session() for k in ("referral-factory", "intercom", "floor")}
    make = {"referral-factory": lambda: stack.join_request(lead),
            "intercom": lambda: stack.intercom_request(contact["id"]),
            "floor": lambda: stack.floor_request(stack.join_body(lead))}
    for kind in make:                                   # warm: secrets and the campaign cached
        stack.post(sessions[kind], make[kind]())
    times: dict[str, list[float]] = {k: [] for k in make}
    aws: dict[str, list[int]] = {k: [] for k in make}
    kinds = list(make)
    for i in range(mode.ack_samples):
        for kind in kinds[i % 3:] + kinds[:i % 3]:    # the order turns, so no kind always goes first
            request = make[kind]()
            with stack.counter.measure() as counts:
                started = time.perf_counter()
                stack.post(sessions[kind], request)
                times[kind].append(time.perf_counter() - started)
            aws[kind].append(counts.aws)
        if (i + 1) % mode.ack_round == 0:
            stack.purge(stack.queue_url, stack.floor_queue_url)
    stack.purge(stack.queue_url, stack.floor_queue_url)
    floor = [_ms(t) for t in times["floor"]]
    rows = []
    for route in ("referral-factory", "intercom"):
        project = [_ms(t) for t in times[route]]
        rows += [Row(f"webhook ack p50, {route}", median(floor), median(project),
                     note=f"n={len(project)}; floor: a bare Chalice route, one SQS send"),
                 Row(f"webhook ack p95, {route}", pct(floor, 0.95), pct(project, 0.95))]
    rows.append(Row("AWS calls per webhook (both routes)", sum(aws["floor"]) / len(aws["floor"]),
                    (sum(aws["referral-factory"]) + sum(aws["intercom"])) / (2 * mode.ack_samples), unit=""))
    return rows


# --- end to end ------------------------------------------------------------------------------------

def end_to_end(stack: BenchStack, mode: Mode) -> list[Row]:
    """A join (RF webhook -> the contact in the Intercom simulator, tagged) and a qualification
    (Intercom webhook -> the qualification at the RF simulator), one at a time, with the worker
    driven by a long-polling event source; each beside an SQS send -> receive round trip."""
    n = mode.e2e_samples
    session = requests.Session()
    esm = PollerThread(stack.poller, idle_wait=1.0)
    esm.start()
    try:
        settled = lambda: stack.in_queue() == 0  # noqa: E731 - the link written, the message deleted
        pending = [stack.new_lead() for _ in range(n + 1)]         # leads to qualify, joined beforehand
        for lead in pending:
            stack.post(session, stack.join_request(lead))
        wait_until(lambda: all(stack.tagged(lead["email"]) for lead in pending) and settled(), 120, "joins")
        joins, qualifications, floor = [], [], []
        with RoundTrip(stack.floor_sqs, stack.round_trip_url,
                       lambda p: wait_until(p, 30, "a round trip")) as round_trip:
            for i in range(n + 1):                      # the first of each is a warm-up, not counted
                lead = stack.new_lead()
                request = stack.join_request(lead)
                started = time.perf_counter()
                stack.post(session, request)
                wait_until(lambda: stack.tagged(lead["email"]), 30, "a join")
                joins.append(time.perf_counter() - started)
                wait_until(settled, 30, "the join to settle")
                floor.append(round_trip.once(2 * i))

                lead = pending[i]
                contact = stack.contact(lead["email"])
                stack.intercom.update_contact(contact["id"], signed_up="Yes")
                request = stack.intercom_request(contact["id"])
                started = time.perf_counter()
                stack.post(session, request)
                wait_until(lambda: stack.qualified(lead["id"]), 30, "a qualification")
                qualifications.append(time.perf_counter() - started)
                wait_until(settled, 30, "the qualification to settle")
                floor.append(round_trip.once(2 * i + 1))
    finally:
        esm.stop()
    stack.purge()
    joins, qualifications, floor = joins[1:], qualifications[1:], floor[2:]
    floor_ms = [_ms(t) for t in floor]
    rows = []
    for name, samples in (("join: RF webhook -> contact tagged in Intercom", joins),
                          ("qualification: Intercom webhook -> RF", qualifications)):
        project = [_ms(t) for t in samples]
        rows += [Row(f"end to end p50, {name}", median(floor_ms), median(project),
                     note=f"n={n}; floor: SQS send -> long-poll receive"),
                 Row(f"end to end p95, {name}", pct(floor_ms, 0.95), pct(project, 0.95))]
    return rows


# --- calls and writes per join ---------------------------------------------------------------------

def _floor_poller(stack: BenchStack, worker: FloorWorker) -> QueuePoller:
    arn = stack.sqs.get_queue_attributes(QueueUrl=stack.floor_work_url,
                                         AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return QueuePoller(stack.sqs, stack.floor_work_url, arn, worker, function_name="floor-worker")


def _queue_floor_joins(stack: BenchStack, n: int) -> None:
    people = [stack.new_lead() for _ in range(n)]
    for i in range(0, n, 10):
        stack.sqs.send_message_batch(QueueUrl=stack.floor_work_url, Entries=[
            {"Id": str(j), "MessageBody": json.dumps({"email": p["email"], "name": p["first_name"]})}
            for j, p in enumerate(people[i:i + 10])])


def _queue_joins(stack: BenchStack, session: requests.Session, n: int) -> list[dict]:
    leads = [stack.new_lead() for _ in range(n)]
    for lead in leads:
        stack.post(session, stack.join_request(lead))
    return leads


def _run_batches(poller: QueuePoller, n: int) -> int:
    """Invoke the worker on batches until `n` messages are done; returns how many batches it took."""
    done = batches = 0
    while done < n:
        outcome = poller.poll_once()
        if outcome.received == 0 or not outcome.ok:
            raise RuntimeError(f"{poller.function_name}: {done} of {n} done, then {outcome}")
        done += outcome.received
        batches += 1
    return batches


def _one_batch(poller: QueuePoller) -> None:
    if _run_batches(poller, BATCH) != 1:
        raise RuntimeError(f"{poller.function_name}: the {BATCH} messages did not come in one batch")


def calls_per_join(stack: BenchStack, mode: Mode) -> list[Row]:
    """One batch of 10 new leads (the demo campaign: tagged, awaiting qualification), each on a warm
    worker; the floor is the floor worker's batch (see floors.FloorWorker)."""
    session = requests.Session()
    worker = FloorWorker(stack.intercom.base_url, "sim-token", _ddb(stack), stack.table)
    floor_poller = _floor_poller(stack, worker)
    try:
        _queue_joins(stack, session, 1)                       # warm both workers
        _run_batches(stack.poller, 1)
        _queue_floor_joins(stack, 1)
        _run_batches(floor_poller, 1)
        _queue_joins(stack, session, BATCH)
        with stack.counter.measure() as project:
            _one_batch(stack.poller)
        _queue_floor_joins(stack, BATCH)
        with stack.counter.measure() as floor:
            _one_batch(floor_poller)
    finally:
        worker.close()
    note = "batch of 10 new leads, warm worker"
    return [Row("Intercom calls per join", floor.intercom / BATCH, project.intercom / BATCH, unit="",
                note=f"{note}; floor: 1 search (IN) + 1 create each + 1 tag call (users list)"),
            Row("RF calls per join", floor.rf / BATCH, project.rf / BATCH, unit="",
                note="the webhook carries every field"),
            Row("DynamoDB writes per join", floor.dynamodb_writes / BATCH, project.dynamodb_writes / BATCH,
                unit="", note=f"requests (items: {project.dynamodb_write_items / BATCH:g}); "
                              "floor: 1 conditional write of the link"),
            Row("DynamoDB reads per join", floor.dynamodb_reads / BATCH, project.dynamodb_reads / BATCH,
                unit="", note="floor: 1 BatchGetItem of the links per batch")]


def _ddb(stack: BenchStack) -> Any:
    return aws_client("dynamodb", stack.endpoint, stack.region)


# --- joins per minute ------------------------------------------------------------------------------

def joins_per_minute(stack: BenchStack, mode: Mode) -> list[Row]:
    """One worker container (one event source, batches of 10, one at a time) working through queued
    joins of new leads while every simulator call takes `mode.latency`; beside the floor worker on
    the same queues and simulators."""
    n = BATCH * mode.throughput_batches
    session = requests.Session()
    worker = FloorWorker(stack.intercom.base_url, "sim-token", _ddb(stack), stack.table)
    floor_poller = _floor_poller(stack, worker)
    project, floor = [], []
    try:
        for r in range(mode.throughput_rounds):
            _queue_joins(stack, session, n)           # queued first: the webhook is not measured here
            _queue_floor_joins(stack, n)
            stack.latency(mode.latency)
            try:
                order = [(stack.poller, project), (floor_poller, floor)]
                for poller, out in (order if r % 2 == 0 else order[::-1]):
                    started = time.perf_counter()
                    _run_batches(poller, n)
                    out.append(n / (time.perf_counter() - started) * 60)
            finally:
                stack.latency(0)
            stack.purge(stack.queue_url, stack.floor_work_url)
    finally:
        worker.close()
    latency = f"{mode.latency * 1000:.0f} ms"
    return [Row(f"joins/min, one worker, APIs answering in {latency}", median(floor), median(project),
                unit="/min", kind="share",
                note=f"{mode.throughput_rounds} rounds of {n} joins; floor: the floor worker")]


# --- RF budget -------------------------------------------------------------------------------------

class ScaledClock:
    """Simulated time running `speed` times faster than real time, starting 1 s before a window, and
    after every time an earlier scaled clock of this run reached: the figures share the table and its
    rate budgets, and RF's slots one figure took in its future must not be another's present."""

    latest = 0.0     # the furthest any scaled clock of this process has read

    def __init__(self, speed: float, window: int = 60) -> None:
        self.speed = speed
        self.start = (math.floor(max(time.time(), ScaledClock.latest) / window) + 1) * window - 1
        self.real0 = time.perf_counter()

    def __call__(self) -> float:
        now = self.start + (time.perf_counter() - self.real0) * self.speed
        ScaledClock.latest = max(ScaledClock.latest, now)
        return now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)


def rf_budget(stack: BenchStack, mode: Mode) -> list[Row]:
    """Several limiter clients (each a container: its own runtime, limiter and RF client) call RF as
    fast as the shared budget lets them, on a clock `budget_speed` times faster than real time
    (RF's simulator on the same clock). Counted from the simulator's log: calls answered per
    complete window, windows where RF saw more than its limit, refusals."""
    from chalicelib.config import Config
    from chalicelib.runtime import Runtime
    from infra.local.sims.referral_factory import RFSim

    clock = ScaledClock(mode.budget_speed)
    sim = RFSim(clock=clock).start()
    sim.add_campaign(CAMPAIGN, "Friends of Acme")
    config = Config.from_env({**os.environ, "RF_BASE_URL": sim.base_url})
    runtimes = [Runtime(config, clock=clock, sleeper=clock.sleep) for _ in range(mode.budget_clients)]
    end = clock.start + 1 + 60 * mode.budget_windows + 0.5
    errors: list[str] = []
    spent: list[float] = []   # when a client found the budget spent (a window without: the machine set the pace)

    def client(rt) -> None:
        while clock() < end:
            try:
                rt.rf().get_campaign(str(CAMPAIGN))
            except Exception as exc:   # the budget is spent: the work would go back to the queue
                wait = getattr(exc, "retry_after", None)
                if wait is None:
                    errors.append(f"{type(exc).__name__}: {exc}")
                spent.append(clock())
                clock.sleep(min(wait or 1.0, 5.0))

    threads = [threading.Thread(target=client, args=(rt,), name=f"limiter-{i}") for i, rt in enumerate(runtimes)]
    try:
        with stack.counter.measure() as counts:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sim.stop()
    per_window: dict[int, int] = {}
    refused = 0
    for rec in sim.requests:
        window = int(rec["time"] // 60 * 60)
        per_window[window] = per_window.get(window, 0) + 1
        refused += rec["status"] != 200
    complete = [per_window.get(int(clock.start + 1 + 60 * k), 0) for k in range(mode.budget_windows)]
    over = sum(1 for v in per_window.values() if v > sim.rate_limit)
    limiter_writes = counts.dynamodb_writes / max(1, len(sim.requests))
    if errors:
        raise RuntimeError(f"RF budget: unexpected errors, e.g. {errors[0]}")
    starts = [int(clock.start + 1 + 60 * k) for k in range(mode.budget_windows)]
    reached = sum(any(w <= t < w + 60 for t in spent) for w in starts)
    return [Row(f"RF calls/min, {mode.budget_clients} limiter clients in parallel", float(sim.rate_limit),
                sum(complete) / len(complete), unit="/min", kind="share",
                note=f"floor: RF's limit; {over} windows over it, {refused} refused; "
                     f"{sum(v > config.rf_calls_per_minute for v in per_window.values())} over the budget "
                     f"(RF_CALLS_PER_MINUTE={config.rf_calls_per_minute}), busiest {max(per_window.values())}; "
                     f"{mode.budget_windows} windows at {mode.budget_speed:g}× speed, the budget reached in "
                     f"{reached} (else this machine set the pace)"),
            Row("DynamoDB writes per RF call (shared limiter)", None, limiter_writes, unit="")]


# --- contact sync --------------------------------------------------------------------------------

def sync_rate(stack: BenchStack, mode: Mode) -> list[Row]:
    """A contact sync run (a segment of `sync_contacts`) worked by `sync_workers` containers at once
    (each a runtime of its own: its limiter, its clients, its threads), as Lambda's event source
    drives them, on moto and on simulators whose clock runs `sync_speed` times faster than real time.
    Floor: RF's limit (600 calls/min); each new referrer needs one RF call. Counted from the RF
    simulator's log over complete windows."""
    from chalicelib.config import Config
    from chalicelib.runtime import Runtime
    from chalicelib.services import sync
    from chalicelib.services.connections import connect_rf, connect_workspace
    from chalicelib.services.worker import handle_batch
    from infra.local.sims.intercom import IntercomSim
    from infra.local.sims.referral_factory import RFSim

    clock = ScaledClock(mode.sync_speed)
    intercom = IntercomSim(app_id="benchsync", clock=clock).start()
    rf = RFSim(clock=clock).start()
    campaign = "77"
    rf.add_campaign(77, "Bench sync")
    intercom.define_attribute("referral_link", "string")
    members = [intercom.add_contact(f"sync{i}@example.com", role="user", name=f"Sync {i}")["id"]
               for i in range(mode.sync_contacts)]
    segment = intercom.add_segment("Bench", members)["id"]
    queue_url = stack.sqs.create_queue(QueueName="bench-sync")["QueueUrl"]
    env = {**os.environ, "INTERCOM_BASE_URL": intercom.base_url, "RF_BASE_URL": rf.base_url,
           "BRIDGE_QUEUE_URL": queue_url, "BRIDGE_SECRETS_PATH": "/bench-sync"}
    config = Config.from_env(env)
    operator = Runtime(config, clock=clock, sleeper=clock.sleep)
    connect_workspace(operator, "benchsync", "sim-token", client_secret="bench-intercom")
    connect_rf(operator, "rf-token", "bench-rf")
    operator.store.settings.put(campaign, {
        "campaign_id": campaign, "workspace": "benchsync",
        "sync": {"source": "segment", "segment_id": segment, "referral_link_attribute": "custom_attributes.referral_link",
                 "fields": [{"from": "email", "to": "email"}, {"from": "name", "to": "first_name"}]}}, "benchsync")
    stop = threading.Event()
    arn = stack.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    threads = []
    for i in range(mode.sync_workers):
        rt = Runtime(config, clock=clock, sleeper=clock.sleep)
        poller = QueuePoller(aws_client("sqs", stack.endpoint, stack.region), queue_url, arn,
                             lambda event, context, rt=rt: handle_batch(event["Records"], rt,
                                                                        context.get_remaining_time_in_millis),
                             timeout_seconds=900)
        threads.append(threading.Thread(target=poller.run_forever, args=(stop, 0.05, 1), daemon=True))
    try:
        for t in threads:
            t.start()
        started = clock()
        sync.start(operator.deps, campaign)
        wait_until(lambda: (operator.store.sync.run(campaign) or None) is not None
                   and operator.store.sync.run(campaign).status != "running", timeout=1800, what="the sync run")
        took = clock() - started
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        intercom.stop()
        rf.stop()
    run = operator.store.sync.run(campaign)
    creates = sorted(r["time"] for r in rf.requests if r["method"] == "POST")
    first, last = creates[0], creates[-1]
    per_window: dict[int, int] = {}
    for r in rf.requests:
        per_window[int(r["time"] // 60 * 60)] = per_window.get(int(r["time"] // 60 * 60), 0) + 1
    complete = [n for w, n in per_window.items() if w >= first and w + 60 <= last]
    over = sum(n > rf.rate_limit for n in per_window.values())
    rate = sum(complete) / len(complete) if complete else len(creates) / ((last - first) / 60)
    whole = run.counts.get("enrolled", 0) / (took / 60)
    hours = 100_000 / (rate or 1) / 60
    return [Row(f"sync: RF calls/min, {mode.sync_workers} workers, a {mode.sync_contacts:,}-contact segment",
                float(rf.rate_limit), rate, unit="/min", kind="share",
                note=f"floor: RF's limit; {len(complete)} complete windows, busiest {max(per_window.values())}, "
                     f"{over} over RF's limit, {sum(r['status'] == 429 for r in rf.requests)} answered 429; "
                     f"{mode.sync_speed:g}x speed; 100,000 contacts at this rate: {hours:.1f} h"),
            Row("sync: contacts enrolled/min, start to end (checks, first page, last write-back included)",
                float(rf.rate_limit), whole, unit="/min", kind="share",
                note=f"{run.counts.get('enrolled', 0):,} enrolled in {took / 60:.1f} simulated min, status {run.status}")]


# --- cold start ------------------------------------------------------------------------------------

#: The children's bytecode cache, whatever this shell's PYTHONDONTWRITEBYTECODE: the warm-up run
#: compiles, the measured runs read .pyc files (as a machine with a warm disk would).
PYCACHE = ROOT / ".local" / "bench-pycache"


#: The worker child runs as the worker's Lambda container does: Lambda names the function (Chalice's
#: <app>-<stage>-worker), and the app's init (handlers.prewarm) then makes the clients and imports
#: the worker's modules with the collector off, and freezes them, before the first record.
LAMBDA_WORKER = "rf-intercom-bridge-bench-worker"


def _child(kind: str, stdin: str = "") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "AWS_LAMBDA_FUNCTION_NAME")}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(PYCACHE)})
    if kind == "worker":
        env["AWS_LAMBDA_FUNCTION_NAME"] = LAMBDA_WORKER
    done = subprocess.run([sys.executable, "-m", "bench.coldstart", kind], input=stdin, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_COLDSTART ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cold start child {kind} failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(lines[-1].split(" ", 1)[1])
    if result.get("error"):
        raise RuntimeError(f"cold start child {kind}: {result['error']}")
    if kind == "worker" and not result["prewarmed"]:
        raise RuntimeError("cold start child worker: the app's init did not run as in a Lambda container")
    return result


def _one_message_event(stack: BenchStack) -> tuple[dict, str]:
    got = stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=1, AttributeNames=["All"],
                                    MessageAttributeNames=["All"], VisibilityTimeout=120, WaitTimeSeconds=1)
    [message] = got["Messages"]
    return build_sqs_event([message], stack.poller.queue_arn), message["ReceiptHandle"]


def cold_start(stack: BenchStack, mode: Mode) -> list[Row]:
    """A fresh process (as a new Lambda container): import the app, then its first invocation of the
    worker on one record, timed inside the process; beside a process that imports boto3, creates an
    SQS client and makes one receive. The record is real: queued by the webhook, received from the
    work queue, deleted after (as the event source would). A third process, the same floor after
    importing the libraries the product's stack fixes, shows what of the ratio no code of ours can
    remove."""
    session = requests.Session()
    stack.purge(stack.queue_url)

    def join_event() -> tuple[dict, str]:
        stack.post(session, stack.join_request(stack.new_lead()))
        return _one_message_event(stack)

    def contact_event() -> tuple[dict, str]:
        lead = stack.new_lead()                       # a linked lead, awaiting qualification
        stack.post(session, stack.join_request(lead))
        stack.poller.drain()
        contact = stack.contact(lead["email"])
        stack.intercom.update_contact(contact["id"], name="Renamed")   # a change that does not qualify
        stack.post(session, stack.intercom_request(contact["id"]))
        return _one_message_event(stack)

    def project(make) -> dict:
        event, receipt = make()
        result = _child("worker", json.dumps(event))
        stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=receipt)
        return result

    floor_env = {"BENCH_FLOOR_QUEUE_URL": stack.floor_queue_url}
    os.environ.update(floor_env)
    samples: dict[str, list[dict]] = {"floor": [], "stack": [], "contact": [], "join": []}
    for i in range(mode.cold_samples + 1):              # the first of each is a warm-up (.pyc files)
        got = {"floor": _child("floor"), "stack": _child("stack"), "contact": project(contact_event),
               "join": project(join_event)}
        if i:
            for k, v in got.items():
                samples[k].append(v)
    floor = [s["total"] for s in samples["floor"]]
    stack_floor = median([s["total"] for s in samples["stack"]])
    rows = [Row("cold start of the stack alone (its imports + the floor)", median(floor),
                stack_floor, unit="s", note="what any worker on chalice, pydantic, PynamoDB, Powertools and "
                                            "requests pays before its own code")]
    for kind, name in (("contact", "an Intercom event"), ("join", "a join")):
        totals = [s["total"] for s in samples[kind]]
        imports = median([s["import"] for s in samples[kind]])
        detail = ""
        if all("detail" in s for s in samples[kind]):          # BENCH_COLDSTART_DETAIL=1
            clients, calls = ([s["detail"][k] for s in samples[kind]] for k in ("clients", "aws_calls"))
            detail = (f"; {clients[0][0]} clients {median([c[1] for c in clients]) * 1000:.0f} ms, "
                      f"{calls[0][0]} AWS calls {median([c[1] for c in calls]) * 1000:.0f} ms")
        rows.append(Row(f"worker cold start, {name}", median(floor), median(totals), unit="s",
                        note=f"n={len(totals)}; import {imports:.2f} s{detail}; floor: import boto3 + client + 1 receive "
                             f"({median([s['import'] for s in samples['floor']]):.2f} s import); "
                             f"{median(totals) / stack_floor:.2f}× the stack alone"))
    return rows


FIGURES = {"ack": webhook_ack, "e2e": end_to_end, "counts": calls_per_join, "throughput": joins_per_minute,
           "budget": rf_budget, "sync": sync_rate, "cold": cold_start}
