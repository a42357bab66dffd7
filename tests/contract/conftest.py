"""The store contract: one suite, run against the in-memory twin and against the DynamoDB store on
a moto server (a table made from infra/template.yaml for each test)."""
from __future__ import annotations

import pytest

from chalicelib.adapters.memory import MemoryStore
from tests.fakes import FakeClock
from tests.support.moto_server import dynamo_store, moto_endpoint  # noqa: F401 (a fixture)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=["memory", "dynamo"])
def store(request, clock, monkeypatch):
    if request.param == "memory":
        yield MemoryStore(clock)
        return
    with dynamo_store(request.getfixturevalue("moto_endpoint"), monkeypatch, clock, "c") as dynamo:
        yield dynamo
