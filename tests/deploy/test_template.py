"""Issue 6 §2, production: log retention, the alarm's email, and a dashboard that shows the pipeline.
The dashboard cannot drift from the code: every metric it shows from the app's namespace is one
the code emits."""
from __future__ import annotations

import ast
import copy
import functools
import json
import re
import subprocess
import sys
from typing import Optional

import pytest
import yaml

from infra import deploy

from .conftest import ROOT, aws_on, run_as_deployed

NAMESPACE = "RFIntercomBridge"


def load_template(text: str | None = None) -> dict:
    """infra/template.yaml (or `text`), its short tags as the long forms: `!Ref X` as {"Ref": X}, `!Sub s` as
    {"Fn::Sub": s}. A copy of its own for each caller, the text parsed once (30 ms a parse, asked for by hundreds of
    tests)."""
    return copy.deepcopy(_parsed(deploy.TEMPLATE.read_text() if text is None else text))


@functools.cache
def _parsed(text: str) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    def tag(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", tag)
    return yaml.load(text, Loader=Loader)


# Names the code builds from a value (an f-string), each with the source of its value and every value it can take:
# a new one, or one built otherwise, is one the check below cannot read, and fails it until it is taught here.
def _sync_outcomes() -> list[str]:
    from chalicelib.domain.sync import OUTCOMES     # what a page's tally counts (services/sync.on_page)
    return list(OUTCOMES)


BUILT = {"Sync": ("''.join((p.title() for p in outcome.split('_')))", _sync_outcomes,
                  lambda value: "".join(p.title() for p in value.split("_")))}


def metric_names(node: ast.expr) -> set[str]:
    """Every name a count(...) or seconds(...) call's first argument can be: a literal, a choice among them (`a if c else b`,
    `{...}.get(key, default)`: its values, never its keys), or one of BUILT's f-strings. Anything else raises:
    a name the check cannot read is one it cannot vouch for."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return metric_names(node.body) | metric_names(node.orelse)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and isinstance(node.func.value, ast.Dict) and len(node.args) == 2:
        return {n for v in node.func.value.values if v is not None for n in metric_names(v)} | \
            metric_names(node.args[1])
    if isinstance(node, ast.JoinedStr) and len(node.values) == 2 and isinstance(node.values[0], ast.Constant) \
            and isinstance(node.values[1], ast.FormattedValue) and node.values[0].value in BUILT:
        prefix = node.values[0].value
        source, values, spelt = BUILT[prefix]
        if ast.unparse(node.values[1].value) == source:
            return {prefix + spelt(v) for v in values()}
    raise AssertionError(f"a metric name the check cannot read: {ast.unparse(node)} (teach metric_names or BUILT)")


#: The functions of chalicelib/observability.py that emit a metric, each with the unit it emits in: count(name, n) a
#: Count, seconds(name, value) a delay in Seconds (shown as p50, p95 and maximum).
EMITTERS = {"count": "Count", "seconds": "Seconds"}


def units_in(sources: dict[str, str]) -> dict[str, str]:
    """The metric names count(...) and seconds(...) calls (EMITTERS) emit in `sources` (path: code), each with its
    unit; a name emitted in two units fails it (a widget or an alarm reads one of them only), and so does an
    add_metric, a single_metric or an EMF line written by hand anywhere but chalicelib/observability.py (a metric
    this check would miss)."""
    units: dict[str, str] = {}
    for path, code in sources.items():
        for node in ast.walk(ast.parse(code)):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.id if isinstance(node.func, ast.Name) else \
                node.func.attr if isinstance(node.func, ast.Attribute) else None
            if called in ("add_metric", "single_metric", "flush_metrics") and path != "chalicelib/observability.py":
                raise AssertionError(f"{path}:{node.lineno}: {called} outside observability.count and flush")
            if node.args and called in EMITTERS and (isinstance(node.func, ast.Name) or isinstance(
                    node.func.value, ast.Name) and node.func.value.id == "observability"):
                for name in metric_names(node.args[0]):
                    assert units.setdefault(name, EMITTERS[called]) == EMITTERS[called], \
                        f"{path}:{node.lineno}: {name} emitted in {units[name]} and in {EMITTERS[called]}"
        assert "CloudWatchMetrics" not in code or path == "chalicelib/observability.py", path
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]+", n) for n in units), units
    return units


def emitted_in(sources: dict[str, str]) -> frozenset[str]:
    """The metric names count(...) and seconds(...) calls emit in `sources` (units_in)."""
    return frozenset(units_in(sources))


@functools.cache
def emitted_units() -> dict[str, str]:
    """Every metric name the code can emit, with its unit: each count(...) and seconds(...) call's (metric_names)
    in app.py and chalicelib/ (parsed once for the tests that ask: half a second)."""
    paths = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]
    return units_in({str(p.relative_to(ROOT)): p.read_text() for p in paths})


@functools.cache
def emitted_metrics() -> frozenset[str]:
    """Every metric name the code can emit (emitted_units)."""
    return frozenset(emitted_units())


def dashboard_lines(body: str) -> list[tuple[list, Optional[str]]]:
    """Every metric line: its items (namespace, metric, dimensions), the "." and "..." shorthands expanded, and its
    stat (its own, or its widget's)."""
    widgets = json.loads(body)["widgets"]   # the ${...} substitutions all sit inside JSON strings
    found = []
    for widget in widgets:
        previous: list = []
        props = widget.get("properties", {})
        for line in props.get("metrics", []):
            items = [x for x in line if not isinstance(x, dict)]
            if items[:1] == ["..."]:
                tail = items[1:]
                items = previous[:len(previous) - len(tail)] + tail
            else:
                items = [previous[i] if x == "." else x for i, x in enumerate(items)]
            previous = items
            options = next((x for x in line if isinstance(x, dict)), {})
            found.append((items, options.get("stat", props.get("stat"))))
    return found


def dashboard_metrics(body: str) -> list[tuple[str, str, tuple]]:
    """(namespace, metric, dimensions) of every metric line (dashboard_lines)."""
    return [(items[0], items[1], tuple(items[2:])) for items, _ in dashboard_lines(body)]


def dashboard(template: dict | None = None) -> list[tuple[str, str, tuple]]:
    template = template or load_template()
    return dashboard_metrics(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])


def alarm_metrics(template: dict | None = None) -> dict[str, list[tuple[str, str, list]]]:
    """Per alarm, the (namespace, metric, dimensions) it reads: its own metric, or those of its metric math."""
    found = {}
    for name, resource in (template or load_template())["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            p = resource["Properties"]
            stats = [m["MetricStat"]["Metric"] for m in p.get("Metrics", []) if "MetricStat" in m]
            found[name] = [(m["Namespace"], m["MetricName"], m.get("Dimensions", [])) for m in stats or [p]]
    return found


def test_every_metric_the_dashboard_shows_from_the_app_is_emitted_by_the_code():
    emitted = emitted_metrics()
    assert {"ContactsCreated", "ContactsLinked", "JoinsSkipped", "DeadLettered"} <= emitted  # the finder finds
    shown = {name for namespace, name, _ in dashboard() if namespace == NAMESPACE}
    assert shown and shown - emitted == set(), f"the dashboard shows metrics nobody emits: {shown - emitted}"
    assert {dims for namespace, _, dims in dashboard() if namespace == NAMESPACE} == {("service", "${Prefix}")}


def test_every_metric_an_alarm_watches_from_the_app_is_on_the_dashboard():
    """An alarm's email sends the operator to the dashboard: what it fired on is there to look at (how long, how
    much), as the vendor outages and RF's block are."""
    watched = {name for metrics in alarm_metrics().values() for namespace, name, _ in metrics if namespace == NAMESPACE}
    shown = {name for namespace, name, _ in dashboard() if namespace == NAMESPACE}
    assert watched and watched - shown == set(), f"alarmed on, not on the dashboard: {watched - shown}"


def test_every_metric_an_alarm_watches_from_the_app_is_emitted_by_the_code_for_this_stage():
    watched = [m for metrics in alarm_metrics().values() for m in metrics if m[0] == NAMESPACE]
    assert {name for _, name, _ in watched} >= {"RFBlocked", "IntercomUnavailable", "RFUnavailable"}
    assert {name for _, name, _ in watched} - emitted_metrics() == set()
    assert all(dims == [{"Name": "service", "Value": {"Ref": "Prefix"}}] for _, _, dims in watched)


def test_the_check_would_notice_a_metric_nobody_emits():
    body = json.dumps({"widgets": [{"properties": {"metrics": [
        [NAMESPACE, "ContactsCreated", "service", "${Prefix}"], [".", "ContactsMade", ".", "."],
        ["AWS/Lambda", "Duration", "FunctionName", "f", {"stat": "p99"}], ["...", "g"]]}}]})
    assert dashboard_metrics(body) == [(NAMESPACE, "ContactsCreated", ("service", "${Prefix}")),
                                       (NAMESPACE, "ContactsMade", ("service", "${Prefix}")),
                                       ("AWS/Lambda", "Duration", ("FunctionName", "f")),
                                       ("AWS/Lambda", "Duration", ("FunctionName", "g"))]
    assert "ContactsMade" not in emitted_metrics()


def test_the_dashboard_shows_the_pipeline_end_to_end():
    shown = dashboard()
    names = {(ns, name) for ns, name, _ in shown}
    assert {(NAMESPACE, "JoinsReceived"), (NAMESPACE, "ContactsCreated"), (NAMESPACE, "ContactsLinked"),
            (NAMESPACE, "ReferralsQualified"), (NAMESPACE, "RecordsFailed"), (NAMESPACE, "DeadLettered")} <= names
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", ("QueueName", "${DeadLetterQueue.QueueName}")) in shown
    # Webhook latency: the API function's duration (this stage's only) and API Gateway's latency.
    assert ("AWS/Lambda", "Duration", ("FunctionName", "${Prefix}")) in shown
    assert ("AWS/ApiGateway", "Latency", ("ApiName", "${ApiName}", "Stage", "${ApiStage}")) in shown


def test_the_dashboard_dimension_is_the_one_the_deployed_functions_emit():
    """make deploy sets POWERTOOLS_SERVICE_NAME to the Prefix; Powertools makes it the `service`
    dimension of the namespace in the base config (run as in a fresh Lambda container)."""
    out = run_as_deployed("from chalicelib.handlers import count, flush; count('JoinsReceived'); flush()")
    emf = json.loads(out.strip().splitlines()[-1])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert emf["service"] == "rf-intercom-bridge-prod" and emf["JoinsReceived"] == [1.0]


def test_the_dead_letter_alarm_notifies_the_topic_and_the_email_is_optional():
    resources = load_template()["Resources"]
    alarm = resources["DeadLetterAlarm"]["Properties"]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] and alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_each_function_logs_to_a_group_with_a_retention(rendered):
    """The stack creates the groups `chalice deploy`'s functions write to, with a retention."""
    groups = aws_on(rendered.endpoint).client("logs").describe_log_groups(
        logGroupNamePrefix="/aws/lambda/rf-intercom-bridge-prod")["logGroups"]
    expected = {f"/aws/lambda/{deploy.function_name('rf-intercom-bridge-prod', fn)}" for fn in deploy.FUNCTIONS}
    assert {g["logGroupName"]: g.get("retentionInDays") for g in groups} == dict.fromkeys(expected, 90)


def test_the_lambda_paths_never_import_the_stage_lookup():
    """chalicelib/stage.py is for the CLI: the functions get their variables from their configuration."""
    code = ("import sys, app; from chalicelib.services import worker, reconcile, ingest; "
            "print('chalicelib.stage' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name, metric", [("RFBlockedAlarm", "RFBlocked"),
                                          ("IntercomTokenRefusedAlarm", "IntercomTokenRefused")])
def test_work_waiting_for_a_block_or_a_refused_token_alarms_the_topic_on_a_metric_the_code_emits(name, metric):
    """Issue 7: RF's 403 opens the circuit, the work waits in the queue, and someone is told. So for Intercom
    refusing a connected workspace's token: its work waits for the reconnect, no dead letter for hours."""
    alarm = load_template()["Resources"][name]["Properties"]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] and alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    assert (alarm["Namespace"], alarm["MetricName"]) == (NAMESPACE, metric)
    assert alarm["MetricName"] in emitted_metrics()
    assert alarm["Dimensions"] == [{"Name": "service", "Value": {"Ref": "Prefix"}}]      # this stage's only
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == ("Sum", 0, "GreaterThanThreshold")
    shown = {name for namespace, name, _ in dashboard() if namespace == NAMESPACE}
    assert {"RFBlocked", "RFRateLimited", "IntercomRateLimited", "RecordsDeferred"} <= shown


def test_a_vendor_outage_alarms_the_topic_once_it_lasts_and_the_dashboard_shows_which_vendor():
    """Outage waits use up no try, so nothing reaches the dead-letter queue for BRIDGE_OUTAGE_HOURS: this alarm
    says it. A waiting record comes back at least once per outage.LONGEST_WAIT, so a period that long sees
    every ongoing outage; one period alone (a blip) does not fire it."""
    from chalicelib.domain.outage import LONGEST_WAIT

    alarm = load_template()["Resources"]["VendorOutageAlarm"]["Properties"]
    assert alarm["AlarmName"] == {"Fn::Sub": "${Prefix}-vendor-outage"}
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] and alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    assert {name for _, name, _ in alarm_metrics()["VendorOutageAlarm"]} == {"IntercomUnavailable", "RFUnavailable",
                                                                           "AWSThrottled"}
    [returned] = [m for m in alarm["Metrics"] if m["ReturnData"]]
    ids = {m["Id"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert set(re.findall(r"FILL\((\w+), 0\)", returned["Expression"])) == ids        # every vendor, summed
    assert {m["MetricStat"]["Period"] for m in alarm["Metrics"] if "MetricStat" in m} == {LONGEST_WAIT}
    assert {m["MetricStat"]["Stat"] for m in alarm["Metrics"] if "MetricStat" in m} == {"Sum"}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert 1 < alarm["DatapointsToAlarm"] < alarm["EvaluationPeriods"]     # a missed period keeps it firing
    assert "BRIDGE_OUTAGE_HOURS" in alarm["AlarmDescription"]["Fn::Sub"]
    widgets = json.loads(load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])
    [outages] = [w for w in widgets["widgets"] if w["properties"].get("title", "").startswith("Vendor outages")]
    assert [(ns, name) for ns, name, _ in dashboard_metrics(json.dumps({"widgets": [outages]}))] == [
        (NAMESPACE, "IntercomUnavailable"), (NAMESPACE, "RFUnavailable"), (NAMESPACE, "IntercomTokenRefused"),
        (NAMESPACE, "AWSThrottled")]


def test_the_dead_letter_alarm_and_the_readme_say_how_long_a_dead_letter_is_kept():
    """SQS deletes a dead letter once the queue's retention (14 days, its longest) has passed: a join or a
    qualification left there is lost without a word. The alarm's email, which is where an operator first hears
    of it, and the docs say by when it must be replayed."""
    resources = load_template()["Resources"]
    days = resources["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] // 86400
    assert days == 14
    description = " ".join(resources["DeadLetterAlarm"]["Properties"]["AlarmDescription"]["Fn::Sub"].split())
    assert f"deletes a dead letter {days} days" in description
    from tests.support.docs import docs_text
    assert f"SQS keeps a dead letter {days} days" in " ".join(docs_text().split())


def test_the_work_queue_widget_shows_all_the_work_doctor_counts_in_flight():
    """`doctor` and `forget` count the work queue's messages waiting, being worked and delayed (queue.work_count).
    The dashboard showed the visible ones only: the work a rate limit, RF's block or a vendor's outage holds back
    waits delayed (a copy sent back with a delay), so its "backlog" read 0 while hundreds of joins waited."""
    import inspect

    from chalicelib.adapters.queue import Queue

    counted = set(re.findall(r'"(ApproximateNumberOf\w+)"', inspect.getsource(Queue.work_count)))
    assert counted == {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                       "ApproximateNumberOfMessagesDelayed"}
    # (GetQueueAttributes' ApproximateNumberOfMessages is CloudWatch's ApproximateNumberOfMessagesVisible)
    as_metrics = {name if name != "ApproximateNumberOfMessages" else name + "Visible" for name in counted}
    shown = {name for namespace, name, dims in dashboard()
             if namespace == "AWS/SQS" and dims == ("QueueName", "${WorkQueue.QueueName}")}
    assert as_metrics <= shown, as_metrics - shown


def test_every_alarm_emails_the_topic_when_it_fires_and_when_it_clears():
    alarms = {name: r["Properties"] for name, r in load_template()["Resources"].items()
              if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {"ApiErrorsAlarm", "ReconcileFailingAlarm", "WorkQueueStalledAlarm", "ReconcileNotRunningAlarm"} <= set(alarms)
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] == alarm["OKActions"], name
        # No data is no fault, but for reconciliation's runs: none at all is the fault.
        assert alarm["TreatMissingData"] == ("breaching" if name == "ReconcileNotRunningAlarm" else "notBreaching"), name


def test_the_edge_and_reconciliation_alarms_read_this_stages_api_and_function_as_the_dashboard_shows_them():
    """The API's 5xx (what a webhook sender got: our 503, a crash, a timeout) and the reconcile function's
    errors: the alarms read what the dashboard graphs, and their emails say what to run."""
    resources = load_template()["Resources"]
    api, reconcile = (resources[a]["Properties"] for a in ("ApiErrorsAlarm", "ReconcileFailingAlarm"))
    shown = dashboard()
    [(namespace, name, dims)] = alarm_metrics()["ApiErrorsAlarm"]
    assert (namespace, name) == ("AWS/ApiGateway", "5XXError") and api["Statistic"] == "Sum"
    assert dims == [{"Name": "ApiName", "Value": {"Ref": "ApiName"}}, {"Name": "Stage", "Value": {"Ref": "ApiStage"}}]
    assert ("AWS/ApiGateway", "5XXError", ("ApiName", "${ApiName}", "Stage", "${ApiStage}")) in shown
    function = [{"Name": "FunctionName", "Value": {"Fn::Sub": "${Prefix}-reconcile"}}]
    assert alarm_metrics()["ReconcileFailingAlarm"] == [("AWS/Lambda", "Errors", function),
                                                        ("AWS/Lambda", "Invocations", function)]
    assert ("AWS/Lambda", "Errors", ("FunctionName", "${Prefix}-reconcile")) in shown
    for alarm in (api, reconcile):
        said = " ".join(alarm["AlarmDescription"]["Fn::Sub"].split())
        assert "`bridge --stage <stage> doctor CAMPAIGN`" in said
    assert "`bridge --stage <stage> backfill CAMPAIGN --apply`" in " ".join(api["AlarmDescription"]["Fn::Sub"].split())


def test_the_work_queue_and_reconciliation_runs_alarms_read_what_the_dashboard_shows():
    """A worker that takes no work leaves the work queue's oldest message ageing (nothing fails, nothing is
    dead-lettered); a schedule that no longer runs reconciliation leaves no invocation (nothing fails either). The
    alarms read this stage's queue and function, as the dashboard graphs them, and the reconcile one per scheduled
    run (ReconcilePeriod, as `make deploy` sets it)."""
    resources = load_template()["Resources"]
    shown = dashboard()
    [(namespace, name, dims)] = alarm_metrics()["WorkQueueStalledAlarm"]
    assert (namespace, name) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert dims == [{"Name": "QueueName", "Value": {"Fn::GetAtt": "WorkQueue.QueueName"}}]
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", ("QueueName", "${WorkQueue.QueueName}")) in shown
    stalled = resources["WorkQueueStalledAlarm"]["Properties"]
    assert (stalled["Statistic"], stalled["ComparisonOperator"]) == ("Maximum", "GreaterThanThreshold")
    assert stalled["AlarmName"] == {"Fn::Sub": "${Prefix}-work-queue-stalled"}
    [(namespace, name, dims)] = alarm_metrics()["ReconcileNotRunningAlarm"]
    assert (namespace, name) == ("AWS/Lambda", "Invocations")
    assert dims == [{"Name": "FunctionName", "Value": {"Fn::Sub": "${Prefix}-reconcile"}}]
    assert ("AWS/Lambda", "Invocations", ("FunctionName", "${Prefix}-reconcile")) in shown
    runs = resources["ReconcileNotRunningAlarm"]["Properties"]
    assert runs["AlarmName"] == {"Fn::Sub": "${Prefix}-reconcile-not-running"}
    assert (runs["Statistic"], runs["Threshold"], runs["ComparisonOperator"]) == ("Sum", 1, "LessThanThreshold")
    assert runs["Period"] == {"Ref": "ReconcilePeriod"}
    for alarm in (stalled, runs):
        assert "`bridge --stage <stage> doctor CAMPAIGN`" in " ".join(alarm["AlarmDescription"]["Fn::Sub"].split())


def test_every_alarm_description_fits_cloudwatch_for_the_longest_prefix():
    """CloudWatch refuses an AlarmDescription over 1024 characters (the stack's update fails). The longest Prefix a
    stage can have: its functions' names (Prefix-reconcile, the longest) within Lambda's 64."""
    longest = "x" * (64 - len("-reconcile"))
    for name, resource in load_template()["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            said = resource["Properties"]["AlarmDescription"]["Fn::Sub"].strip()
            said = said.replace("${Prefix}", longest).replace("${ReconcilePeriod}", "43200").replace(
                "${ApiName}", "rf-intercom-bridge")
            assert "${" not in said and len(said) <= 1024, (name, len(said))


def tls_only(resources: dict, policy_of: dict[str, str]) -> dict[str, list]:
    """Each resource the template makes that holds data (`policy_of`: its type -> its resource policy's type), with
    its resource policy's TLS-only deny: a Deny of the whole service to anyone on a request without TLS."""
    found: dict[str, list] = {}
    for name, resource in resources.items():
        for policy in resources.values():
            props = policy.get("Properties", {})
            targets = props.get("Queues", []) + ([props["Bucket"]] if "Bucket" in props else [])
            if policy["Type"] == policy_of.get(resource["Type"]) and {"Ref": name} in targets:
                found.setdefault(name, []).extend(
                    s for s in props["PolicyDocument"]["Statement"]
                    if s["Effect"] == "Deny" and s["Principal"] == "*"
                    and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}})
    return found


def test_every_queue_and_bucket_refuses_requests_without_tls():
    """The state bucket and every queue (the work queue, the dead letters': any the template makes) deny any request
    not over TLS, and nothing else: the functions' grants, Lambda's event source and the redrive to the dead-letter
    queue (SQS's own, with no aws:SecureTransport to match) are left as they are."""
    resources = load_template()["Resources"]
    kinds = {"AWS::SQS::Queue": ("AWS::SQS::QueuePolicy", "sqs:*"), "AWS::S3::Bucket": ("AWS::S3::BucketPolicy", "s3:*")}
    made = {name: r["Type"] for name, r in resources.items() if r["Type"] in kinds}
    assert sorted(made) == ["DeadLetterQueue", "StateBucket", "WorkQueue"]
    found = tls_only(resources, {kind: policy for kind, (policy, _) in kinds.items()})
    assert sorted(found) == sorted(made)
    for name, statements in found.items():
        [deny] = statements
        arn = {"Fn::GetAtt": f"{name}.Arn"}
        assert deny["Action"] == kinds[made[name]][1] and deny["Resource"] in (arn, [arn, {"Fn::Sub": f"${{{name}.Arn}}/*"}])
    for policy in (r for r in resources.values() if r["Type"] in ("AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy")):
        assert [s["Effect"] for s in policy["Properties"]["PolicyDocument"]["Statement"]] == ["Deny"]
