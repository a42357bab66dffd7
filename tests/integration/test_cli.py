"""The documented operator commands: settings apply / show, and their error messages."""
from __future__ import annotations

import json
import os

import pytest
import yaml

from chalicelib.cli import main
from tests.support.cli import run_cli

from .conftest import WORKSPACE, lead_settings, qualifying_settings


def write(tmp_path, doc) -> str:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(doc) if isinstance(doc, dict) else doc)
    return str(path)


def test_settings_apply_then_show(bridge, tmp_path, capsys):
    assert main(["settings", "apply", write(tmp_path, lead_settings())], rt=bridge.rt) == 0
    # the workspace lacked the bridge's marker attribute: applying made it (once)
    assert json.loads(capsys.readouterr().out) == {"campaign_id": "42", "version": 1,
                                                   "created": ["custom_attributes.rf_person"]}
    assert main(["settings", "apply", write(tmp_path, lead_settings())], rt=bridge.rt) == 0
    assert json.loads(capsys.readouterr().out) == {"campaign_id": "42", "version": 2}
    assert main(["settings", "show", "42"], rt=bridge.rt) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["settings"]["leads"]["action"] == "create_lead"


def test_invalid_settings_name_the_key_and_the_fix_and_are_not_stored(bridge, tmp_path, capsys):
    doc = lead_settings()
    doc["leads"]["fields"] = [{"from": "first_name", "to": "name"}, {"value": 1, "to": "name"}]
    doc["colour"] = "red"
    assert main(["settings", "apply", write(tmp_path, doc)], rt=bridge.rt) == 2
    err = capsys.readouterr().err
    assert "colour: unknown key — remove it or check its spelling" in err
    assert "leads: 'name' is mapped twice — map each Intercom attribute at most once" in err
    assert main(["settings", "show", "42"], rt=bridge.rt) == 1


def test_apply_checks_the_live_workspace_for_missing_attributes_and_types(bridge, tmp_path, capsys):
    doc = lead_settings()
    doc["leads"]["fields"] += [{"from": "code", "to": "custom_attributes.nope"},
                               {"value": "lots", "to": "custom_attributes.score"}]
    assert main(["settings", "apply", write(tmp_path, doc)], rt=bridge.rt) == 2
    err = capsys.readouterr().err
    assert "leads.fields[4].to: custom_attributes.nope does not exist in workspace vne310wv" in err
    assert "leads.fields[5].value: 'lots' is not a number" in err


def test_history_shows_the_trail_without_secrets(bridge, rf, intercom, capsys):
    from .conftest import join_body, new_lead
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))
    bridge.drain()
    assert main(["history", "42", str(lead["id"])], rt=bridge.rt) == 0
    out = capsys.readouterr().out
    assert '"outcome": "created"' in out
    assert "ann@example.com" not in out and '"email": "a***@example.com"' in out       # masked, as explain
    assert "sim-token" not in out and "client-secret" not in out and "rf-hook-secret" not in out


# --- --json on every command that answers, `workspace list`, blank secrets ---------------------------

def test_the_commands_that_answered_only_text_take_json_and_answer_one_json_object(bridge, intercom, tmp_path,
                                                                                    capsys):
    """docs/operating.md: every command that answers takes --json (these exited 2, "unrecognized arguments")."""
    settings = write(tmp_path, lead_settings())
    other = lead_settings()
    other["campaign_id"] = "43"
    bridge.apply(other)
    answers = {}
    for argv in (["settings", "check", settings], ["rf", "connect", "--webhook-secret", "rotated-hook"],
                 ["workspace", "connect", WORKSPACE, "--token", "sim-token"],
                 ["workspace", "oauth-app", "--client-id", "public-app", "--client-secret", "public-secret"],
                 ["dlq", "replay"], ["settings", "delete", "43"], ["workspace", "list"],
                 ["workspace", "disconnect", WORKSPACE]):
        code, out, err = run_cli(bridge.operator(), capsys, *argv, "--json")
        assert code == 0, (argv, err)
        answers[" ".join(argv[:2])] = json.loads(out)      # one JSON object, nothing else on stdout
    assert answers["settings check"] == {"valid": True, "campaign_id": "42", "workspace": WORKSPACE,
                                "workspace_checked": False, "warnings": []}
    assert answers["rf connect"] == {"token": "kept", "webhook_secret": "set", "warnings": [],
                                     "from": {"token": "none given", "webhook_secret": "--webhook-secret"}}
    assert answers["workspace connect"] == {"workspace": WORKSPACE, "name": "Acme (simulated)", "token": "set",
                                            "client_secret": "kept", "api_base": "default", "apps": ["private"],
                                            "token_app": "private", "warnings": [],
                                            "from": {"token": "--token", "client_secret": "none given"}}
    assert answers["workspace oauth-app"] == {"client_id": "set", "client_secret": "set", "state_key": "made",
                                              "relabelled": [],
                                              "warnings": [], "from": {"client_secret": "--client-secret"},
                                              "redirect_url": None}      # (no API URL given)
    assert answers["dlq replay"] == {"replayed": 0, "left": 0, "not_seen": 0}
    assert answers["settings delete"] == {"campaign_id": "43", "deleted": True, "deleted_version": 1,
                                          "workspace": WORKSPACE, "kept": ""}
    assert answers["workspace list"]["workspaces"][0]["status"] == "active"
    assert answers["workspace list"]["workspaces"][0]["campaigns"] == []           # 43's settings were deleted
    assert answers["workspace disconnect"] == {"workspace": WORKSPACE, "status": "disconnected", "apps": ["private"]}
    assert "rotated-hook" not in str(answers) and "public-secret" not in str(answers)


def test_workspace_list_shows_each_workspace_its_status_and_which_secrets_are_set_never_their_values(
        bridge, other_workspaces, capsys):
    other = other_workspaces("ws-b", "b-token-value")
    assert run_cli(bridge.operator(), capsys, "workspace", "connect", "ws-b", "--token", "b-token-value",
                   "--client-secret", "b-client-secret-value", "--api-base", other.base_url)[0] == 0
    assert run_cli(bridge.operator(), capsys, "workspace", "disconnect", "ws-b")[0] == 0
    named_only = lead_settings()
    named_only.update(campaign_id="44", workspace="ws-never")
    bridge.apply(named_only)
    bridge.apply(lead_settings())

    code, out, _ = run_cli(bridge.operator(), capsys, "workspace", "list", "--json")
    assert code == 0 and json.loads(out) == {"workspaces": [
        {"workspace": "vne310wv", "status": "active", "secrets_set": ["client-secret", "token"], "apps": ["private"],
         "token_app": "private", "api_base": None, "campaigns": ["42"]},
        {"workspace": "ws-b", "status": "disconnected", "secrets_set": ["client-secret"], "apps": ["private"],
         "token_app": None, "api_base": other.base_url, "campaigns": []},
        {"workspace": "ws-never", "status": "not connected", "secrets_set": [], "apps": [], "token_app": None,
         "api_base": None, "campaigns": ["44"]}]}
    code, text, _ = run_cli(bridge.operator(), capsys, "workspace", "list")
    assert code == 0 and text.splitlines() == [
        "3 workspace(s)",
        "- vne310wv  active  secrets set: client-secret, token  apps: private (token: private's)  api base default  "
        "campaigns: 42",
        f"- ws-b  disconnected  secrets set: client-secret  apps: private  api base {other.base_url}  campaigns: none",
        "- ws-never  not connected  secrets set: none  apps: none  api base default  campaigns: 44"]
    for secret in ("sim-token", "b-token-value", "b-client-secret-value"):
        assert secret not in out + text


def test_rf_connect_refuses_a_blank_or_space_padded_secret_in_one_line_and_stores_nothing(bridge, capsys):
    for argv, says in (
            (["--webhook-secret", " "], "bridge: --webhook-secret is empty (or only spaces), which nothing could "
                                        "ever match: give the webhook secret itself; nothing was stored\n"),
            (["--webhook-secret", ""], "bridge: give Referral Factory's token and/or webhook secret: `bridge rf "
                                       "connect` asks for them in a terminal (elsewhere, set RF_TOKEN and/or "
                                       "RF_WEBHOOK_SECRET)\n"),   # empty: not given
            (["--token", "rf-new\n"], "bridge: --token begins or ends with spaces or a newline (a copy-paste?): "
                                     "give it without them; nothing was stored\n"),
            (["--token", " rf-new", "--webhook-secret", "fine"], "bridge: --token begins or ends with spaces")):
        code, out, err = run_cli(bridge.operator(), capsys, "rf", "connect", *argv)
        # (each a command line it cannot take: nothing given outside a terminal, or a secret nothing could match)
        assert (code, out) == (2, "") and err.startswith(says) and err.count("\n") == 1, (argv, err)
    secrets = bridge.rt.secrets.scoped("edge")
    assert secrets.get("rf/webhook-secret") == "rf-hook-secret"
    assert bridge.rt.secrets.scoped("worker").get("rf/token") == "rf-token"


def test_rf_connect_checks_the_token_with_rf_and_refuses_one_rf_refuses_storing_nothing(bridge, rf, capsys):
    """As `workspace connect` asks Intercom, `rf connect` asks RF (its campaigns, one call) before it
    stores a token: a refused one is one line, exit 1, and the token already stored stays."""
    code, out, err = run_cli(bridge.operator(), capsys, "rf", "connect", "--token", "bogus-token")
    assert (code, out, err) == (1, "", f"bridge: Referral Factory refused this token (it answered 401: "
                                       f"Unauthenticated. at {rf.base_url}): check the token; nothing was stored\n")
    assert bridge.rt.secrets.scoped("worker").get("rf/token") == "rf-token"
    assert [(r["method"], r["path"], r["status"]) for r in rf.requests] == [("GET", "/campaigns", 401)]
    rf.blocked = True                                       # RF's 403: its IP block, said as such
    code, _, err = run_cli(bridge.operator(), capsys, "rf", "connect", "--token", "rf-token")
    assert (code, err) == (1, f"bridge: Referral Factory answered 403: IP blocked at {rf.base_url}: it blocks this "
                              "machine's address after too many calls (wait, then try again), or the token may not "
                              "read campaigns; nothing was stored\n")
    rf.blocked = False
    rf.token = "rf-new"                                     # RF's token, regenerated
    code, out, err = run_cli(bridge.operator(), capsys, "rf", "connect", "--token", "rf-new")
    assert (code, out, err) == (0, "Referral Factory connected: token set (from --token, checked with Referral "
                                   "Factory), webhook secret kept (none given)\n", "")
    assert bridge.rt.secrets.scoped("worker").get("rf/token") == "rf-new" and rf.count("GET", "/campaigns") == 3
    code, out, _ = run_cli(bridge.operator(), capsys, "rf", "connect", "--webhook-secret", "hook-2")
    assert (code, out) == (0, "Referral Factory connected: token kept (none given), webhook secret set (from "
                              "--webhook-secret)\n")
    assert rf.count() == 3                                  # no token given: nothing to ask RF


def test_rf_connect_that_cannot_reach_rf_stores_nothing_and_says_so(bridge, rf, capsys):
    from chalicelib.config import Config
    from chalicelib.runtime import Runtime

    rf.stop()                                               # nothing answers at RF's address
    waits: list[float] = []
    operator = Runtime(Config.from_env(), clock=bridge.rt.clock, sleeper=waits.append)
    code, out, err = run_cli(operator, capsys, "rf", "connect", "--token", "rf-new")
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith("bridge: could not reach Referral Factory to check the token (Referral Factory unreachable "
                          "after retries (") and err.endswith("); nothing was stored, try again\n")
    assert waits                                            # tried again, as every call to RF is, then refused
    assert bridge.rt.secrets.scoped("worker").get("rf/token") == "rf-token"


def test_workspace_connect_and_the_oauth_app_refuse_blank_secrets_too(bridge, capsys):
    code, _, err = run_cli(bridge.operator(), capsys, "workspace", "connect", WORKSPACE, "--client-secret", "  ")
    assert code == 2 and err.startswith("bridge: --client-secret is empty (or only spaces)")
    code, _, err = run_cli(bridge.operator(), capsys, "workspace", "oauth-app", "--client-id", "app ",
                           "--client-secret", "public-secret")
    assert code == 2 and err.startswith("bridge: --client-id begins or ends with spaces")
    assert bridge.rt.secrets.scoped("edge").get(f"intercom/{WORKSPACE}/client-secret") == "client-secret"


def test_a_connect_without_its_webhook_secret_warns_on_stderr_and_with_json_in_the_answer_only(
        bridge, other_workspaces, capsys):
    """A workspace connected without its client secret: its webhooks will be refused. People see a
    warning on stderr; with --json it is in the answer's `warnings`, and stderr carries errors only."""
    other = other_workspaces("ws-b", "b-token-value")
    code, out, err = run_cli(bridge.operator(), capsys, "workspace", "connect", "ws-b", "--token", "b-token-value",
                             "--api-base", other.base_url)
    assert code == 0 and err == ("warning: no client secret: Intercom's webhooks for this workspace will be refused "
                                 "(401) until it is set (`bridge workspace connect ws-b` asks for it)\n")
    code, out, err = run_cli(bridge.operator(), capsys, "workspace", "connect", "ws-b", "--token", "b-token-value",
                             "--api-base", other.base_url, "--json")
    assert (code, err) == (0, "") and json.loads(out)["warnings"] == [
        "no client secret: Intercom's webhooks for this workspace will be refused (401) until it is set "
        "(`bridge workspace connect ws-b` asks for it)"]
    code, out, err = run_cli(bridge.operator(), capsys, "rf", "connect", "--webhook-secret", "hook-2", "--json")
    assert (code, err) == (0, "") and json.loads(out)["warnings"] == []


def test_rf_connect_refuses_a_200_that_is_not_rfs_api(bridge, rf, capsys):
    """RF_BASE_URL pointing at a web page (some docs give referral-factory.com/api/v2, not api.…):
    a 200 without RF's `data` list is not RF accepting the token."""
    from http.server import BaseHTTPRequestHandler, HTTPServer
    import threading

    from chalicelib.config import Config
    from chalicelib.runtime import Runtime

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Sign in to Referral Factory</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass
    server = HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/api/v2"
        operator = Runtime(Config.from_env({**os.environ, "RF_BASE_URL": base}), clock=bridge.rt.clock)
        code, out, err = run_cli(operator, capsys, "rf", "connect", "--token", "any-token")
    finally:
        server.shutdown()
    assert (code, out) == (1, "") and err == (
        f"bridge: Referral Factory would not confirm the token (the answer at {base}/campaigns is not Referral "
        "Factory's API (no `data` list): check RF_BASE_URL); nothing was stored\n")
    assert bridge.rt.secrets.scoped("worker").get("rf/token") == "rf-token"


def test_workspace_oauth_link_prints_a_one_time_start_link_and_says_what_it_needs(bridge, capsys, monkeypatch):
    """The one way to start an OAuth connect: the operator's link (the bare start is refused)."""
    monkeypatch.delenv("BRIDGE_API_URL", raising=False)
    monkeypatch.delenv("BRIDGE_STAGE", raising=False)
    api = ["--api-url", bridge.server.url]
    code, out, err = run_cli(bridge.operator(), capsys, "workspace", "oauth-link", *api)
    assert (code, out) == (1, "") and err == ("bridge: OAuth is not set up on this stage yet: run `bridge workspace "
                                              "oauth-app --client-id ...` first (it asks for the public app's client "
                                              "secret)\n")
    assert run_cli(bridge.operator(), capsys, "workspace", "oauth-app", "--client-id", "public-app",
                   "--client-secret", "public-secret")[0] == 0
    code, out, err = run_cli(bridge.operator(), capsys, "workspace", "oauth-link")
    assert code == 1 and "the API's URL is not known here: give --api-url https://" in err
    # It is not known here exactly when the checkout holds no deployed state of the stage, where `chalice url` (which
    # reads that state) fails too: the URLs `make deploy` printed are where the operator finds it.
    assert "`make deploy` printed" in err and "chalice url" not in err
    code, out, err = run_cli(bridge.operator(), capsys, "workspace", "oauth-link", *api, "--workspace", "a b")
    assert code == 2 and "not an Intercom app_id" in err

    code, out, err = run_cli(bridge.operator(), capsys, "workspace", "oauth-link", *api, "--workspace", WORKSPACE)
    link, said = out.splitlines()
    assert code == 0 and err == "" and link.startswith(f"{bridge.server.url}/oauth/intercom/start?ticket=")
    assert f"A one-time OAuth start link for workspace {WORKSPACE} only: it works once, until " in said
    code, out, _ = run_cli(bridge.operator(), capsys, "workspace", "oauth-link", *api, "--json")
    answer = json.loads(out)
    assert code == 0 and answer["workspace"] is None and answer["single_use"] is True
    assert answer["url"] != link and answer["expires_at"].endswith("Z")


def test_settings_apply_says_what_a_change_means_for_the_people_already_seen(bridge, rf, tmp_path, capsys):
    """A lead's join ignored under `leads.action: nothing` is sent only by a backfill once the action
    creates (apply says so, with the commands); a qualification rule under action nothing can never
    qualify anyone (said at each apply)."""
    from .conftest import join_body, new_lead, qualifying_settings
    idle = qualifying_settings()
    idle["leads"]["action"] = "nothing"
    code, out, _ = run_cli(bridge.operator(), capsys, "settings", "apply", write(tmp_path, idle), "--json")
    assert code == 0 and json.loads(out)["warnings"] == [
        "leads.action is nothing, so no lead is linked to a contact and the qualification rule "
        "(custom_attributes.signed_up) can never qualify anyone: set leads.action to create_lead or create_user to "
        "qualify leads"]
    assert bridge.post_join(join_body(new_lead(rf))).status_code == 202
    bridge.drain()
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "apply", write(tmp_path, qualifying_settings()))
    assert code == 0 and json.loads(out)["version"] == 2 and err == (
        "warning: 1 person's join was ignored under leads.action nothing: `bridge backfill 42` (a dry run) lists them, "
        "then `bridge backfill 42 --apply` sends them\n")
    code, out, _ = run_cli(bridge.operator(), capsys, "settings", "apply", write(tmp_path, qualifying_settings()),
                           "--json")
    assert code == 0 and json.loads(out)["warnings"] == []             # said once: when the action changed


def test_a_refused_move_answers_json_with_json_and_a_move_back_says_who_counts_again(
        bridge, intercom, rf, other_workspaces, tmp_path, capsys):
    """docs/operating.md: `settings apply` answers JSON either way; a refused check answers {"valid": false,
    "problems": [...]} on stdout with --json, stderr empty. Applying the campaign back to the workspace its
    people are linked in says that they count again."""
    from chalicelib.services.connections import connect_workspace

    from .conftest import join_body, new_lead, qualifying_settings
    bridge.apply(qualifying_settings())
    assert bridge.post_join(join_body(new_lead(rf))).status_code == 202
    bridge.drain()
    other = other_workspaces("ws-b", "b-token")
    for name in ("referral_code", "lead_source", "signed_up", "referral_link"):
        other.define_attribute(name, "string")
    connect_workspace(bridge.rt, "ws-b", "b-token", client_secret="b-secret", api_base=other.base_url)
    moved = write(tmp_path, {**qualifying_settings(), "workspace": "ws-b"})
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "apply", moved, "--json")
    assert (code, err) == (1, "") and json.loads(out) == {"valid": False, "problems": [
        f"workspace: campaign 42 has 1 linked person in workspace {WORKSPACE}; moved to ws-b, they would no longer "
        f"qualify (their contacts stay in {WORKSPACE}, whose changes no longer count) — add --move-workspace to move "
        f"it anyway, or keep workspace: {WORKSPACE}"]}
    assert run_cli(bridge.operator(), capsys, "settings", "apply", moved, "--move-workspace")[0] == 0
    code, out, _ = run_cli(bridge.operator(), capsys, "settings", "apply", write(tmp_path, qualifying_settings()),
                           "--json")
    assert code == 0 and json.loads(out)["warnings"] == [
        f"campaign 42 moved back to workspace {WORKSPACE}: its 1 linked person of {WORKSPACE} counts again (changes "
        "to their contacts can qualify them)"]


def test_the_oauth_app_prints_the_redirect_url_to_register_when_the_api_url_is_known(bridge, capsys, monkeypatch):
    monkeypatch.delenv("BRIDGE_STAGE", raising=False)
    monkeypatch.setenv("BRIDGE_API_URL", "https://abc123.execute-api.eu-west-1.amazonaws.com/api/")
    app = ("workspace", "oauth-app", "--client-id", "public-app", "--client-secret", "public-secret")
    code, out, _ = run_cli(bridge.operator(), capsys, *app)
    assert code == 0 and "Register https://abc123.execute-api.eu-west-1.amazonaws.com/api/oauth/intercom/callback " \
                         "as the app's redirect URL; " in out and "<api>" not in out
    code, out, _ = run_cli(bridge.operator(), capsys, *app, "--api-url", bridge.server.url, "--json")
    assert json.loads(out)["redirect_url"] == f"{bridge.server.url}/oauth/intercom/callback"
    monkeypatch.delenv("BRIDGE_API_URL")
    code, out, _ = run_cli(bridge.operator(), capsys, *app)
    assert code == 0 and "Register <api>/oauth/intercom/callback as the app's redirect URL (<api> is the API's URL, " \
                         "not known here: the webhook URLs `make deploy` printed begin with it, up to /api; with " \
                         "--api-url or BRIDGE_API_URL this command prints the whole redirect URL); " in out
    code, out, _ = run_cli(bridge.operator(), capsys, *app, "--json")
    assert json.loads(out)["redirect_url"] is None


@pytest.mark.parametrize("status", [503, 401])
def test_settings_apply_while_intercom_cannot_be_asked_says_so_and_what_to_do_not_that_they_are_invalid(
        bridge, intercom, tmp_path, capsys, status):
    """Seen: `settings are invalid: workspace: could not read attributes from Intercom — Intercom answered 503`,
    exit 2, `{"valid": false}` under --json: of valid settings, while Intercom was away (or refused the token),
    with no word of what to do."""
    intercom.fail_next("GET", "/data_attributes", status, times=20)
    for as_json in ([], ["--json"]):
        code, out, err = run_cli(bridge.operator(), capsys, "settings", "apply", write(tmp_path, lead_settings()),
                                 *as_json)
        assert (code, out) == (1, "") and err.count("\n") == 1 and "settings are invalid" not in err, err
        assert err.startswith(f"bridge: settings of campaign 42 not stored: workspace vne310wv's attributes could not "
                              f"be read from Intercom to check them (Intercom answered {status} "), err
        assert err.endswith("apply them again once that is fixed (`bridge doctor 42` says what is wrong), or with "
                            "--offline (`bridge doctor 42` then checks the attributes)\n"), err
    assert main(["settings", "show", "42"], rt=bridge.rt) == 1


@pytest.mark.parametrize("variable, argv", [("BRIDGE_DLQ_URL", ["dlq", "list"]),
                                            ("BRIDGE_QUEUE_URL", ["forget", "ann@example.com"])])
def test_a_queue_that_does_not_exist_is_one_line_naming_the_variable_to_check(bridge, monkeypatch, capsys, variable,
                                                                               argv):
    """A table that does not exist says `is BRIDGE_TABLE (or the stage) right?`; a queue said only
    `AWS answered AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.`"""
    monkeypatch.setenv(variable, os.environ[variable] + "-gone")
    code, out, err = run_cli(None, capsys, *argv)
    assert (code, out) == (1, "") and err == ("bridge: AWS: The specified queue does not exist. — are BRIDGE_QUEUE_URL "
                                              "and BRIDGE_DLQ_URL (or the stage) right?\n")


def test_rf_blocking_a_backfill_is_one_line_on_stderr_without_the_lambdas_log_line(bridge, rf, capsys):
    """`bridge backfill 42` while RF blocks the IP (403) printed the shared limiter's JSON log record
    (`{"level":"ERROR",...,"message":"the vendor blocked us: the circuit is open",...}`) above its one line: the
    docs/operating.md says stderr carries nothing else, the log lines being the Lambdas' (BRIDGE_DEBUG=1 shows them)."""
    import logging

    from chalicelib.cli import command
    from chalicelib.observability import logger
    bridge.apply(qualifying_settings())
    rf.fail_next("*", ".", 403, seconds=3600)
    handler, level = logger.registered_handler, logger.level
    stream = handler.stream if isinstance(handler, logging.StreamHandler) else None
    capsys.readouterr()
    try:
        code = command(["backfill", "42"])
    finally:
        logger.setLevel(level)
        if stream is not None:
            handler.setStream(stream)
    out, err = capsys.readouterr()
    assert (code, out) == (1, "") and err.count("\n") == 1 and err.startswith(
        "bridge: Referral Factory could not list the people of campaign 42 (page 1): Referral Factory answered 403"), err
