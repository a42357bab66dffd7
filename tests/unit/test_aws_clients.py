"""adapters/aws.py: the container's botocore session checks a service's name in that service's own
directory instead of listing all of botocore's (~25 ms of a cold start), and answers as botocore does."""
from __future__ import annotations

import json
import os

import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from chalicelib.adapters import aws

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
