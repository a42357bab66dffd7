"""The store contract: one suite, run against the in-memory twin and against the DynamoDB store on
a moto server (a table made from infra/template.yaml for each test)."""
from __future__ import annotations

import pytest

from chalicelib.adapters.memory import MemoryStore
from tests.fakes import FakeClock
from tests.support.moto_server import moto_endpoint  # noqa: F401 (a fixture)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=["memory", "dynamo"])
def store(request, clock, monkeypatch):
    if request.param == "memory":
        yield MemoryStore(clock)
        return
    from infra.local.aws import deploy, unique_prefix

    from chalicelib.adapters.dynamo import DynamoStore, bind

    resources = deploy(request.getfixturevalue("moto_endpoint"), unique_prefix("c"))
    for key, value in resources.env().items():
        monkeypatch.setenv(key, value)
    bind(resources.table)
    yield DynamoStore(clock)
    bind("rf-intercom-bridge-table")
