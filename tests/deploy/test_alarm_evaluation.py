"""The alarms as CloudWatch evaluates them, on the metric the code emits while the fault they watch lasts:
each notifies once when it begins (ALARM) and once when it ends (OK), not again and again in between.

The work a fault holds back waits in the queue and comes back at least every SQS's longest delay (a few
seconds more: the worker's jitter, the event source's polling); each time it meets the fault again, the
metric counts it. Between those returns nothing is emitted, and the alarms treat missing data as not
breaching: an alarm whose window is shorter than that gap says OK while the fault lasts, then ALARM again.
Likewise, dead letters a command holds hidden while it reads them are still there."""
from __future__ import annotations

import heapq
import math
import re

import pytest

from chalicelib.adapters.queue import MAX_DELAY_SECONDS
from tests.support.docs import section

from .test_template import load_template

LATE = 5.0      # seconds a waiting record comes back after its delay, at most (jitter, polling)


def evaluate(alarm: dict, samples: dict[str, list[tuple[float, float]]], until: float) -> list[tuple[str, float]]:
    """The alarm's state changes, (state, when), as CloudWatch evaluates it at the end of each period on the
    `samples` of each metric (name -> (time, value)): the last EvaluationPeriods datapoints (each period's
    samples by the alarm's statistic; none, missing), of which DatapointsToAlarm breaching (over, or under, the
    threshold, as its ComparisonOperator says; a missing one as its TreatMissingData says) are an ALARM. Metric
    math on each period's datapoints of its metrics (missing: None), its FILL, IF, AND, comparisons and + as
    CloudWatch reads them. The periods before the first (before time 0) were fine: none breaches."""
    stats = {m["Id"]: m["MetricStat"] for m in alarm.get("Metrics", []) if "MetricStat" in m}
    watched = {i: (s["Metric"]["MetricName"], s["Stat"], s["Period"]) for i, s in stats.items()} or {
        "m": (alarm["MetricName"], alarm.get("Statistic") or alarm["ExtendedStatistic"], alarm["Period"])}
    [expression] = [m["Expression"] for m in alarm["Metrics"] if m["ReturnData"]] if stats else ["m"]
    [period] = {p for _, _, p in watched.values()}
    missing = {"notBreaching": False, "breaching": True}[alarm["TreatMissingData"]]
    compare = {"GreaterThanThreshold": lambda v: v > alarm["Threshold"],
               "LessThanThreshold": lambda v: v < alarm["Threshold"]}[alarm["ComparisonOperator"]]
    n, m = alarm["EvaluationPeriods"], alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"])
    of: dict[str, dict[int, float]] = {}
    for i, (name, stat, _) in watched.items():
        by_period: dict[int, list[float]] = {}
        for t, value in samples.get(name, []):
            by_period.setdefault(int(t // period), []).append(value)
        of[i] = {p: statistic(stat, values) for p, values in by_period.items()}
    code = compile(re.sub(r"\bAND\b", "and", expression), "<metric math>", "eval")
    functions = {"FILL": lambda value, default: default if value is None else value,
                 "IF": lambda condition, then, otherwise: then if condition else otherwise}
    datapoints = {p: eval(code, dict(functions), {i: of[i].get(p) for i in watched})   # noqa: S307 (the template's)
                  for p in range(int(until // period) + 1)}
    states, state = [], "OK"
    for end in range(1, int(until // period) + 1):
        breaching = sum(p >= 0 and (missing if datapoints.get(p) is None else compare(datapoints[p]))
                        for p in range(end - n, end))
        now = "ALARM" if breaching >= m else "OK"
        if now != state:
            states.append((now, end * period))
            state = now
    return states


def statistic(stat: str, values: list[float]) -> float:
    """A period's datapoint of its samples: Sum, Maximum, or a percentile (pNN: the nearest rank, as CloudWatch
    reads a period's few values)."""
    if stat.startswith("p"):
        ranked = sorted(values)
        return ranked[max(0, math.ceil(len(ranked) * float(stat[1:]) / 100) - 1)]
    return {"Sum": sum, "Maximum": max}[stat](values)


def counted(alarm: dict, times: list[float]) -> dict[str, list[tuple[float, float]]]:
    """A count (1) at each of `times` of the (first) metric the alarm reads: one vendor's outage."""
    [first, *_] = [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m] or [alarm]
    return {first["MetricName"]: [(t, 1.0) for t in times]}


def returns(start: float, end: float, gap: float) -> list[float]:
    """When a record held back from `start` to `end` meets the fault, coming back every `gap` seconds."""
    out, t = [], start
    while t < end:
        out.append(t)
        t += gap
    return out


#: What the docs say of each alarm: it clears within this long of the vendor's answering again (at the latest, the
#: last record that met the fault did so as the vendor came back).
CLEARS = {"RFBlockedAlarm": ("clears within half an hour of RF answering again", 1800),
          "VendorOutageAlarm": ("clears within 45 minutes of their answering again", 2700),
          "IntercomTokenRefusedAlarm": ("clears within half an hour of the reconnect", 1800)}


@pytest.mark.parametrize("alarm", sorted(CLEARS))
@pytest.mark.parametrize("gap", [MAX_DELAY_SECONDS, MAX_DELAY_SECONDS + LATE])
@pytest.mark.parametrize("start", [0.0, 130.0, 299.0])
def test_an_alarm_notifies_once_when_its_fault_begins_and_once_when_it_ends_not_every_quarter_hour(alarm, gap, start):
    """RF's IP block (RFBlocked: a record meets the open circuit each time it comes back, every recheck, at most
    every SQS's longest delay) and a vendor's outage (IntercomUnavailable / RFUnavailable: a waiting record
    comes back at most every outage.LONGEST_WAIT, SQS's longest delay) and a workspace's refused token
    (IntercomTokenRefused: its work waits as for an outage), each lasting 6 hours, beginning anywhere in a period."""
    props = load_template()["Resources"][alarm]["Properties"]
    met = returns(start, start + 6 * 3600, gap)
    states = evaluate(props, counted(props, met), met[-1] + 3 * 3600)
    assert [s for s, _ in states] == ["ALARM", "OK"], states
    (_, fired), (_, cleared) = states
    assert fired - start <= 2 * MAX_DELAY_SECONDS + LATE            # told within half an hour of the fault
    said, within = CLEARS[alarm]
    assert cleared - met[-1] <= within                               # and that it ended, as the docs say
    assert said in readme()


def test_the_evaluation_sees_an_alarm_that_says_ok_while_its_fault_lasts():
    """A 5-minute window on a metric emitted every quarter-hour: ALARM, OK, ALARM, OK... (the check can fail)."""
    alarm = {"MetricName": "RFBlocked", "Period": 300, "EvaluationPeriods": 1, "Threshold": 0, "Statistic": "Sum",
             "TreatMissingData": "notBreaching", "ComparisonOperator": "GreaterThanThreshold"}
    states = evaluate(alarm, {"RFBlocked": [(t, 1.0) for t in returns(130.0, 130.0 + 3600, MAX_DELAY_SECONDS)]},
                      2 * 3600)
    assert [s for s, _ in states] == ["ALARM", "OK"] * 4


def test_the_dead_letter_alarm_stays_on_while_a_command_holds_the_letters_to_read_them():
    """Three letters wait in the dead-letter queue for 3 hours; meanwhile `bridge dlq list` (or `doctor`,
    `forget`: a scan of thousands of letters takes minutes) holds them all hidden for 12 minutes, and makes them
    visible again. SQS says each minute how many are visible and how many are held. The letters were there all
    along: the alarm emails once when they arrive (docs/operating.md: "The dead-letter alarm emails once, when the first
    letter arrives"), not OK while they are read, then ALARM again."""
    props = load_template()["Resources"]["DeadLetterAlarm"]["Properties"]
    arrive, read, done, replayed = 1000, 4000, 4000 + 12 * 60, 1000 + 3 * 3600
    minutes = range(0, replayed + 3600, 60)
    held = [t for t in minutes if read <= t < done]
    samples = {"ApproximateNumberOfMessagesVisible": [(t, 3.0 if arrive <= t < replayed and t not in held else 0.0)
                                                      for t in minutes],
               "ApproximateNumberOfMessagesNotVisible": [(t, 3.0 if t in held else 0.0) for t in minutes]}
    states = evaluate(props, samples, replayed + 3600)
    assert [s for s, _ in states] == ["ALARM", "OK"], states
    assert states[0][1] - arrive <= 600 and replayed < states[1][1] <= replayed + 600


def readme() -> str:
    """What the docs say of the alarms (docs/operating.md, Operating it), its whitespace as single spaces: that section
    alone, as "two runs in a row" is also said of the chaos run (docs/chaos.md)."""
    return " ".join(section("Operating it").split())


@pytest.mark.parametrize("gap", [60.0, 300.0, 900.0])         # a webhook every minute, every 5 and 15 minutes
@pytest.mark.parametrize("start", [0.0, 130.0, 299.0])
def test_the_api_errors_alarm_fires_while_the_edge_refuses_every_webhook_and_clears_after(gap, start):
    """The secret store, the table or the queue fails for 2 hours: every webhook gets our 503 (API Gateway counts
    5XXError), however sparse they come, down to one a quarter-hour. Told as the second period with a refusal ends,
    and once that it ended, within half an hour of the last one, as the docs say."""
    props = load_template()["Resources"]["ApiErrorsAlarm"]["Properties"]
    refused = returns(start, start + 2 * 3600, gap)
    states = evaluate(props, counted(props, refused), refused[-1] + 2 * 3600)
    assert [s for s, _ in states] == ["ALARM", "OK"], states
    (_, fired), (_, cleared) = states
    periods = sorted({int(t // props["Period"]) for t in refused})
    assert fired == (periods[1] + 1) * props["Period"] and cleared - refused[-1] <= 1800
    assert "clears within half an hour of the last `5xx`" in readme()
    assert "a webhook at least every quarter-hour" in readme()


@pytest.mark.parametrize("refused", [[4000.0], returns(130.0, 86400.0, 3600.0)], ids=["one", "one an hour"])
def test_the_api_errors_alarm_says_nothing_of_a_stray_503(refused):
    """A call the edge makes throttled once (a 503, and the sender's webhook refused): once, or once an hour
    all day, is no fault that lasts."""
    props = load_template()["Resources"]["ApiErrorsAlarm"]["Properties"]
    assert evaluate(props, counted(props, refused), 2 * 86400) == []


def reconciliations(period: float, offset: float, failing, until: float, took: float) -> dict:
    """The reconcile function's Invocations and Errors (stamped when each try began): a run every `period` from
    `offset`, of which run k's first failing(k) tries fail (3: all of them). Lambda tries a failed run twice
    more, 1 minute after its first try ends, then 2 minutes after the second; each try takes `took` seconds."""
    invocations, errors, k = [], [], 0
    while (t := offset + k * period) < until:
        failed = failing(k)
        for i, at in enumerate([t, t + took + 60, t + 2 * took + 180][:min(failed + 1, 3)]):
            invocations.append((at, 1.0))
            errors.append((at, 1.0 if i < failed else 0.0))
        k += 1
    return {"Invocations": invocations, "Errors": errors}


FAILING = {  # run k: how many of its tries fail; and whether the alarm emails
    "every run for 6 hours": (lambda k: 3 if 4 <= k < 4 + 24 else 0, True),
    "two runs in a row": (lambda k: 3 if k in (4, 5) else 0, True),
    "one run": (lambda k: 3 if k == 4 else 0, False),
    "every other run": (lambda k: 3 if k % 2 else 0, False),
    "every run's first try, its retry succeeding": (lambda k: 1, False),
}


@pytest.mark.parametrize("case", sorted(FAILING))
@pytest.mark.parametrize("period", [900, 300])                  # RECONCILE_EVERY_MINUTES 15 (default) and 5
@pytest.mark.parametrize("offset", [0.0, 0.4, 0.8, 0.97])       # where in a period the schedule fires
@pytest.mark.parametrize("took", [1.0, 120.0])                   # a try that fails at once, or times out
def test_the_reconcile_alarm_emails_once_runs_fail_two_in_a_row_not_for_one_nor_for_a_retry_that_worked(
        case, period, offset, took):
    """Lambda's retries of a failed run may fall in the next period, beside the next run: a period counts only
    when every try in it failed, so one failed run never fires it, wherever its retries fall."""
    failing, fires = FAILING[case]
    props = load_template()["Resources"]["ReconcileFailingAlarm"]["Properties"]
    assert {m["MetricStat"]["Period"]["Ref"] for m in props["Metrics"] if "MetricStat" in m} == {"ReconcilePeriod"}
    for m in props["Metrics"]:                   # as `make deploy` sets it from the stage's schedule
        if "MetricStat" in m:
            m["MetricStat"]["Period"] = period
    until = (4 + 24 + 8) * period
    states = evaluate(props, reconciliations(period, offset * period, failing, until, took), until)
    assert [s for s, _ in states] == (["ALARM", "OK"] if fires else []), states
    if fires:
        first = offset * period + 4 * period
        recovered = min(offset * period + k * period for k in range(5, 40) if not failing(k))
        (_, fired), (_, cleared) = states
        assert fired <= first + 2 * period and recovered < cleared <= recovered + period
    assert "two runs in a row" in readme()


# ---------------------------------------------------------------------------------------------------------------
# The work queue's oldest message: a worker that takes no work (its SQS trigger disabled, its concurrency 0)
# ---------------------------------------------------------------------------------------------------------------

def deployed() -> tuple[float, int, float]:
    """As `make deploy` sets them for prod: the work queue's visibility timeout (a failed try comes back after it),
    BRIDGE_MAX_ATTEMPTS (the tries before the worker dead-letters a record) and the worker's timeout (a try's
    longest)."""
    import json

    from infra import deploy

    base = json.loads(deploy.BASE_CONFIG.read_text())
    params = {p["ParameterKey"]: p["ParameterValue"] for p in deploy.stack_parameters(
        "prod", base, None, None, deploy.template_parameters(deploy.TEMPLATE.read_text()))}
    tries = int(params["MaxReceiveCount"]) // 2
    return float(params["VisibilityTimeout"]), tries, float(deploy.worker_timeout(base, "prod"))


def oldest(copies: list[tuple[float, float]], until: float, every: float = 60.0) -> dict:
    """SQS's ApproximateAgeOfOldestMessage of the work queue each `every` seconds (0 when it is empty: the worker's
    event source polls it, so SQS reports it), from the messages it holds, each (sent, gone): a copy sent back to
    wait is a new message, its age from its own sending; a failed try's record is the same message, its age from
    when it was first sent."""
    ages, queued, held = [], sorted(copies), []         # held: a heap of (sent, gone), the oldest first
    i = 0
    for t in returns(0.0, until, every):
        while i < len(queued) and queued[i][0] <= t:
            heapq.heappush(held, queued[i])
            i += 1
        while held and held[0][1] <= t:                  # the oldest gone: the next oldest may be held still
            heapq.heappop(held)
        ages.append((t, t - held[0][0] if held else 0.0))
    return {"ApproximateAgeOfOldestMessage": ages}


def waiting(start: float, end: float, delay: float) -> list[tuple[float, float]]:
    """A record that waits from `start` to `end` (RF's block, a vendor's outage, a 429's pause): each time it comes
    back (its delay, a few seconds late) the worker sends a copy back with the delay and deletes it."""
    return [(t, t + delay + LATE) for t in returns(start, end, delay + LATE)]


def test_the_work_queue_alarm_fires_when_the_worker_takes_no_work_and_clears_once_it_does():
    """The worker's SQS trigger is disabled (or its concurrency set to 0) for 6 hours, while a join arrives every
    10 minutes: none is received, none is dead-lettered, the dead-letters alarm says nothing; SQS would delete them
    14 days after they were sent. This alarm says it, once, and once that it ended."""
    props = load_template()["Resources"]["WorkQueueStalledAlarm"]["Properties"]
    stop, resume = 3600.0, 3600.0 + 6 * 3600
    joins = returns(0.0, 12 * 3600, 600.0)
    copies = [(t, t + 2 if not stop <= t < resume else resume + 30) for t in joins]
    states = evaluate(props, oldest(copies, 14 * 3600), 14 * 3600)
    assert [s for s, _ in states] == ["ALARM", "OK"], states
    (_, fired), (_, cleared) = states
    first = min(t for t in joins if t >= stop)
    assert props["Threshold"] < fired - first <= props["Threshold"] + (props["EvaluationPeriods"] + 1) * props["Period"]
    assert resume < cleared <= resume + 2 * props["Period"]
    said = " ".join(props["AlarmDescription"]["Fn::Sub"].split())
    for check in ("list-event-source-mappings", "concurrency", "/aws/lambda/${Prefix}-worker", "RFBlocked"):
        assert check in said, check


def test_the_work_queue_alarm_fires_for_one_message_the_worker_never_takes():
    """One join arrives, then nothing for hours: the queue's only message still ages, and is told."""
    props = load_template()["Resources"]["WorkQueueStalledAlarm"]["Properties"]
    states = evaluate(props, oldest([(1000.0, 10 * 3600)], 12 * 3600), 12 * 3600)
    assert [s for s, _ in states] == ["ALARM", "OK"], states


@pytest.mark.parametrize("delay", [MAX_DELAY_SECONDS, 30.0], ids=["longest wait", "a 429's pause"])
def test_the_work_queue_alarm_says_nothing_of_work_that_waits_for_rf_a_vendor_or_a_rate_limit(delay):
    """RF blocks the bridge (or a vendor is out, or a workspace's token is refused) for 24 hours, joins arriving
    every 10 minutes meanwhile: each waits as a copy sent back with a delay (adapters/queue.defer: at most SQS's longest,
    15 minutes) and the original deleted, so no message in the queue is older than that wait. The RF-blocked (or
    vendor-outage) alarm says it; this one does not, however long the block lasts."""
    from chalicelib.config import Config
    from chalicelib.domain.outage import LONGEST_WAIT

    assert min(Config.from_env({}).rf_block_recheck, MAX_DELAY_SECONDS) == LONGEST_WAIT == MAX_DELAY_SECONDS
    props = load_template()["Resources"]["WorkQueueStalledAlarm"]["Properties"]
    day = 24 * 3600.0
    copies = [c for t in returns(0.0, day, 600.0) for c in waiting(t, day, delay)]
    assert evaluate(props, oldest(copies, day + 3600), day + 3600) == []


def retry_plan(asked: float = math.inf) -> float:
    """The oldest a record that fails every try grows before it is dead-lettered, by the worker's retry plan as
    `make deploy` sets it: BRIDGE_MAX_ATTEMPTS tries, each after the last one's wait: the queue's visibility timeout
    (counted from the try's receipt), or a failure's own `Retry-After` (`asked`; by default the longest) as the
    worker honours it (at most worker.LONGEST_RETRY_WAIT, counted from the try's end: at most the worker's timeout
    after its receipt)."""
    from chalicelib.services.worker import LONGEST_RETRY_WAIT
    visibility, tries, timeout = deployed()
    return (tries - 1) * max(visibility, timeout + min(asked, LONGEST_RETRY_WAIT)) + timeout


def test_the_work_queue_alarms_threshold_outlasts_the_workers_retry_plan():
    """Raising BRIDGE_MAX_ATTEMPTS, the worker's timeout (its visibility timeout follows) or the longest Retry-After
    a failed try honours so far that a failing record's tries outlast the threshold makes the alarm fire on a worker
    that works: this says so, before a deploy does. (The waits a record spends as fresh copies, each at most SQS's
    longest delay, never age a message: adapters/queue.defer.)"""
    props = load_template()["Resources"]["WorkQueueStalledAlarm"]["Properties"]
    longest = retry_plan()
    assert longest < props["Threshold"], (longest, props["Threshold"])
    assert MAX_DELAY_SECONDS + LATE < props["Threshold"]


def test_the_work_queue_alarm_says_nothing_of_records_whose_vendor_asks_hours_between_tries():
    """A record fails each try with a vendor's `Retry-After` of two hours, on a failure not waited out as an outage:
    the worker honours it up to LONGEST_RETRY_WAIT, so the record is dead-lettered (the dead-letters alarm says it)
    before the queue's oldest message is an hour old. A few such records, 12 hours: no ALARM."""
    aged = retry_plan(asked=2 * 3600.0)
    copies = [(t, t + aged) for t in returns(0.0, 12 * 3600, 3600.0)]
    props = load_template()["Resources"]["WorkQueueStalledAlarm"]["Properties"]
    assert evaluate(props, oldest(copies, 13 * 3600), 13 * 3600) == []


@pytest.mark.parametrize("took", [1.0, "timeout"])
def test_the_work_queue_alarm_says_nothing_of_records_that_fail_every_try_until_dead_lettered(took):
    """A record fails each try (a bug, a refusal): it is the same message each time (its visibility changed, not a
    copy), back after the queue's visibility timeout, BRIDGE_MAX_ATTEMPTS times, then dead-lettered (the dead-letters
    alarm says it). One such record arriving every 5 minutes for 12 hours, each try taking a second or the worker's
    whole timeout: no message grows older than the alarm's threshold."""
    visibility, tries, timeout = deployed()
    spent = timeout if took == "timeout" else float(took)
    props = load_template()["Resources"]["WorkQueueStalledAlarm"]["Properties"]
    assert props["Threshold"] > (tries - 1) * visibility + timeout > MAX_DELAY_SECONDS + LATE
    copies = [(t, t + (tries - 1) * visibility + spent) for t in returns(0.0, 12 * 3600, 300.0)]
    assert evaluate(props, oldest(copies, 13 * 3600), 13 * 3600) == []


def test_the_work_queue_alarm_says_nothing_of_an_idle_stack():
    """No work at all: SQS reports an empty queue's age as 0, or nothing (a queue nobody polls): neither fires."""
    props = load_template()["Resources"]["WorkQueueStalledAlarm"]["Properties"]
    assert evaluate(props, oldest([], 7 * 86400.0, 300.0), 7 * 86400.0) == []
    assert evaluate(props, {}, 7 * 86400.0) == []


# ---------------------------------------------------------------------------------------------------------------
# Reconciliation that does not run at all (its schedule removed or disabled, its concurrency 0)
# ---------------------------------------------------------------------------------------------------------------

def scheduled(props: dict, period: int) -> dict:
    """The alarm as `make deploy` deploys it for a schedule of `period` seconds (ReconcilePeriod)."""
    assert props["Period"] == {"Ref": "ReconcilePeriod"}
    return {**props, "Period": period}


@pytest.mark.parametrize("period", [60, 300, 900, 43200])          # RECONCILE_EVERY_MINUTES 1, 5, 15 and 720
@pytest.mark.parametrize("offset", [0.0, 0.4, 0.97])               # where in a period the schedule fires
def test_the_reconcile_not_running_alarm_fires_when_the_runs_stop_and_clears_when_they_come_back(period, offset):
    """The schedule runs, then is disabled (or removed, or the function's concurrency set to 0) for 40 periods, then
    runs again: no invocation, so no error either, and the reconcile-failing alarm cannot see it. No Invocations is
    no data: breaching. Told within four periods of the last run, and once that it ended, at the next run's period."""
    props = scheduled(load_template()["Resources"]["ReconcileNotRunningAlarm"]["Properties"], period)
    stopped, back, until = 8, 48, 60 * period
    runs = reconciliations(period, offset * period, lambda k: 0, until, 1.0)["Invocations"]
    runs = [(t, v) for t, v in runs if not stopped * period <= t - offset * period < back * period]
    states = evaluate(props, {"Invocations": runs}, until)
    assert [s for s, _ in states] == ["ALARM", "OK"], states
    (_, fired), (_, cleared) = states
    last = max(t for t, _ in runs if t < stopped * period)
    assert last < fired <= last + (props["EvaluationPeriods"] + 1) * period
    assert back * period < cleared <= (back + 2) * period
    # Without treating no data as breaching, the same stop is never told (the check can fail).
    assert evaluate({**props, "TreatMissingData": "notBreaching"}, {"Invocations": runs}, until) == []


@pytest.mark.parametrize("case", sorted(FAILING))
@pytest.mark.parametrize("period", [60, 300, 900, 43200])
@pytest.mark.parametrize("offset", [0.0, 0.4, 0.97])
@pytest.mark.parametrize("late", [0.0, 50.0])                      # EventBridge firing a run up to a minute late
def test_the_reconcile_not_running_alarm_says_nothing_while_the_schedule_runs_failing_or_not(case, period, offset,
                                                                                          late):
    """Every run invoked, whether it fails (the reconcile-failing alarm's part) or not, some late, one in two: each
    period holds a run, or the one before it held two; never three periods in a row hold none."""
    failing, _ = FAILING[case]
    props = scheduled(load_template()["Resources"]["ReconcileNotRunningAlarm"]["Properties"], period)
    until = 60 * period
    runs = reconciliations(period, offset * period, failing, until, 1.0)["Invocations"]
    runs = [(t + (late if int((t - offset * period) // period) % 2 else 0.0), v) for t, v in runs]
    assert evaluate(props, {"Invocations": runs}, until) == []


def test_the_reconcile_not_running_alarm_is_one_cloudwatch_accepts_for_every_schedule():
    """PutMetricAlarm: Period x EvaluationPeriods at most 7 days, at most 1 day for a period under an hour; for every
    schedule `make deploy` accepts (RECONCILE_EVERY_MINUTES 1 to MAX_RECONCILE_MINUTES)."""
    from chalicelib.config import MAX_RECONCILE_MINUTES

    props = load_template()["Resources"]["ReconcileNotRunningAlarm"]["Properties"]
    for minutes in range(1, MAX_RECONCILE_MINUTES + 1):
        window = 60 * minutes * props["EvaluationPeriods"]
        assert window <= (86400 if 60 * minutes < 3600 else 7 * 86400), minutes
    assert 1 < props["DatapointsToAlarm"] == props["EvaluationPeriods"]       # one late run never fires it
    assert "reconcile-not-running" in readme() and "work-queue-stalled" in readme()


def delays(start: float, end: float, gap: float, late: float) -> list[tuple[float, float]]:
    """A qualification confirmed every `gap` seconds from `start` to `end`, each `late` seconds after its change."""
    return [(t, late) for t in returns(start, end, gap)]


def test_the_qualification_delay_alarm_fires_while_qualifications_stay_late_and_clears_after():
    """RF's budget is spent for 3 hours (or the worker falls behind): the qualifications confirmed meanwhile, one every
    5 minutes, are each 2 hours late. Told once, within an hour, and once that it ended, within half an hour of
    their being on time again (a few seconds each)."""
    props = load_template()["Resources"]["QualificationDelayAlarm"]["Properties"]
    assert (props["MetricName"], props["ExtendedStatistic"]) == ("QualificationDelaySeconds", "p95")
    samples = delays(0.0, 3600.0, 300.0, 3.0) + delays(3600.0, 4 * 3600.0, 300.0, 7200.0) + \
        delays(4 * 3600.0, 6 * 3600.0, 300.0, 3.0)
    states = evaluate(props, {"QualificationDelaySeconds": samples}, 6 * 3600)
    assert [s for s, _ in states] == ["ALARM", "OK"], states
    (_, fired), (_, cleared) = states
    assert fired - 3600 <= 3600 and cleared - 4 * 3600 <= 1800
    assert "qualifications-late" in readme() and "p95 of `QualificationDelaySeconds`" in readme()


@pytest.mark.parametrize("late", ["one caught late each quarter-hour among many", "a catch-up in one run",
                                  "one late an hour, alone"])
def test_the_qualification_delay_alarm_says_nothing_of_a_late_qualification_now_and_then(late):
    """A lost webhook caught late, among the quarter-hour's qualifications on time: its p95 is theirs. A rule change's
    (or a backfill's) catch-up qualifies, in one run, leads whose change was days ago: one period. A quiet stage
    whose one qualification an hour is late: the quarter-hours between have none (no data: not breaching)."""
    props = load_template()["Resources"]["QualificationDelayAlarm"]["Properties"]
    day = 24 * 3600.0
    samples = {"one caught late each quarter-hour among many": delays(0.0, day, 30.0, 2.0) + delays(
                   10.0, day, 900.0, 2400.0),
               "a catch-up in one run": delays(0.0, day, 300.0, 2.0) + delays(7200.0, 7260.0, 1.0, 5 * 86400.0),
               "one late an hour, alone": delays(0.0, day, 3600.0, 5400.0)}[late]
    assert evaluate(props, {"QualificationDelaySeconds": samples}, day + 3600) == []
