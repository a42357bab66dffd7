"""The alarms as CloudWatch evaluates them, on the metric the code emits while the fault they watch lasts:
each notifies once when it begins (ALARM) and once when it ends (OK), not again and again in between.

The work a fault holds back waits in the queue and comes back at least every SQS's longest delay (a few
seconds more: the worker's jitter, the event source's polling); each time it meets the fault again, the
metric counts it. Between those returns nothing is emitted, and the alarms treat missing data as not
breaching: an alarm whose window is shorter than that gap says OK while the fault lasts, then ALARM again.
Likewise, dead letters a command holds hidden while it reads them are still there."""
from __future__ import annotations

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
        "m": (alarm["MetricName"], alarm["Statistic"], alarm["Period"])}
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
        of[i] = {p: {"Sum": sum, "Maximum": max}[stat](values) for p, values in by_period.items()}
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
