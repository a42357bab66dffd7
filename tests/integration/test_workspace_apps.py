"""A workspace connected with its own private app and by OAuth through the public app (either order), on
real parts: the app over HTTP on moto, the operator's CLI, the OAuth routes followed as a browser does
(requests, keeping the cookie). Intercom still sends each app's webhooks, each signed with that app's
client secret: both are accepted, the worker uses the most recent connection's token, and the operator
sees the apps (never a secret) and removes the one retired."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from chalicelib.cli import main

from .test_oauth_browser import APP_SECRET, OAUTH_WS, public_app

PRIVATE_SECRET = "private-app-secret"


@pytest.fixture
def sim_rt(bridge, other_workspaces, clock):
    """The public app's Intercom, holding workspace acme-oauth (not connected yet), and the API's runtime."""
    return public_app(bridge, other_workspaces, clock, OAUTH_WS, "Acme Oauth Ltd")


def by_oauth(bridge, sim) -> str:
    """The admin opens the operator's link, continues, authorizes: the callback's page."""
    out = run(bridge, "workspace", "oauth-link", "--api-url", bridge.server.url, "--workspace", OAUTH_WS)
    browser = requests.Session()
    link = urlsplit(out["url"])
    start = browser.post(f"{bridge.server.url}{link.path}", data=dict(parse_qsl(link.query)), allow_redirects=False,
                         timeout=10)
    assert start.status_code == 303
    decided = requests.post(f"{sim.base_url}/oauth", allow_redirects=False, timeout=10,
                            data={**dict(parse_qsl(urlsplit(start.headers["Location"]).query)), "decision": "allow"})
    page = browser.get(decided.headers["Location"], timeout=10)
    assert page.status_code == 200 and 'id="workspace-id">acme-oauth<' in page.text, page.text
    return page.text


def privately(bridge, sim) -> None:
    run(bridge, "workspace", "connect", OAUTH_WS, "--token", f"{OAUTH_WS}-token", "--client-secret", PRIVATE_SECRET,
        "--api-base", sim.base_url)


def run(bridge, *argv: str) -> dict:
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main([*argv, "--json"], rt=bridge.operator()) == 0
    return json.loads(out.getvalue())


def accepted(bridge, sim, contact_id: str, *secrets: str) -> list[int]:
    return [bridge.post_intercom(sim.webhook_payload("contact.lead.updated", contact_id), secret=s).status_code
            for s in secrets]


@pytest.mark.parametrize("order", ["private, then oauth", "oauth, then private"])
def test_each_apps_webhooks_are_accepted_after_connecting_both_ways(bridge, sim_rt, order):
    sim, rt = sim_rt
    contact = sim.add_contact("pat@example.com")
    first, then = (privately, by_oauth) if order.startswith("private") else (by_oauth, privately)
    first(bridge, sim)
    assert accepted(bridge, sim, contact["id"], PRIVATE_SECRET if first is privately else APP_SECRET) == [200]
    then(bridge, sim)
    for _ in range(2):                          # at once, and once what the API cached has expired
        assert accepted(bridge, sim, contact["id"], PRIVATE_SECRET, APP_SECRET, "another-secret") == [200, 200, 401]
        bridge.rt.clock.now += 61

    token = rt.secrets.scoped("worker").get(f"intercom/{OAUTH_WS}/token")
    assert (token == f"{OAUTH_WS}-token") == (then is privately)          # the most recent connection's
    [listed] = [w for w in run(bridge, "workspace", "list")["workspaces"] if w["workspace"] == OAUTH_WS]
    assert (listed["apps"], listed["token_app"]) == (["private", "oauth"], "private" if then is privately else "oauth")


def test_reconnecting_by_oauth_lists_the_app_once_and_the_retired_private_app_is_removed(bridge, sim_rt):
    sim, rt = sim_rt
    contact = sim.add_contact("pat@example.com")
    privately(bridge, sim)
    by_oauth(bridge, sim)
    by_oauth(bridge, sim)
    [listed] = [w for w in run(bridge, "workspace", "list")["workspaces"] if w["workspace"] == OAUTH_WS]
    assert listed["apps"] == ["private", "oauth"] and listed["secrets_set"] == ["client-secret", "oauth", "token"]
    assert PRIVATE_SECRET not in json.dumps(listed) and APP_SECRET not in json.dumps(listed)

    assert run(bridge, "workspace", "remove-app", OAUTH_WS, "private") == {
        "workspace": OAUTH_WS, "removed": "private", "apps": ["oauth"], "token_app": "oauth"}
    assert rt.secrets.scoped("edge").get(f"intercom/{OAUTH_WS}/client-secret") is None
    bridge.rt.clock.now += 60                                 # the API's cached connection has expired
    assert accepted(bridge, sim, contact["id"], PRIVATE_SECRET, APP_SECRET) == [401, 200]


def test_rotating_the_public_apps_secret_retires_the_copy_an_old_oauth_connect_left(bridge, sim_rt, capsys):
    """Connected by OAuth before the public app's secret was referenced: the callback copied it as the
    workspace's own. The operator rotates the public app's secret (it leaked): the old one verifies nothing."""
    sim, rt = sim_rt
    contact = sim.add_contact("pat@example.com")
    by_oauth(bridge, sim)
    rt.store.connections.unmark(OAUTH_WS, {"oauth"})                  # the record and the copy it left then
    rt.store.connections.put_workspace(OAUTH_WS, {"client-secret"})
    rt.secrets.scoped("edge").put(f"intercom/{OAUTH_WS}/client-secret", APP_SECRET)
    assert main(["workspace", "oauth-app", "--client-secret", "rotated-secret"], rt=bridge.operator()) == 0
    assert (f"Workspace(s) {OAUTH_WS}, connected by OAuth with a copy of the public app's client secret as their "
            "own, are now connected through the public app (the copies deleted).") in capsys.readouterr().out
    bridge.rt.clock.now += 61                                 # the API's cached connection has expired
    assert accepted(bridge, sim, contact["id"], "rotated-secret", APP_SECRET) == [200, 401]
    [listed] = [w for w in run(bridge, "workspace", "list")["workspaces"] if w["workspace"] == OAUTH_WS]
    assert listed["apps"] == ["oauth"]
