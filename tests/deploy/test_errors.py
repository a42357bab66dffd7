"""`make deploy` / `make destroy` as an operator meets them when something is off: every failure,
of AWS, of botocore or of what was typed, is one `error:` line and exit 1, never a traceback
(BRIDGE_DEBUG=1 adds it); what was typed is checked before any AWS call."""
from __future__ import annotations

import botocore.client
import pytest
from botocore import exceptions as bx
from botocore.parsers import ResponseParserError

from infra import deploy

from .conftest import REGION


@pytest.fixture
def aws_calls(monkeypatch) -> list:
    """Every AWS call the command makes (none leaves the process): the credentials and region an
    operator's shell would have."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "BRIDGE_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    calls: list = []

    def call(client, operation, params):
        calls.append(operation)
        raise AssertionError(f"{operation}: no AWS call expected")
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)
    return calls


def failing_with(monkeypatch, exc: Exception) -> None:
    def call(client, operation, params):
        raise exc
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.strip()


AWS_FAILURES = [
    ResponseParserError("Unable to parse response (syntax error: line 1, column 0), invalid XML received. "
                        "Further retries may succeed:\nb'<html>\\n<body>502 Bad Gateway</body>\\n</html>'"),
    bx.ReadTimeoutError(endpoint_url="https://cloudformation.eu-west-1.amazonaws.com/"),
    bx.WaiterError(name="StackDeleteComplete", reason="Max attempts exceeded", last_response={}),
    bx.UndefinedModelAttributeError("no such shape"),
    bx.NoCredentialsError(),
    bx.ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "DescribeStacks"),
]


@pytest.mark.parametrize("command", [["deploy", "--stage", "dev", "--render-only"], ["destroy", "--stage", "dev"]])
@pytest.mark.parametrize("exc", AWS_FAILURES, ids=lambda e: type(e).__name__)
def test_any_aws_failure_is_one_error_line_never_a_traceback(aws_calls, monkeypatch, capsys, command, exc):
    failing_with(monkeypatch, exc)
    assert deploy.main(command) == 1
    line = one_error_line(capsys)
    assert type(exc).__name__ in line or "AWS said" in line or "no AWS credentials" in line, line


def test_bridge_debug_adds_the_traceback(aws_calls, monkeypatch, capsys):
    failing_with(monkeypatch, AWS_FAILURES[0])
    monkeypatch.setenv("BRIDGE_DEBUG", "1")
    assert deploy.main(["destroy", "--stage", "dev"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: AWS failed (ResponseParserError): ")


@pytest.mark.parametrize("given", ["abc", "0", "-5", "2.5", "fifty"])
def test_an_api_concurrency_that_is_not_a_whole_number_says_what_is_expected_before_any_aws_call(
        aws_calls, capsys, given):
    assert deploy.main(["deploy", "--stage", "prod", "--api-concurrency", given]) == 1
    assert one_error_line(capsys) == (
        f"error: API_CONCURRENCY={given} is not a number of executions: API_CONCURRENCY must be a whole number ≥ 1 "
        f"(default {deploy.DEFAULT_API_CONCURRENCY}), or none for no reservation")
    assert aws_calls == []


@pytest.mark.parametrize("given, wanted", [("20", 20), ("none", None), ("off", None), (" 7 ", 7)])
def test_api_concurrency_takes_a_number_or_none(given, wanted):
    assert deploy.api_concurrency(given) == wanted


@pytest.mark.parametrize("email", ["notanemail", "ops@", "@example.com", "ops@example", "ops @example.com",
                                   "ops@example..com", "a@b@example.com"])
def test_an_alarm_email_that_is_not_an_email_is_refused_before_any_aws_call(aws_calls, capsys, email):
    assert deploy.main(["deploy", "--stage", "prod", "--alarm-email", email]) == 1
    assert one_error_line(capsys) == (
        f"error: ALARM_EMAIL={email} is not an email address: e.g. ALARM_EMAIL=ops@example.com "
        f"(or leave it out: the alarms still reach the stage's SNS topic; none stops the emails)")
    assert aws_calls == []


@pytest.mark.parametrize("email", ["ops@example.com", "first.last+alarms@mail.example.co.uk"])
def test_an_email_address_is_accepted(email):
    deploy.check_alarm_email(email)


@pytest.mark.parametrize("given, wanted", [(None, None), ("", None), ("none", ""), (" Off ", ""), ("NONE", ""),
                                           ("ops@example.com", "ops@example.com")])
def test_alarm_email_left_out_keeps_the_stacks_and_none_removes_it(given, wanted):
    """None: the stack keeps the last one given; "": the stack's AlarmEmail emptied, and its subscription gone."""
    assert deploy.alarm_email_given(given) == wanted
    deploy.check_alarm_email(wanted)


@pytest.mark.parametrize("command", [["deploy", "--stage", "dev", "--render-only"], ["destroy", "--stage", "dev"]])
def test_ctrl_c_is_one_line_saying_what_goes_on_in_aws_and_how_to_finish_exit_130(aws_calls, monkeypatch, capsys,
                                                                                  command):
    failing_with(monkeypatch, KeyboardInterrupt())
    assert deploy.main(command) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("interrupted: ") and f"make {command[0]} STAGE=dev" in err


def test_destroy_again_while_the_stack_is_being_deleted_waits_for_it_and_ends_as_a_destroy(aws_calls, monkeypatch,
                                                                                          capsys):
    """Ctrl-C while `make destroy` waited for the stack says "run `make destroy STAGE=dev` again to finish": run
    again, it read the state bucket CloudFormation was deleting and ended in `error: AWS said: ... NoSuchBucket`,
    exit 1. Now it says the stack is being deleted, waits for it, and ends as a destroy does (exit 0)."""
    name = deploy.stage_prefix("dev")
    deleting = {"StackName": name, "StackStatus": "DELETE_IN_PROGRESS", "Outputs": [
        {"OutputKey": "StateBucket", "OutputValue": f"{name}-state"}]}
    answers = {"DescribeStacks": [{"Stacks": [deleting]}, bx.ClientError(
        {"Error": {"Code": "ValidationError", "Message": f"Stack with id {name} does not exist"}}, "DescribeStacks")]}

    def call(client, operation, params):
        aws_calls.append(operation)
        if not answers.get(operation):
            raise bx.ClientError({"Error": {"Code": "NoSuchBucket", "Message": "The specified bucket does not "
                                            "exist"}}, operation)
        answer = answers[operation].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)
    assert deploy.main(["destroy", "--stage", "dev"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines()[0] == f"stack {name} is being deleted already (an earlier destroy): waiting"
    assert out.splitlines()[-1] == "Stage dev is destroyed." and aws_calls == ["DescribeStacks"] * 2
