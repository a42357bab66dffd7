"""The OAuth callback when Intercom is slow: the API function stops at its timeout, and API Gateway then
answers its own 502/504 to a link already spent, with nothing logged. The callback gives Intercom only the
time its Lambda context says is left (less what storing and answering take), and answers its own page
saying what happened, with one log line. Over HTTP on moto, the public app's Intercom simulated; the
context's time left is the test's (a constant: the simulator's stall is what runs out of it)."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from chalice.local import LambdaContext

from chalicelib.services.oauth import FINISH_MS
from tests.support.log_lines import written_lines

from .test_oauth_browser import OAUTH_WS, OAuthStack, public_app

STALL = 2.0        # seconds the simulator holds the call: past the half second the callback has for Intercom


def authorized(stack: OAuthStack) -> tuple[requests.Session, str]:
    """A browser that opened the operator's link, continued and authorized on Intercom's page: the callback URL
    Intercom sent it back to."""
    browser = requests.Session()
    link = stack.link()
    begun = browser.post(link.split("?")[0], data=parse_qs(urlsplit(link).query), allow_redirects=False, timeout=10)
    query = {k: v[0] for k, v in parse_qs(urlsplit(begun.headers["Location"]).query).items()}
    decided = browser.post(f"{stack.sim.base_url}/oauth", data={**query, "decision": "allow"}, allow_redirects=False,
                           timeout=10)
    return browser, decided.headers["Location"]


@pytest.mark.parametrize("slow, said", [
    ("token", "Intercom did not answer in time"),
    ("me", "Intercom gave this bridge access, but did not say in time which workspace it is for"),
])
def test_a_slow_intercom_gets_the_admin_our_page_saying_so_within_the_functions_time(
        bridge, other_workspaces, clock, monkeypatch, slow, said):
    sim, rt = public_app(bridge, other_workspaces, clock, OAUTH_WS, "Acme Oauth Ltd")
    stack = OAuthStack(bridge, sim, rt, None)
    browser, callback = authorized(stack)
    if slow == "token":     # Intercom makes the token, and its answer comes too late
        sim.lose_answer_next("POST", "^/auth/eagle/token$", "stall", seconds=STALL)
    else:
        sim.delay_next("GET", "^/me$", STALL)
    monkeypatch.setattr(LambdaContext, "get_remaining_time_in_millis", lambda self: FINISH_MS + 500)

    with written_lines() as logged:
        page = browser.get(callback, timeout=30)
    assert page.status_code == 504 and said in page.text
    assert "Nothing was connected or stored" in page.text and "bridge workspace oauth-link" in page.text
    lines = [json.loads(line) for line in logged()]
    [refused] = [line for line in lines if line["message"] == "OAuth callback refused"]
    assert said in refused["reason"]
    assert stack.exchanges() == 1 and stack.nothing_stored()
    made = sim.oauth_codes.values()         # the token Intercom made: never shown, logged or kept
    assert not any(token in page.text or token in line for token in made for line in logged())

    again = browser.get(callback, timeout=30)          # a reload: the state is spent, and says what came of it
    assert "already used, and nothing came of it" in again.text and stack.exchanges() == 1


@pytest.mark.parametrize("limited, said", [
    ("^/auth/eagle/token$", "Intercom is limiting calls for now"),
    ("^/me$", "Intercom gave this bridge access, but is limiting calls for now, so it did not say which workspace it "
              "is for"),
])
def test_an_intercom_limiting_calls_gets_the_admin_our_page_saying_when_to_try_again_at_once(
        bridge, other_workspaces, clock, limited, said):
    from chalicelib.domain.history import clock_time

    sim, rt = public_app(bridge, other_workspaces, clock, OAUTH_WS, "Acme Oauth Ltd")
    stack = OAuthStack(bridge, sim, rt, None)
    browser, callback = authorized(stack)
    sim.fail_next("*", limited, 429, seconds=1e5, headers={"Retry-After": "3600"})
    page = browser.get(callback, timeout=30)
    assert page.status_code == 503 and said in page.text and clock.slept == []
    assert f"try again after {clock_time(clock() + 3600, clock())}" in page.text
    assert "Nothing was connected or stored" in page.text and "bridge workspace oauth-link" in page.text
    assert stack.exchanges() == 1 and stack.nothing_stored()


@pytest.mark.parametrize("failing", ["oauth_ticket", "spend_oauth_ticket", "use_oauth_state"])
def test_a_store_that_fails_gets_the_admin_a_page_to_reload_and_the_reload_goes_on(bridge, other_workspaces, clock,
                                                                                 failing):
    """The table throttles (or does not answer in time) while the admin opens the link, continues, or comes back
    from Intercom: they got a bare JSON 500 ({"Code": "InternalServerError"}, no page, no no-store), and nothing to
    do. Expected: a page saying nothing was connected and to reload in a minute, with the pages' headers; the
    reload, the table back, goes on."""
    sim, rt = public_app(bridge, other_workspaces, clock, OAUTH_WS, "Acme Oauth Ltd")
    stack = OAuthStack(bridge, sim, rt, None)
    browser, link = requests.Session(), stack.link()
    if failing == "use_oauth_state":
        browser, callback = authorized(stack)
    store = rt.store.connections
    kept = getattr(store, failing)

    def down(*args, **kwargs):
        raise RuntimeError("ProvisionedThroughputExceededException")
    setattr(store, failing, down)

    def ask() -> requests.Response:
        if failing == "use_oauth_state":
            return browser.get(callback, timeout=30)
        if failing == "oauth_ticket":
            return browser.get(link, timeout=30)
        return browser.post(link.split("?")[0], data=parse_qs(urlsplit(link).query), allow_redirects=False,
                            timeout=30)
    page = ask()
    assert page.status_code == 503 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
    assert "Nothing was connected" in page.text and "Reload this page in a minute" in page.text
    setattr(store, failing, kept)
    again = ask()
    assert again.status_code == (200 if failing == "oauth_ticket" else 303 if failing == "spend_oauth_ticket" else 200)
    assert failing != "use_oauth_state" or rt.store.connections.workspace(OAUTH_WS) is not None

