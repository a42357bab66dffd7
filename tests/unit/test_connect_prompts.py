"""No secret needs to be typed on a command line (where it stays in the shell's history): in a terminal,
`bridge workspace connect`, `bridge rf connect` and `bridge workspace oauth-app` ask for what they were not
given, without echo; elsewhere (CI, a pipe) they refuse in one line naming the variable to set. The CLI on
the in-memory twins; the prompt is a stand-in for getpass (tests/support/cli.Terminal)."""
from __future__ import annotations

import json

import pytest

from chalicelib.cli import main
from chalicelib.services.connections import connect_rf, connect_workspace
from tests.fakes import FakeConnecting
from tests.support.cli import Terminal, run_cli

VARIABLES = ("INTERCOM_TOKEN", "INTERCOM_CLIENT_SECRET", "INTERCOM_CLIENT_ID", "INTERCOM_OAUTH_CLIENT_SECRET",
             "RF_TOKEN", "RF_WEBHOOK_SECRET")
TOKEN, CLIENT_SECRET = "tok-Typed:1", "cs-Typed:2"


@pytest.fixture
def rt(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    rt = FakeConnecting()
    rt.auth.apps[TOKEN] = {"id_code": "ws1", "name": "Acme", "region": "US"}
    return rt


def stored(rt) -> tuple:
    return (rt.secrets.scoped("worker").get("intercom/ws1/token"),
            rt.secrets.scoped("edge").get("intercom/ws1/client-secret"))


def test_a_connect_in_a_terminal_asks_for_the_token_and_client_secret_and_stores_them_as_typed(rt, monkeypatch, capsys):
    typed = Terminal(monkeypatch, TOKEN, CLIENT_SECRET)
    code, out, err = run_cli(rt, capsys, "workspace", "connect", "ws1")
    assert typed.prompts == ["Intercom access token for workspace ws1: ",
                             "Intercom app's client secret for workspace ws1 (Enter skips it): "]
    assert (code, out, err) == (0, "workspace ws1 (Acme) connected: token set (typed, checked with Intercom), client "
                                   "secret set (typed), api base default\n", "")
    assert stored(rt) == (TOKEN, CLIENT_SECRET)


def test_a_reconnect_in_a_terminal_keeps_what_is_stored_on_enter(rt, monkeypatch, capsys):
    connect_workspace(rt, "ws1", TOKEN, "cs-old")
    rt.auth.apps["tok-new"] = rt.auth.apps[TOKEN]
    typed = Terminal(monkeypatch, "tok-new", "")
    code, out, _ = run_cli(rt, capsys, "workspace", "connect", "ws1")
    assert typed.prompts == ["Intercom access token for workspace ws1 (Enter keeps the stored one): ",
                             "Intercom app's client secret for workspace ws1 (Enter keeps the stored one): "]
    assert code == 0 and "token set (typed, checked with Intercom), client secret kept (none given)" in out
    assert stored(rt) == ("tok-new", "cs-old")


@pytest.mark.parametrize("answer", ["", "   "])
def test_an_empty_answer_for_a_needed_token_is_refused_in_one_line_and_nothing_is_stored(
        rt, monkeypatch, capsys, answer):
    Terminal(monkeypatch, answer)
    assert run_cli(rt, capsys, "workspace", "connect", "ws1") == (
        1, "", "bridge: the Intercom access token for workspace ws1 cannot be empty: nothing was stored\n")
    assert stored(rt) == (None, None) and rt.store.connections.workspaces() == set()


def test_an_answer_with_spaces_around_it_is_refused_as_a_copy_paste_and_never_shown(rt, monkeypatch, capsys):
    Terminal(monkeypatch, f"{TOKEN} ")
    code, out, err = run_cli(rt, capsys, "workspace", "connect", "ws1")
    assert (code, out) == (1, "") and err == (
        "bridge: the Intercom access token for workspace ws1 begins or ends with spaces or a newline (a copy-paste?): "
        "give it without them; nothing was stored\n")
    assert stored(rt) == (None, None)


@pytest.mark.parametrize("tty", [True, False])
def test_ctrl_c_at_the_prompt_exits_130_quietly_ending_the_prompts_line_and_stores_nothing(rt, monkeypatch, capsys,
                                                                                          tmp_path, tty):
    """getpass ends its prompt's line once answered only: after Ctrl-C the shell's prompt was drawn on the same
    line. It is ended where getpass wrote it: the terminal itself, or stderr when that cannot be opened."""
    screen = tmp_path / "tty"
    Terminal(monkeypatch, TOKEN, KeyboardInterrupt(), screen=screen if tty else tmp_path / "none" / "tty")
    code, out, err = run_cli(rt, capsys, "workspace", "connect", "ws1")
    shown = ("Intercom access token for workspace ws1: \n"
             "Intercom app's client secret for workspace ws1 (Enter skips it): \n")
    assert (code, out, err) == (130, "", "" if tty else shown)      # no error text
    assert (screen.read_text() if tty else screen.exists()) == (shown if tty else False)
    assert stored(rt) == (None, None)


@pytest.mark.parametrize("key, code, after", [
    ("\x04", 1, "bridge: the Intercom access token for workspace ws1 cannot be empty: nothing was stored\r\n"),  # Ctrl-D
])
def test_on_a_real_terminal_ctrl_d_at_the_prompt_ends_its_line(rt, key, code, after):
    """The CLI with the real getpass on a pseudo-terminal of its own (its controlling terminal: getpass writes on
    /dev/tty): what the terminal shows once Ctrl-D is typed at the prompt. (Ctrl-C, typed so in a process forked
    from a test process, was at times not delivered as SIGINT in the full suite: its line ending is tested with
    getpass's stand-in above.)"""
    import os
    import pty
    import select
    import signal
    import sys

    pid, fd = pty.fork()
    if pid == 0:                        # the child: the CLI on the terminal, whatever happens then ends it
        status = 99
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)   # as a fresh `bridge` has it, whatever an
            signal.set_wakeup_fd(-1)                                    # earlier test in this process set
            sys.stdin, sys.stdout, sys.stderr = (open(n, m, closefd=False) for n, m in ((0, "r"), (1, "w"), (2, "w")))
            status = main(["workspace", "connect", "ws1"], rt=rt)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    prompt, shown, typed = "Intercom access token for workspace ws1: ", b"", False
    try:
        while True:
            assert select.select([fd], [], [], 20)[0], shown        # (a test that fails, never one that hangs)
            try:
                chunk = os.read(fd, 1024)
            except OSError:             # (the child ended: the terminal has no other end)
                break
            if not chunk:
                break
            shown += chunk
            if not typed and shown.endswith(prompt.encode()):
                os.write(fd, key.encode())
                typed = True
    finally:
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:                    # still at the prompt (the test failed): ended, not waited for
            os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    # (what the child logged before the prompt, in a process other tests configured the logging of, aside)
    assert (prompt + shown.decode().split(prompt, 1)[-1], os.waitstatus_to_exitcode(status)) == (
        f"{prompt}\r\n{after}", code)


def test_outside_a_terminal_a_missing_token_is_one_line_naming_the_variable_and_nothing_is_asked(
        rt, monkeypatch, capsys):
    monkeypatch.setattr("getpass.getpass", lambda *a, **k: pytest.fail("asked outside a terminal"))
    assert run_cli(rt, capsys, "workspace", "connect", "ws1") == (
        1, "", "bridge: workspace ws1 has no access token yet: `bridge workspace connect ws1` asks for it in a "
               "terminal (elsewhere, set INTERCOM_TOKEN)\n")


def test_a_secret_in_its_variable_is_not_asked_for_even_in_a_terminal(rt, monkeypatch, capsys):
    monkeypatch.setenv("INTERCOM_TOKEN", TOKEN)
    monkeypatch.setenv("INTERCOM_CLIENT_SECRET", CLIENT_SECRET)
    typed = Terminal(monkeypatch)
    code, _, err = run_cli(rt, capsys, "workspace", "connect", "ws1")
    assert (code, err, typed.prompts) == (0, "", [])
    assert stored(rt) == (TOKEN, CLIENT_SECRET)


def test_an_option_typed_in_a_terminal_still_works_and_warns_that_it_is_in_the_history(rt, monkeypatch, capsys):
    Terminal(monkeypatch)
    code, out, err = run_cli(rt, capsys, "workspace", "connect", "ws1", "--token", TOKEN, "--client-secret",
                             CLIENT_SECRET)
    assert code == 0 and stored(rt) == (TOKEN, CLIENT_SECRET)
    assert err == ("warning: --token on the command line lands in the shell's history (and shows in `ps`): leave it "
                   "out to be asked for it, or set INTERCOM_TOKEN\n"
                   "warning: --client-secret on the command line lands in the shell's history (and shows in `ps`): "
                   "leave it out to be asked for it, or set INTERCOM_CLIENT_SECRET\n")
    assert TOKEN not in out + err and CLIENT_SECRET not in out + err


def test_rf_connect_in_a_terminal_asks_for_both_secrets_and_enter_keeps_a_stored_one(rt, monkeypatch, capsys):
    typed = Terminal(monkeypatch, "rf-Typed:1", "hook-Typed:2")
    code, out, err = run_cli(rt, capsys, "rf", "connect")
    assert typed.prompts == ["Referral Factory API token: ",
                             "Referral Factory webhook secret (the X-Bridge-Secret header's value): "]
    assert (code, err) == (0, "") and "rf-Typed" not in out and "hook-Typed" not in out
    assert rt.secrets.scoped("worker").get("rf/token") == "rf-Typed:1"
    assert rt.secrets.scoped("edge").get("rf/webhook-secret") == "hook-Typed:2"
    Terminal(monkeypatch, "", "hook-3")
    code, out, _ = run_cli(rt, capsys, "rf", "connect")
    assert code == 0 and "token kept" in out and rt.secrets.scoped("edge").get("rf/webhook-secret") == "hook-3"
    Terminal(monkeypatch, "", "")
    assert run_cli(rt, capsys, "rf", "connect") == (
        1, "", "bridge: nothing was typed: Referral Factory's token and webhook secret are kept as they were\n")


def test_rf_connect_refuses_an_empty_webhook_secret_when_none_is_stored(rt, monkeypatch, capsys):
    connect_rf(rt, token="rf-1")
    Terminal(monkeypatch, "", "")
    assert run_cli(rt, capsys, "rf", "connect") == (
        1, "", "bridge: the Referral Factory webhook secret (the X-Bridge-Secret header's value) cannot be empty: "
               "nothing was stored\n")


def test_the_oauth_app_asks_for_its_client_secret_but_not_before_its_client_id_is_known(rt, monkeypatch, capsys):
    typed = Terminal(monkeypatch, "app-Typed:1")
    assert run_cli(rt, capsys, "workspace", "oauth-app") == (
        1, "", "bridge: give --client-id (or INTERCOM_CLIENT_ID): the public app's client id\n")
    assert typed.prompts == []
    rt.secrets.reads.clear()
    code, out, _ = run_cli(rt, capsys, "workspace", "oauth-app", "--client-id", "app-id")
    assert code == 0 and typed.prompts == ["Public Intercom app's client secret: "] and "app-Typed" not in out
    assert sorted(rt.secrets.reads) == [f"/bridge/edge/oauth/{name}" for name in ("client-id", "client-secret",
                                                                                "state-key")] + [
        "/bridge/edge/rf/webhook-secret"]                       # each read once (RF's: not the same secret)
    assert rt.secrets.scoped("edge").get("oauth/client-secret") == "app-Typed:1"


def test_a_new_oauth_app_secret_typed_at_the_prompt_reads_the_stored_one_once(rt, monkeypatch, capsys):
    """A rotation at the prompt: the stored public secret is read once, for the prompt (Enter would keep it)
    and to tell the workspaces holding a copy of it; then the typed one is stored."""
    from chalicelib.services.connections import configure_oauth
    configure_oauth(rt, "app-id", "app-secret")
    typed = Terminal(monkeypatch, "app-Typed:2")
    rt.secrets.reads.clear()
    assert run_cli(rt, capsys, "workspace", "oauth-app")[0] == 0
    assert typed.prompts == ["Public Intercom app's client secret (Enter keeps the stored one): "]
    assert rt.secrets.reads.count("/bridge/edge/oauth/client-secret") == 1, rt.secrets.reads
    assert rt.secrets.scoped("edge").get("oauth/client-secret") == "app-Typed:2"


def test_an_api_base_that_would_be_refused_is_refused_before_any_secret_is_typed(rt, monkeypatch, capsys):
    typed = Terminal(monkeypatch, TOKEN, CLIENT_SECRET)
    code, out, err = run_cli(rt, capsys, "workspace", "connect", "ws1", "--api-base", "http://api.eu.intercom.io")
    assert (code, out, typed.prompts) == (2, "", [])          # a command line it cannot act on (docs/operating.md)
    assert err == ("bridge: --api-base must be an https:// URL, e.g. https://api.eu.intercom.io (the value given is "
                   "not repeated here: it may be a token given in its place)\n")


def test_rotating_the_state_key_asks_for_nothing_and_keeps_the_apps_credentials(rt, monkeypatch, capsys):
    from chalicelib.services.connections import configure_oauth
    configure_oauth(rt, "app-id", "app-secret")
    edge = rt.secrets.scoped("edge")
    key = edge.get("oauth/state-key")
    typed = Terminal(monkeypatch)
    code, out, err = run_cli(rt, capsys, "workspace", "oauth-app", "--rotate-state-key")
    assert (code, err, typed.prompts) == (0, "", [])
    assert out.startswith("OAuth app stored: client id kept, client secret kept (none given), state key rotated. "
                          "Sign-ins under way (continued to Intercom with the old key, or within the minute running "
                          "API containers keep it) are refused on their return from Intercom, with a page asking "
                          "for a new link; links not yet continued still work")
    assert edge.get("oauth/state-key") not in (key, None)
    assert (edge.get("oauth/client-id"), edge.get("oauth/client-secret")) == ("app-id", "app-secret")


@pytest.mark.parametrize("command, variable, stored_as", [
    (("rf", "connect"), "RF_TOKEN", ("worker", "rf/token")),
    (("rf", "connect"), "RF_WEBHOOK_SECRET", ("edge", "rf/webhook-secret")),
    (("workspace", "connect", "ws1"), "INTERCOM_TOKEN", ("worker", "intercom/ws1/token"))])
def test_a_script_in_a_terminal_that_gives_one_secret_is_not_stopped_by_a_prompt_for_the_other(
        rt, monkeypatch, capsys, command, variable, stored_as):
    """A script run from a terminal (a token rotation: `RF_TOKEN=... bridge rf connect`) gives what it
    replaces; what it does not give is kept as it is stored, as outside a terminal: no prompt waits for
    Enter."""
    connect_rf(rt, token="rf-old", webhook_secret="hook-old")
    connect_workspace(rt, "ws1", TOKEN, "cs-old")
    monkeypatch.setenv(variable, TOKEN)
    typed = Terminal(monkeypatch)
    code, out, err = run_cli(rt, capsys, *command)
    assert (code, typed.prompts) == (0, [])
    assert rt.secrets.scoped(stored_as[0]).get(stored_as[1]) == TOKEN


def test_enter_at_the_oauth_apps_prompt_with_nothing_else_given_says_nothing_changed(rt, monkeypatch, capsys):
    """As `rf connect` says: not a hint to run the very command that asked (\"asks for it in a terminal\")."""
    from chalicelib.services.connections import configure_oauth
    configure_oauth(rt, "app-id", "app-secret")
    typed = Terminal(monkeypatch, "")
    assert run_cli(rt, capsys, "workspace", "oauth-app") == (
        1, "", "bridge: nothing was typed: the public Intercom app's client id and secret are kept as they were\n")
    assert typed.prompts == ["Public Intercom app's client secret (Enter keeps the stored one): "]
    assert rt.secrets.scoped("edge").get("oauth/client-secret") == "app-secret"


@pytest.mark.parametrize("disconnected", [False, True])
def test_a_leftover_client_secret_variable_does_not_stop_the_prompt_for_a_token_none_is_stored_of(
        rt, monkeypatch, capsys, disconnected):
    """INTERCOM_CLIENT_SECRET left in the shell: a first connect, or the reconnect of a disconnected
    workspace, still asks for the token it cannot keep, and the answer says where each value came from."""
    if disconnected:
        connect_workspace(rt, "ws1", TOKEN, "cs-old")
        run_cli(rt, capsys, "workspace", "disconnect", "ws1")
    monkeypatch.setenv("INTERCOM_CLIENT_SECRET", CLIENT_SECRET)
    typed = Terminal(monkeypatch, TOKEN)
    code, out, err = run_cli(rt, capsys, "workspace", "connect", "ws1")
    assert typed.prompts == ["Intercom access token for workspace ws1: "]
    assert (code, out, err) == (0, "workspace ws1 (Acme) connected: token set (typed, checked with Intercom), client "
                                   "secret set (from INTERCOM_CLIENT_SECRET), api base default\n", "")
    assert stored(rt) == (TOKEN, CLIENT_SECRET)


def test_a_token_given_on_a_first_connect_in_a_terminal_still_asks_for_the_client_secret(rt, monkeypatch, capsys):
    typed = Terminal(monkeypatch, "")
    code, out, _ = run_cli(rt, capsys, "workspace", "connect", "ws1", "--token", TOKEN, "--json")
    assert typed.prompts == ["Intercom app's client secret for workspace ws1 (Enter skips it): "]
    assert code == 0 and {k: v for k, v in json.loads(out).items() if k in ("token", "client_secret", "from")} == {
        "token": "set", "client_secret": "missing", "from": {"token": "--token", "client_secret": "none given"}}


def test_a_reconnect_with_a_leftover_variable_says_the_other_secret_was_kept_because_none_was_given(
        rt, monkeypatch, capsys):
    connect_workspace(rt, "ws1", TOKEN, "cs-old")
    monkeypatch.setenv("INTERCOM_CLIENT_SECRET", CLIENT_SECRET)
    Terminal(monkeypatch)
    code, out, _ = run_cli(rt, capsys, "workspace", "connect", "ws1")
    assert (code, out) == (0, "workspace ws1 connected: token kept (none given), client secret set (from "
                              "INTERCOM_CLIENT_SECRET), api base default\n")
    code, out, _ = run_cli(rt, capsys, "workspace", "connect", "ws1", "--json")
    assert json.loads(out)["from"] == {"token": "none given", "client_secret": "INTERCOM_CLIENT_SECRET"}


def test_rf_connect_asks_for_the_secret_none_is_stored_of_even_when_a_variable_gives_the_other(
        rt, monkeypatch, capsys):
    monkeypatch.setenv("RF_WEBHOOK_SECRET", "hook-from-env")
    typed = Terminal(monkeypatch, "rf-Typed:1")
    code, out, err = run_cli(rt, capsys, "rf", "connect")
    assert typed.prompts == ["Referral Factory API token: "]
    assert (code, out, err) == (0, "Referral Factory connected: token set (typed, checked with Referral Factory), "
                                   "webhook secret set (from RF_WEBHOOK_SECRET)\n", "")
    assert rt.secrets.scoped("worker").get("rf/token") == "rf-Typed:1"
    code, out, _ = run_cli(rt, capsys, "rf", "connect", "--json")
    assert json.loads(out)["from"] == {"token": "none given", "webhook_secret": "RF_WEBHOOK_SECRET"}


@pytest.mark.parametrize("stdin", ["", "tok-piped\n"])
def test_a_workspace_connect_given_nothing_outside_a_terminal_fails_naming_the_variables(
        rt, monkeypatch, capsys, stdin):
    """As `rf connect`: not "connected: token kept, client secret kept" for a run that changed nothing
    (`</dev/null`, or a token piped in, which is not read)."""
    import io
    connect_workspace(rt, "ws1", TOKEN, "cs-old")
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert run_cli(rt, capsys, "workspace", "connect", "ws1") == (
        1, "", "bridge: give workspace ws1's token and/or client secret: `bridge workspace connect ws1` asks for them "
               "in a terminal (elsewhere, set INTERCOM_TOKEN and/or INTERCOM_CLIENT_SECRET)\n")
    assert stored(rt) == (TOKEN, "cs-old")


def test_enter_at_both_prompts_of_a_workspace_connect_says_nothing_changed(rt, monkeypatch, capsys):
    connect_workspace(rt, "ws1", TOKEN, "cs-old")
    Terminal(monkeypatch, "", "")
    assert run_cli(rt, capsys, "workspace", "connect", "ws1") == (
        1, "", "bridge: nothing was typed: workspace ws1's token and client secret are kept as they were\n")


def test_a_new_api_base_alone_is_a_change_and_keeps_both_secrets(rt, monkeypatch, capsys):
    """docs/setup.md: connecting again replaces only what is given, the API base too."""
    connect_workspace(rt, "ws1", TOKEN, "cs-old")
    Terminal(monkeypatch, "", "")
    code, out, _ = run_cli(rt, capsys, "workspace", "connect", "ws1", "--api-base", "https://api.eu.intercom.io")
    assert (code, out) == (0, "workspace ws1 connected: token kept (none given), client secret kept (none given), "
                              "api base https://api.eu.intercom.io\n")
    assert rt.store.connections.workspace("ws1").api_base == "https://api.eu.intercom.io" and \
        stored(rt) == (TOKEN, "cs-old")


@pytest.mark.parametrize("how", ["typed", "variable", "option"])
@pytest.mark.parametrize("command, option, variable, what", [
    (("workspace", "connect", "ws1"), "--token", "INTERCOM_TOKEN", "Intercom access token for workspace ws1"),
    (("workspace", "connect", "ws1"), "--client-secret", "INTERCOM_CLIENT_SECRET",
     "Intercom app's client secret for workspace ws1"),
    (("rf", "connect"), "--token", "RF_TOKEN", "Referral Factory API token"),
    (("rf", "connect"), "--webhook-secret", "RF_WEBHOOK_SECRET",
     "Referral Factory webhook secret (the X-Bridge-Secret header's value)")])
def test_a_secret_that_is_not_plain_ascii_is_refused_in_one_line_before_anything_is_called_or_stored(
        rt, monkeypatch, capsys, how, command, option, variable, what):
    """A pasted € or curly quote: no codec error, no webhook secret stored that every webhook then fails."""
    connect_rf(rt, token="rf-old", webhook_secret="hook-old")
    connect_workspace(rt, "ws1", TOKEN, "cs-old")
    bad, argv = "wh€-secret\u201d", list(command)
    rt.auth.apps[bad] = rt.auth.apps[TOKEN]         # Intercom's twin would take it: only the CLI refuses it
    calls = list(rt.auth.calls)
    if how == "variable":
        monkeypatch.setenv(variable, bad)
    elif how == "option":
        argv += [option, bad]
    first = (option in ("--token",))           # the prompts come in the order token, then the other
    typed = Terminal(monkeypatch, *([bad] if first else ["", bad])) if how == "typed" else Terminal(monkeypatch)
    code, out, err = run_cli(rt, capsys, *argv)
    assert (code, out) == (1, "") and err == (f"bridge: the {what} holds a character that is not plain ASCII (a "
                                              "pasted € or curly quote?): nothing was stored\n")
    assert stored(rt) == (TOKEN, "cs-old") and rt.secrets.scoped("worker").get("rf/token") == "rf-old"
    assert rt.secrets.scoped("edge").get("rf/webhook-secret") == "hook-old"
    assert rt.auth.calls == calls
    assert len(typed.prompts) == (0 if how != "typed" else 1 if first else 2)


def help_of(capsys, *command: str) -> str:
    from chalicelib.cli import main
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return " ".join(capsys.readouterr().out.split())      # argparse's wrapping undone


@pytest.mark.parametrize("command", [("workspace", "connect"), ("rf", "connect")])
def test_the_help_of_a_connect_says_that_one_secret_given_keeps_the_other_and_how_to_keep_them_out_of_history(
        capsys, command):
    said = help_of(capsys, *command)
    assert "Giving one keeps the other as stored, without asking; one none is stored of is still asked for." in said
    assert "prefer the prompt, or a variable set without typing its value on a command line" in said
    assert "prefer the prompt or the variable" not in said


def test_the_help_names_the_workspace_argument_the_client_id_variable_and_whose_client_secret_each_reads(capsys):
    said = help_of(capsys, "workspace", "connect")
    assert "workspace the workspace's Intercom app id (its workspace id, e.g. vne310wv)" in said
    assert "--client-secret CLIENT_SECRET the private app's client secret" in said
    said = help_of(capsys, "workspace", "oauth-app")
    assert "--client-id CLIENT_ID the public app's client id; left out, it is read from INTERCOM_CLIENT_ID" in said
    assert "read from INTERCOM_OAUTH_CLIENT_SECRET (else INTERCOM_CLIENT_SECRET)" in said


def test_the_oauth_app_reads_its_own_variable_before_the_private_apps_client_secret(rt, monkeypatch, capsys):
    """INTERCOM_CLIENT_SECRET is what `workspace connect` (and `make run`) read for a private app: with
    INTERCOM_OAUTH_CLIENT_SECRET set, the public app's is taken from it; without, the old variable still
    works, and the answer says which one was read."""
    monkeypatch.setenv("INTERCOM_CLIENT_SECRET", "private-secret")
    monkeypatch.setenv("INTERCOM_OAUTH_CLIENT_SECRET", "public-secret")
    Terminal(monkeypatch)
    code, out, err = run_cli(rt, capsys, "workspace", "oauth-app", "--client-id", "app-id")
    assert (code, err) == (0, "") and "client secret set (from INTERCOM_OAUTH_CLIENT_SECRET)" in out
    assert rt.secrets.scoped("edge").get("oauth/client-secret") == "public-secret"
    monkeypatch.delenv("INTERCOM_OAUTH_CLIENT_SECRET")
    code, out, err = run_cli(rt, capsys, "workspace", "oauth-app", "--json")
    assert code == 0 and json.loads(out)["from"] == {"client_secret": "INTERCOM_CLIENT_SECRET"}
    assert json.loads(out)["warnings"] == [
        "the client secret came from INTERCOM_CLIENT_SECRET, which `workspace connect` reads for a private app's: "
        "set INTERCOM_OAUTH_CLIENT_SECRET for the public app's"]
    assert rt.secrets.scoped("edge").get("oauth/client-secret") == "private-secret"


@pytest.mark.parametrize("argv", [
    ("rf", "connect", "rf-Secret:9"),                          # the token taken for a positional argument
    ("workspace", "connect", "ws1", "tok-Secret:9"),
    ("rf", "connect", "--tokne=rf-Secret:9"),                  # a misspelt option, its value attached
    ("workspace", "connect", "tok-Secret:9=="),                # the token given where the app_id goes
    ("rf", "connect", "-tokSecret:9"),                         # a token that begins with a dash
    ("rf", "tok-Secret:9"),                                    # the token where the command goes
    ("rf", "tok'Secret:9"),                                    # ... holding a quote (argparse repeats it in "")
    ("workspace", "oauth-app", "--client=tok-Secret:9"),       # an abbreviation (refused), its value attached
    ("rf", "connect", "--json=tok-Secret:9"),                  # a value attached to an option that takes none
])
def test_a_secret_given_where_the_command_takes_none_is_refused_without_repeating_it(rt, monkeypatch, capsys, argv):
    """One line on stderr, as any refusal, but never the value: it may be the secret itself."""
    Terminal(monkeypatch)
    try:
        code, out, err = run_cli(rt, capsys, *argv)
    except SystemExit as exc:                   # argparse's refusal
        code, (out, err) = exc.code, capsys.readouterr()
    assert code in (1, 2) and out == "" and err.startswith("bridge: ") and err.count("\n") == 1
    assert "Secret:9" not in err
    assert rt.store.connections.workspaces() == set()
    assert rt.secrets.values == {} and rt.store.connections.rf() is None


@pytest.mark.parametrize("command, variable, option", [
    (("rf", "connect"), "RF_TOKEN", "--token"),
    (("workspace", "connect", "ws1"), "INTERCOM_CLIENT_SECRET", "--client-secret"),
    (("workspace", "oauth-app", "--client-id", "app-id"), "INTERCOM_OAUTH_CLIENT_SECRET", "--client-secret")])
@pytest.mark.parametrize("value, says", [
    ("tok-Secret:9\r", "begins or ends with spaces or a newline (a copy-paste?): give it without them"),
    ("   ", "is empty (or only spaces), which nothing could ever match")])
def test_a_variable_with_spaces_around_its_value_is_refused_by_its_own_name(
        rt, monkeypatch, capsys, command, variable, option, value, says):
    """`export RF_TOKEN=$(cat token.txt)` from a file with Windows line ends: the refusal names the
    variable that holds it, not an option that was never typed; a command line it cannot take (exit 2)."""
    monkeypatch.setenv("INTERCOM_TOKEN", TOKEN)
    monkeypatch.setenv(variable, value)
    Terminal(monkeypatch)
    code, out, err = run_cli(rt, capsys, *command)
    assert (code, out) == (2, "") and err.startswith(f"bridge: {variable} {says}") and option not in err
    assert "Secret:9" not in err and "nothing was stored" in err


@pytest.mark.parametrize("api_url", ["abc123.execute-api.eu-west-1.amazonaws.com/api", "http://abc.example/api"])
def test_the_oauth_app_refuses_an_api_url_oauth_link_would_refuse_before_storing_anything(rt, capsys, api_url):
    """It printed `Register abc123.execute-api.../api/oauth/intercom/callback as the app's redirect URL`, a URL that
    Intercom cannot send the admin back to, where `workspace oauth-link` refuses the same --api-url."""
    code, out, err = run_cli(rt, capsys, "workspace", "oauth-app", "--client-id", "app-id", "--client-secret",
                             CLIENT_SECRET, "--api-url", api_url)
    assert (code, out) == (2, "") and err.startswith("bridge: the API's URL (--api-url, BRIDGE_API_URL) must be an https:// URL"), err
    assert rt.oauth_app() is None and rt.secrets.scoped("edge").get("oauth/client-id") is None


def test_rf_connect_s_json_says_none_given_of_a_secret_not_given_as_its_text_does(rt, monkeypatch, capsys):
    """`rf connect --json` said `"from": {"webhook_secret": null}` where the text, and docs/setup.md, say
    "none given": the same words, under the same keys."""
    import io
    monkeypatch.setenv("RF_TOKEN", "rf-Env:1")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))          # a script: nothing is asked
    code, out, _ = run_cli(rt, capsys, "rf", "connect")
    assert code == 0 and "webhook secret missing (none given)" in out
    code, out, _ = run_cli(rt, capsys, "rf", "connect", "--json")
    answer = json.loads(out)
    assert (code, answer["webhook_secret"], answer["from"]) == (
        0, "missing", {"token": "RF_TOKEN", "webhook_secret": "none given"})


def test_oauth_app_given_nothing_outside_a_terminal_with_the_app_stored_says_what_a_script_passes(
        rt, monkeypatch, capsys):
    """It said `bridge workspace oauth-app` asks in a terminal: the command that was run, not in one. It names
    what a script passes instead (the state key's rotation too), and the app stays as stored."""
    import io
    from chalicelib.services.connections import configure_oauth
    configure_oauth(rt, "app-id", "app-secret")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert run_cli(rt, capsys, "workspace", "oauth-app") == (
        2, "", "bridge: give the public Intercom app's client id (--client-id or INTERCOM_CLIENT_ID) and/or client "
               "secret (INTERCOM_OAUTH_CLIENT_SECRET), or --rotate-state-key for a new state key alone: outside a "
               "terminal nothing is asked for; nothing was changed\n")
    edge = rt.secrets.scoped("edge")
    assert (edge.get("oauth/client-id"), edge.get("oauth/client-secret")) == ("app-id", "app-secret")


def test_enter_at_every_prompt_exits_1_as_the_docs_exit_statuses_say(rt, monkeypatch, capsys):
    """Each of the three connects exits 1 when Enter was pressed at every prompt (nothing changed); docs/operating.md's
    one sentence on exit statuses did not say so."""
    from chalicelib.services.connections import configure_oauth
    from tests.support.docs import docs_text
    summed = " ".join(docs_text().split("In all, the exit\nstatus is ")[1].split(".\n")[0].split())
    assert "1 for an error or for what it found wrong (`doctor`'s problems, `explain`'s nobody, a watched run that " \
           "stopped) or for Enter at every prompt of `rf connect`, `workspace connect` or `workspace oauth-app` " \
           "(`nothing was typed: ... kept as they were`), 2 for" in summed
    connect_rf(rt, token="rf-1", webhook_secret="hook-1")
    connect_workspace(rt, "ws1", TOKEN, "cs-old")
    configure_oauth(rt, "app-id", "app-secret")
    codes = []
    for argv, enters in ((["rf", "connect"], 2), (["workspace", "connect", "ws1"], 2), (["workspace", "oauth-app"], 1)):
        Terminal(monkeypatch, *[""] * enters)
        code, out, err = run_cli(rt, capsys, *argv)
        assert (out, err.startswith("bridge: nothing was typed: ")) == ("", True), (argv, err)
        codes.append(code)
    assert codes == [1, 1, 1]
