"""The alarms as CloudWatch evaluates them, on the metric the code emits while the fault they watch lasts:
each notifies once when it begins (ALARM) and once when it ends (OK), not again and again in between.

The work a fault holds back waits in the queue and comes back at least every SQS's longest delay (a few
seconds more: the worker's jitter, the event source's polling); each time it meets the fault again, the
metric counts it. Between those returns nothing is emitted, and the alarms treat missing data as not
breaching: an alarm whose window is shorter than that gap says OK while the fault lasts, then ALARM again.
Likewise, dead letters a command holds hidden while it reads them are still there."""
from __future__ import annotations

import pytest

from chalicelib.adapters.queue import MAX_DELAY_SECONDS

from .conftest import ROOT
from .test_template import load_template

LATE = 5.0      # seconds a waiting record comes back after its delay, at most (jitter, polling)


def evaluate(alarm: dict, samples: dict[str, list[tuple[float, float]]], until: float) -> list[tuple[str, float]]:
    """The alarm's state changes, (state, when), as CloudWatch evaluates it at the end of each period on the
    `samples` of each metric (name -> (time, value)): the last EvaluationPeriods datapoints (each period's
    samples by the alarm's statistic; none, not breaching), of which DatapointsToAlarm over the threshold are an
    ALARM. Metric math (a sum of FILL(metric, 0)) as the sum of its metrics' datapoints."""
    stats = [m["MetricStat"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
    if stats:
        [expression] = [m["Expression"] for m in alarm["Metrics"] if m["ReturnData"]]
        assert expression == " + ".join(f"FILL({m['Id']}, 0)" for m in alarm["Metrics"] if "MetricStat" in m)
    watched = [(s["Metric"]["MetricName"], s["Stat"], s["Period"]) for s in stats] or [
        (alarm["MetricName"], alarm["Statistic"], alarm["Period"])]
    [period] = {p for _, _, p in watched}
    assert alarm["TreatMissingData"] == "notBreaching" and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    n, m = alarm["EvaluationPeriods"], alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"])
    datapoints: dict[int, float] = {}
    for name, stat, _ in watched:
        by_period: dict[int, list[float]] = {}
        for t, value in samples.get(name, []):
            by_period.setdefault(int(t // period), []).append(value)
        for p, values in by_period.items():
            datapoints[p] = datapoints.get(p, 0) + {"Sum": sum, "Maximum": max}[stat](values)
    states, state = [], "OK"
    for end in range(1, int(until // period) + 1):
        breaching = sum(datapoints.get(p, 0) > alarm["Threshold"] for p in range(end - n, end))
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


#: What the README says of each alarm: it clears within this long of the vendor's answering again (at the latest, the
#: last record that met the fault did so as the vendor came back).
CLEARS = {"RFBlockedAlarm": ("clears within half an hour of RF answering again", 1800),
          "VendorOutageAlarm": ("clears within 45 minutes of their answering again", 2700)}


@pytest.mark.parametrize("alarm", sorted(CLEARS))
@pytest.mark.parametrize("gap", [MAX_DELAY_SECONDS, MAX_DELAY_SECONDS + LATE])
@pytest.mark.parametrize("start", [0.0, 130.0, 299.0])
def test_an_alarm_notifies_once_when_its_fault_begins_and_once_when_it_ends_not_every_quarter_hour(alarm, gap, start):
    """RF's IP block (RFBlocked: a record meets the open circuit each time it comes back, every recheck, at most
    every SQS's longest delay) and a vendor's outage (IntercomUnavailable / RFUnavailable: a waiting record
    comes back at most every outage.LONGEST_WAIT, SQS's longest delay), each lasting 6 hours, beginning
    anywhere in a period."""
    props = load_template()["Resources"][alarm]["Properties"]
    met = returns(start, start + 6 * 3600, gap)
    states = evaluate(props, counted(props, met), met[-1] + 3 * 3600)
    assert [s for s, _ in states] == ["ALARM", "OK"], states
    (_, fired), (_, cleared) = states
    assert fired - start <= 2 * MAX_DELAY_SECONDS + LATE            # told within half an hour of the fault
    said, within = CLEARS[alarm]
    assert cleared - met[-1] <= within                               # and that it ended, as the README says
    assert said in " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())


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
    along: the alarm emails once when they arrive (README: "The dead-letter alarm emails once, when the first
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
