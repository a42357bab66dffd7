"""`make run` + `make demo`: the local stack, started as `make run` starts it, shows a
referral qualify end to end on the simulators (the worker is driven by the test); the docs'
settings example and commands work against it as written, and the README's by-hand example plays."""
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.local import demo, run
from infra.local.aws import unique_prefix
from tests.support.docs import docs_text, section

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")     # the front door: Quick start stays in it
DOCS = docs_text()                                              # the README and docs/*.md
ENV_SECRETS = ("INTERCOM_TOKEN", "RF_TOKEN", "INTERCOM_CLIENT_SECRET", "RF_WEBHOOK_SECRET")


def started(monkeypatch, **env):
    for var in ENV_SECRETS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    saved = dict(os.environ)
    stack = run.start(api_port=0, background=False, prefix=unique_prefix("local"))

    def stop():
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        from chalicelib.runtime import reset_default_runtime
        reset_default_runtime(None)
    return stack, stop


@pytest.fixture(scope="module")
def local_stack():
    with pytest.MonkeyPatch.context() as monkeypatch:
        stack, stop = started(monkeypatch)
        yield stack
        stop()


def test_the_local_stack_plays_the_demo_end_to_end(local_stack, capsys):
    from chalicelib.cli import main
    lines = []
    history = demo.play(local_stack.state(), settle=local_stack.poller.drain, say=lines.append)
    assert [h["outcome"] for h in history][-1] == "qualified"
    assert any("qualified at" in line for line in lines)
    # RF sends the referrer's own join too, and so does the demo: `./bridge backfill 42` right after it said
    # "1 not in the bridge: would be joined - RF user 1001" (Rita, whose join the demo never sent).
    capsys.readouterr()
    assert main(["backfill", "42", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["people_in_rf"] == 2 and found["queued"] == 0 and not any(
        "not in the bridge" in outcome for outcome in found["outcomes"]), found


def test_a_replay_right_after_make_run_is_not_held_back_for_a_worker_holding_another_rf_token(local_stack):
    """No worker of a stack just started ran with another RF token: `dlq replay` (e.g. after an outage rehearsed
    in its first minutes) sends the letters to run at once, not 10 minutes on. (Before the test that reconnects.)"""
    from chalicelib.runtime import default_runtime
    from chalicelib.services.dead_letters import rf_token_held
    assert rf_token_held(default_runtime()) is None


def test_after_a_revoked_rf_token_and_a_reconnect_the_demo_plays_end_to_end(local_stack):
    """README, Rehearse an incident locally: `make fault ARGS="rf revoke-token"`, then `bridge rf connect` with
    the token its line names. The demo plays the people in RF with the token RF accepts now (it used rf-token,
    and stopped on RF's 401 with a traceback); the bridge's worker, which kept the old token, reads the new one
    on RF's 401."""
    from chalicelib.runtime import default_runtime
    from chalicelib.services.connections import connect_rf
    from infra.local import fault

    state, rt = local_stack.state(), default_runtime()
    line = fault.run(state, fault.parse(["rf", "revoke-token"]))
    new = re.search(r"accepts (\S+): \./bridge rf connect --token \1, then \./bridge dlq replay$", line).group(1)
    try:
        connect_rf(rt, new, check=True)
        history = demo.play(state, settle=local_stack.poller.drain, say=lambda _: None)
        assert [h["outcome"] for h in history][-1] == "qualified"
    finally:
        fault.run(state, fault.parse(["clear"]))      # as README says to end a rehearsal
        connect_rf(rt, fault.USUAL["rf"])


def test_a_demo_whose_qualification_failed_before_its_wait_began_names_explain(local_stack, monkeypatch):
    """Walkthrough (README, Rehearse an incident locally): `make fault ARGS="rf revoke-token"`, then `make demo`.
    The worker dead-lettered the qualification (RF's 401) 50 ms after Intercom's webhook, before the demo first
    read Ann's history to wait: that failure counted as already seen, and the demo waited 60 s to say the bridge
    "recorded no wait or failure that says why" while `explain` showed `qualification: failed`."""
    import requests

    from chalicelib.runtime import default_runtime
    from chalicelib.services.dead_letters import discard
    from infra.local import fault

    state, now = local_stack.state(), [0.0]
    post = requests.post

    def post_then_work(url, *args, **kwargs):      # a worker as quick as make run's: done before the answer is read
        answer = post(url, *args, **kwargs)
        if url.endswith("/webhooks/intercom"):
            local_stack.poller.drain()
        return answer
    monkeypatch.setattr(requests, "post", post_then_work)
    fault.run(state, fault.parse(["rf", "revoke-token"]))
    try:
        with pytest.raises(SystemExit) as stopped:
            demo.play(state, settle=local_stack.poller.drain, say=lambda _: None, clock=lambda: now[0],
                      sleep=lambda seconds: now.__setitem__(0, now[0] + seconds))
    finally:
        fault.run(state, fault.parse(["clear"]))
        taken = discard(default_runtime(), reason="Referral Factory answered 401")
    assert re.fullmatch(r"timed out after 30 s waiting for the qualification in RF: see why with "
                        r"`\./bridge explain \d+`", str(stopped.value)), stopped.value
    assert 30 < now[0] < 31 and taken["discarded"] == 1, (now, taken)


def test_the_demo_waits_through_an_error_answer_of_the_simulated_intercom(local_stack):
    """`make fault ARGS="intercom 503 ..."` while the demo looks for its contact: not yet (it stopped on a
    KeyError); the demo looks again and plays on."""
    from infra.local import fault

    state, faulted = local_stack.state(), []

    def settle():
        local_stack.poller.drain()
        if not faulted:     # the bridge's own search is done: the demo's next one meets the outage
            faulted.append(fault.run(state, fault.parse(["intercom", "503", "--method", "POST", "--path", "search"])))
    try:
        history = demo.play(state, settle=settle, say=lambda _: None)
        assert [h["outcome"] for h in history][-1] == "qualified"
        assert faulted and local_stack.intercom.faults() == []
    finally:
        fault.run(state, fault.parse(["clear"]))


def test_the_local_stack_s_environment_carries_its_reconciliation_schedule(local_stack):
    """The CLI reads the stack's environment (.local/stack.json): `doctor` expects reconciliation every
    60 s there, as `make run` schedules it, not every 15 minutes as deployed."""
    from chalicelib.config import Config
    assert Config.from_env(local_stack.state()["env"]).reconcile_every == 60
    assert Config.from_env({}).reconcile_every == 15 * 60
    assert Config.from_env({"RECONCILE_EVERY_MINUTES": "2"}).reconcile_every == 120      # a deployed stage's own


def test_the_readmes_settings_example_and_commands_apply_as_written(local_stack, tmp_path, capsys, monkeypatch):
    """docs/setup.md, Settings: its example applies to the local workspace, and its commands run as written."""
    from chalicelib.cli import main
    settings = section("Settings")
    [example] = re.findall(r"```yaml\n(.*?)```", settings, re.S)
    path = tmp_path / "readme.yaml"
    path.write_text(example)
    assert main(["settings", "apply", str(path)]) == 0                 # checked against the local workspace
    assert json.loads(capsys.readouterr().out)["campaign_id"] == "42"
    commands = [shlex.split(line.split("#", 1)[0])[1:] for line in settings.splitlines()
                if line.startswith("./bridge settings")]
    assert len(commands) >= 4 and ["settings", "apply", "--offline", "docs/examples/campaign.yaml"] in commands
    monkeypatch.chdir(ROOT)
    for argv in commands:
        assert main(argv) == 0, argv
    capsys.readouterr()


def test_with_real_apis_the_state_file_names_where_secrets_came_from_but_holds_none(monkeypatch):
    given = {"INTERCOM_TOKEN": "real-ic-token", "RF_TOKEN": "real-rf-token",
             "INTERCOM_CLIENT_SECRET": "real-ic-client-secret", "RF_WEBHOOK_SECRET": "real-rf-webhook-secret"}
    monkeypatch.setenv("INTERCOM_WORKSPACE", run.WORKSPACE)
    # "Intercom" answers the token check (GET /me) that connecting makes: the workspace is make run's.
    from infra.local.sims.intercom import IntercomSim
    intercom = IntercomSim(tokens=("real-ic-token",), app_id=run.WORKSPACE).start()
    monkeypatch.setenv("INTERCOM_BASE_URL", intercom.base_url)
    try:
        stack, stop = started(monkeypatch, **given)
    except BaseException:
        intercom.stop()
        raise
    try:
        state = stack.state()
        written = json.dumps(state)
        assert not any(value in written for value in given.values())
        assert state["mode"] == "real"
        assert (state["intercom_client_secret_from"], state["rf_webhook_secret_from"]) == \
            ("$INTERCOM_CLIENT_SECRET", "$RF_WEBHOOK_SECRET")
        assert run.secret(state, "rf_webhook_secret") == "real-rf-webhook-secret"   # read from the shell again
        import requests
        answer = requests.post(f"{stack.api_url}/webhooks/referral-factory", json={"id": 1, "campaign_id": 42},
                               headers={"X-Bridge-Secret": "real-rf-webhook-secret"}, timeout=10)
        assert answer.status_code == 404          # the secret in use is the one given (no settings yet)
        assert [r["path"] for r in intercom.requests] == ["/me"]
    finally:
        stop()
        intercom.stop()


def test_make_run_takes_a_port():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dry = subprocess.run(["make", "-n", "run", "PORT=8123"], cwd=root, capture_output=True, text=True, check=True)
    assert "PORT=8123 .venv/bin/python -m infra.local.run" in dry.stdout
    assert run.api_port({"PORT": "8123"}) == 8123 and run.api_port({}) == 8000


def test_the_local_stack_connects_its_simulated_workspace_by_oauth(local_stack):
    """`make run` names `./bridge workspace oauth-link`, which prints a one-time start link on the local
    API; following it (as a browser would: its page, then Continue) connects the simulated workspace through the simulator's
    authorize page. The bare start is refused."""
    import contextlib
    import io

    import requests
    from urllib.parse import parse_qsl, urlsplit

    from chalicelib.cli import main

    assert "./bridge workspace oauth-link" in run.banner(local_stack, "60")
    browser = requests.Session()
    bare = browser.get(f"{local_stack.api_url}/oauth/intercom/start", allow_redirects=False, timeout=10)
    assert bare.status_code == 403 and "bridge workspace oauth-link" in bare.text
    with contextlib.redirect_stdout(io.StringIO()) as out:          # the stack's environment, as ./bridge has it
        assert main(["workspace", "oauth-link"]) == 0
    link = out.getvalue().splitlines()[0]
    assert link.startswith(f"{local_stack.api_url}/oauth/intercom/start?ticket=")
    page = browser.get(link, allow_redirects=False, timeout=10)          # opening it spends nothing
    assert page.status_code == 200 and 'id="continue"' in page.text
    start = browser.post(link.split("?")[0], data=dict(parse_qsl(urlsplit(link).query)), allow_redirects=False,
                         timeout=10)                                      # Continue to Intercom
    assert start.status_code == 303 and start.headers["Location"].startswith(f"{local_stack.intercom_url}/oauth?")
    query = dict(parse_qsl(urlsplit(start.headers["Location"]).query))
    page = browser.get(start.headers["Location"], timeout=10)
    assert "Authorize access" in page.text
    done = browser.post(f"{local_stack.intercom_url}/oauth", data={**query, "decision": "allow"}, timeout=10)
    assert done.status_code == 200 and f"(app_id <code id=\"workspace-id\">{run.WORKSPACE}</code>)" in done.text


def test_the_local_api_function_has_the_time_of_the_deployed_one(local_stack, monkeypatch):
    """The OAuth callback gives Intercom what the Lambda context says is left: on the local stack, of the API
    function's timeout in infra/chalice-config.json, as deployed (Chalice's local default is 60 s)."""
    import requests
    from chalice.local import LambdaContext

    from infra.deploy import BASE_CONFIG, function_timeout

    given, made = [], LambdaContext.__init__
    monkeypatch.setattr(LambdaContext, "__init__", lambda self, *a, **kw: made(self, *a, **given.append(kw) or kw))
    requests.get(f"{local_stack.api_url}/oauth/intercom/start", timeout=10)
    deployed = function_timeout(json.loads(BASE_CONFIG.read_text()), "local", "api_handler")
    assert [kw["max_runtime_ms"] for kw in given] == [deployed * 1000] and deployed < 29   # API Gateway's limit


def test_the_local_redrive_leaves_the_worker_every_try_it_is_given(monkeypatch):
    """As `make deploy` does (twice BRIDGE_MAX_ATTEMPTS): with `BRIDGE_MAX_ATTEMPTS=12 make run`, the local queue's
    redrive (10) moved a failing record at its 11th receive, before the worker's last try, and `dlq list` said the
    worker crashed or timed out each time."""
    from infra.local.aws import client

    stack, stop = started(monkeypatch, BRIDGE_MAX_ATTEMPTS="12")
    try:
        attributes = client("sqs", stack.endpoint_url).get_queue_attributes(
            QueueUrl=stack.env["BRIDGE_QUEUE_URL"], AttributeNames=["RedrivePolicy"])["Attributes"]
    finally:
        stop()
    assert int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"]) == 24


def test_the_simulated_workspace_is_connected_through_both_apps_each_with_its_own_client_secret(
        local_stack, capsys, monkeypatch):
    """docs/setup.md, Both ways at once, on the local stack: connected by `make run` with its private app, then by
    OAuth through the public app (as above), the workspace lists both apps; a token of the private app again
    keeps both, with no warning; Intercom signs each app's webhooks with that app's client secret
    (.local/stack.json names both), and both are taken."""
    import requests

    from chalicelib.cli import main
    from infra.local.sims.webhooks import sign

    ws = run.WORKSPACE

    def listed() -> str:
        assert main(["workspace", "list"]) == 0
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"- {ws} "))

    def ping(secret: str) -> int:
        raw = json.dumps({"type": "notification_event", "app_id": ws, "topic": "ping", "id": None,
                          "data": {"type": "notification_event_data", "item": {"type": "ping", "message": "hi"}}})
        return requests.post(f"{local_stack.api_url}/webhooks/intercom", data=raw, timeout=10, headers={
            "Content-Type": "application/json", "X-Hub-Signature": sign(raw, secret)}).status_code

    if "oauth" not in listed():                          # (this test alone: the OAuth connect above first)
        test_the_local_stack_connects_its_simulated_workspace_by_oauth(local_stack)
    assert "apps: private, oauth (token: oauth's)" in listed()
    monkeypatch.setenv("INTERCOM_TOKEN", "sim-token")
    assert main(["workspace", "connect", ws]) == 0
    out, err = capsys.readouterr()
    assert "client secret kept (none given) (the public app's webhooks verify too)" in out and err == ""
    assert "apps: private, oauth (token: private's)" in listed()
    state = local_stack.state()
    private, public = state["intercom_client_secret"], state["intercom_oauth_client_secret"]
    assert private != public
    assert [ping(private), ping(public), ping("not-a-client-secret")] == [200, 200, 401]
    both = " ".join(DOCS.split("**Both ways at once**", 1)[1].split("\n   - **")[0].split())
    assert (f"apps: private, oauth (token: oauth's)`; `INTERCOM_TOKEN=sim-token ./bridge workspace connect {ws}` makes "
            f"it `(token: private's)`, both apps kept; webhooks signed with `{private}` and with `{public}` are both "
            "taken") in both


def test_the_readmes_counts_only_sync_block_applies_to_the_simulated_workspace(local_stack, tmp_path, capsys):
    """docs/how-it-works.md, Referral counts: `sync: {referral_count_attribute: custom_attributes.referral_count}` —
    the simulated workspace has that integer attribute, so the example applies on the local stack."""
    from chalicelib.cli import main
    import yaml
    [block] = re.findall(r"`(sync: \{referral_count_attribute: [^`]*)`", DOCS)
    doc = {**yaml.safe_load(run.DEMO_SETTINGS.read_text()), **yaml.safe_load(block), "campaign_id": "77"}
    path = tmp_path / "counts.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["settings", "apply", str(path)]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["campaign_id"] == "77"


def test_campaign_yamls_sync_block_uncommented_finds_the_simulated_workspaces_users_to_enrol(local_stack, tmp_path,
                                                                                            capsys):
    """docs/examples/campaign.yaml's commented sync block (`source: users`), uncommented as its comment says, then
    `./bridge sync start 42 --dry-run`: it found `"total": 0` — the simulated workspace held only the demo's
    leads. `make run` seeds two users no one referred (run.LOCAL_USERS): the dry run would enrol them."""
    from chalicelib.cli import main
    text = run.DEMO_SETTINGS.read_text()
    commented = text.split("\n# sync:", 1)[1]
    block = "sync:\n" + "\n".join(line[2:] for line in commented.splitlines() if line.startswith("#   "))
    path = tmp_path / "campaign.yaml"
    path.write_text(text + "\n" + block + "\n")
    assert "source: users" in block and main(["settings", "apply", str(path)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    try:
        assert main(["sync", "start", "42", "--dry-run", "--json"]) == 0
        found = json.loads(capsys.readouterr().out)
        # (the demo's referrers are users too, linked by their joins: already in the campaign, not enrolled)
        assert found["would_enrol"] == 2 and found["total"] - found["already_enrolled"] - sum(
            s["count"] for s in found["skipped"].values()) == 2, found
    finally:
        assert main(["settings", "apply", str(run.DEMO_SETTINGS)]) == 0    # as `make run` applied them
        capsys.readouterr()


@pytest.mark.skipif(not all(shutil.which(tool) for tool in ("bash", "curl", "jq", "openssl")),
                    reason="the README's shell example needs bash, curl, jq and openssl")
def test_the_readmes_by_hand_example_plays_a_referral_on_the_local_stack(local_stack, tmp_path, capsys):
    """README, Using the local stack by hand: its commands, run as written in one shell (the worker
    driven by the test where the README says "a moment later"), make a lead, qualify the referral."""
    from chalicelib.cli import main
    assert main(["settings", "apply", str(run.DEMO_SETTINGS)]) == 0          # as `make run` applied them
    section = re.split(r"\n##+ ", README.split("### Using the local stack by hand", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    [last] = re.findall(r"qualified in the simulated RF: `(.*?)`", section, re.S)
    assert len(blocks) == 2
    (tmp_path / ".local").mkdir()
    (tmp_path / ".local" / "stack.json").write_text(json.dumps(local_stack.state()))
    shell = subprocess.Popen(["bash"], cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)

    def step(commands: str) -> str:
        mine = "\n".join(line for line in commands.splitlines() if not line.startswith("./bridge "))
        shell.stdin.write(f"{mine}\necho; echo __step_done__\n")
        shell.stdin.flush()
        lines = []
        for line in shell.stdout:
            if line.strip() == "__step_done__":
                return "".join(lines)
            lines.append(line)
        raise AssertionError(f"the shell ended: {''.join(lines)}")

    try:
        joined = step(blocks[0])
        assert json.loads(joined)["queued"] is True, joined
        local_stack.poller.drain()
        looked = step(blocks[1])
        assert '"role": "lead"' in looked and "referral_count integer" in looked, looked
        assert '{"ok":true,"queued":true,' in looked, looked                 # the signed webhook was taken
        assert main(["explain", "zoe@example.com"]) == 0
        local_stack.poller.drain()
        qualified = step(last.replace("\n", " ")).strip()
        assert qualified not in ("", "null") and "T" in qualified, qualified
    finally:
        shell.stdin.close()
        shell.wait(timeout=30)
