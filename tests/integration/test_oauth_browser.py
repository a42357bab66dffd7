"""Issue 10 §5 "Must show": connecting a workspace by OAuth, in a real headless Chromium, against the
Intercom simulator's authorize page; the bridge's API served over HTTP on moto; each bad `state`
(missing, forged, expired, replayed) and a bad code answer an error page and store nothing. The start
opens only from the operator's one-time link (`bridge workspace oauth-link`): without one, or with
one already used, it answers a page saying so and never sends the browser to Intercom. Opening the
link spends nothing (mail scanners, chat previews and prefetches open links): the admin clicks
"Continue to Intercom" on its page, and that click spends it.

The browser is Debian's `chromium` with `chromium-driver` (.ci/run installs them). Without them the
tests are skipped, unless BRIDGE_BROWSER_REQUIRED=1 (CI sets it): then they fail. The last test needs no
browser: a stranger following the public start (or a leaked link) with plain requests connects nothing."""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import redirect_stdout
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import yaml

from chalicelib.cli import main
from chalicelib.domain import oauth

from .conftest import WORKSPACE, join_body

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CLIENT_ID, APP_SECRET = "public-app-id", "public-app-secret"
OAUTH_WS = "acme-oauth"


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("BRIDGE_BROWSER_REQUIRED"):
            pytest.fail("chromium and chromium-driver are required (apt-get install -y chromium chromium-driver)")
        pytest.skip("no chromium/chromedriver here: apt-get install -y chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="bridge-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})      # the console: CSP violations (csp_refused)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


class OAuthStack:
    def __init__(self, bridge, sim, rt, driver):
        self.bridge, self.sim, self.rt, self.driver = bridge, sim, rt, driver

    @property
    def start_url(self) -> str:
        """The public start, as anyone can open it (no ticket)."""
        return f"{self.bridge.server.url}/oauth/intercom/start"

    def link(self, workspace: str | None = None) -> str:
        """A one-time start link, minted as the operator does: `bridge workspace oauth-link --json`."""
        with redirect_stdout(io.StringIO()) as out:
            assert main(["workspace", "oauth-link", "--api-url", self.bridge.server.url, "--json"]
                        + (["--workspace", workspace] if workspace else []), rt=self.bridge.operator()) == 0
        url = json.loads(out.getvalue())["url"]
        assert url.startswith(f"{self.start_url}?ticket=")
        return url

    def callback_url(self, **query) -> str:
        return f"{self.bridge.server.url}/oauth/intercom/callback?{urlencode(query)}"

    def open_link(self, link: str) -> None:
        """The link opened (by the admin, a scanner, a preview): the start's page, with its button."""
        self.driver.get(link)
        assert self.text("continue") == "Continue to Intercom"
        assert urlsplit(self.driver.current_url).path == "/oauth/intercom/start"

    def to_authorize_page(self, link: str | None = None) -> str:
        """The admin opens the operator's start link, clicks Continue and lands on Intercom's authorize
        page: its state."""
        self.open_link(link or self.link())
        self.click("continue")
        assert self.text("authorize") == "Authorize access"          # Intercom's page has loaded
        here = urlsplit(self.driver.current_url)
        assert f"{here.scheme}://{here.netloc}" == self.sim.base_url and here.path == "/oauth"
        assert "Allow the app to access" in self.driver.page_source
        query = parse_qs(here.query)
        assert query["client_id"] == [CLIENT_ID]
        assert query["redirect_uri"] == [f"{self.bridge.server.url}/oauth/intercom/callback"]
        return query["state"][0]

    def click(self, button: str = "authorize") -> None:
        from selenium.webdriver.common.by import By
        self.driver.find_element(By.ID, button).click()

    def text(self, element_id: str) -> str:
        """The element's text once the page that has it has loaded (a click returns before the
        navigation it starts has ended)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.driver, 15).until(
            expected_conditions.presence_of_element_located((By.ID, element_id))).text

    def token(self):
        return self.rt.secrets.scoped("worker").get(f"intercom/{OAUTH_WS}/token")

    def nothing_stored(self) -> bool:
        edge = self.rt.secrets.scoped("edge")
        return (self.rt.store.connections.workspace(OAUTH_WS) is None and self.token() is None
                and edge.get(f"intercom/{OAUTH_WS}/client-secret") is None)

    def exchanges(self) -> int:
        return self.sim.count("POST", "/auth/eagle/token")


def public_app(bridge, other_workspaces, clock, workspace: str, app_name: str):
    """The API and the worker talk to the public app's Intercom (its own simulator, with `workspace`,
    not connected yet); the operator has stored the app's credentials. (simulator, runtime)"""
    from chalicelib.config import Config
    from chalicelib.runtime import Runtime, reset_default_runtime

    sim = other_workspaces(workspace, app_name=app_name)
    sim.client_id, sim.client_secret = CLIENT_ID, APP_SECRET
    env = {**os.environ, "INTERCOM_BASE_URL": sim.base_url, "INTERCOM_OAUTH_URL": f"{sim.base_url}/oauth"}
    rt = Runtime(Config.from_env(env), clock=clock, sleeper=clock.sleep)
    reset_default_runtime(rt)
    assert main(["workspace", "oauth-app", "--client-id", CLIENT_ID, "--client-secret", APP_SECRET],
                rt=bridge.operator()) == 0
    return sim, rt


def csp_refused(driver) -> list[str]:
    """What the browser refused to load, run, submit or frame because of a page's Content-Security-Policy since
    last asked (Chrome says each on the console: "Refused to ... because it violates the following Content Security
    Policy directive")."""
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


@pytest.fixture
def stack(bridge, other_workspaces, browser, clock):
    """The public app's Intercom has workspace acme-oauth (public_app). Every page the test sees works under its
    Content-Security-Policy: nothing of it (style, script, form, icon) refused."""
    sim, rt = public_app(bridge, other_workspaces, clock, OAUTH_WS, "Acme Oauth Ltd")
    browser.delete_all_cookies()
    csp_refused(browser)                                  # the console of the tests before
    yield OAuthStack(bridge, sim, rt, browser)
    assert csp_refused(browser) == []


def test_an_admin_connects_a_workspace_by_oauth_and_it_works_at_once(stack, rf):
    assert stack.nothing_stored()
    stack.to_authorize_page()
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS and stack.text("workspace-name") == "Acme Oauth Ltd"
    page = stack.driver.page_source
    assert "Next steps" in page and f"{stack.bridge.server.url}/webhooks/intercom" in page
    assert "contact.lead.updated" in page and f'workspace: "{OAUTH_WS}"' in page

    token = stack.token()
    assert token and token in stack.sim.tokens and token not in page      # stored, never shown
    conn = stack.rt.store.connections.workspace(OAUTH_WS)
    assert conn.status == "active" and conn.secrets == {"token", "oauth"} and conn.token_app == "oauth"
    # The public app's client secret signs the workspace's webhooks: referenced, never copied.
    assert stack.rt.secrets.scoped("edge").get(f"intercom/{OAUTH_WS}/client-secret") is None
    assert stack.exchanges() == 1 and stack.sim.count("GET", "/me") == 1

    # Connected means usable: a join for a campaign of that workspace reaches it.
    from chalicelib.services.admin import apply_settings
    apply_settings(stack.rt, yaml.safe_dump({"campaign_id": "42", "workspace": OAUTH_WS, "leads": {
        "action": "create_lead", "fields": [{"from": "email", "to": "email"}]}}))
    referrer = rf.add_user(42, "rita@example.com", "Rita")
    lead = rf.add_user(42, "lia@example.com", "Lia", referrer_id=referrer["id"])
    assert stack.bridge.post_join(join_body(lead)).status_code == 202
    stack.bridge.drain()
    assert [c["role"] for c in stack.sim.contacts_by_email("lia@example.com")] == ["lead"]
    assert stack.bridge.intercom.contacts_by_email("lia@example.com") == []


def test_a_callback_without_state_is_refused(stack):
    stack.driver.get(stack.callback_url(code="some-code="))
    assert "the link has no state" in stack.text("reason")
    assert "Nothing was connected or stored" in stack.driver.page_source
    assert stack.nothing_stored() and stack.exchanges() == 0


def test_a_forged_state_is_refused(stack, clock):
    state = stack.to_authorize_page()
    nonce = state.split(".")[0]
    for forged in (oauth.make_state("someone-elses-key", nonce, clock()),            # signed with another key
                   state.rsplit(".", 1)[0] + "." + "A" * 43,                         # signature replaced
                   f"{nonce}.{int(clock()) + 10**6}.{state.rsplit('.', 1)[1]}",       # expiry stretched
                   "not-a-state"):
        stack.driver.get(stack.callback_url(code="c=", state=forged))
        assert "not one this bridge issued" in stack.text("reason"), forged
    assert stack.nothing_stored() and stack.exchanges() == 0


def test_a_sign_in_under_way_when_the_state_key_is_rotated_is_asked_for_a_new_link(stack, clock):
    """The key that signs `state` may have leaked: the operator rotates it while an admin is on Intercom's
    page. Their Authorize comes back to a page asking for a new link, and connects nothing; a new link does."""
    from chalicelib.runtime import EDGE_SECRET_SECONDS

    stack.to_authorize_page()
    with redirect_stdout(io.StringIO()) as out:
        assert main(["workspace", "oauth-app", "--rotate-state-key"], rt=stack.bridge.operator()) == 0
    assert "state key rotated" in out.getvalue()
    clock.now += EDGE_SECRET_SECONDS                 # the API's containers have read the new key
    stack.click("authorize")                         # Intercom issues a real code
    assert "its signing key was replaced since" in stack.text("reason")
    assert "ask the bridge's operator for a new link" in stack.driver.page_source
    assert stack.nothing_stored() and stack.exchanges() == 0
    stack.to_authorize_page()
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS


def test_an_expired_state_is_refused_even_with_a_good_code(stack, clock):
    stack.to_authorize_page()
    clock.now += oauth.STATE_SECONDS                 # the admin went for lunch on Intercom's page
    stack.click("authorize")                         # Intercom issues a real code
    assert "expired" in stack.text("reason")
    assert stack.nothing_stored() and stack.exchanges() == 0


def test_a_reload_of_the_connected_page_says_what_the_link_connected_and_does_nothing_again(stack, clock):
    """The admin reloads the page that said "Connected" (or the browser restores the tab): its state is
    spent, so nothing is exchanged or stored again, and the page says the workspace this link connected,
    and when: never that nothing was connected."""
    stack.to_authorize_page()
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS
    token, connected_at = stack.token(), clock()
    clock.now += 90
    stack.driver.refresh()
    said = stack.text("reason")
    assert said == (f"This sign-in link was already used: it connected Intercom workspace Acme Oauth Ltd (app_id "
                    f"{OAUTH_WS}) at {datetime.fromtimestamp(connected_at, timezone.utc):%Y-%m-%d %H:%M:%S} UTC.")
    assert stack.text("workspace-id") == OAUTH_WS and "Nothing was connected" not in stack.driver.page_source
    assert stack.token() == token and stack.exchanges() == 1


def test_two_links_continued_in_two_tabs_of_one_browser_each_connect(stack):
    """The admin continues from two links in two tabs before authorizing in either: each start's cookie
    survives the other's, so the first tab's Authorize connects too (not "started in another browser")."""
    first = stack.driver.current_window_handle
    stack.to_authorize_page()
    stack.driver.switch_to.new_window("tab")
    stack.to_authorize_page()
    stack.driver.switch_to.window(first)
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS, stack.driver.page_source
    stack.driver.close()
    stack.driver.switch_to.window(stack.driver.window_handles[0])
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS and stack.exchanges() == 2


def test_a_state_used_by_a_failed_callback_cannot_be_used_again(stack):
    state = stack.to_authorize_page()
    stack.driver.get(stack.callback_url(code="bogus=", state=state))
    assert "Intercom refused the code" in stack.text("reason")
    stack.driver.refresh()
    assert "already used" in stack.text("reason") and "Nothing was connected or stored" in stack.driver.page_source
    assert stack.nothing_stored() and stack.exchanges() == 1


def test_a_bad_code_is_refused(stack):
    state = stack.to_authorize_page()
    stack.driver.get(stack.callback_url(code="not-a-code=", state=state))
    reason = stack.text("reason")
    assert "Intercom refused the code" in reason and "Invalid or already used authorization code" in reason
    assert stack.nothing_stored()


def test_a_callback_in_another_browser_is_refused(stack):
    stack.to_authorize_page()
    stack.driver.delete_all_cookies()                # the link was opened somewhere else
    stack.click("authorize")
    assert "started in another browser" in stack.text("reason")
    assert stack.nothing_stored() and stack.exchanges() == 0


def test_a_cookie_made_from_the_callback_url_is_not_the_browser_that_started(stack):
    """Whoever holds the callback URL (history, a proxy's access log) sees its state: a cookie made from it
    is refused, neither told what the link connected nor told whether a cancel connected anything."""
    stack.to_authorize_page()
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS
    url = stack.driver.current_url
    state = parse_qs(urlsplit(url).query)["state"][0]
    for part in state.split("."):
        cookie = {"Cookie": f"{oauth.cookie_name(state.split('.')[0])}={part}"}
        for seen, said in ((url, "started in another browser"),
                           (stack.callback_url(error="access_denied", state=state), "did not authorize the app")):
            page = requests.get(seen, headers=cookie, timeout=10)
            assert page.status_code == 400 and said in page.text, part
            assert OAUTH_WS not in page.text and "Acme" not in page.text and "Nothing was connected" not in page.text
    stack.driver.refresh()                           # the admin's own browser still sees what the link did
    assert "it connected Intercom workspace Acme Oauth Ltd" in stack.text("reason")
    assert stack.exchanges() == 1


def test_an_admin_who_cancels_at_intercom_gets_a_page_saying_so(stack):
    stack.to_authorize_page()
    stack.click("cancel")
    assert "did not authorize the app (access_denied)" in stack.text("reason")
    assert stack.nothing_stored()


def test_an_admin_who_goes_back_after_connecting_and_cancels_is_not_told_nothing_was_connected(stack):
    stack.to_authorize_page()
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS
    token = stack.token()
    stack.driver.back()                              # Intercom's page again, with the link's state
    stack.click("cancel")
    assert "did not authorize the app (access_denied)" in stack.text("reason")
    assert "Nothing was connected" not in stack.driver.page_source and "if this link connected a workspace " \
        "before, that stands" in stack.driver.page_source
    assert stack.token() == token and stack.exchanges() == 1


def authorize_pages(stack) -> int:
    return stack.sim.count("GET", "/oauth")


def test_a_start_without_the_operators_link_shows_why_and_never_reaches_intercom(stack):
    for url in (stack.start_url, f"{stack.start_url}?ticket=" + "A" * 22, f"{stack.start_url}?ticket=<b>x</b>"):
        stack.driver.get(url)
        reason = stack.text("reason")
        assert "needs a one-time link from the bridge's operator" in reason and "bridge workspace oauth-link" in reason
        assert urlsplit(stack.driver.current_url).path == "/oauth/intercom/start"       # no redirect to Intercom
    assert authorize_pages(stack) == 0 and stack.nothing_stored()


def test_a_link_already_used_is_refused_even_in_the_browser_that_used_it(stack):
    link = stack.link()
    stack.to_authorize_page(link)
    stack.driver.get(link)                           # back to the link (history, a second click, a forward)
    assert "it was already used" in stack.text("reason")
    assert urlsplit(stack.driver.current_url).path == "/oauth/intercom/start"
    assert authorize_pages(stack) == 1 and stack.nothing_stored()


def test_opening_a_link_spends_nothing_and_the_admins_click_still_works(stack):
    """A mail scanner (Safe Links), a chat preview or a prefetch opens the link before the admin does,
    and the admin may open it twice: only the click on Continue spends it."""
    link = stack.link()
    stack.open_link(link)                            # the scanner
    stack.open_link(link)                            # the admin, later (or twice)
    assert authorize_pages(stack) == 0 and not stack.driver.get_cookies()   # nothing started yet
    stack.click("continue")
    assert stack.text("authorize") == "Authorize access"
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS and stack.token()


def test_a_double_click_on_continue_still_reaches_intercom(stack):
    """The admin clicks "Continue to Intercom" again while Intercom's page loads: the first click disabled
    the button, so no second POST gets the page of a spent link in place of Intercom's. (The page's form
    is held back to count its submits: a second click while the first POST is on its way is otherwise
    a matter of timing.)"""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    link = stack.link()
    stack.open_link(link)
    submits = stack.driver.execute_script("""
        const button = document.getElementById('continue'); let submits = 0;
        button.form.addEventListener('submit', event => { submits += 1; event.preventDefault(); });
        button.click(); button.click();
        return submits;""")
    assert submits == 1 and authorize_pages(stack) == 0
    stack.open_link(link)                                # the real thing: a double click goes on to Intercom
    ActionChains(stack.driver).double_click(stack.driver.find_element(By.ID, "continue")).perform()
    assert stack.text("authorize") == "Authorize access"
    assert authorize_pages(stack) == 1
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS and stack.token()


def test_a_get_alone_never_spends_the_link(stack):
    """Opening the link with every GET a fetcher could make spends nothing: the page, again and again,
    and the link still continues once, and only once."""
    link = stack.link()
    for _ in range(3):
        page = requests.get(link, timeout=10)        # a fetcher with no cookies, not following anything
        assert page.status_code == 200 and "Continue to Intercom" in page.text
        assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"] == "no-referrer" and "Set-Cookie" not in page.headers
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        policy = dict(d.strip().split(" ", 1) for d in page.headers["Content-Security-Policy"].split(";"))
        assert "form-action" not in policy        # the button's redirects: Intercom's, whose hosts are not known
        assert policy.pop("style-src").startswith("'sha256-") and policy.pop("script-src").startswith("'sha256-")
        assert policy == {"default-src": "'none'", "img-src": "data:", "frame-ancestors": "'none'",
                          "base-uri": "'none'"}
    assert authorize_pages(stack) == 0
    stack.to_authorize_page(link)
    stack.driver.back()                              # the start's page again (from the history)...
    stack.driver.refresh()
    assert "it was already used" in stack.text("reason")            # ...knows it is spent


def test_every_page_but_the_start_runs_no_script_and_posts_nowhere(stack):
    """The pages that have no form nor script (refusals, the connected page, the redirect to Intercom) allow neither."""
    link = stack.link()
    stack.to_authorize_page(link)
    pages = [requests.get(stack.start_url, timeout=10), requests.get(link, timeout=10),
             requests.get(stack.callback_url(code="c="), timeout=10),
             requests.post(stack.start_url, data={"ticket": "A" * 22}, timeout=10)]
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS
    pages.append(requests.get(stack.driver.current_url, timeout=10))              # the callback seen again
    assert [p.status_code for p in pages] == [403, 403, 400, 403, 400]
    for page in pages:
        policy = page.headers["Content-Security-Policy"]
        assert "form-action 'none'" in policy and "script-src" not in policy and "default-src 'none'" in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["X-Frame-Options"] == "DENY"


BROKEN = {"style": "Applying inline style violates", "script": "Executing inline script violates",
          "icon": "Loading the image 'data:,' violates", "form-action": "Sending form data to"}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_page_its_policy_breaks_is_noticed(stack, monkeypatch, broken):
    """The check on the browser's console sees a start page whose policy refuses what it uses: its style or its
    script (each hash replaced), its icon, or its button's POST followed to Intercom (a `form-action` naming only
    here: Chrome checks the redirect too, which is why the start page names none)."""
    from selenium.webdriver.support.ui import WebDriverWait

    from chalicelib.services import oauth as service

    made, wrong = service.policy, "'sha256-" + "A" * 43 + "='"

    def policy(**kwargs) -> str:
        said = made(**kwargs)
        return {"style": said.replace(service.source_hash(service.STYLE), wrong),
                "script": said.replace(service.source_hash(service.SUBMIT_ONCE), wrong),
                "icon": said.replace("img-src data:; ", ""),
                "form-action": said + "; form-action 'self'"}[broken]
    monkeypatch.setattr(service, "policy", policy)
    stack.open_link(stack.link())
    if broken == "form-action":
        stack.click("continue")
    refused: list[str] = []
    WebDriverWait(stack.driver, 15).until(lambda driver: refused.extend(csp_refused(driver)) or refused)
    assert all(BROKEN[broken] in said for said in refused), refused
    assert authorize_pages(stack) == 0             # Chrome followed no redirect to Intercom


def test_a_link_expires_after_30_minutes(stack, clock):
    link = stack.link()
    clock.now += oauth.TICKET_SECONDS
    stack.driver.get(link)
    assert "expired (links last 30 minutes)" in stack.text("reason")
    assert authorize_pages(stack) == 0 and stack.nothing_stored()


def test_a_link_for_another_workspace_connects_nothing(stack):
    stack.to_authorize_page(stack.link(workspace="someone-else"))
    stack.click("authorize")                         # the admin authorizes in their own workspace, acme-oauth
    reason = stack.text("reason")
    assert f"you authorized workspace {OAUTH_WS} (Acme Oauth Ltd), but this link is for workspace someone-else " \
           "only" in reason
    assert "ask the bridge's operator for a new link" in stack.driver.page_source
    assert stack.nothing_stored() and stack.exchanges() == 1


def test_a_link_for_the_workspace_connects_it(stack):
    stack.to_authorize_page(stack.link(workspace=OAUTH_WS))
    stack.click("authorize")
    assert stack.text("workspace-id") == OAUTH_WS and stack.token()


def test_before_the_operator_sets_the_app_up_the_start_page_says_how(stack):
    for name in ("client-id", "client-secret", "state-key"):
        stack.rt.secrets.scoped("edge").delete(f"oauth/{name}")
    stack.rt.forget()
    stack.driver.get(stack.start_url)
    assert "bridge workspace oauth-app" in stack.text("reason")
    assert urlsplit(stack.driver.current_url).path == "/oauth/intercom/start"


# --- the public start, without a browser: a stranger connects nothing ------------------------------------
STRANGER = "stranger-ws"


def test_a_stranger_cannot_connect_their_own_workspace_through_the_public_oauth_start(
        bridge, other_workspaces, clock):
    """Attack: the operator stored the public app's credentials (`bridge workspace oauth-app`). Anyone
    on the internet who knows the API's URL opens /oauth/intercom/start (no operator credential is
    asked), authorizes the app in a workspace of their own, and the callback stores their token and
    the app's client secret in the operator's SSM and marks their workspace connected: the state proves
    only that the same browser started and finished, not that the operator asked for this workspace.
    Each such workspace costs the operator SSM parameters (the account's quota), table items, and
    the bridge's scheduled work; the operator never chose it.
    Expected: a connect the operator did not start is refused and stores nothing — the start takes a
    one-time link `bridge workspace oauth-link --workspace <app_id>` prints, and the callback refuses a
    token whose `GET /me` names another workspace than the link's (a link that leaked connects nothing else)."""
    sim, rt = public_app(bridge, other_workspaces, clock, STRANGER, "Not the operator's")

    def follow(start_url: str) -> requests.Response:
        """A browser that has nothing of the operator's opens the link and authorizes in its own workspace."""
        stranger = requests.Session()
        page = stranger.get(start_url, allow_redirects=False, timeout=10)
        if page.status_code != 200:
            return page
        start = stranger.post(start_url.split("?")[0], data=parse_qs(urlsplit(start_url).query),
                              allow_redirects=False, timeout=10)           # Continue to Intercom
        assert start.status_code == 303
        authorize = stranger.get(start.headers["Location"], timeout=10)            # Intercom's page
        assert authorize.status_code == 200
        query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
        decided = stranger.post(f"{sim.base_url}/oauth", data={**query, "decision": "allow"},
                                allow_redirects=False, timeout=10)
        return stranger.get(decided.headers["Location"], timeout=10)              # the callback

    def nothing_stored() -> bool:
        return (rt.secrets.scoped("worker").get(f"intercom/{STRANGER}/token") is None
                and rt.store.connections.workspace(STRANGER) is None)

    page = follow(f"{bridge.server.url}/oauth/intercom/start")                     # the bare public start
    assert page.status_code == 403 and "bridge workspace oauth-link" in page.text
    assert nothing_stored(), "a stranger's workspace token was stored in the operator's secret store"

    # The operator's link for their own workspace reaches the stranger (a forwarded email, a chat log).
    with redirect_stdout(io.StringIO()) as out:
        assert main(["workspace", "oauth-link", "--workspace", WORKSPACE, "--api-url", bridge.server.url, "--json"],
                    rt=bridge.operator()) == 0
    page = follow(json.loads(out.getvalue())["url"])
    assert page.status_code == 403 and f"but this link is for workspace {WORKSPACE} only" in page.text
    assert nothing_stored(), "a leaked link connected another workspace than the one it was made for"
