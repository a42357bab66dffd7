"""One moto server (real HTTP to DynamoDB, SQS, CloudFormation, SSM) per test session and folder:
its endpoint, as the fixture `moto_endpoint` (a conftest imports it)."""
from collections.abc import Iterator

import pytest

from infra.local.aws import start_moto, stop_moto


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server, endpoint = start_moto()
    yield endpoint
    stop_moto(server)
