"""adapters/aws.py: the container's botocore session checks a service's name in that service's own
directory instead of listing all of botocore's (~25 ms of a cold start), and answers as botocore does;
its DynamoDB, SQS and SSM clients parse models trimmed to the operations the bridge calls, and resolve their
endpoints from botocore's endpoints.json cut to those three services (`make models`)."""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from chalicelib.adapters import aws
from infra import aws_models
from tests.support.aws_answers import answering, cancelled, error

ROOT = Path(__file__).resolve().parents[2]

AWS_ENV = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}


@pytest.fixture
def session(monkeypatch):
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    aws.client("sqs")
    return aws._session


def test_a_name_is_checked_without_listing_every_service(session, monkeypatch):
    listed = []
    walk = Loader.list_available_services
    monkeypatch.setattr(Loader, "list_available_services", lambda self, t: listed.append(t) or walk(self, t))
    loader = aws._loader(None)
    names = loader.list_available_services("service-2")
    assert "dynamodb" in names and "ssm" in names and "sqs" in names
    assert "no-such-service" not in names and 42 not in names
    assert listed == []
    assert aws.client("dynamodb").meta.service_model.service_name == "dynamodb"


def test_it_knows_exactly_the_services_botocore_knows(session):
    ours, botocores = aws._loader(None), Loader()
    for type_name in ("service-2", "endpoint-rule-set-1"):
        every = botocores.list_available_services(type_name)
        assert len(every) > 300
        assert list(ours.list_available_services(type_name)) == every
        assert all(name in ours.list_available_services(type_name) for name in every)


def test_an_unknown_service_is_refused_as_botocore_refuses_it(session):
    with pytest.raises(UnknownServiceError, match="Unknown service: 'no-such-service'. Valid service names are: .*dynamodb"):
        aws.client("no-such-service")


def test_aws_data_path_still_adds_models(tmp_path, monkeypatch):
    model = tmp_path / "bridge-made-up" / "2020-01-01"
    model.mkdir(parents=True)
    (model / "service-2.json").write_text(json.dumps({"version": "2.0", "metadata": {}, "operations": {}, "shapes": {}}))
    loader = aws._loader(os.fspath(tmp_path))
    assert "bridge-made-up" in loader.list_available_services("service-2")
    assert "dynamodb" in loader.list_available_services("service-2")
    assert loader.load_service_model("bridge-made-up", "service-2")["version"] == "2.0"


def test_the_bridges_clients_parse_the_trimmed_models(session):
    for service, operations in aws_models.OPERATIONS.items():
        client = aws.client(service)
        assert client.meta.service_model.operation_names == sorted(operations)
        assert client.meta.service_model.api_version == Loader().determine_latest_version(service, "service-2")
    # What the adapters catch is there (adapters/secrets.py: a secret never set).
    assert aws.client("ssm").exceptions.ParameterNotFound.__name__ == "ParameterNotFound"
    # Any other service: botocore's own model, whole.
    assert len(aws.client("sts").meta.service_model.operation_names) > 5


def test_the_trimmed_models_are_what_make_models_writes_from_the_installed_botocore():
    stale = [service for service, text in aws_models.generate().items()
             if not (aws.TRIMMED / f"{service}.json").is_file() or (aws.TRIMMED / f"{service}.json").read_text() != text]
    assert stale == [], f"the trimmed copies of {stale} are stale: run `make models` and commit them"


def test_the_lambdas_get_the_botocore_the_trimmed_models_were_cut_from():
    """Chalice packages PynamoDB's botocore (requirements.txt), not this venv's: unpinned, a deploy
    would take the newest, and its clients botocore's whole models."""
    import botocore

    [pinned] = re.findall(r"^botocore==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned == botocore.__version__, "pin requirements.txt's botocore to the installed one, and run `make models`"


@pytest.mark.parametrize("stale", [{"botocore": "0.0.1"}, {"api_version": "2000-01-01"}])
def test_a_trimmed_model_from_another_botocore_or_model_is_not_used(session, tmp_path, monkeypatch, stale):
    trimmed = json.loads((aws.TRIMMED / "ssm.json").read_text())
    (tmp_path / "ssm.json").write_text(json.dumps({**trimmed, **stale}))
    monkeypatch.setattr(aws, "TRIMMED", tmp_path)
    assert len(aws._loader(None).load_service_model("ssm", "service-2")["operations"]) > 100
    monkeypatch.setattr(aws, "TRIMMED", aws.TRIMMED.parent / "no-such-directory")
    assert len(aws._loader(None).load_service_model("sqs", "service-2")["operations"]) > 10


def test_with_aws_data_path_set_botocores_files_are_used(tmp_path):
    assert len(aws._loader(os.fspath(tmp_path)).load_service_model("ssm", "service-2")["operations"]) > 100


def _kept(service: str) -> dict:
    return aws.trimmed_model(f"{service}/{Loader().determine_latest_version(service, 'service-2')}/service-2")["operations"]


def test_every_client_method_the_bridge_names_is_in_the_trimmed_models():
    """A method missing from a trimmed model would fail in production only (AttributeError): each one
    named on a client in chalicelib/ (`client.send_message(`, `_in_tens(self.client.delete_message_batch, `)
    is kept in every trimmed model whose service has it."""
    from botocore import xform_name

    named = {m for path in (ROOT / "chalicelib").rglob("*.py")
             for m in re.findall(r"\b_?client(?:\(\))?\.([a-z_]+)", path.read_text())}
    assert {"get_parameter", "send_message_batch", "delete_message_batch", "get_queue_attributes"} <= named
    missing = []
    for service in aws_models.OPERATIONS:
        every = Loader().load_service_model(service, "service-2")["operations"]
        missing += [f"{service}:{op}" for op in every if xform_name(op) in named and op not in _kept(service)]
    assert missing == []


def test_every_operation_pynamodbs_connection_can_issue_is_in_the_trimmed_model():
    import pynamodb.constants
    import pynamodb.connection.base as base

    dispatched = {getattr(pynamodb.constants, node.args[0].id) for node in ast.walk(ast.parse(Path(base.__file__).read_text()))
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "dispatch"
                  and node.args and isinstance(node.args[0], ast.Name)}
    assert {"GetItem", "TransactWriteItems", "BatchGetItem", "Query"} <= dispatched
    assert sorted(dispatched - set(_kept("dynamodb"))) == []


def test_a_model_in_the_users_aws_models_is_used_as_botocore_uses_it(session, tmp_path, monkeypatch):
    """~/.aws/models (`aws configure add-model`) overrides botocore's own model, as AWS_DATA_PATH does:
    the trimmed copy, cut from botocore's, is not served over it."""
    full = Loader().load_data("ssm/2014-11-06/service-2")
    added = {**full, "operations": {**full["operations"], "BridgeAddedOperation": full["operations"]["GetParameter"]}}
    (tmp_path / "ssm" / "2014-11-06").mkdir(parents=True)
    (tmp_path / "ssm" / "2014-11-06" / "service-2.json").write_text(json.dumps(added))
    monkeypatch.setattr(Loader, "CUSTOMER_DATA_PATH", os.fspath(tmp_path))
    assert "BridgeAddedOperation" in aws._loader(None).load_service_model("ssm", "service-2")["operations"]
    # The services it does not hold still get their trimmed copies.
    assert sorted(aws._loader(None).load_service_model("sqs", "service-2")["operations"]) == sorted(
        aws_models.OPERATIONS["sqs"])
    # `make models` cuts from botocore's own files, whatever the developer added.
    assert aws_models.generate()["ssm"] == (aws.TRIMMED / "ssm.json").read_text()


def test_every_error_class_the_bridge_catches_is_in_the_trimmed_models():
    """`except client.exceptions.X:` is looked up only when an error reaches it, so an X missing from
    a trimmed model (one the whole model has: SSM's ThrottlingException, SQS's QueueDeletedRecently)
    fails in production only, on the error it was meant to catch (AttributeError)."""
    caught = {name for path in (ROOT / "chalicelib").rglob("*.py")
              for name in re.findall(r"\b_?client(?:\(\))?\.exceptions\.([A-Za-z_]+)", path.read_text())}
    assert "ParameterNotFound" in caught
    missing = []
    for service in aws_models.OPERATIONS:
        whole = Loader().load_service_model(service, "service-2")["shapes"]
        kept = aws.trimmed_model(f"{service}/{Loader().determine_latest_version(service, 'service-2')}/service-2")["shapes"]
        missing += [f"{service}:{name}" for name in caught
                    if whole.get(name, {}).get("exception") and not kept.get(name, {}).get("exception")]
    assert missing == [], "add an operation that raises them to infra/aws_models.py, and run `make models`"


CHECK = {"ConditionCheck": {"TableName": "t", "Key": {}, "ConditionExpression": "attribute_exists(pk)"}}


@pytest.mark.parametrize("service, operation, kwargs, answer, throttled", [
    ("dynamodb", "get_item", {"TableName": "t", "Key": {}}, error(
        "ProvisionedThroughputExceededException", "The level of configured provisioned throughput was exceeded"), True),
    ("dynamodb", "transact_write_items", {"TransactItems": [CHECK, CHECK]}, cancelled(2, "ThrottlingError", "Throttled"), True),
    ("dynamodb", "transact_write_items", {"TransactItems": [CHECK, CHECK]}, cancelled(2, "ConditionalCheckFailed", "No"), False),
    ("sqs", "send_message", {"QueueUrl": "https://q", "MessageBody": "{}"}, error("RequestThrottled", "Slow down"), True),
    ("ssm", "get_parameter", {"Name": "p"}, error("ThrottlingException", "Rate exceeded"), True),
    ("ssm", "get_parameter", {"Name": "p"}, error("ParameterNotFound", "no such parameter"), False),
])
def test_a_call_aws_throttles_after_botocores_retries_is_that_services_outage(session, monkeypatch, service,
                                                                            operation, kwargs, answer, throttled):
    """The worker waits out a throttled call (errors.Throttled: the service's outage), as it waits out a vendor's 5xx,
    instead of using up a try; any other error stays botocore's."""
    from botocore.exceptions import ClientError

    from chalicelib.errors import Throttled
    client = aws.client(service)
    answering(monkeypatch, client, None, lambda request: answer)
    with pytest.raises(Exception) as raised:
        getattr(client, operation)(**kwargs)
    assert isinstance(raised.value, Throttled) == throttled and isinstance(raised.value, ClientError) != throttled
    if throttled:
        assert raised.value.outage == client.meta.service_model.service_id and raised.value.retryable


# -- endpoints.json: every partition whole, its services cut to the bridge's (aws_models/endpoints.json) --------------

VARIANTS = [{}, {"use_fips_endpoint": True}, {"use_dualstack_endpoint": True},
            {"use_fips_endpoint": True, "use_dualstack_endpoint": True}]


def _sessions(monkeypatch) -> tuple:
    """Two botocore sessions: the bridge's loader (the trimmed endpoints.json), and botocore's own."""
    from botocore.loaders import create_loader
    from botocore.session import get_session

    for key in ("AWS_ENDPOINT_URL", "AWS_DATA_PATH", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
                "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    ours, botocores = get_session(), get_session()
    ours.register_component("data_loader", aws._loader(None))
    botocores.register_component("data_loader", create_loader(None))
    return ours, botocores


def _every_region(service: str) -> list[str]:
    """Every region of every partition in botocore's whole endpoints.json, and every endpoint name it gives the
    service ("local", "dynamodb-fips-us-gov-west-1", "fips-us-east-1"...)."""
    names = set()
    for partition in Loader().load_data("endpoints")["partitions"]:
        names |= set(partition["regions"]) | set(partition["services"].get(service, {}).get("endpoints", {}))
    return sorted(names)


def _resolved(session, service: str, region: str, variant: dict) -> object:
    """What a client made in `region` with `variant` resolves: its endpoint, region, partition, signing region and
    name, and what its endpoint rules are given (the request URLs come from them); or the error it is refused with."""
    from botocore.config import Config

    try:
        made = session.create_client(service, region_name=region, config=Config(**variant))
    except Exception as refused:
        return f"{type(refused).__name__}: {refused}"
    signer, builtins = made._request_signer, made._ruleset_resolver._builtins
    return (made.meta.endpoint_url, made.meta.region_name, made.meta.partition, signer.region_name,
            signer.signing_name, signer._signature_version,
            {k: v() if callable(v) else v for k, v in builtins.items()})   # the account's id: read when asked


def _bridged(session, service: str, region: str, variant: dict) -> object:
    """What the endpoint file gives a client made in `region` with `variant`: the legacy resolution a client's
    creation makes (botocore.client.ClientEndpointBridge, as ClientCreator makes it; the only place the file is read
    from, traced), at a ten-thousandth of a client's cost; or the error it is refused with."""
    from botocore.client import ClientEndpointBridge
    from botocore.config import Config

    metadata = session.get_service_model(service).metadata
    bridge = ClientEndpointBridge(session._get_internal_component("endpoint_resolver"), session.get_scoped_config(),
                                  Config(**variant), service_signing_name=metadata.get("signingName"),
                                  config_store=session.get_component("config_store"),
                                  service_signature_version=metadata.get("signatureVersion"))
    try:
        return bridge.resolve(service, region)
    except Exception as refused:
        return f"{type(refused).__name__}: {refused}"


def test_the_trimmed_endpoints_resolve_every_region_and_variant_as_botocores_whole_file(monkeypatch):
    """Every region botocore knows (all partitions) × the bridge's three services × FIPS and dual-stack (as a
    client's Config or AWS_USE_FIPS_ENDPOINT set them): what a client from the trimmed file resolves is what one
    from botocore's resolves, and botocore's whole file is never read for it."""
    ours, botocores = _sessions(monkeypatch)
    read = []
    whole = Loader.load_data_with_path
    monkeypatch.setattr(Loader, "load_data_with_path", lambda self, name: read.append((type(self), name)) or whole(self, name))
    regions = {p["partition"]: p["regions"] for p in Loader().load_data("endpoints")["partitions"]}
    compared = refused = 0
    for service in aws_models.OPERATIONS:
        for region in _every_region(service):
            for variant in VARIANTS:
                ourselves = _bridged(ours, service, region, variant)
                assert ourselves == _bridged(botocores, service, region, variant), (service, region, variant)
                compared += 1
                refused += isinstance(ourselves, str)
        for partition, its in regions.items():       # made whole, one region of each partition
            for variant in VARIANTS:
                region = sorted(its)[0]
                assert _resolved(ours, service, region, variant) == _resolved(botocores, service, region, variant), (
                    service, region, variant)
    assert {"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"} <= set(regions) and "eu-west-1" in regions["aws"]
    assert compared > 3 * 4 * sum(map(len, regions.values()))
    assert 0 < refused < compared / 4                # dual-stack in aws-iso and aws-iso-b, refused by both
    assert ("endpoints" in {name for t, name in read if t is Loader}       # botocore's session read its file,
            and "endpoints" not in {name for t, name in read if t is not Loader})  # the bridge's never
    assert ours.get_component("data_loader").load_data("endpoints")["partitions"][0]["services"].kept.keys() == set(
        aws_models.OPERATIONS)


def test_any_other_service_resolves_from_botocores_whole_endpoints(monkeypatch):
    """A service the trimmed file does not hold (STS, for credentials that assume a role; IAM, whose endpoint is
    global) is resolved from botocore's whole file, read once by the session when first asked for."""
    ours, botocores = _sessions(monkeypatch)
    for service, region in (("iam", "eu-west-1"), ("sts", "eu-west-1"), ("sts", "aws-global"), ("s3", "us-east-1"),
                            ("iam", "cn-north-1"), ("route53", "us-gov-west-1"), ("sts", "us-iso-east-1")):
        for variant in VARIANTS:
            assert _bridged(ours, service, region, variant) == _bridged(botocores, service, region, variant)
    iam = _resolved(ours, "iam", "eu-west-1", {})
    assert iam == _resolved(botocores, "iam", "eu-west-1", {})
    assert iam[:4] == ("https://iam.amazonaws.com", "aws-global", "aws", "us-east-1")   # not iam.eu-west-1...
    resolver = ours._get_internal_component("endpoint_resolver")
    assert sorted(resolver.get_available_endpoints("sts")) == sorted(
        botocores._get_internal_component("endpoint_resolver").get_available_endpoints("sts"))
    assert ours.get_available_regions("iam") == botocores.get_available_regions("iam")


def test_trimmed_endpoints_from_another_botocore_or_with_aws_data_path_are_not_used(tmp_path, monkeypatch):
    trimmed = json.loads((aws.TRIMMED / "endpoints.json").read_text())
    (tmp_path / "endpoints.json").write_text(json.dumps({**trimmed, "botocore": "0.0.1"}))
    monkeypatch.setattr(aws, "TRIMMED", tmp_path)
    endpoints, path = aws._loader(None).load_data_with_path("endpoints")
    assert not isinstance(endpoints["partitions"][0]["services"], aws._Services)
    assert len(endpoints["partitions"][0]["services"]) > 200
    assert Loader().is_builtin_path(path)
    monkeypatch.setattr(aws, "TRIMMED", aws.TRIMMED.parent / "no-such-directory")
    assert len(aws._loader(None).load_data("endpoints")["partitions"][0]["services"]) > 200
    monkeypatch.undo()
    ours = aws._loader(None).load_data("endpoints")["partitions"][0]["services"]
    assert isinstance(ours, aws._Services) and sorted(ours.kept) == sorted(aws_models.OPERATIONS)
    (tmp_path / "extra").mkdir()                     # AWS_DATA_PATH: botocore's own files
    assert not isinstance(aws._loader(os.fspath(tmp_path / "extra")).load_data("endpoints")["partitions"][0]["services"],
                          aws._Services)


def test_an_endpoints_json_in_the_users_aws_models_is_used_as_botocore_uses_it(tmp_path, monkeypatch):
    made_up = {"partitions": [{**Loader().load_data("endpoints")["partitions"][0], "dnsSuffix": "example.com"}],
               "version": 3}
    (tmp_path / "endpoints.json").write_text(json.dumps(made_up))
    monkeypatch.setattr(Loader, "CUSTOMER_DATA_PATH", os.fspath(tmp_path))
    endpoints, path = aws._loader(None).load_data_with_path("endpoints")
    assert endpoints["partitions"][0]["dnsSuffix"] == "example.com" and path.startswith(os.fspath(tmp_path))
