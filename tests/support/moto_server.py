"""One moto server (real HTTP to DynamoDB, SQS, CloudFormation, SSM) per test session and folder:
its endpoint, as the fixture `moto_endpoint` (a conftest imports it), and a store over a new stack's table on it."""
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from infra.local.aws import start_moto, stop_moto


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server, endpoint = start_moto()
    yield endpoint
    stop_moto(server)


@contextmanager
def dynamo_store(endpoint: str, monkeypatch: pytest.MonkeyPatch, clock: Any, prefix: str) -> Iterator[Any]:
    """The DynamoDB store over the table of a stack deployed on moto server for the test, its environment set and
    the models bound to that table meanwhile."""
    from infra.local.aws import deploy, unique_prefix

    from chalicelib.adapters.dynamo import DynamoStore, bind

    resources = deploy(endpoint, unique_prefix(prefix))
    for key, value in resources.env().items():
        monkeypatch.setenv(key, value)
    bind(resources.table)
    try:
        yield DynamoStore(clock)
    finally:
        bind("rf-intercom-bridge-table")
