"""Fixtures for the infra.local tests: one moto server per session, one fresh
stack (from infra/template.yaml) per test."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The project root must be importable (infra/ is a namespace package); pytest's
# rootdir insertion depends on whether tests/ has an __init__.py.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra.local.aws import Resources, deploy, destroy, unique_prefix  # noqa: E402
from tests.support.moto_server import moto_endpoint  # noqa: E402,F401 (a fixture)


@pytest.fixture
def stack(moto_endpoint: str) -> Resources:
    resources = deploy(moto_endpoint, unique_prefix("lt"))
    yield resources
    destroy(resources)
