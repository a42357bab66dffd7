"""Connecting, on the in-memory twins: the OAuth state (pure), the OAuth callback's decisions, the
token check before a connect, disconnect. Fast; the same flows on real parts are in
tests/integration/test_connect.py and test_oauth_browser.py."""
from __future__ import annotations

import pytest

from chalicelib.domain import oauth
from chalicelib.domain.oauth import StateError
from chalicelib.errors import Transient
from chalicelib.services import oauth as flow
from chalicelib.services.connections import (ConnectError, check_workspace_id, configure_oauth, connect_workspace,
                                             disconnect_workspace)
from tests.fakes import FakeConnecting
from tests.unit.connecting import HERE, connected, rt, started, ticket  # noqa: F401  (rt: a fixture)

KEY = "k" * 43
NOW = 1_790_000_000.0


# --- the state ----------------------------------------------------------------------------------

def test_a_state_reads_back_until_it_expires():
    state = oauth.make_state(KEY, "n" * 24, NOW)
    assert oauth.read_state(KEY, state, NOW + oauth.STATE_SECONDS - 1) == oauth.State("n" * 24, int(NOW) + 600)
    only = oauth.make_state(KEY, "n" * 24, NOW, workspace="ws1")
    assert oauth.read_state(KEY, only, NOW).workspace == "ws1"
    with pytest.raises(StateError, match="expired"):
        oauth.read_state(KEY, state, NOW + oauth.STATE_SECONDS)


@pytest.mark.parametrize("state", [
    oauth.make_state("another-key", "n" * 24, NOW),
    oauth.make_state(KEY, "n" * 24, NOW)[:-1] + ("B" if oauth.make_state(KEY, "n" * 24, NOW)[-1] == "A" else "A"),
    "n" * 24 + f".{int(NOW) + 10**6}." + oauth.make_state(KEY, "n" * 24, NOW).rsplit(".", 1)[1],
    # the workspace a link allowed, removed or swapped for the attacker's
    oauth.make_state(KEY, "n" * 24, NOW, workspace="ws1").replace(".ws1.", ".."),
    oauth.make_state(KEY, "n" * 24, NOW, workspace="ws1").replace(".ws1.", ".ws2."),
    "garbage", "a.b.c", "n" * 24 + ".12.", "é" * 30, "x" * 500,
    # a signature no signing makes: a lone surrogate (a query's bytes that were not UTF-8) could not be encoded
    # to compare, and the callback answered the page of an outage of the bridge's own storage
    "n" * 24 + f".{int(NOW) + 10}..\udc80", "n" * 24 + f".{int(NOW) + 10}.." + "\udc80" * 43,
    "n" * 24 + f".{int(NOW) + 10}.." + "é" * 43])
def test_a_state_this_bridge_did_not_sign_is_refused(state):
    with pytest.raises(StateError, match="not one this bridge issued"):
        oauth.read_state(KEY, state, NOW)


@pytest.mark.parametrize("state", [None, ""])
def test_no_state_is_refused(state):
    with pytest.raises(StateError, match="no state"):
        oauth.read_state(KEY, state, NOW)


def test_the_cookie_gives_back_only_a_well_formed_secret():
    name = oauth.cookie_name("b" * 43)
    assert oauth.cookie_secret(f"a=1; {name}={'n' * 24}; b=2", name) == "n" * 24
    assert oauth.cookie_secret(f"{name}=<script>", name) is None and oauth.cookie_secret(None, name) is None
    assert oauth.cookie_secret(f"{oauth.cookie_name('c' * 43)}={'n' * 24}", name) is None    # another start's


def test_a_regional_workspace_gets_its_api_base_only_when_checked_on_the_default_one():
    eu = oauth.workspace_of({"app": {"id_code": "abc", "name": "Acme", "region": "EU"}})
    assert eu.api_base("https://api.intercom.io") == "https://api.eu.intercom.io"
    assert eu.api_base("http://127.0.0.1:9") is None
    assert oauth.workspace_of({"app": {"id_code": "abc"}}).name == "abc"
    with pytest.raises(ValueError):
        oauth.workspace_of({"type": "admin"})


# --- the OAuth use case -----------------------------------------------------------------------

def test_opening_the_link_spends_nothing_and_its_page_continues_with_a_post(rt):
    """Mail scanners, chat previews and prefetches open links: the GET answers a page, and only its
    button (a POST of the ticket) spends it."""
    given = ticket(rt)
    for _ in range(3):
        page = flow.start(rt, HERE, given)
        assert page.status == 200 and "Location" not in page.headers and "Set-Cookie" not in page.headers
        assert f'<form method="post" action="{HERE.start}">' in page.html
        assert f'<input type="hidden" name="ticket" value="{given}">' in page.html and "Continue to Intercom" in page.html
    assert flow.begin(rt, HERE, given).status == 303
    assert flow.start(rt, HERE, given).status == 403                      # spent: the page says so
    only = ticket(rt, "ws1")
    assert "This link connects workspace <code>ws1</code> only" in flow.start(rt, HERE, only).html


def test_continuing_redirects_with_a_signed_state_and_binds_the_browser(rt):
    page = flow.begin(rt, HERE, ticket(rt))
    location = page.headers["Location"]
    assert location.startswith("https://app.intercom.com/oauth?client_id=app-id&state=")
    assert "redirect_uri=https%3A%2F%2Fbridge.example%2Fapi%2Foauth%2Fintercom%2Fcallback" in location
    assert "HttpOnly" in page.headers["Set-Cookie"] and "Secure" in page.headers["Set-Cookie"]
    assert rt.store.connections.workspaces() == set()                     # a start stores nothing


def test_the_callback_connects_the_workspace_the_token_belongs_to(rt):
    query, cookie = started(rt)
    rt.auth.codes["code="] = "tok-1"
    page = flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE)
    assert page.status == 200 and "Acme &lt;b&gt;" in page.html and "<b>" not in page.html   # escaped
    assert "https://bridge.example/api/webhooks/intercom" in page.html and "tok-1" not in page.html
    assert steps(page) == [          # a first connect: no campaign names it, nothing waits for it
        "In your app's Webhooks settings, use https://bridge.example/api/webhooks/intercom and subscribe to "
        "contact.lead.updated, contact.user.updated, contact.lead.signed_up, contact.merged, contact.deleted, "
        "contact.archived.",
        'Write the campaign\'s settings with workspace: "ws1" and apply them: bridge settings apply campaign.yaml.']
    assert rt.secrets.scoped("worker").get("intercom/ws1/token") == "tok-1"
    # The public app's client secret signs the workspace's webhooks: referenced, not copied.
    assert rt.secrets.scoped("edge").get("intercom/ws1/client-secret") is None
    conn = rt.store.connections.workspace("ws1")
    assert (conn.secrets, conn.token_app) == ({"token", "oauth"}, "oauth")


def headline(page) -> str:
    """The connected page's first paragraph, as the admin reads it."""
    import html
    import re
    [said] = re.findall(r'<p class="ok">(.*?)</p>', page.html, re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", said)).split())


@pytest.mark.parametrize("before, says", [
    ([], "Connected: Intercom workspace Acme <b> (app_id ws1)."),
    # Walk: a workspace connected by its private app, then by OAuth for the first time, read "reconnected, its
    # settings and links are as they were": the OAuth app was added beside the private one, and its token replaced
    # the private app's as the one the worker uses (the most recent connection's: domain/apps.py).
    (["private"], "Connected: Intercom workspace Acme <b> (app_id ws1) — connected by OAuth beside its private app, "
                  "its settings and links as they were: the bridge calls Intercom with the token this authorization "
                  "gave from now on, not its private app's; webhooks signed by either app are accepted (once the "
                  "private app is removed in Intercom: bridge workspace remove-app ws1 private)."),
    # Both apps, the private one connected last (its token the worker's): OAuth takes the token back.
    (["oauth", "private"], "Connected: Intercom workspace Acme <b> (app_id ws1) — reconnected by OAuth beside its "
                           "private app, its settings and links as they were: the bridge calls Intercom with the token "
                           "this authorization gave from now on, not its private app's; webhooks signed by either app "
                           "are accepted (once the private app is removed in Intercom: bridge workspace remove-app ws1 "
                           "private)."),
    (["private", "oauth"], "Connected: Intercom workspace Acme <b> (app_id ws1) — reconnected, its settings and links "
                           "are as they were."),
    (["oauth"], "Connected: Intercom workspace Acme <b> (app_id ws1) — reconnected, its settings and links are as "
                "they were."),
])
def test_the_connected_page_says_what_the_oauth_connect_did_to_the_workspaces_apps_and_token(rt, before, says):
    rt.auth.apps["tok-0"] = rt.auth.apps["tok-1"]
    for n, app in enumerate(before):
        if app == "private":
            connect_workspace(rt, "ws1", "tok-0", "cs")
        else:
            connected(rt, f"code-{n}")
    assert headline(connected(rt)) == says
    conn = rt.store.connections.workspace("ws1")
    assert (conn.token_app, rt.secrets.scoped("worker").get("intercom/ws1/token")) == ("oauth", "tok-1")
    assert sorted(conn.secrets) == sorted({"token", "oauth"} | ({"client-secret"} if "private" in before else set()))


def steps(page) -> list[str]:
    """The connected page's next steps, as the admin reads them (tags dropped, entities read)."""
    import html
    import re
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", item)).split())
            for item in re.findall(r"<li>(.*?)</li>", page.html, re.S)]


def campaign(campaign_id: str, workspace: str = "ws1", sync: dict | None = None) -> dict:
    doc = {"campaign_id": campaign_id, "workspace": workspace,
           "leads": {"action": "create_lead", "fields": [{"from": "email", "to": "email"}]}}
    return {**doc, "sync": sync} if sync else doc


ONGOING = {"mode": "ongoing", "fields": [{"from": "email", "to": "email"}, {"from": "name", "to": "first_name"}]}


def test_a_reconnect_after_a_disconnect_names_the_campaigns_applied_the_replay_and_the_ongoing_sync_topics(rt):
    """Settings applied already, a disconnect parked work, campaign 43's contact sync is ongoing: the
    page says so, instead of asking to write and apply settings again."""
    connect_workspace(rt, "ws1", "tok-1", "cs")
    rt.store.settings.put("42", campaign("42"), "ws1")
    rt.store.settings.put("43", campaign("43", sync=ONGOING), "ws1")
    rt.store.settings.put("44", campaign("44", "ws2"), "ws1")         # moved to another workspace since
    rt.store.settings.put("44", campaign("44", "ws2"), "ws2")
    disconnect_workspace(rt, "ws1")
    page = connected(rt)
    assert headline(page) == (
        "Connected: Intercom workspace Acme <b> (app_id ws1) — reconnected by OAuth beside its private app, its "
        "settings and links as they were: the bridge calls Intercom with the token this authorization gave from now "
        "on, not its private app's; webhooks signed by either app are accepted (once the private app is removed in "
        "Intercom: bridge workspace remove-app ws1 private).")
    assert steps(page) == [
        "Check that your app's Webhooks settings use https://bridge.example/api/webhooks/intercom and subscribe to "
        "contact.lead.updated, contact.user.updated, contact.lead.signed_up, contact.merged, contact.deleted, "
        "contact.archived, and, for the ongoing contact sync of campaign 43, contact.user.created and "
        "contact.lead.created.",
        'Campaigns 42, 43 already name this workspace: their settings stand, nothing to apply. For another campaign, '
        'write its settings with workspace: "ws1" and apply them: bridge settings apply campaign.yaml.',
        # Work a disconnect parked comes back with the replay the CLI advises, not every dead letter.
        "Work that came while the workspace was disconnected waits in the dead-letter queue, if any (bridge dlq "
        'list shows it): bring it back with bridge dlq replay --reason "Intercom workspace ws1 was disconnected".']
    again = connected(rt, "code-2")                                 # connected: nothing was parked
    assert [s for s in steps(again) if "dead-letter" in s] == [] and "reconnected" in again.html


def test_the_connected_page_names_the_topics_a_rule_matching_by_email_needs_too(rt):
    """A rule with `match: email` also needs a duplicate created already at the target and the lead's email changed
    (as `bridge doctor` and docs/setup.md say)."""
    rule = {"attribute": "custom_attributes.signed_up", "value": "Yes", "match": "email"}
    rt.store.settings.put("42", {**campaign("42"), "qualification": rule}, "ws1")
    rt.store.settings.put("43", campaign("43", sync=ONGOING), "ws1")
    assert steps(connected(rt))[0] == (
        "In your app's Webhooks settings, use https://bridge.example/api/webhooks/intercom and subscribe to "
        "contact.lead.updated, contact.user.updated, contact.lead.signed_up, contact.merged, contact.deleted, "
        "contact.archived, and, for the ongoing contact sync of campaign 43, contact.user.created and "
        "contact.lead.created, and, for the rule's match: email of campaign 42, contact.user.created, "
        "contact.lead.created and contact.email.updated.")


def test_a_first_connect_of_a_workspace_campaigns_already_name_says_how_their_waiting_work_comes_back(rt):
    rt.store.settings.put("42", campaign("42"), "ws1")
    assert steps(connected(rt))[1:] == [
        'Campaign 42 already names this workspace: its settings stand, nothing to apply. For another campaign, '
        'write its settings with workspace: "ws1" and apply them: bridge settings apply campaign.yaml.',
        "Work of campaign 42 that came before the workspace was connected waits in the dead-letter queue, if any "
        '(bridge dlq list shows it): bring it back with bridge dlq replay --reason "workspace ws1 is not connected".']


def test_a_table_that_fails_after_the_connect_still_says_connected_with_the_steps_for_any_workspace(rt):
    """The workspace is stored; reading which campaigns name it then fails: the admin is told it is
    connected (not a 500 that reads like a failed connect), with the next steps that fit any workspace."""
    rt.store.settings.put("42", campaign("42"), "ws1")

    def down(workspace):
        raise RuntimeError("ProvisionedThroughputExceededException")
    rt.store.settings.campaigns = down
    page = connected(rt)
    assert 'Connected: Intercom workspace <strong id="workspace-name">Acme &lt;b&gt;</strong>' in page.html
    assert steps(page)[1:] == [
        'Write the campaign\'s settings with workspace: "ws1" and apply them: bridge settings apply campaign.yaml.']
    assert rt.secrets.scoped("worker").get("intercom/ws1/token") == "tok-1"


def test_a_start_without_the_operators_unused_unexpired_ticket_is_refused_and_never_reaches_intercom(rt):
    unused, spent, late = ticket(rt), ticket(rt), ticket(rt)
    assert flow.begin(rt, HERE, spent).status == 303
    rt.clock.now += oauth.TICKET_SECONDS - 1
    assert flow.begin(rt, HERE, unused).status == 303                    # a link works for 30 minutes
    rt.clock.now += 1
    for given in (None, "", "x" * 22, "not a ticket <b>", spent, late):
        for page in (flow.start(rt, HERE, given), flow.begin(rt, HERE, given)):
            assert page.status == 403 and "Location" not in page.headers and "Set-Cookie" not in page.headers, given
            assert "one-time link from the bridge's operator" in page.html and "bridge workspace oauth-link" in page.html
    assert rt.store.connections.workspaces() == set()


def test_an_operator_link_needs_the_oauth_app_and_a_real_app_id():
    bare = FakeConnecting()
    with pytest.raises(ConnectError, match="run `bridge workspace oauth-app --client-id ...` first"):
        flow.mint_link(bare, HERE.base)
    configure_oauth(bare, "app-id", "app-secret")
    with pytest.raises(ConnectError, match="not an Intercom app_id"):
        flow.mint_link(bare, HERE.base, "ws1.other")
    with pytest.raises(ConnectError, match="https://"):
        flow.mint_link(bare, "http://bridge.example/api")
    assert bare.store.connections.tickets == {}


@pytest.mark.parametrize("url", ["http://localhost.evil.example/api", "http://127.0.0.1.evil.example",
                                 "http://localhost@evil.example/api", "http://evil.example/localhost",
                                 "http://bridge.example/api", "https://", "ftp://localhost/api", "http://[::1"])
def test_a_url_that_only_starts_like_this_machine_gets_no_link_and_no_token(rt, url):
    """Where an OAuth link sends the admin and `--api-base` sends a workspace's token: https, or plain
    http to this very machine; its host is compared, not how the URL begins."""
    with pytest.raises(ConnectError, match="must be an https:// URL"):
        flow.mint_link(rt, url)
    with pytest.raises(ConnectError, match="must be an https:// URL"):
        check_workspace_id("ws1", url)
    assert rt.store.connections.tickets == {}


def test_this_machine_and_https_urls_are_accepted():
    assert all(oauth.safe_url(u) for u in ("https://bridge.example/api", "http://localhost:8000/api",
                                     "http://127.0.0.1:9", "https://api.eu.intercom.io"))


def test_a_link_for_one_workspace_refuses_a_token_of_another_and_stores_nothing(rt):
    query, cookie = started(rt, workspace="ws2")
    rt.auth.codes["code="] = "tok-1"                                      # the token of ws1
    page = flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE)
    assert page.status == 403
    refused(rt, page, "you authorized workspace ws1 (Acme &lt;b&gt;), but this link is for workspace ws2 only")
    assert rt.secrets.scoped("edge").get("intercom/ws1/client-secret") is None

    query, cookie = started(rt, workspace="ws1")                          # the workspace it names: connected
    rt.auth.codes["code2="] = "tok-1"
    assert flow.callback(rt, {"code": "code2=", "state": query["state"]}, cookie, HERE).status == 200
    assert rt.secrets.scoped("worker").get("intercom/ws1/token") == "tok-1"


def refused(rt, page, reason: str, known: bool = True) -> None:
    """A refusal that stored nothing. `known`: the page says nothing was connected or stored; else (the link
    may have connected a workspace before) only that this page did not, and where to look."""
    assert page.status in (400, 403, 502) and reason in page.html
    assert ("Nothing was connected or stored" in page.html) is known
    assert known or "This page connected and stored nothing; if this link connected a workspace before, that " \
                    "stands (the bridge's operator sees it with <code>bridge workspace list</code>)" in page.html
    assert rt.store.connections.workspaces() == set() and rt.secrets.scoped("worker").get("intercom/ws1/token") is None


def test_each_bad_callback_gets_a_page_saying_why_and_nothing_is_stored(rt):
    query, cookie = started(rt)
    rt.auth.codes["code="] = "tok-1"
    refused(rt, flow.callback(rt, {"code": "code="}, cookie, HERE), "no state")
    refused(rt, flow.callback(rt, {"code": "code=", "state": query["state"] + "x"}, cookie, HERE), "not one this")
    rt.clock.now += oauth.STATE_SECONDS
    refused(rt, flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE), "expired", known=False)
    assert rt.auth.calls == []                                            # Intercom was never asked

    query, cookie = started(rt)
    refused(rt, flow.callback(rt, {"code": "code=", "state": query["state"]}, "other=1", HERE), "another browser",
            known=False)

    query, cookie = started(rt)
    refused(rt, flow.callback(rt, {"code": "wrong=", "state": query["state"]}, cookie, HERE),
            "Intercom refused the code")
    refused(rt, flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE),
            "this sign-in link was already used, and nothing came of it: start again")
    assert rt.auth.calls == ["exchange"]
    query, cookie = started(rt)
    refused(rt, flow.callback(rt, {"error": "access_denied", "state": query["state"]}, cookie, HERE),
            "did not authorize the app (access_denied)")


def test_a_callback_url_anyone_made_up_puts_none_of_its_words_on_the_bridges_page(rt):
    """Anyone can send an admin a callback URL of their own making (no state, a forged one, or a real one seen
    in another browser): the bridge's page must not show its error fields' text as Intercom's words (a phone
    number to call, a site to visit). Only a known OAuth error code is named; Intercom's description is shown
    to the browser that started, its state this bridge's."""
    query, cookie = started(rt)
    made_up = {"error": "your_workspace_is_suspended", "error_description": "Call +1 555 0100 to restore it"}
    for state, browser in ((None, cookie), (query["state"] + "x", cookie), (query["state"], "other=1")):
        page = flow.callback(rt, {**made_up, **({"state": state} if state else {})}, browser, HERE)
        assert page.status == 400 and "Intercom did not authorize the app." in page.html, state
        assert "suspended" not in page.html and "555" not in page.html, state
        denied = flow.callback(rt, {"error": "access_denied", "error_description": "Call +1 555 0100",
                                    **({"state": state} if state else {})}, browser, HERE)
        assert "Intercom did not authorize the app (access_denied)." in denied.html and "555" not in denied.html
    page = flow.callback(rt, {"error": "access_denied", "error_description": "The admin denied access",
                              "state": query["state"]}, cookie, HERE)
    assert "Intercom did not authorize the app (access_denied: The admin denied access)" in page.html
    assert rt.store.connections.workspaces() == set() and rt.auth.calls == []


@pytest.mark.parametrize("failure, said", [
    (lambda: Transient("Intercom answered 503: Service Unavailable", status=503),
     "Intercom failed to give a token for the code (Intercom answered 503: Service Unavailable)"),
    (lambda: Transient("Intercom unreachable (ConnectionError)"),
     "Intercom could not be reached (Intercom unreachable (ConnectionError))")], ids=["5xx", "unreachable"])
def test_an_intercom_that_fails_the_code_exchange_is_not_said_unreachable(rt, failure, said):
    """Intercom answering the token exchange with a 5xx was said "could not be reached": the operator would look
    for a network fault where Intercom failed."""
    query, cookie = started(rt)

    def exchange(*args, **kwargs):
        raise failure()
    rt.auth.exchange = exchange
    page = flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE)
    assert page.status == 502 and f"{said}." in page.html and "Nothing was connected or stored" in page.html


def test_a_callback_left_no_time_for_intercom_sends_it_nothing_and_says_so(rt):
    """The Lambda has left only what storing and answering take: the code is not sent (tests/integration/
    test_oauth_timeout.py: an Intercom that hangs)."""
    query, cookie = started(rt)
    rt.auth.codes["code="] = "tok-1"
    page = flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE, lambda: flow.FINISH_MS)
    assert page.status == 504 and "Intercom did not answer in time (no time was left to ask Intercom)" in page.html
    assert rt.auth.calls == [] and rt.store.connections.workspaces() == set()


def test_the_connected_page_seen_again_says_what_the_link_connected_and_when_and_does_nothing_again(rt):
    """A reload of the page that said "Connected" (or a restored tab): the state is spent, so nothing is
    exchanged or stored again, and the page names the workspace the link connected, as the first one did."""
    query, cookie = started(rt)
    rt.auth.codes["code="] = "tok-1"
    callback = {"code": "code=", "state": query["state"]}
    assert flow.callback(rt, callback, cookie, HERE).status == 200
    rt.clock.now += 120
    again = flow.callback(rt, callback, cookie, HERE)
    assert again.status == 200 and "Nothing was connected" not in again.html
    assert ('This sign-in link was already used: it connected Intercom workspace <strong id="workspace-name">Acme '
            '&lt;b&gt;</strong> (app_id <code id="workspace-id">ws1</code>) at 2026-09-21 14:13:20 UTC.') in again.html
    assert rt.auth.calls == ["exchange", "me"] and rt.secrets.scoped("worker").get("intercom/ws1/token") == "tok-1"


@pytest.mark.parametrize("browser", ["same", "other"])
def test_denying_on_intercoms_page_after_the_link_connected_does_not_say_nothing_was_connected(rt, browser):
    """The admin connected, went back to Intercom's page and denied: the page said "Nothing was connected or
    stored" of a link that had connected the workspace (which stands)."""
    query, cookie = started(rt)
    rt.auth.codes["code="] = "tok-1"
    assert flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE).status == 200
    denied = flow.callback(rt, {"error": "access_denied", "state": query["state"]},
                           cookie if browser == "same" else "other=1", HERE)
    assert denied.status == 400 and "did not authorize the app (access_denied)" in denied.html
    assert "Nothing was connected" not in denied.html and "if this link connected a workspace before, that " \
        "stands" in denied.html and "ws1" not in denied.html
    assert rt.auth.calls == ["exchange", "me"] and rt.secrets.scoped("worker").get("intercom/ws1/token") == "tok-1"


def test_a_used_state_whose_callback_has_not_said_what_it_did_claims_nothing(rt):
    """The admin reloads while the first callback still exchanges the code (or it stopped midway, or its
    outcome could not be recorded): the page cannot tell whether the link connected a workspace, and says so."""
    query, cookie = started(rt)
    rt.store.connections.use_oauth_state(query["state"].split(".")[0], rt.clock() + 600)     # the first, under way
    refused(rt, flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE),
            "already used, by a sign-in that has not finished (or stopped midway): reload this page in a moment",
            known=False)

    query, cookie = started(rt)                          # the workspace connected; its outcome not recorded
    rt.auth.codes["code="] = "tok-1"

    def down(*args):
        raise RuntimeError("ProvisionedThroughputExceededException")
    rt.store.connections.end_oauth_state = down
    assert flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE).status == 200
    again = flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE)
    assert "has not finished (or stopped midway)" in again.html and "Nothing was connected" not in again.html


def test_a_connect_that_stopped_after_the_token_was_written_says_so_then_and_when_seen_again(rt):
    """The token is in the secret store, and the table's write fails: neither the page, nor a reload, nor a
    cancel on Intercom's page (the admin went back) may say nothing was connected, or ask to wait."""
    query, cookie = started(rt)
    rt.auth.codes["code="] = "tok-1"

    def down(*args, **kwargs):
        raise RuntimeError("ProvisionedThroughputExceededException")
    rt.store.connections.put_workspace = down
    stopped = "connect stopped midway: it may have connected the workspace, or part of it"
    first = flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE)
    assert first.status == 500 and stopped in first.html and "bridge workspace list" in first.html
    assert rt.secrets.scoped("worker").get("intercom/ws1/token") == "tok-1"
    again = flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE)
    assert "already used, and its " + stopped in again.html and "bridge workspace list" in again.html
    denied = flow.callback(rt, {"error": "access_denied", "state": query["state"]}, cookie, HERE)
    for page in (first, again, denied):
        assert "Nothing was connected" not in page.html and "in a moment" not in page.html
    assert "if this link connected a workspace before, that stands" in denied.html
    assert rt.auth.calls == ["exchange", "me"]


def test_what_a_link_connected_is_shown_only_to_the_browser_that_started_it_while_its_state_lasts(rt):
    connected(rt)
    query, cookie = started(rt)
    rt.auth.codes["code2="] = "tok-1"
    callback = {"code": "code2=", "state": query["state"]}
    assert flow.callback(rt, callback, cookie, HERE).status == 200
    for page in (flow.callback(rt, callback, "other=1", HERE), flow.callback(rt, callback, None, HERE)):
        assert "another browser" in page.html and "Acme" not in page.html and "ws1" not in page.html
    rt.clock.now += oauth.STATE_SECONDS
    late = flow.callback(rt, callback, cookie, HERE)
    assert "expired" in late.html and "Acme" not in late.html and "Nothing was connected" not in late.html


def test_a_cookie_forged_from_the_callback_url_is_refused_the_connect_and_what_the_link_did(rt):
    """Anyone holding the callback URL (browser history, a proxy's log) sees its state: a cookie made from
    it must not pass for the browser that started, before or after the real callback."""
    query, cookie = started(rt)
    rt.auth.codes["code="] = "tok-1"
    callback = {"code": "code=", "state": query["state"]}
    name = oauth.cookie_name(query["state"].split(".")[0])                # the cookie the start set
    assert cookie.startswith(f"{name}=")
    forged = [f"{name}={part}" for part in query["state"].split(".") if part]
    for attempt in forged:
        refused(rt, flow.callback(rt, callback, attempt, HERE), "another browser", known=False)
    assert rt.auth.calls == []                                            # nothing exchanged, the state unspent
    assert flow.callback(rt, callback, cookie, HERE).status == 200       # the admin's browser connects
    for attempt in forged:
        page = flow.callback(rt, callback, attempt, HERE)
        assert "another browser" in page.html and "Acme" not in page.html and "ws1" not in page.html
    assert "it connected Intercom workspace" in flow.callback(rt, callback, cookie, HERE).html   # a real reload


def test_two_links_continued_in_two_tabs_of_one_browser_each_connect_their_workspace(rt):
    """An admin connecting two workspaces opens both links in tabs of one browser and continues in both
    before authorizing either: the browser keeps one cookie per name, so each start's secret must survive
    the other's, or the first tab's callback is told it was started in another browser (its link spent)."""
    rt.auth.apps["tok-2"] = {"id_code": "ws2", "name": "Beta"}
    jar: dict[str, str] = {}                              # the browser's cookies: a name set again is replaced
    states = []
    for workspace in ("ws1", "ws2"):
        page = flow.begin(rt, HERE, ticket(rt, workspace))
        name, value = page.headers["Set-Cookie"].split(";")[0].split("=", 1)
        jar[name] = value
        states.append(dict(p.split("=", 1) for p in page.headers["Location"].split("?", 1)[1].split("&"))["state"])
    header = "; ".join(f"{name}={value}" for name, value in jar.items())
    rt.auth.codes.update({"c1": "tok-1", "c2": "tok-2"})
    for code, state, workspace in (("c1", states[0], "ws1"), ("c2", states[1], "ws2")):
        page = flow.callback(rt, {"code": code, "state": state}, header, HERE)
        assert page.status == 200 and f'<code id="workspace-id">{workspace}</code>' in page.html, page.html
    assert rt.store.connections.workspaces() == {"ws1", "ws2"}


def test_without_the_apps_credentials_both_routes_say_how_to_set_them(rt):
    bare = FakeConnecting()
    for page in (flow.start(bare, HERE, "t" * 22), flow.begin(bare, HERE, "t" * 22),
                 flow.callback(bare, {"code": "c"}, None, HERE)):
        assert page.status == 503 and "bridge workspace oauth-app --client-id ...</code> (it asks for the client " \
            "secret)" in page.html and "--client-secret" not in page.html       # no secret on a command line


@pytest.mark.parametrize("field, variable", [("intercom_oauth_url", "INTERCOM_OAUTH_URL"),
                                             ("intercom_base_url", "INTERCOM_BASE_URL")])
def test_a_configuration_that_would_send_the_sign_in_or_the_token_in_clear_connects_nothing_and_loses_nothing(
        rt, field, variable):
    """An `http://` typo in the stage's configuration: every OAuth page says so (503) before the sign-in or
    the code goes anywhere, and spends nothing: once it is fixed, the same link and the same state go on."""
    from dataclasses import replace

    query, cookie = started(rt)
    given, fixed = ticket(rt), rt.config
    rt.config = replace(fixed, **{field: "http://intercom.example"})
    rt.auth.codes["code="] = "tok-1"
    for page in (flow.start(rt, HERE, given), flow.begin(rt, HERE, given),
                 flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE)):
        assert page.status == 503 and "Location" not in page.headers and "Set-Cookie" not in page.headers
        assert f"{variable} must be an https:// URL" in page.html and "intercom.example" not in page.html
    assert rt.auth.calls == [] and rt.store.connections.workspaces() == set()
    rt.config = fixed
    assert flow.begin(rt, HERE, given).status == 303
    assert flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE).status == 200


def test_a_rotated_state_key_refuses_every_sign_in_under_way_with_the_page_asking_for_a_new_link(rt):
    """After the key may have leaked (anyone holding it could sign a state of their own, and connect a
    workspace without the operator's link): the states signed before no longer read; links not yet
    continued are not signed with it, and still work."""
    query, cookie = started(rt)
    unused = ticket(rt)
    key = rt.secrets.scoped("edge").get("oauth/state-key")
    assert configure_oauth(rt, None, None, rotate_state_key=True)["state_key"] == "rotated"
    assert rt.secrets.scoped("edge").get("oauth/state-key") not in (key, None)
    assert rt.secrets.scoped("edge").get("oauth/client-secret") == "app-secret"      # the rest is kept
    rt.auth.codes["code="] = "tok-1"
    page = flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE)
    refused(rt, page, "not one this bridge issued (forged or altered), or its signing key was replaced since")
    assert "ask the bridge's operator for a new link" in page.html and rt.auth.calls == []
    query, cookie = started(rt, link=unused)
    assert flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE).status == 200


# --- the operator's connect and disconnect ----------------------------------------------------

def test_connect_refuses_a_token_intercom_refuses_or_of_another_workspace_and_stores_nothing(rt):
    with pytest.raises(ConnectError, match="Intercom refused this token"):
        connect_workspace(rt, "ws1", "typo")
    with pytest.raises(ConnectError, match=r"belongs to workspace ws1 \(Acme <b>\), not ws2"):
        connect_workspace(rt, "ws2", "tok-1")
    assert rt.store.connections.workspaces() == set() and rt.secrets.scoped("worker").get("intercom/ws2/token") is None


def test_intercoms_401_for_a_token_of_no_known_workspace_advises_no_reconnect_nor_replay_of_dead_letters():
    """Intercom's 401 to a client that knows no workspace (a token checked before it is stored: `workspace
    connect`'s GET /me, `make run`'s) said "reconnect the workspace, then replay the dead-letter queue": no work
    failed with that token, and `workspace connect` is the reconnect itself. Its reason says the refusal alone;
    each caller says what to do (check the token, its region)."""
    from chalicelib.adapters.intercom import IntercomClient
    from chalicelib.errors import ApiError, Permanent, TokenRefused
    refused = IntercomClient("https://api.intercom.io", "typo")._classify(ApiError("Intercom", 401, "Unauthorized"))
    assert isinstance(refused, Permanent) and not isinstance(refused, TokenRefused) and refused.status == 401
    assert refused.reason == "Intercom answered 401: Unauthorized — the token is invalid or revoked", refused.reason


def test_a_connect_of_a_regional_workspace_records_its_api_base_and_a_reconnect_keeps_it():
    rt = FakeConnecting()
    rt.auth.apps.update({"t1": {"id_code": "eu1", "region": "EU"}, "t2": {"id_code": "eu1", "region": "EU"}})
    assert connect_workspace(rt, "eu1", "t1", "cs")["api_base"] == "https://api.eu.intercom.io"
    done = connect_workspace(rt, "eu1", "t2")
    assert (done["client_secret"], done["api_base"]) == ("kept", "https://api.eu.intercom.io")


def test_disconnect_deletes_the_token_and_keeps_the_client_secret(rt):
    connect_workspace(rt, "ws1", "tok-1", "cs")
    disconnect_workspace(rt, "ws1")
    assert rt.secrets.scoped("worker").get("intercom/ws1/token") is None
    assert rt.secrets.scoped("edge").get("intercom/ws1/client-secret") == "cs"
    with pytest.raises(ConnectError, match="ws1 is disconnected: reconnect it by OAuth, or with `bridge workspace "
                                           "connect ws1`, which asks for the token in a terminal"):
        connect_workspace(rt, "ws1", client_secret="cs2")
    with pytest.raises(ConnectError, match="not connected here"):
        disconnect_workspace(rt, "never")


def test_the_oauth_app_keeps_what_it_is_not_given_and_its_state_key(rt):
    key = rt.secrets.scoped("edge").get("oauth/state-key")
    assert configure_oauth(rt, None, "new-secret") == {"client_id": "kept", "client_secret": "set", "state_key": "kept",
                                                      "relabelled": []}
    assert rt.secrets.scoped("edge").get("oauth/state-key") == key
    with pytest.raises(ConnectError, match="--client-id"):
        configure_oauth(FakeConnecting(), None, "s")


def test_the_callback_url_follows_the_deployed_stage_and_scheme():
    """API Gateway's context path carries the stage (`/api/...`) and X-Forwarded-Proto the scheme;
    the redirect URI Intercom must know is built from them."""
    from types import SimpleNamespace

    from chalicelib.handlers import _place

    deployed = SimpleNamespace(headers={"Host": "abc.execute-api.eu-west-1.amazonaws.com", "X-Forwarded-Proto": "https"},
                               context={"path": "/api/oauth/intercom/start"}, path="/oauth/intercom/start")
    place = _place(deployed)
    assert place.callback == "https://abc.execute-api.eu-west-1.amazonaws.com/api/oauth/intercom/callback"
    assert place.secure
    local = SimpleNamespace(headers={"host": "127.0.0.1:8000"}, context={"path": "/oauth/intercom/start"},
                            path="/oauth/intercom/start")
    assert _place(local) == flow.Place("http://127.0.0.1:8000", False)
    for sent in ("javascript", "https://evil.example/x?", "HTTPS", "ftp"):     # only http or https, else https
        forged = SimpleNamespace(headers={"Host": "bridge.example", "X-Forwarded-Proto": sent},
                                 context={"path": "/oauth/intercom/start"}, path="/oauth/intercom/start")
        assert _place(forged) == flow.Place("https://bridge.example", True), sent


def test_rf_connect_shows_rfs_own_words_carried_by_the_adapters_error():
    """The RF adapter's refusal carries RF's message (as it carries the status), and `rf connect`
    shows it from there: the words reach the operator however the error travelled."""
    from chalicelib.adapters.referral_factory import ReferralFactoryClient
    from chalicelib.errors import Permanent
    from chalicelib.services.connections import check_rf_token
    from infra.local.sims.referral_factory import RFSim
    with RFSim() as sim:
        with pytest.raises(Permanent) as refused:
            ReferralFactoryClient(sim.base_url, "bogus-token").check_token()
    assert (refused.value.status, refused.value.message) == (401, "Unauthenticated.")
    rt = FakeConnecting()

    def blocked() -> None:              # RF's answer, raised afresh (no exception chained to it)
        raise Permanent("Referral Factory answered 403: IP blocked", status=403, message="IP blocked")
    rt.check_token = blocked            # type: ignore[method-assign]
    with pytest.raises(ConnectError) as said:
        check_rf_token(rt, "rf-token")
    assert str(said.value).startswith(f"Referral Factory answered 403: IP blocked at {rt.config.rf_base_url}: it "
                                      "blocks this machine's address")
