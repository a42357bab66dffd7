"""The `bridge` fixture connects the workspace and Referral Factory by the connects' own writes, without their
checks (conftest.connected_before): this proves those writes leave exactly what the operator's connects would,
so no test's starting state depends on the shortcut."""
from __future__ import annotations

from infra.local.aws import deploy, unique_prefix

from .conftest import connected_before


def left_by(moto_endpoint, monkeypatch, clock, intercom, rf, checked: bool) -> tuple[dict, list]:
    """Every secret (named below the stack's path) and every table item a fresh stack holds after connected_before."""
    from chalicelib.config import Config
    from chalicelib.runtime import Runtime

    resources = deploy(moto_endpoint, unique_prefix())
    for key, value in {**resources.env(), "INTERCOM_BASE_URL": intercom.base_url, "RF_BASE_URL": rf.base_url}.items():
        monkeypatch.setenv(key, value)
    connected_before(Runtime(Config.from_env(), clock=clock, sleeper=clock.sleep), clock, checked=checked)
    path = f"/{resources.prefix}"
    ssm = resources.client("ssm")
    secrets = {p["Name"][len(path):]: (p["Type"], p["Value"]) for page in ssm.get_paginator(
        "get_parameters_by_path").paginate(Path=path, Recursive=True, WithDecryption=True) for p in page["Parameters"]}
    items = [{name: {kind: sorted(v) if kind == "SS" else v for kind, v in value.items()} for name, value in item.items()}
             for item in resources.client("dynamodb").scan(TableName=resources.table, ConsistentRead=True)["Items"]]
    return secrets, sorted(items, key=repr)     # (a string set's order is no part of it)


def test_the_fixture_leaves_what_the_operators_connects_leave(moto_endpoint, monkeypatch, clock, intercom, rf):
    checked = left_by(moto_endpoint, monkeypatch, clock, intercom, rf, checked=True)
    assert intercom.count("GET", "/me") == 1      # the connect did check the token
    secrets, items = checked
    assert len(secrets) == 4 and len(items) == 3, checked     # two secrets each; the connection, the list, RF's
    assert left_by(moto_endpoint, monkeypatch, clock, intercom, rf, checked=False) == checked
    assert intercom.count("GET", "/me") == 1      # the fixture's writes asked nothing
