"""`make run` and `make demo` as a new user meets them when something is off: a start that cannot
happen ends in one line that says what to change (never a traceback); the demo without a running
stack says to start it; Ctrl-C ends either quietly with 130; a demo that times out names the command
that says why; the real-API banner advertises only what is there."""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from infra.local import demo, run
from infra.local.aws import unique_prefix
from tests.support.interrupt import INTERRUPT_HOOK

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("INTERCOM_TOKEN", "RF_TOKEN", "INTERCOM_WORKSPACE", "INTERCOM_CLIENT_SECRET", "RF_WEBHOOK_SECRET",
           "INTERCOM_BASE_URL", "RF_BASE_URL", "PORT")



def env_without_apis(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def process(args: list[str], env: dict, cwd=ROOT) -> subprocess.CompletedProcess:
    # Ctrl-C as a terminal sends it: SIGINT not ignored (a background job would ignore it)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def make_run(**env) -> subprocess.CompletedProcess:
    return process([sys.executable, "-m", "infra.local.run"], env_without_apis(**env))


def one_line(err: str, prefix: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith(prefix), err
    return err.strip()


@pytest.fixture
def held_port():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- make run ---------------------------------------------------------------------------------------
def test_make_run_on_a_port_in_use_names_the_port_and_how_to_pick_another(held_port):
    done = make_run(PORT=str(held_port))
    assert done.returncode == 1 and done.stdout == ""
    assert one_line(done.stderr, "make run: ") == (
        f"make run: port {held_port} is in use (another `make run`?): stop what uses it, or pick another port: "
        f"make run PORT={held_port + 1}")


def test_make_run_with_a_port_that_is_not_a_number():
    done = make_run(PORT="80a")
    assert done.returncode == 1
    assert one_line(done.stderr, "make run: ") == "make run: PORT=80a is not a port number: e.g. make run PORT=8080"


@pytest.mark.parametrize("given, says", [
    ({"INTERCOM_TOKEN": "t"}, "make run: INTERCOM_TOKEN is set but RF_TOKEN is not: the real APIs need both "
                              "(unset INTERCOM_TOKEN to run on the simulators)"),
    ({"RF_TOKEN": "t"}, "make run: RF_TOKEN is set but INTERCOM_TOKEN is not: the real APIs need both "
                        "(unset RF_TOKEN to run on the simulators)"),
    ({"INTERCOM_TOKEN": "t", "RF_TOKEN": "t"}, "make run: with INTERCOM_TOKEN and RF_TOKEN (the real APIs), set "
                                               "INTERCOM_WORKSPACE to your Intercom workspace's app_id too"),
    ({"INTERCOM_TOKEN": "t", "RF_TOKEN": "t", "INTERCOM_WORKSPACE": "abc", "RF_BASE_URL": "http://api.example.com"},
     "make run: RF_BASE_URL must be an https:// URL, e.g. https://api.referral-factory.com/api/v2 (plain http:// only "
     "to localhost or 127.0.0.1): tokens would travel in clear — fix it (a variable left unset takes its default)"),
])
def test_make_run_with_the_real_apis_half_or_unsafely_configured_says_what_to_change(given, says):
    done = make_run(**given)
    assert done.returncode == 1 and one_line(done.stderr, "make run: ") == says


def test_ctrl_c_while_make_run_starts_exits_quietly(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(INTERRUPT_HOOK)
    done = process([sys.executable, "-m", "infra.local.run"],
                   env_without_apis(PYTHONPATH=f"{tmp_path}:{ROOT}", INTERRUPT_AT_IMPORT="infra.local.moto_http",
                                    PORT=str(closed_port())))
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "")


class FakeIntercomAuth:
    def __init__(self, answer):
        self.answer = answer

    def whoami(self, token, api_base=None):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class FakeRuntime:
    def __init__(self, answer):
        self.auth = FakeIntercomAuth(answer)

    def intercom_auth(self):
        return self.auth


def test_the_real_intercom_that_cannot_be_reached_or_refuses_the_token_is_one_line():
    from chalicelib.errors import Permanent, WorkError
    url = "https://api.intercom.io"
    with pytest.raises(run.StartError) as unreachable:
        run._check_intercom(FakeRuntime(WorkError("Intercom unreachable after retries (ConnectionError)")),
                            "tok", "abc", url)
    assert str(unreachable.value) == ("cannot check INTERCOM_TOKEN with Intercom at https://api.intercom.io: "
                                      "Intercom unreachable after retries (ConnectionError) — check the network "
                                      "(or INTERCOM_BASE_URL)")
    with pytest.raises(run.StartError) as refused:
        run._check_intercom(FakeRuntime(Permanent("Intercom answered 403: Forbidden", status=403)), "tok", "abc", url)
    assert str(refused.value).startswith("Intercom at https://api.intercom.io refused INTERCOM_TOKEN (Intercom "
                                         "answered 403: Forbidden): check INTERCOM_TOKEN, or set INTERCOM_BASE_URL")


def test_a_refused_token_at_start_says_to_check_it_not_the_workers_advice_to_replay_dead_letters():
    from chalicelib.adapters.intercom import IntercomClient
    from chalicelib.errors import ApiError
    url = "https://api.intercom.io"
    as_the_adapter_says = IntercomClient(url, "tok")._classify(ApiError("Intercom", 401, "Unauthorized"))
    with pytest.raises(run.StartError) as refused:
        run._check_intercom(FakeRuntime(as_the_adapter_says), "tok", "abc", url)
    assert str(refused.value) == ("Intercom at https://api.intercom.io refused INTERCOM_TOKEN (401: the token is "
                                  "invalid or revoked): check INTERCOM_TOKEN, or set INTERCOM_BASE_URL to your "
                                  "workspace's region (e.g. https://api.eu.intercom.io)")


def test_a_token_of_another_workspace_stops_make_run_and_names_both(monkeypatch):
    """The token is checked with the real Intercom (here: the simulator answering GET /me) before the
    stack serves anything; what was started is stopped again."""
    from infra.local.sims.intercom import IntercomSim
    intercom = IntercomSim(tokens=("real-ic-token",), app_id="theirs1").start()
    saved = dict(os.environ)
    try:
        for var in SECRETS:
            monkeypatch.delenv(var, raising=False)
        for var, value in {"INTERCOM_TOKEN": "real-ic-token", "RF_TOKEN": "real-rf-token",
                           "INTERCOM_WORKSPACE": "mine1", "INTERCOM_BASE_URL": intercom.base_url}.items():
            monkeypatch.setenv(var, value)
        with pytest.raises(run.StartError) as stopped:
            run.start(api_port=0, background=False, prefix=unique_prefix("local"))
        assert str(stopped.value) == ("INTERCOM_TOKEN is a token of workspace theirs1 (Acme (simulated)), not of "
                                      "INTERCOM_WORKSPACE=mine1: set INTERCOM_WORKSPACE=theirs1 (or use that "
                                      "workspace's token)")
    finally:
        intercom.stop()
        os.environ.clear()
        os.environ.update(saved)
        from chalicelib.runtime import reset_default_runtime
        reset_default_runtime(None)


def a_stack(real: bool) -> run.LocalStack:
    return run.LocalStack("http://127.0.0.1:8000", "http://127.0.0.1:5000", {}, "https://api.intercom.io",
                          "https://api.referral-factory.com/api/v2", poller=None, real=real,   # type: ignore[arg-type]
                          workspace="abc123" if real else run.WORKSPACE)


def test_the_real_api_banner_advertises_neither_the_demo_nor_the_simulators_pages():
    real = run.banner(a_stack(real=True), "60")
    assert "make demo" not in real and "oauth" not in real and "campaign 42" not in real
    assert "against the real Intercom (workspace abc123)" in real and "./bridge settings apply" in real
    simulated = run.banner(a_stack(real=False), "60")
    # OAuth starts only from a one-time link: the banner names the command that prints one (no bare start URL)
    assert "make demo" in simulated and "./bridge workspace oauth-link" in simulated
    assert "/oauth/intercom/start" not in simulated


@pytest.mark.parametrize("real", [False, True], ids=["simulators", "real APIs"])
def test_the_banners_addresses_start_in_one_column(real):
    """`Referral Factory` and `Connect by OAuth` filled the label column: their address and command started one
    column left of the others', with no space between label and value for the eye to find."""
    said = run.banner(a_stack(real=real), "60").splitlines()
    labels = ["API", "AWS (moto)", "Intercom", "Referral Factory", "Worker"] + ([] if real else ["Connect by OAuth"])
    rows = {label: next(line for line in said if line.startswith(f"  {label} ")) for label in labels}
    starts = {len(row) - len(row[2 + len(label):].lstrip()) for label, row in rows.items()}
    assert len(starts) == 1, rows

@pytest.mark.parametrize("real", [False, True], ids=["simulators", "real APIs"])
def test_the_banner_says_a_restart_forgets_everything_and_how_a_crash_is_rehearsed(real):
    """An operator killed and restarted `make run` to rehearse a crash and resume: the bridge's state (moto) and
    the simulators' are in memory, so nothing was left to resume, and nothing had said so."""
    said = run.banner(a_stack(real=real), "60")
    [line] = [t for t in said.splitlines() if "Ctrl-C" in t]
    assert "in memory" in line and "make chaos" in line
    assert ("simulators" in line) is not real
    assert ("AWS (moto) keeps its state" in line) is real     # not "AWS (moto) keep their state"


def asleep(thread: threading.Thread) -> bool:
    with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "S"


@contextlib.contextmanager
def taken_by_another_thread(signum: int):
    """Yields what presses Ctrl-C (sends `signum`): once the main thread sleeps, a thread that is not the main one
    takes the signal (the main thread blocks it), as the kernel may give any thread of a process its signal; the
    test fails if the main thread sleeps on 30 s later."""
    main, pressed, ended = threading.main_thread(), threading.Event(), threading.Event()

    def take() -> None:
        pressed.wait()
        while not asleep(main):
            if ended.wait(0.01):
                return
        os.kill(os.getpid(), signum)
        if not ended.wait(30):
            signal.pthread_kill(main.ident, signal.SIGUSR1)
    before = signal.signal(signal.SIGUSR1, lambda *_: pytest.fail(
        "the stack still ran 30 s after a thread other than the main one took the signal", pytrace=False))
    taker = threading.Thread(target=take)
    taker.start()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
    try:
        yield pressed.set
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        ended.set()
        pressed.set()
        taker.join()
        signal.signal(signal.SIGUSR1, before)


@pytest.mark.parametrize("taker", ["main thread", pytest.param("another thread", marks=pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="tells the main thread asleep by /proc (Linux)"))])
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_of_a_running_stack_stops_it_and_exits_130(signum, code, taker, tmp_path, monkeypatch, capsys):
    """README: Ctrl-C exits 130 (it exited 0 once the banner was out); SIGTERM 143, as the shell says. Whichever
    thread takes the signal: one a thread of the stack took (a request's, the worker's) left `make run` running,
    its main thread asleep."""
    for var in SECRETS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PORT", str(closed_port()))
    stack = a_stack(real=False)
    stopped = []
    monkeypatch.setattr(stack, "stop", lambda: stopped.append(True), raising=False)
    monkeypatch.setattr(run, "start", lambda **_: stack)
    monkeypatch.setattr(run, "STATE", tmp_path / "stack.json")

    def banner(*_):             # the operator presses Ctrl-C as soon as the banner is out
        press()
        return "the banner"
    monkeypatch.setattr(run, "banner", banner)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)      # unhandled, it fails the test, not pytest
    try:
        with taken_by_another_thread(signum) if taker == "another thread" else \
                contextlib.nullcontext(lambda: os.kill(os.getpid(), signum)) as press:
            assert run.main() == code
    except KeyboardInterrupt:
        pytest.fail("a Ctrl-C right after the banner raised (a traceback) instead of stopping the stack")
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert stopped == [True] and not (tmp_path / "stack.json").exists()
    assert capsys.readouterr() == ("the banner\n", "")


def test_a_stopped_stack_leaves_no_state_file_unless_another_stack_wrote_it(tmp_path):
    state = tmp_path / "stack.json"
    state.write_text("mine")
    run.forget_state("mine", state)
    assert not state.exists()
    state.write_text("another make run's")
    run.forget_state("mine", state)
    assert state.read_text() == "another make run's"



def test_a_second_make_run_of_the_same_checkout_refuses_to_take_over_the_running_stacks_state(
        held_port, tmp_path, monkeypatch, capsys):
    """`make run PORT=8001` beside a running `make run`: it overwrote .local/stack.json and deleted it
    when it stopped, so ./bridge lost the first stack, still running. It now says which runs, and starts
    nothing; the first stack's state file is untouched."""
    for var in SECRETS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PORT", str(closed_port()))
    state = tmp_path / "stack.json"
    first = json.dumps({"api_url": "http://127.0.0.1:8000", "aws_endpoint_url": f"http://127.0.0.1:{held_port}",
                        "env": {"BRIDGE_TABLE": "local-table"}})
    state.write_text(first)                  # the first stack: its moto server answers at held_port
    monkeypatch.setattr(run, "STATE", state)
    monkeypatch.setattr(run, "start", lambda **_: pytest.fail("a second stack was started"))
    with first_make_run(state):
        assert run.main() == 1
    out, err = capsys.readouterr()
    assert out == "" and one_line(err, "make run: ") == (
        "make run: a stack of this checkout already runs on port 8000 (http://127.0.0.1:8000; ./bridge and make "
        "demo use it): stop it first (Ctrl-C in its terminal) — one `make run` per checkout")
    assert state.read_text() == first


@contextlib.contextmanager
def first_make_run(state: Path):
    """Another `make run` of this checkout, alive: in a process of its own, holding the checkout's lock."""
    code = ("import sys; from pathlib import Path; from infra.local import run; "
            "lock = run.hold_checkout(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()")
    first = subprocess.Popen([sys.executable, "-c", code, str(state)], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None and first.stdout.readline() == "held\n"
        yield
    finally:
        first.kill()
        first.wait()


def test_two_make_runs_started_at_the_same_instant_do_not_both_start(tmp_path, monkeypatch, capsys):
    """The first has not written its state file yet (it is starting its stack): the second used to see
    no state file and start a second stack. It now says the first is starting; once the first has
    ended (killed, even), a make run starts."""
    for var in SECRETS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PORT", str(closed_port()))
    state = tmp_path / "stack.json"

    def start(**_):
        raise run.StartError("started")
    monkeypatch.setattr(run, "STATE", state)
    monkeypatch.setattr(run, "start", start)
    with first_make_run(state):
        assert run.main() == 1
        assert one_line(capsys.readouterr().err, "make run: ") == (
            "make run: another `make run` of this checkout is starting: wait for its banner (./bridge and make "
            "demo will use it), or stop it first — one `make run` per checkout")
    assert run.main() == 1 and capsys.readouterr().err == "make run: started\n"


def test_the_state_file_of_a_stack_that_was_killed_does_not_stop_make_run(tmp_path, monkeypatch, capsys):
    for var in SECRETS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PORT", str(closed_port()))
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"api_url": "http://127.0.0.1:8000",
                                 "aws_endpoint_url": f"http://127.0.0.1:{closed_port()}"}))   # nothing answers

    def start(**_):
        raise run.StartError("started")
    monkeypatch.setattr(run, "STATE", state)
    monkeypatch.setattr(run, "start", start)
    assert run.main() == 1 and capsys.readouterr().err == "make run: started\n"


# --- make demo --------------------------------------------------------------------------------------
# `make demo` is `python -m infra.local.demo`, whose main reads .local/stack.json: here another file.
DEMO = "import sys; from pathlib import Path; from infra.local import demo; sys.exit(demo.main(Path(sys.argv[1])))"


def run_demo(state_file: Path, **env) -> subprocess.CompletedProcess:
    """`make demo`'s main in a process of its own, reading the given state file."""
    return process([sys.executable, "-c", DEMO, str(state_file)], env_without_apis(**env))


def test_make_demo_without_a_stack_or_with_one_that_stopped_says_to_start_it(tmp_path):
    done = run_demo(tmp_path / "absent.json")
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "start the stack first: make run\n")
    stale = tmp_path / "stack.json"          # left by a `make run` that did not stop cleanly
    dead = f"http://127.0.0.1:{closed_port()}"
    stale.write_text(json.dumps({"api_url": dead, "rf_url": dead, "intercom_url": dead, "mode": "simulators",
                                 "env": {}}))
    done = run_demo(stale)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "start the stack first: make run\n")


def test_a_stack_that_stops_while_the_demo_plays_is_one_line(tmp_path, held_port):
    state = tmp_path / "stack.json"
    dead = f"http://127.0.0.1:{closed_port()}"
    state.write_text(json.dumps({"api_url": f"http://127.0.0.1:{held_port}", "rf_url": dead, "intercom_url": dead,
                                 "mode": "simulators", "env": {}}))
    done = run_demo(state)
    assert done.returncode == 1 and one_line(done.stderr, "the local stack stopped answering") == (
        f"the local stack stopped answering ({dead}/users): start the stack first: make run")


def test_ctrl_c_during_make_demo_exits_quietly(tmp_path):
    """The demo's first request reaches a "stack" that presses Ctrl-C for the user (SIGINT to the
    demo's process) before it answers."""
    class Stack(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            os.kill(demo_pid[0], signal.SIGINT)
            body = b'{"data": {"id": 1}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    demo_pid: list[int] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stack)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"api_url": url, "rf_url": url, "intercom_url": url, "mode": "simulators",
                                 "env": {}, "rf_webhook_secret": "s", "intercom_client_secret": "s"}))
    try:
        proc = subprocess.Popen([sys.executable, "-c", DEMO, str(state)], cwd=ROOT, env=env_without_apis(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        demo_pid.append(proc.pid)
        out, err = proc.communicate(timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert (proc.returncode, err) == (130, "")
    assert "Traceback" not in out


def test_a_demo_that_times_out_names_the_command_that_says_why():
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(SystemExit) as stopped:
        demo._wait("the qualification in RF", lambda: None, lambda: None, "./bridge explain 1002",
                   clock=lambda: float(next(ticks)), sleep=lambda _: None)
    assert str(stopped.value) == ("timed out after 30 s waiting for the qualification in RF: see why with "
                                  "`./bridge explain 1002`")


class Clock:
    """The demo's clock and sleep: a sleep moves the clock on (no test sleeps)."""
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_demo_that_times_out_names_explain_only_once_the_history_says_why():
    """Walkthrough: in an Intercom outage the worker's first try retries for about 30 s, as long as the demo
    waits: the demo said "see why with `./bridge explain 1008`" just as the history's entry appeared (a few
    seconds earlier, explain said "no record yet")."""
    clock = Clock()
    recorded = lambda: clock.now >= 42          # noqa: E731 (the worker's first try ends 42 s in)
    with pytest.raises(SystemExit) as stopped:
        demo._wait("the Intercom contact", lambda: None, lambda: None, "./bridge explain 1008", why=recorded,
                   clock=clock, sleep=clock.sleep)
    assert recorded() and str(stopped.value) == ("timed out after 30 s waiting for the Intercom contact: see why "
                                                 "with `./bridge explain 1008`")


def test_a_demo_whose_history_never_says_why_says_so_and_where_to_look():
    clock = Clock()
    with pytest.raises(SystemExit) as stopped:
        demo._wait("the Intercom contact", lambda: None, lambda: None, "./bridge explain 1008", why=lambda: False,
                   clock=clock, sleep=clock.sleep)
    assert 60 <= clock.now < 61 and str(stopped.value) == (
        "timed out after 30 s waiting for the Intercom contact, and in 30 s more the bridge recorded no wait or "
        "failure that says why: see `make run`'s terminal (`./bridge explain 1008` says what the bridge knows)")


def test_what_the_demo_waits_for_is_a_wait_or_a_failure_the_history_says_since_the_demo_began_to_wait():
    entries = [{"at": "t1", "event": "contact", "outcome": "waiting", "reason": "Intercom unavailable"}]
    says_why = demo.news(lambda: entries)
    assert not says_why()                                                   # there before the wait began
    entries.append({"at": "t2", "event": "evaluation", "outcome": "met", "reason": "signed_up is 'Yes'"})
    assert not says_why()                                                   # progress, not why
    entries[0] = {**entries[0], "at": "t3"}                                 # the same wait, noted again
    assert says_why()


def test_the_demos_why_table_has_no_empty_trailing_columns():
    """Walkthrough: the `tag tagged` row (no reason) ended in blank columns."""
    rows = demo.why_rows([{"at": "2026-11-26T23:18:19.526Z", "event": "tag", "outcome": "tagged", "reason": None},
                          {"at": "2026-11-26T23:18:19.629Z", "event": "qualification", "outcome": "qualified",
                           "reason": "Referral Factory confirmed the qualification of user 1010"}])
    assert rows == ["  2026-11-26T23:18:19.526Z  tag            tagged",
                    "  2026-11-26T23:18:19.629Z  qualification  qualified  Referral Factory confirmed the "
                    "qualification of user 1010"]
