"""Every CLI error is one clear line on stderr and a non-zero exit, never a traceback; `./bridge`
and `make bridge` print only what the CLI prints."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.cli import main
from tests.support.cli import run_cli
from tests.support.interrupt import INTERRUPT_HOOK

ROOT = Path(__file__).resolve().parents[2]


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("bridge: ")
    return err


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """An environment that names nothing real: no profile files, no instance metadata."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "BRIDGE_", "INTERCOM_", "RF_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("BRIDGE_TABLE", "t-table")
    monkeypatch.setenv("BRIDGE_DLQ_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/t-dlq")
    yield monkeypatch
    from chalicelib.adapters.dynamo import bind
    bind("rf-intercom-bridge-table")


@pytest.fixture
def no_runtime(aws_env):
    """aws_env, where a runtime built fails the command: a command line refused is refused before any stack is
    looked for (nothing asked or stored)."""
    def built(*_: object) -> None:
        raise AssertionError("a runtime was built")
    aws_env.setattr("chalicelib.cli._runtime", built)
    return aws_env


def test_a_missing_settings_file_as_the_readme_once_showed_it(aws_env, tmp_path, capsys):
    aws_env.chdir(tmp_path)
    code, out, err = run_cli(None, capsys, "settings", "apply", "--offline", "campaign.yaml")
    assert code == 1 and out == ""
    assert one_line(err) == "bridge: campaign.yaml: no such file (an example: docs/examples/campaign.yaml)\n"



def test_settings_show_of_a_campaign_without_settings_says_how_to_store_them(capsys):
    """A new user's `./bridge settings show 43` said `campaign 43 has no settings`, and no more: not how settings
    are stored, nor where to see which campaigns have some (a mistyped id)."""
    from tests.fakes import FakeConnecting

    code, out, err = run_cli(FakeConnecting(), capsys, "settings", "show", "43")
    assert (code, out) == (1, "")
    assert one_line(err) == ("bridge: campaign 43 has no settings — apply them with `bridge settings apply <file>` "
                             "(an example: docs/examples/campaign.yaml; `bridge workspace list` names the campaigns "
                             "that have settings)\n")

def test_a_directory_instead_of_a_file(aws_env, tmp_path, capsys):
    code, _, err = run_cli(None, capsys, "settings", "check", str(tmp_path))
    assert code == 1 and "cannot be read" in one_line(err)


def test_no_aws_credentials(aws_env, capsys):
    code, _, err = run_cli(None, capsys, "history", "42", "1")
    assert code == 1 and one_line(err).startswith("bridge: no AWS credentials: set AWS_PROFILE")


def test_aws_unreachable(aws_env, capsys):
    aws_env.setenv("AWS_ACCESS_KEY_ID", "x")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "y")
    aws_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")           # nothing listens there
    for argv in (["history", "42", "1"], ["settings", "show", "42"], ["dlq", "list"], ["doctor", "42", "--json"],
                 ["explain", "ann@example.com"], ["sync", "status", "42", "--watch"],
                 ["workspace", "connect", "ws1", "--token", "tok-not-shown"]):
        code, _, err = run_cli(None, capsys, *argv)
        assert code == 1 and "AWS is unreachable" in one_line(err), argv
        assert "tok-not-shown" not in err


def test_no_dead_letter_queue_configured(aws_env, capsys):
    aws_env.delenv("BRIDGE_DLQ_URL")
    code, _, err = run_cli(None, capsys, "dlq", "list")
    assert code == 1 and "BRIDGE_DLQ_URL is not set" in one_line(err)


def test_bad_arguments_are_one_line_too(aws_env, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["workspace"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert one_line(err) == "bridge: give a command: connect, disconnect, remove-app, oauth-app, oauth-link, list (see `bridge workspace --help`)\n"


@pytest.mark.parametrize("argv, typed", [(["dlq", "replay", "--reas", "boom"], "--reas"),
                                         (["doctor", "42", "--js"], "--js"), (["doctor", "42", "--stag", "prod"], "--stag")])
def test_an_abbreviated_option_is_refused_not_taken_for_the_option_it_begins(aws_env, capsys, argv, typed):
    """A script's `--reas` for `--reason` would change meaning, or stop parsing, the day a command gains an option
    that begins the same: options are taken only as spelt in full."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and f"unrecognized arguments: {typed}" in one_line(capsys.readouterr().err)


def test_a_fault_option_abbreviated_is_refused_too(capsys):
    from infra.local.fault import parse
    with pytest.raises(SystemExit) as exit_:
        parse(["intercom", "503", "--tim", "2"])
    assert exit_.value.code == 2 and "--tim" in capsys.readouterr().err


def test_a_missing_command_names_the_commands_that_exist(aws_env, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and one_line(err).startswith("bridge: give a command: settings, workspace, rf, dlq, ")
    assert "explain" in err and "forget" in err and "cmd" not in err
    with pytest.raises(SystemExit):
        main(["sync"])
    assert one_line(capsys.readouterr().err).startswith("bridge: give a command: start, status, report ")


@pytest.mark.parametrize("argv,said,status", [
    # (an email with no @ is a command line `forget` cannot act on, as a campaign id no webhook can carry: exit 2)
    (["forget", "notanemail"], "bridge: `bridge forget` takes the person's email, e.g. ann@example.com: the value "
                               "given has no @ (not repeated here: it may be a token given in its place)\n", 2),
    (["workspace", "oauth-app"], "bridge: give the public Intercom app's client id (--client-id or "
                                 "INTERCOM_CLIENT_ID) and/or client secret (INTERCOM_OAUTH_CLIENT_SECRET), or "
                                 "--rotate-state-key for a new state key alone: outside a terminal nothing is "
                                 "asked for; nothing was changed\n", 2),
    (["rf", "connect"], "bridge: give Referral Factory's token and/or webhook secret: `bridge rf connect` asks for them "
                        "in a terminal (elsewhere, set RF_TOKEN and/or RF_WEBHOOK_SECRET)\n", 2),
])
def test_a_command_given_nothing_it_can_use_says_what_it_needs_and_fails(aws_env, capsys, argv, said, status):
    """Before anything is read or stored: no AWS is reachable here (a call to it would fail otherwise)."""
    aws_env.setenv("AWS_ACCESS_KEY_ID", "x")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "y")
    aws_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")           # nothing listens there
    code, out, err = run_cli(None, capsys, *argv)
    assert (code, out, one_line(err)) == (status, "", said)


PASTED = "tok_Zm9vYmFyYmF6cXV4cXV1eA"      # a token pasted into the wrong place


@pytest.mark.parametrize("argv, expected", [
    (["workspace", "connect", "ws1", "--api-base", PASTED], "--api-base must be an https:// URL, e.g. "
                                                             "https://api.eu.intercom.io"),
    (["workspace", "oauth-link", "--api-url", PASTED], "the API's URL (--api-url, BRIDGE_API_URL) must be an "
                                                        "https:// URL"),
    (["workspace", "oauth-app", "--client-id", "app-id", "--api-url", PASTED], "the API's URL (--api-url, "
                                                                                "BRIDGE_API_URL) must be an https:// URL"),
    (["forget", PASTED], "`bridge forget` takes the person's email"),
])
def test_a_token_given_in_the_place_of_another_value_is_refused_without_being_printed(aws_env, capsys, argv, expected):
    """Only the token, client secret and webhook secret are masked in errors: a refusal of any other value
    says what was expected instead of repeating it. Before anything is stored."""
    from chalicelib.services.connections import configure_oauth
    from tests.fakes import FakeConnecting
    rt = FakeConnecting()
    configure_oauth(rt, "app-id", "app-secret")
    stored = dict(rt.secrets.values)
    code, out, err = run_cli(rt, capsys, *argv)
    assert (code, out) == (2, "") and expected in one_line(err) and PASTED not in err
    assert "not repeated here: it may be a token given in its place" in err
    assert rt.secrets.values == stored and rt.store.connections.tickets == {}


@pytest.mark.parametrize("variable", ["INTERCOM_BASE_URL", "RF_BASE_URL", "INTERCOM_OAUTH_URL"])
def test_a_url_from_the_environment_that_would_carry_tokens_in_clear_stops_every_command_in_one_line(
        aws_env, capsys, variable):
    """A `http://` typo in the shell's environment: refused by name before anything is asked (AWS is not
    reachable here: a call would say so instead); plain http to this machine (the local stack) is not."""
    aws_env.setenv("AWS_ACCESS_KEY_ID", "x")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "y")
    aws_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")           # nothing listens there
    aws_env.setenv(variable, "http://api.example.com")
    for argv in (["rf", "connect", "--token", "tok-not-shown"], ["doctor", "42"], ["dlq", "list"]):
        code, out, err = run_cli(None, capsys, *argv)
        assert (code, out) == (1, "") and one_line(err).startswith(f"bridge: {variable} must be an https:// URL, e.g. "
                                                                   "https://"), argv
        assert "(plain http:// only to localhost or 127.0.0.1): tokens would travel in clear" in err
        assert "api.example.com" not in err
    aws_env.setenv(variable, "http://127.0.0.1:8001")
    assert "AWS is unreachable" in run_cli(None, capsys, "dlq", "list")[2]


def test_a_secret_in_an_error_message_is_masked(aws_env, capsys, monkeypatch):
    def boom(rt, *args, **kw):
        raise RuntimeError(f"something echoed {args[1]}")
    monkeypatch.setattr("chalicelib.cli.connect_workspace", boom)
    code, _, err = run_cli(None, capsys, "workspace", "connect", "ws1", "--token", "tok-12345")
    assert code == 1 and "tok-12345" not in one_line(err) and "something echoed ***" in err


def bridge_command(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "bridge"), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "BRIDGE_TABLE": "t-table", **(env or {})})


def test_the_bridge_command_runs_from_anywhere_with_one_line_errors(tmp_path):
    done = bridge_command("settings", "apply", "--offline", "campaign.yaml", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert one_line(done.stderr).startswith("bridge: campaign.yaml: no such file")
    done = bridge_command("settings", "check", str(ROOT / "docs/examples/campaign.yaml"), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "settings are valid\n")


def test_make_bridge_prints_only_the_clis_output():
    stamp = subprocess.run(["make", "-q", ".venv/.installed"], cwd=ROOT, capture_output=True)
    if stamp.returncode != 0:
        pytest.skip("the venv is not up to date: make would install first")
    done = subprocess.run(["make", "--no-print-directory", "bridge", "ARGS=settings check docs/examples/campaign.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "BRIDGE_TABLE": "t-table"})
    assert (done.returncode, done.stdout) == (0, "settings are valid\n")


def test_the_local_stack_is_used_unless_the_environment_or_a_stage_names_another(monkeypatch, tmp_path):
    from infra.local import bridge_env
    state = tmp_path / "stack.json"
    with socket.socket() as moto:           # the running stack's AWS endpoint
        moto.bind(("127.0.0.1", 0))
        moto.listen()
        state.write_text(json.dumps({"aws_endpoint_url": f"http://127.0.0.1:{moto.getsockname()[1]}",
                                     "env": {"BRIDGE_TABLE": "local-table"}}))
        monkeypatch.setattr(bridge_env, "STATE", state)
        assert bridge_env.local_env(["history", "42", "1"], {}) == {"BRIDGE_TABLE": "local-table"}
        assert bridge_env.local_env(["history", "42", "1"], {"BRIDGE_TABLE": "mine"}) == {}
        assert bridge_env.local_env(["--stage", "prod", "history", "42", "1"], {}) == {}
        assert bridge_env.local_env(["--stage=prod", "dlq", "list"], {}) == {}
    assert bridge_env.local_env(["history"], {}) == {}       # left by a `make run` that stopped: not used
    monkeypatch.setattr(bridge_env, "STATE", tmp_path / "absent.json")
    assert bridge_env.local_env(["history"], {}) == {}


def test_a_reader_that_left_ends_the_command_quietly_as_unix_tools_do(tmp_path):
    """`./bridge ... | head -1`: the reader is gone before the answer is written."""
    args = ["settings", "check", str(ROOT / "docs/examples/campaign.yaml")]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([str(ROOT / "bridge"), *args], cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60, env={**os.environ, "BRIDGE_TABLE": "t-table"})
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")           # 128 + SIGPIPE, as `yes | head -1` ends


def test_a_reader_that_leaves_midway_through_a_long_answer_ends_it_quietly(aws_env, capsys, monkeypatch):
    def long_answer(args, rt):
        print("a dead letter")
        raise BrokenPipeError(32, "Broken pipe")             # what print raises once `head` has gone
    monkeypatch.setattr("chalicelib.cli._dlq_list", long_answer)
    code, _, err = run_cli(None, capsys, "dlq", "list")
    assert (code, err) == (141, "")


# `./bridge` (infra/local/bridge_env.py) in a process of its own, with the given .local/stack.json
BRIDGE = ("import sys; from pathlib import Path; from infra.local import bridge_env\n"
          "bridge_env.STATE = Path(sys.argv[1]); sys.exit(bridge_env.main(sys.argv[2:]))")


def no_aws(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BRIDGE_", "INTERCOM_", "RF_"))}
    return {**env, "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": str(ROOT), **extra}


@pytest.mark.parametrize("argv", [["settings", "show", "42"], ["dlq", "list"], ["doctor", "42"],
                                  ["explain", "ann@example.com"], ["workspace", "connect", "ws1", "--token", "t"]])
def test_with_no_stack_running_and_none_named_every_command_says_so_in_one_line(tmp_path, argv):
    stale = tmp_path / "stack.json"          # left by a `make run` that did not stop cleanly
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        stale.write_text(json.dumps({"aws_endpoint_url": f"http://127.0.0.1:{gone.getsockname()[1]}",
                                     "env": {"BRIDGE_TABLE": "local-table"}}))
    for state in (tmp_path / "absent.json", stale):
        done = subprocess.run([sys.executable, "-c", BRIDGE, str(state), *argv], cwd=tmp_path, env=no_aws(tmp_path),
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (1, "")
        assert one_line(done.stderr) == (
            "bridge: no stack to talk to: ./bridge finds no local stack running (start one with `make run`), and no "
            "deployed one is named (--stage <stage>, or BRIDGE_STAGE; or BRIDGE_TABLE and the other BRIDGE_* variables)\n")


def test_the_cli_run_as_a_module_says_it_does_not_look_for_the_local_stack():
    """Walkthrough: `bridge --help` offered "./bridge, or python -m chalicelib.cli ..."; the second, with `make run`
    running, said "no local stack is running (start one with `make run`)": only ./bridge (infra/local/bridge_env.py)
    finds the local stack. The help says so, and the refusal names ./bridge as what looked."""
    from chalicelib.cli import NO_STACK, _parser
    described = " ".join(_parser().format_help().split())
    assert "python -m chalicelib.cli: --stage or BRIDGE_* only" in described, described
    assert "./bridge finds no local stack running" in NO_STACK


def test_with_no_stack_running_a_settings_check_needs_none(tmp_path):
    done = subprocess.run([sys.executable, "-c", BRIDGE, str(tmp_path / "absent.json"), "settings", "check",
                           str(ROOT / "docs/examples/campaign.yaml")], env=no_aws(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "settings are valid\n")      # needs no stack


@pytest.mark.parametrize("argv, env, stage", [
    (["--stage", "Prod", "dlq", "list"], {"AWS_REGION": "eu-west-1"}, "Prod"),
    (["doctor", "42", "--stage", "pr od"], {}, "pr od"),
    (["dlq", "list"], {"BRIDGE_STAGE": "Prod"}, "Prod"),
])
def test_a_stage_name_no_stack_can_take_is_a_command_line_refused_with_exit_2(tmp_path, argv, env, stage):
    """Walk: `bridge --stage "pr od" ...` exited 1, as a stage not deployed does; docs/operating.md gives 2 to a
    command line it cannot take. Refused before any AWS call (a region given, no credentials: the stack is never
    asked for)."""
    done = subprocess.run([sys.executable, "-c", BRIDGE, str(tmp_path / "absent.json"), *argv],
                          env=no_aws(tmp_path, **env), capture_output=True, text=True, timeout=60)
    assert (done.returncode, one_line(done.stderr), done.stdout) == (
        2, f"bridge: stage {stage!r} is not a valid name: use up to 16 lowercase letters and digits, starting with a "
           "letter, e.g. dev or prod\n", "")


@pytest.mark.parametrize("stage, env, says", [
    ("prod", {}, "bridge: no AWS region: set AWS_REGION to the stage's region (or a region in your AWS profile)"),
    ("prod", {"AWS_REGION": "eu-west-1"}, "bridge: cannot read stack rf-intercom-bridge-prod: no AWS credentials: set "
                                          "AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"),
])
def test_a_stage_that_cannot_be_read_is_one_bridge_line_saying_what_is_missing(tmp_path, stage, env, says):
    done = subprocess.run([sys.executable, "-c", BRIDGE, str(tmp_path / "absent.json"), "--stage", stage, "dlq",
                           "list"], env=no_aws(tmp_path, **env), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and one_line(done.stderr) == says + "\n"




@pytest.mark.parametrize("command, at", [
    ([str(ROOT / "bridge")], "infra.local"),                  # while Python finds ./bridge's module
    ([str(ROOT / "bridge")], "chalicelib.cli"),               # while ./bridge loads
    ([str(ROOT / "bridge")], "chalicelib.services.doctor"),   # while the command runs
    ([sys.executable, "-m", "chalicelib.cli"], "chalicelib.config"),            # while the CLI loads
    ([sys.executable, "-m", "chalicelib.cli"], "chalicelib.services.doctor"),
])
def test_ctrl_c_ends_the_bridge_command_quietly_with_130(tmp_path, command, at):
    (tmp_path / "sitecustomize.py").write_text(INTERRUPT_HOOK)
    done = subprocess.run([*command, "doctor", "42"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "BRIDGE_TABLE": "t-table", "INTERRUPT_AT_IMPORT": at,
                                           "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "")


BAD_SETTINGS = ('campaign_id: "4 2"\nworkspace: ws\n'
                'leads: {action: create_lead, fields: [{from: email, to: email}, {from: name, to: name}]}\n')


@pytest.mark.parametrize("argv", [["settings", "check"], ["settings", "apply", "--offline"]])
def test_invalid_settings_under_json_are_a_json_answer_on_stdout_with_the_same_exit(aws_env, capsys, tmp_path, argv):
    """A script reading `--json` learns why, not only that it failed; stderr stays empty."""
    aws_env.setenv("AWS_ACCESS_KEY_ID", "x")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "y")
    aws_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")           # nothing listens there
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_SETTINGS)
    code, out, err = run_cli(None, capsys, *argv, str(bad), "--json")
    answer = json.loads(out)
    assert (code, err, answer["valid"]) == (2, "", False)
    assert [p.split(":")[0] for p in answer["problems"]] == ["campaign_id", "leads.fields[1].from"]
    code, out, err = run_cli(None, capsys, *argv, str(bad))             # for people: the README's form
    assert (code, out) == (2, "")
    assert err.splitlines()[0] == "settings are invalid:" and len(err.splitlines()) == 3


@pytest.mark.parametrize("argv, help_of", [
    (["rf", "connect", "--bogus=X"], "bridge rf connect"),
    (["workspace", "connect", "ws1", "--tokne=tok-Secret:9"], "bridge workspace connect"),
    (["doctor", "42", "--bogus"], "bridge doctor"),
])
def test_an_unknown_option_points_to_its_commands_help_without_repeating_its_value(aws_env, capsys, argv, help_of):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and one_line(err).endswith(f" (see `{help_of} --help`)\n")
    assert "Secret:9" not in err and "=X" not in err


def test_help_on_a_terminal_that_is_not_utf8_is_printed_not_a_traceback(tmp_path):
    """A terminal set to ASCII or Latin-1 (LANG=en_US.ISO-8859-1, PYTHONIOENCODING): `bridge --help` was a traceback
    (UnicodeEncodeError on its description's dash)."""
    done = bridge_command("--help", cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert (done.returncode, done.stderr) == (0, "") and done.stdout.startswith("usage: bridge")
    assert "`bridge` \\u2014 the operator's command line" in done.stdout


def test_an_answer_on_a_terminal_that_is_not_utf8_is_printed_whole_its_other_characters_escaped(monkeypatch):
    """`bridge dlq list` printed its counts, then `bridge: unexpected error: UnicodeEncodeError` instead of the dead
    letters (their reasons hold dashes, a vendor's accents)."""
    import io

    from tests.unit.test_answers import runtime
    rt = runtime(BRIDGE_DLQ_URL="dlq")
    rt.queue.dead_letter(json.dumps({"kind": "rf.join", "campaign_id": "42", "rf_user_id": "7"}),
                         "Intercom answered 400 \u2014 name: Jos\u00e9 is too long", 5, "2026-09-21T10:00:00Z")
    terminal = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(terminal, encoding="ascii"))
    code = main(["dlq", "list"], rt=rt)
    sys.stdout.flush()
    assert code == 0 and "    Intercom answered 400 \\u2014 name: Jos\\xe9 is too long" in terminal.getvalue().decode()


def test_dlq_list_refuses_raw_without_show_payload_before_reading_the_queue(capsys):
    """It read (and hid from every other command meanwhile) each dead letter, however many, to refuse its arguments."""
    from tests.unit.test_answers import runtime
    rt = runtime(BRIDGE_DLQ_URL="dlq")
    rt.queue.dead_letter(json.dumps({"kind": "rf.join", "campaign_id": "42", "rf_user_id": "7"}), "boom", 5,
                         "2026-09-21T10:00:00Z")
    rt.queue.receive_dead = None          # type: ignore[assignment]   # (read: a TypeError, an "unexpected error")
    code, out, err = run_cli(rt, capsys, "dlq", "list", "--raw")
    assert (code, out, one_line(err)) == (2, "", "bridge: --raw shows the payloads as queued: give it with "
                                                 "--show-payload\n")


@pytest.mark.parametrize("argv", [["--stage", "prod", "doctor", "42"], ["doctor", "42", "--stage", "prod"],
                                  ["dlq", "list", "--stage=prod", "--json"], ["sync", "status", "--stage", "prod", "42"]])
def test_the_stage_may_be_given_after_the_command_too(aws_env, capsys, monkeypatch, argv):
    """`bridge doctor 42 --stage prod` (where the other options go) was refused: `unrecognized arguments: --stage, 1
    word(s) not repeated here (a secret is given at the prompt ...)`."""
    def stage_used(stage: str):
        raise SystemExit(f"stage {stage}")
    monkeypatch.setattr("chalicelib.stage.use_stage_or_exit", stage_used)
    with pytest.raises(SystemExit) as used:
        main(argv)
    assert str(used.value) == "stage prod" and capsys.readouterr().err == ""


def test_the_exit_statuses_the_readme_sums_up_are_the_clis(aws_env, capsys, tmp_path):
    """The docs' one sentence on exit statuses (docs/operating.md, Operating it): 2 for a command line it cannot
    read, for invalid settings (argparse's, and `settings are invalid`) and a campaign id doctor refuses as settings
    do, 1 for an error."""
    from tests.support.docs import docs_text
    summed = " ".join(docs_text().split("In all, the exit\nstatus is ")[1].split(".\n")[0].split())
    assert summed.startswith("0 when the command did what it says, 1 for an error") and \
        "2 for a command line it cannot read (a word misspelt, an argument missing or given empty: `explain \"\"`, " \
        "`dlq replay --reason \"\"`, a `dlq discard` without a selector, `forget`'s email without an @; an `--api-base` " \
        "or `--api-url` (or BRIDGE_API_URL) that is not https, or a workspace id no connect takes; a `--stage` (or " \
        "BRIDGE_STAGE) that no stage can be named, `Prod` or `\"pr od\"` (a stage not deployed is exit 1); a connect's " \
        "secret " \
        "or client id given blank or with spaces around it, in its option or its variable (`rf connect " \
        "--webhook-secret \" \"`); `rf connect` or `workspace oauth-app` given nothing to store outside a terminal, " \
        "where nothing is asked for: `workspace connect` given nothing there exits 1, once it has read what is stored, " \
        "as its refusal says what the workspace lacks, a token yet or, disconnected, a reconnect by OAuth), settings that " \
        "are invalid or a " \
        "campaign id no webhook can carry (`doctor \"4 2\"`, refused as `settings check` refuses it by every command " \
        "taking a campaign id), 130 after " \
        "Ctrl-C and 141 when the reader left" in summed
    for argv in (["doctr", "42"], ["doctor"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert run_cli(None, capsys, "explain", "")[0] == run_cli(None, capsys, "dlq", "discard")[0] == 2
    assert run_cli(None, capsys, "forget", "notanemail")[0] == 2
    assert run_cli(None, capsys, "workspace", "oauth-link", "--api-url", "http://a.example/api")[0] == 2
    assert run_cli(None, capsys, "rf", "connect")[0] == 2                   # (not a terminal: nothing is asked)
    assert run_cli(None, capsys, "rf", "connect", "--webhook-secret", " ")[0] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_SETTINGS)
    assert run_cli(None, capsys, "settings", "check", str(bad))[0] == 2
    assert run_cli(None, capsys, "settings", "check", str(tmp_path / "none.yaml"))[0] == 1
    assert run_cli(None, capsys, "doctor", "4 2")[0] == 2


@pytest.mark.parametrize("command", [["doctor"], ["backfill"], ["backfill", "--apply"], ["history", "rf-1"],
                                     ["settings", "show"], ["settings", "delete", "--yes"], ["sync", "start"],
                                     ["sync", "start", "--dry-run"], ["sync", "status"], ["sync", "report"]])
def test_every_command_taking_a_campaign_id_refuses_one_no_webhook_can_carry_as_doctor_does(no_runtime, capsys,
                                                                                            command):
    """Only doctor refused a campaign id like "4 2"; backfill, history, settings show/delete and sync start/status/
    report took it and answered "no settings" (or nothing) as if it could be a campaign. Each refuses it alike: one
    line, exit 2, before any stack is looked for (no runtime is built: nothing is asked or stored)."""
    argv = [*command[:2], "4 2", *command[2:]] if command[0] in ("settings", "sync") else \
        [command[0], "4 2", *command[1:]]
    code, out, err = run_cli(None, capsys, *argv)
    assert (code, out) == (2, ""), (argv, code, out, err)
    assert err == ("bridge: campaign_id: '4 2' is not an id a webhook can carry — write the id exactly as Referral "
                   "Factory / Intercom show it: a number, or text of letters, digits, '-' and '_' (at most 128)\n"), err


@pytest.mark.parametrize("command", [["dlq", "replay"], ["dlq", "discard"], ["dlq", "discard", "--yes"]])
def test_the_dlq_commands_campaign_filter_refuses_an_id_no_webhook_can_carry_as_every_other_command(no_runtime, capsys,
                                                                                                    command):
    """Every command taking a campaign id refused one like "4 2" (exit 2, before any stack is looked for); `dlq replay
    --campaign` and `dlq discard --campaign` took any text, looked for the stack and matched no letter. They refuse
    it alike, naming the option."""
    code, out, err = run_cli(None, capsys, *command, "--campaign", "4 2")
    assert (code, out) == (2, ""), (command, code, out, err)
    assert err == ("bridge: --campaign: '4 2' is not an id a webhook can carry — write the id exactly as Referral "
                   "Factory / Intercom show it: a number, or text of letters, digits, '-' and '_' (at most 128)\n"), err


@pytest.mark.parametrize("argv, said", [
    (["explain", ""], "explain whom? Give an email"), (["explain", "  "], "explain whom? Give an email"),
    (["dlq", "replay", "--reason", ""], "replay which dead letters? A blank --reason matches every letter"),
    (["dlq", "replay", "--reason", " "], "replay which dead letters? A blank --reason matches every letter"),
    (["dlq", "replay", "--all", "--reason", "boom"], "--all replays every dead letter: give it alone"),
    (["dlq", "discard"], "discard which dead letters? Give --reason TEXT"),
    (["dlq", "discard", "--yes"], "discard which dead letters? Give --reason TEXT"),
    (["dlq", "discard", "--reason", " ", "--campaign", "42", "--yes"], "discard which dead letters?"),
    (["dlq", "list", "--raw"], "--raw shows the payloads as queued: give it with --show-payload"),
    (["settings", "check", ""], "the settings file's path is empty: give the path of a YAML or JSON file"),
    (["settings", "apply", " "], "the settings file's path is empty: give the path of a YAML or JSON file"),
    (["workspace", "connect", ""], "the workspace is empty: give its Intercom app id"),
    (["workspace", "disconnect", " "], "the workspace is empty: give its Intercom app id"),
    (["workspace", "remove-app", "", "private"], "the workspace is empty: give its Intercom app id"),
    (["workspace", "oauth-link", "--workspace", ""], "the workspace is empty: give its Intercom app id"),
    (["history", "42", ""], "the RF user id is empty: give the person's Referral Factory user id"),
    (["forget", " "], "the email is empty: give the person's email"),
])
def test_an_empty_or_missing_selector_is_a_command_line_it_cannot_read_exit_2_before_any_stack(no_runtime, capsys,
                                                                                                argv, said):
    """docs/operating.md: exit 2 for a command line it cannot read (an argument missing). `explain ""`, `dlq replay
    --reason ""`, `dlq discard` without a selector (and each argument given empty) exited 1, some after looking for
    the stack, as an error of the bridge's. Each is refused as argparse refuses an argument missing: one line, exit 2,
    before any runtime is built (nothing read or stored)."""
    code, out, err = run_cli(None, capsys, *argv)
    assert (code, out) == (2, ""), (argv, code, out, err)
    assert one_line(err).startswith(f"bridge: {said}"), err


@pytest.mark.parametrize("argv, env, said", [
    (["workspace", "connect", "ws1", "--api-base", "http://api.eu.intercom.io"], {},
     "--api-base must be an https:// URL, e.g. https://api.eu.intercom.io (the value given is not repeated here"),
    (["workspace", "connect", "a b"], {}, "the workspace given is not an Intercom app_id"),
    (["workspace", "oauth-link", "--workspace", "a b"], {}, "the workspace given is not an Intercom app_id"),
    (["workspace", "oauth-link", "--api-url", "abc.execute-api.eu-west-1.amazonaws.com/api"], {},
     "the API's URL (--api-url, BRIDGE_API_URL) must be an https:// URL"),
    (["workspace", "oauth-link"], {"BRIDGE_API_URL": "http://abc.example/api"},
     "the API's URL (--api-url, BRIDGE_API_URL) must be an https:// URL"),
    (["workspace", "oauth-app", "--client-id", "app-id", "--api-url", "http://abc.example/api"], {},
     "the API's URL (--api-url, BRIDGE_API_URL) must be an https:// URL"),
    (["workspace", "oauth-app"], {}, "give the public Intercom app's client id (--client-id or INTERCOM_CLIENT_ID)"),
    (["workspace", "oauth-app", "--stage", "prod"], {"INTERCOM_CLIENT_SECRET": ""},
     "give the public Intercom app's client id"),
    (["rf", "connect"], {"RF_TOKEN": ""}, "give Referral Factory's token and/or webhook secret"),
    (["rf", "connect", "--webhook-secret", ""], {}, "give Referral Factory's token and/or webhook secret"),
])
def test_a_connect_line_it_cannot_act_on_is_exit_2_before_any_stack(no_runtime, capsys, argv, env, said):
    """docs/operating.md: exit 2 for a command line the CLI cannot act on. An --api-base or --api-url (or
    BRIDGE_API_URL) that is not https, a workspace id no connect takes, and `workspace oauth-app` / `rf connect`
    given nothing to store outside a terminal (nothing is asked there) exited 1, after the stack was looked for (a
    stage's, from AWS). Each is refused as argparse refuses an argument missing: one line, exit 2, no runtime built."""
    for name, value in env.items():
        no_runtime.setenv(name, value)
    no_runtime.setattr("chalicelib.stage.use_stage_or_exit", lambda stage: pytest.fail("a stage was looked for"))
    code, out, err = run_cli(None, capsys, *argv)
    assert (code, out) == (2, ""), (argv, code, out, err)
    assert one_line(err).startswith(f"bridge: {said}"), err


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("argv, env, said", [
    (["rf", "connect", "--webhook-secret", " "], {}, "--webhook-secret is empty (or only spaces), which nothing could "
                                                     "ever match: give the webhook secret itself; nothing was stored"),
    (["rf", "connect", "--token", "rf-token\n", "--webhook-secret", "fine"], {},
     "--token begins or ends with spaces or a newline (a copy-paste?): give it without them; nothing was stored"),
    (["workspace", "connect", "ws1", "--client-secret", "  "], {}, "--client-secret is empty (or only spaces)"),
    (["workspace", "oauth-app", "--client-id", " "], {}, "--client-id is empty (or only spaces)"),
    (["workspace", "oauth-app", "--client-id", "app", "--client-secret", "\t"], {},
     "--client-secret is empty (or only spaces)"),
    (["rf", "connect"], {"RF_WEBHOOK_SECRET": " "}, "RF_WEBHOOK_SECRET is empty (or only spaces)"),
    (["rf", "connect", "--webhook-secret", ""], {"RF_WEBHOOK_SECRET": " "}, "RF_WEBHOOK_SECRET is empty"),  # not given
    (["workspace", "connect", "ws1"], {"INTERCOM_TOKEN": " tok"}, "INTERCOM_TOKEN begins or ends with spaces"),
    (["workspace", "oauth-app", "--client-id", "app"], {"INTERCOM_CLIENT_SECRET": "s "},
     "INTERCOM_CLIENT_SECRET begins or ends with spaces"),
])
def test_a_connects_secret_given_blank_or_with_spaces_around_is_exit_2_before_any_stack(no_runtime, capsys, argv,
                                                                                         env, said, terminal):
    """docs/operating.md: an argument given empty is exit 2. `bridge rf connect --webhook-secret " "` (a `"$VAR"`
    holding spaces) exited 1, refused by the service after the stage's stack was read. A connect's secret (or client
    id) given blank or with spaces around it, as an option or in the variable read in its place, is refused as the
    connect refuses it (in a terminal too: nothing would be asked), one line, exit 2, no stack looked for."""
    from tests.support.cli import Terminal
    for name, value in env.items():
        no_runtime.setenv(name, value)
    if terminal:
        Terminal(no_runtime)
    no_runtime.setattr("chalicelib.stage.use_stage_or_exit", lambda stage: pytest.fail("a stage was looked for"))
    code, out, err = run_cli(None, capsys, *argv, "--stage", "prod")
    assert (code, out) == (2, ""), (argv, code, out, err)
    assert one_line(err).startswith(f"bridge: {said}"), err


def test_given_something_to_store_or_a_terminal_to_ask_in_a_connect_goes_on_to_the_stack(no_runtime, capsys,
                                                                                         monkeypatch):
    """Refused early only when nothing could be stored: a secret from the environment, a client id, the state key's
    rotation, or a terminal to ask in, goes on (here: to the runtime, which this test refuses to build: exit 1)."""
    from tests.support.cli import Terminal
    for argv, env in ((["rf", "connect"], {"RF_WEBHOOK_SECRET": "hook"}),
                      (["workspace", "oauth-app"], {"INTERCOM_CLIENT_SECRET": "s"}),
                      (["workspace", "oauth-app", "--rotate-state-key"], {}),
                      (["workspace", "oauth-app", "--client-id", "app-id", "--api-url", "https://a.example/api"], {}),
                      # What it says depends on what is stored (disconnected: reconnect by OAuth; no token yet; else
                      # give one): it reads the stage, then refuses (exit 1).
                      (["workspace", "connect", "ws1"], {})):
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            assert run_cli(None, capsys, *argv)[::2] == (1, "bridge: unexpected error: AssertionError: a runtime "
                                                             "was built\n"), argv
    Terminal(monkeypatch)
    assert run_cli(None, capsys, "rf", "connect")[0] == 1


@pytest.mark.parametrize("stage", [["--stage", "prod"], []])
def test_settings_check_reads_the_file_alone_even_with_a_stage_named(aws_env, capsys, monkeypatch, stage):
    """README: `export BRIDGE_STAGE=prod` for the session, and `check` reads the file alone. It looked the stage up
    first: offline, or without AWS credentials, `bridge: no AWS region: set AWS_REGION to the stage's region`."""
    monkeypatch.setenv("BRIDGE_STAGE", "prod")
    monkeypatch.delenv("BRIDGE_TABLE")

    def stage_used(stage: str):
        raise AssertionError(f"stage {stage} looked up")
    monkeypatch.setattr("chalicelib.stage.use_stage_or_exit", stage_used)
    code, out, err = run_cli(None, capsys, *stage, "settings", "check", str(ROOT / "docs/examples/campaign.yaml"))
    assert (code, out, err) == (0, "settings are valid\n", "")


def test_doctor_refuses_a_campaign_id_no_webhook_can_carry_as_settings_check_does(tmp_path, capsys):
    """A user walk: `bridge doctor "4 2"` checked it (a campaign with no settings) and advised `bridge backfill 4 2
    --apply` unquoted, while `settings check` refuses that id. Doctor refuses it as check does: its words, its exit."""
    from tests.fakes import FakeConnecting

    path = tmp_path / "campaign.yaml"
    path.write_text('campaign_id: "4 2"\nworkspace: ws\n')
    code, _, checked = run_cli(None, capsys, "settings", "check", str(path))
    [said] = [line[len("  - "):] for line in checked.splitlines() if line.startswith("  - campaign_id:")]
    code_doctor, out, err = run_cli(FakeConnecting(), capsys, "doctor", "4 2")
    assert (code_doctor, out) == (code, "") == (2, "") and one_line(err) == f"bridge: {said}\n", err


def test_doctor_refuses_a_campaign_id_no_webhook_can_carry_before_looking_for_a_stack(tmp_path, capsys, monkeypatch):
    """As argparse's refusals (exit 2) come before the stack is looked for, the id's does: with no stack named,
    `bridge doctor "4 2"` said "no stack to talk to" (exit 1), not what docs/operating.md's exit statuses say."""
    for name in [k for k in os.environ if k.startswith("BRIDGE_")]:
        monkeypatch.delenv(name)
    assert main(["doctor", "4 2"]) == 2
    assert one_line(capsys.readouterr().err).startswith("bridge: campaign_id: '4 2' is not an id a webhook can carry")


def test_history_of_someone_whose_join_was_refused_does_not_say_no_join_arrived_and_points_to_explain(capsys):
    """An operator's walk: `bridge history 42 1006` of someone whose join the edge refused (a wrong secret) said "no
    join arrived for them", where `bridge explain 1006` showed the refused join and its fix."""
    from chalicelib.ports.edge import RefusalSample, campaign_scope
    from tests.fakes import FakeConnecting
    from tests.unit import scenario

    rt = FakeConnecting()
    rt.store.settings.put("42", scenario.settings(), scenario.WS)
    rt.store.edge.refused(campaign_scope("42"), RefusalSample("unauthorized", "2026-11-28T09:48:35.889Z", "m",
                                                               rf_user_id="1006"))
    code, out, err = run_cli(rt, capsys, "history", "42", "1006")
    assert (code, out) == (1, "")
    assert one_line(err) == ("bridge: nothing is known about RF user 1006 in campaign 42: no join of theirs was "
                             "applied (`bridge explain 1006` shows a webhook of theirs the edge refused, if any), or "
                             "they were forgotten\n"), err
