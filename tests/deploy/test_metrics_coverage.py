"""Operators look, not dig: the dashboard and the alarms read the metrics the code emits (same namespace, name,
dimension and unit), and every metric the code emits is on the dashboard or said here why not. Static: the code's
count(...) and seconds(...) calls (test_template.emitted_units) against infra/template.yaml."""
from __future__ import annotations

import ast
import json
from typing import Optional

import pytest

from infra import deploy

from .conftest import ROOT
from .test_template import (EMITTERS, NAMESPACE, alarm_metrics, dashboard, dashboard_lines, emitted_in,
                            emitted_metrics, emitted_units, load_template, units_in)

# Emitted, and on purpose not on the dashboard: each says why. Anything else the code emits is shown.
NOT_SHOWN = {
    "RecordsProcessed": "every record worked, whatever it was: the joins, qualifications and sync widgets say what "
                        "the work did, and the worker's invocations how much ran",
    "ContactsNotLinked": "Intercom's events about contacts no referral is linked to: most of a workspace's traffic, "
                         "nothing to do",
    "ReconciliationContactsSearched": "reconciliation's search of changed contacts, by volume: its checks queued and "
                                      "the links it finishes are shown",
    "StaleAttributeWritesHealed": "a write Intercom refused for a stale attribute list, healed at once: nothing to do",
    "DuplicatesResolved": "Intercom's merges followed: nothing to do (the history of the person says it)",
}

# What an operator must see without digging (errors, dead letters, RF's block and 429s, Intercom's 429s and refused
# tokens, the vendors' outages, the queues' age, contact sync's progress, and how long a qualification and a join
# take: the promise of seconds).
NEEDED = {(NAMESPACE, name) for name in (
    "RecordsFailed", "DeadLettered", "QualificationsFailed", "RFBlocked", "RFRateLimited", "IntercomRateLimited",
    "IntercomTokenRefused", "IntercomUnavailable", "RFUnavailable", "AWSThrottled", "ReferralsQualified",
    "ReferralsFoundQualified", "SyncEnrolled", "SyncLinked", "SyncAlreadyEnrolled", "SyncRefused",
    "QualificationDelaySeconds", "JoinDelaySeconds")} | {
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"), ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ("AWS/Lambda", "Errors")}


def unreadable(template: dict) -> dict[str, set[str]]:
    """Per dashboard or alarm, the metrics of the app's namespace it reads that the code does not emit, or reads
    under another dimension than this stage's `service`."""
    emitted, out = emitted_metrics(), {}
    for name, metrics in {"Dashboard": [(ns, n, d) for ns, n, d in dashboard(template)],
                          **alarm_metrics(template)}.items():
        wrong = {n for ns, n, dims in metrics if ns == NAMESPACE and (
            n not in emitted or dims not in (("service", "${Prefix}"), [{"Name": "service", "Value": {"Ref": "Prefix"}}]))}
        if wrong:
            out[name] = wrong
    return out


def test_the_dashboard_and_every_alarm_read_only_what_the_code_emits():
    assert unreadable(load_template()) == {}


@pytest.mark.parametrize("good, broken, where", [
    ('"ContactsCreated", ".", "."', '"ContactsCreatd", ".", "."', "Dashboard"),          # a widget's typo
    ("MetricName: RFBlocked", "MetricName: RFBlock", "RFBlockedAlarm"),                  # an alarm's
    ("MetricName: RFUnavailable", "MetricName: RFOutage", "VendorOutageAlarm"),          # one of its metric math's
    ('"RFBlocked", ".", "."', '"RFBlocked", ".", "x"', "Dashboard"),                      # another dimension
])
def test_a_deliberately_broken_name_fails_the_check(good, broken, where):
    text = deploy.TEMPLATE.read_text()
    assert text.count(good) == 1
    assert where in unreadable(load_template(text.replace(good, broken)))


def test_the_finder_reads_every_way_the_code_names_a_metric_and_refuses_one_it_cannot():
    assert emitted_in({"a.py": 'count("Aa" if x else "Bb" if y else "Cc"); observability.count("Dd", 2)\n'
                               'count({"created": "Ee"}.get(outcome, "Ff")); text.count("lower")'}) == {
        "Aa", "Bb", "Cc", "Dd", "Ee", "Ff"}
    sync = emitted_in({"s.py": "count(f\"Sync{''.join(p.title() for p in outcome.split('_'))}\", n)"})
    assert {"SyncEnrolled", "SyncNoLinkYet", "SyncNotInRf"} <= sync and "Sync" not in sync
    assert units_in({"d.py": 'seconds("AaSeconds", delay(since, now)); observability.seconds("BbSeconds", 2.0)\n'
                             'count("Cc"); timedelta(seconds=3); budget.seconds()'}) == {
        "AaSeconds": "Seconds", "BbSeconds": "Seconds", "Cc": "Count"}
    for unread in ("count(name)", "count(f'Sync{outcome}')", "count(f'Other{x}')", "seconds(name, 1.0)"):
        with pytest.raises(AssertionError, match="cannot read"):
            emitted_in({"a.py": unread})
    with pytest.raises(AssertionError, match="outside observability"):
        emitted_in({"chalicelib/x.py": "metrics.add_metric(name='Hidden', unit='Count', value=1)"})
    with pytest.raises(AssertionError, match="emitted in Count and in Seconds"):
        emitted_in({"a.py": 'count("Took"); seconds("Took", 1.0)'})


def test_every_metric_the_code_emits_is_on_the_dashboard_or_said_why_not():
    shown = {name for ns, name, _ in dashboard() if ns == NAMESPACE}
    emitted = emitted_metrics()
    assert sorted(emitted - shown - set(NOT_SHOWN)) == [], "emitted, not on the dashboard: show it or say why not"
    assert sorted(set(NOT_SHOWN) - emitted) == [] and sorted(set(NOT_SHOWN) & shown) == []     # no stale excuse


def test_what_an_operator_needs_is_on_the_dashboard():
    shown = {(ns, name) for ns, name, _ in dashboard()}
    assert sorted(NEEDED - shown) == []
    functions = {dims for ns, name, dims in dashboard() if (ns, name) == ("AWS/Lambda", "Errors")}
    assert functions == {("FunctionName", "${Prefix}" + suffix) for suffix in ("", "-worker", "-reconcile")}
    queues = {dims for ns, name, dims in dashboard() if (ns, name) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")}
    assert queues == {("QueueName", "${WorkQueue.QueueName}"), ("QueueName", "${DeadLetterQueue.QueueName}")}


def test_the_unit_is_the_one_the_code_emits():
    """count() emits its metrics in Count, seconds() its delays in Seconds (EMITTERS: no name in both); an alarm
    that names a unit reads nothing of another, a widget likewise: none names one."""
    source = (ROOT / "chalicelib" / "observability.py").read_text()
    emits = {f.name: ast.unparse(k.value) for f in ast.walk(ast.parse(source)) if isinstance(f, ast.FunctionDef)
             for n in ast.walk(f) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "add_metric" for k in n.keywords if k.arg == "unit"}
    assert emits == {name: f"MetricUnit.{unit}" for name, unit in EMITTERS.items()}
    delays = {name for name, unit in emitted_units().items() if unit == "Seconds"}
    assert delays == {"QualificationDelaySeconds", "JoinDelaySeconds"}
    assert all(name.endswith("Seconds") == (name in delays) for name in emitted_units())    # the name says it
    for name, resource in load_template()["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            p = resource["Properties"]
            units = [p.get("Unit")] + [m["MetricStat"].get("Unit") for m in p.get("Metrics", []) if "MetricStat" in m]
            assert set(units) == {None}, name          # none names one: CloudWatch matches any
    body = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert '"unit"' not in json.dumps(json.loads(body))


def test_a_delay_is_shown_as_its_percentiles_and_maximum_a_count_as_a_sum():
    """A delay summed is no delay: each Seconds metric is on the dashboard as p50, p95 and Maximum (a widget of
    Sum stats would add them up), and a count never as a percentile."""
    body = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    stats: dict[str, set[Optional[str]]] = {}
    for items, stat in dashboard_lines(body):
        if items[0] == NAMESPACE:
            stats.setdefault(items[1], set()).add(stat)
    units = emitted_units()
    assert {name: stats.get(name) for name, unit in units.items() if unit == "Seconds"} == {
        name: {"p50", "p95", "Maximum"} for name, unit in units.items() if unit == "Seconds"}
    assert not {name for name, used in stats.items() if units.get(name) == "Count" and
                {s for s in used if s and s.startswith("p")}}
