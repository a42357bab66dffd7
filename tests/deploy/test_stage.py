"""Issue 6 §2: the operator CLI finds a deployed stage's resources by itself. `bridge --stage dev ...`
(or BRIDGE_STAGE=dev) reads the stack's outputs: nobody exports table or queue names by hand."""
from __future__ import annotations

import json

import pytest

from chalicelib import cli
from chalicelib.stage import (CHALICE_CONFIG, FUNCTION_SUFFIXES, OUTPUT_ENV, StageError, check_stage, env_from_outputs,
                             resolve)

from .conftest import REGION, aws_env, aws_on, chalice_deployed


@pytest.fixture
def operator_env(rendered, monkeypatch):
    """The operator's shell: AWS credentials and region (here: the moto server), no BRIDGE_ variable."""
    deployed = json.loads(CHALICE_CONFIG.read_text())["environment_variables"]     # the stage's settings, too
    for key in [*OUTPUT_ENV.values(), "BRIDGE_STAGE", *deployed]:
        monkeypatch.setenv(key, "unset")      # so that whatever the CLI sets is undone after the test
        monkeypatch.delenv(key)
    for key, value in aws_env(rendered.endpoint).items():
        monkeypatch.setenv(key, value)
    yield rendered
    from chalicelib.runtime import reset_default_runtime
    reset_default_runtime(None)


def a_dead_letter(rendered, stage: str, reason: str) -> None:
    aws_on(rendered.endpoint).client("sqs").send_message(
        QueueUrl=rendered.targets[stage].outputs["DeadLetterQueueUrl"], MessageBody=json.dumps({"kind": "rf.join"}),
        MessageAttributes={"reason": {"DataType": "String", "StringValue": reason},
                           "attempts": {"DataType": "Number", "StringValue": "5"},
                           "failed_at": {"DataType": "String", "StringValue": "2026-01-01T00:00:00Z"}})


def test_the_stage_resolves_to_what_its_lambdas_get(operator_env):
    env = resolve("dev")
    assert env == {k: v for k, v in operator_env.config()["stages"]["dev"]["environment_variables"].items()
                   if k in OUTPUT_ENV.values()}


@pytest.mark.parametrize("how", ["option", "environment"])
def test_bridge_with_a_stage_reads_that_stages_queues(operator_env, monkeypatch, capsys, how):
    a_dead_letter(operator_env, "dev", f"found through the {how}")
    if how == "environment":
        monkeypatch.setenv("BRIDGE_STAGE", "dev")
        monkeypatch.delenv("AWS_DEFAULT_REGION")   # AWS_REGION alone, as the AWS CLI allows
    assert cli.main(["--stage", "dev", "dlq", "list", "--json"] if how == "option" else ["dlq", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert f"found through the {how}" in json.dumps(listed)


def test_a_stage_that_is_not_deployed_is_one_clear_line(operator_env, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--stage", "staging", "dlq", "list"])
    assert str(stopped.value).startswith("bridge: stage staging is not deployed in eu-west-1 (no stack "
                                         "rf-intercom-bridge-staging): run `make deploy STAGE=staging`")
    assert "\n" not in str(stopped.value)


def test_the_api_url_of_a_stage_this_checkout_did_not_deploy_is_read_from_the_stacks_bucket(operator_env, monkeypatch,
                                                                                           tmp_path):
    """`bridge --stage dev workspace oauth-link` read only this checkout's .chalice/deployed/dev.json: elsewhere it
    could not print a link, whatever the operator's credentials. Chalice's API is not in the stack (no output names
    it); `make deploy` keeps its deployed state in the stack's bucket (output StateBucket), where it is read as
    `make deploy` reads it: one DescribeStacks and one GetObject. This checkout's own, when it has one, first."""
    from chalicelib import stage as stages
    from infra.local.counting import AwsCallRecorder
    monkeypatch.setattr(stages, "CHECKOUT", tmp_path)   # no deploy of dev from here
    bucket, key = operator_env.targets["dev"].outputs["StateBucket"], "deployed/dev.json"
    recorder = AwsCallRecorder()
    with recorder.installed():
        assert cli._known_api_url("dev") == (None, f" (neither this checkout nor s3://{bucket}/{key} holds stage dev's "
                                                   "deployed state naming its API: `make deploy STAGE=dev` stores it "
                                                   "there)")
        s3 = aws_on(operator_env.endpoint).client("s3")
        s3.put_object(Bucket=bucket, Key=key, Body=chalice_deployed(tmp_path / "deployer", "dev", "devapi",
                                                                    REGION).read_bytes())
        try:
            recorder.calls.clear()
            assert cli._known_api_url("dev") == (f"https://devapi.execute-api.{REGION}.amazonaws.com/api/", "")
            assert [c.name for c in recorder.calls] == ["cloudformation:DescribeStacks", "s3:GetObject"]
            chalice_deployed(tmp_path, "dev", "localapi", REGION)        # this checkout deployed dev: no AWS call
            recorder.calls.clear()
            assert cli._known_api_url("dev") == (f"https://localapi.execute-api.{REGION}.amazonaws.com/api/", "")
            assert recorder.calls == []
        finally:
            s3.delete_object(Bucket=bucket, Key=key)


@pytest.mark.parametrize("code, said", [
    ("AccessDenied", "S3 refused to read s3://state/deployed/dev.json (AccessDenied): it is not there yet (`make "
                     "deploy STAGE=dev` stores it), or the operator's rights lack s3:GetObject on it (the policy "
                     "`make deploy` writes, .chalice/policy-dev-operator.json, grants it)"),
    ("SlowDown", "cannot read s3://state/deployed/dev.json: AWS answered SlowDown: later")])
def test_a_deployed_state_the_bucket_refuses_says_why_in_one_line(code, said):
    """S3 answers AccessDenied for a missing object too, to whom may not list the bucket (the operator's policy grants
    GetObject on that object alone): the refusal says both, and which policy grants the read."""
    import boto3
    from botocore.stub import Stubber

    from chalicelib.stage import deployed_api_url
    cfn, s3 = (boto3.client(name, region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
               for name in ("cloudformation", "s3"))
    with Stubber(cfn) as stacks, Stubber(s3) as bucket:
        stacks.add_response("describe_stacks", {"Stacks": [{
            "StackName": "rf-intercom-bridge-dev", "CreationTime": "2026-01-01T00:00:00Z",
            "StackStatus": "CREATE_COMPLETE",
            "Outputs": [{"OutputKey": "StateBucket", "OutputValue": "state"}]}]})
        bucket.add_client_error("get_object", code, "later", 403 if code == "AccessDenied" else 503)
        with pytest.raises(StageError) as refused:
            deployed_api_url("dev", cfn, s3)
        bucket.assert_no_pending_responses()
    assert str(refused.value) == said


def test_stage_names_and_outputs_are_checked():
    with pytest.raises(StageError, match="not a valid name"):
        resolve("Prod; rm")
    with pytest.raises(StageError, match="no output QueueName"):
        env_from_outputs({"TableName": "t", "QueueUrl": "u", "DeadLetterQueueUrl": "d", "SecretsPath": "/p"})


@pytest.mark.parametrize("stage, broken", [("1dev", "starting with a letter"), ("a" * 17, "up to 16"),
                                           ("qa-eu", "lowercase letters and digits"),
                                           ("worker", "not worker or reconcile"),
                                           ("reconcile", "not worker or reconcile")])
def test_a_stage_name_refused_is_told_the_rule_it_breaks_and_the_readme_states_the_same_rule(stage, broken):
    """`1dev` and a 17-letter name are lowercase letters and digits: a refusal that says only that leaves the
    operator guessing, and so does a README that allows `any lowercase name`. A stage named `worker` made its API
    function rf-intercom-bridge-worker, which the API's container took for a worker (it made a worker's clients
    at init)."""
    with pytest.raises(StageError) as refused:
        check_stage(stage, new=True)                    # what `make deploy` checks
    assert broken in str(refused.value)
    if stage in FUNCTION_SUFFIXES:                      # one deployed before the rule is still reached (destroyed)
        assert check_stage(stage) == stage
    else:
        with pytest.raises(StageError, match=broken):
            resolve(stage)
    from tests.support.docs import docs_text
    [row] = [line for line in docs_text().splitlines() if line.startswith("| `STAGE` |")]
    assert broken in row


def test_bridge_with_a_stage_calls_the_vendors_within_the_budgets_the_stage_is_deployed_with(
        operator_env, monkeypatch, tmp_path):
    """An RF account another tool shares: RF_CALLS_PER_MINUTE lowered to 300 in the stage's section of
    infra/chalice-config.json, where docs/deploying.md says a deployed setting is changed. The stage's workers call RF
    within 300 a minute; `bridge --stage dev backfill` or `doctor` called it within the default 600, in budget
    counters of their own (a budget's slices follow its limit), so together they went over RF's limit, which
    blocks the IP for days. The CLI takes the stage's deployed settings; a variable set in the operator's shell
    still wins, and the resources always come from the stack."""
    from chalicelib import stage as stages
    from chalicelib.config import Config

    base = json.loads(stages.CHALICE_CONFIG.read_text())
    base["stages"]["dev"] = {"environment_variables": {"RF_CALLS_PER_MINUTE": "300", "BRIDGE_TABLE": "not this"}}
    config = tmp_path / "chalice-config.json"
    config.write_text(json.dumps(base))
    monkeypatch.setattr(stages, "CHALICE_CONFIG", config)
    environ = dict(aws_env(operator_env.endpoint), BRIDGE_MAX_ATTEMPTS="7")
    stages.use_stage("dev", environ)
    deployed = Config.from_env(environ)
    assert deployed.rf_calls_per_minute == 300
    assert deployed.table == operator_env.targets["dev"].outputs["TableName"]
    assert deployed.max_attempts == 7                          # the operator's shell
    assert environ["BRIDGE_OUTAGE_HOURS"] == base["environment_variables"]["BRIDGE_OUTAGE_HOURS"]


def test_a_refusal_of_aws_names_the_operator_policies_make_deploy_renders():
    """The operator's rights were a hand list in docs/operating.md; they are the policies `make deploy` renders
    (.chalice/policy-<stage>-operator.json, -operator-readonly.json): a refusal names them, not a list to compare."""
    from botocore.exceptions import ClientError

    from chalicelib.stage import aws_problem
    from infra.deploy import OPERATORS, policy_file
    refused = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "User: arn:aws:iam::1:user/ops is "
                                     "not authorized to perform: dynamodb:Scan"}}, "Scan")
    said = aws_problem(refused)
    assert said is not None and said.startswith("AWS refused (AccessDeniedException): User: arn:aws:iam::1:user/ops")
    for operator in OPERATORS:
        assert f".chalice/{policy_file('<stage>', operator)}" in said, said
    assert "docs/operating.md" in said and "\n" not in said
