"""`make run`: the whole pipeline on this machine.

moto in server mode (DynamoDB + SQS over real HTTP) with the resources of
infra/template.yaml, the HTTP API on http://127.0.0.1:8000, the SQS worker driven like
Lambda's event source mapping, the scheduled reconciliation — and, unless real
credentials are given (INTERCOM_TOKEN + RF_TOKEN), simulators of Intercom and Referral
Factory seeded with a demo campaign, so `make demo` shows a referral qualify end to end."""
from __future__ import annotations

if __name__ == "__main__":    # Ctrl-C while starting: exit 130 at once, quietly (nothing is written yet)
    from infra.local import exit_quietly_on_interrupt
    exit_quietly_on_interrupt()

import errno
import json
import os
import signal
import socket
import sys
import threading
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from infra.local.aws import deploy, start_moto, stop_moto
from infra.local.esm import QueuePoller
from infra.local.fault import USUAL
from infra.local.http import serve_app
from infra.local.scheduler import Scheduler, chalice_job

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".local" / "stack.json"
WORKSPACE = os.environ.get("INTERCOM_WORKSPACE", "vne310wv")
CLIENT_SECRET = "local-intercom-client-secret"            # the simulated workspace's private app's
# The public app's (OAuth): another app, with its own client secret (one equal to a private app's is refused).
OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET = "local-public-app", "local-public-app-client-secret"
RF_WEBHOOK_SECRET = "local-rf-webhook-secret"
DEMO_SETTINGS = ROOT / "docs" / "examples" / "campaign.yaml"
# The simulated workspace's custom attributes: what docs/examples/campaign.yaml and the docs map
# (referral_count: docs/how-it-works.md, "Referral counts").
LOCAL_ATTRIBUTES = {"referral_code": "string", "lead_source": "string", "signed_up": "string",
                    "referral_link": "string", "score": "float", "referral_count": "integer"}
# Users of the simulated workspace no one referred (name, email): the commented `sync` block of campaign.yaml
# (`source: users`) has someone to enrol, so a first `./bridge sync start 42 --dry-run` shows sync do something.
LOCAL_USERS = (("Uma", "uma@example.com"), ("Victor", "victor@example.com"))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StartError(Exception):
    """`make run` cannot start as configured: one line that says what to change."""


@dataclass
class LocalStack:
    api_url: str
    endpoint_url: str
    env: dict
    intercom_url: str
    rf_url: str
    poller: QueuePoller
    parts: list = field(default_factory=list)
    scheduler: Optional[Scheduler] = None

    real: bool = False
    workspace: str = WORKSPACE
    intercom: Any = None    # the simulators (None with real APIs): their request logs, state, faults
    rf: Any = None

    def state(self) -> dict:
        """What .local/stack.json records. Never a secret given in the environment: with real APIs,
        only the names of the variables the secrets came from (a file of secrets on disk would
        outlive the shell); the local defaults are dummies the demo and the bench sign with."""
        state = {"api_url": self.api_url, "aws_endpoint_url": self.endpoint_url, "intercom_url": self.intercom_url,
                 "rf_url": self.rf_url, "workspace": self.workspace, "mode": "real" if self.real else "simulators",
                 "env": self.env}
        for key, var, default in (("intercom_client_secret", "INTERCOM_CLIENT_SECRET", CLIENT_SECRET),
                                  ("rf_webhook_secret", "RF_WEBHOOK_SECRET", RF_WEBHOOK_SECRET)):
            given = os.environ.get(var)
            state[key] = None if given else default
            state[f"{key}_from"] = f"${var}" if given else "local default"
        if not self.real:       # the public app (OAuth) of the simulators: it signs the webhooks of its connections
            state["intercom_oauth_client_secret"] = OAUTH_CLIENT_SECRET
        return state

    def stop(self) -> None:
        if self.scheduler:
            self.scheduler.stop()
        for stop in reversed(self.parts):
            stop()


def secret(state: dict, key: str) -> str:
    """A webhook secret of the running stack: the local default, or read again from the variable
    named in the state (its value is not on disk)."""
    value = state.get(key) or os.environ.get(str(state.get(f"{key}_from", "")).lstrip("$"))
    if not value:
        raise SystemExit(f"{key} came from {state.get(f'{key}_from')}: set it in this shell too")
    return value


def start(api_port: int = 8000, background: bool = True, reconcile_seconds: float = 60.0,
          prefix: str = "local") -> LocalStack:
    """Start everything; with background=False the worker and the schedule are driven by the caller.
    (moto keeps its state per process: a second stack in the same process needs another prefix.)
    StartError when the real APIs are half configured, Intercom refuses or cannot be reached, or
    the port is taken; what was started by then is stopped."""
    real, workspace = real_apis()
    parts: list[Any] = []
    try:
        return _start(parts, api_port, background, reconcile_seconds, prefix, real, workspace)
    except BaseException:
        for stop in reversed(parts):
            stop()
        raise


def real_apis(env=os.environ) -> tuple[bool, str]:
    """Whether `make run` uses the real APIs (INTERCOM_TOKEN and RF_TOKEN), and the workspace; StartError when
    they are half configured, or their URLs would carry the tokens in clear."""
    given = [var for var in ("INTERCOM_TOKEN", "RF_TOKEN") if env.get(var)]
    if len(given) == 1:
        missing = "RF_TOKEN" if given == ["INTERCOM_TOKEN"] else "INTERCOM_TOKEN"
        raise StartError(f"{given[0]} is set but {missing} is not: the real APIs need both "
                         f"(unset {given[0]} to run on the simulators)")
    if not given:
        return False, WORKSPACE
    if not env.get("INTERCOM_WORKSPACE"):
        raise StartError("with INTERCOM_TOKEN and RF_TOKEN (the real APIs), set INTERCOM_WORKSPACE to your "
                         "Intercom workspace's app_id too")
    from chalicelib.config import Config

    insecure = Config.from_env(env).insecure()      # (the simulators' URLs are this machine's)
    if insecure:
        raise StartError(f"{insecure} — fix it (a variable left unset takes its default)")
    return True, env["INTERCOM_WORKSPACE"]


def _check_intercom(rt: Any, token: str, workspace: str, url: str) -> Any:
    """The real token's workspace (GET /me), which must be INTERCOM_WORKSPACE."""
    from chalicelib.domain.oauth import workspace_of
    from chalicelib.errors import Permanent, WorkError

    try:
        found = workspace_of(rt.intercom_auth().whoami(token, None))
    except Permanent as exc:     # (a 401's reason: the token is refused; what to check is said here)
        said = "401: the token is invalid or revoked" if exc.status == 401 else exc.reason
        raise StartError(f"Intercom at {url} refused INTERCOM_TOKEN ({said}): check INTERCOM_TOKEN, or set "
                         "INTERCOM_BASE_URL to your workspace's region (e.g. https://api.eu.intercom.io)") from None
    except WorkError as exc:
        raise StartError(f"cannot check INTERCOM_TOKEN with Intercom at {url}: {exc.reason} — check the network "
                         "(or INTERCOM_BASE_URL)") from None
    except ValueError as exc:
        raise StartError(f"Intercom at {url}: {exc}") from None
    if found.app_id != workspace:
        raise StartError(f"INTERCOM_TOKEN is a token of workspace {found.app_id} ({found.name}), not of "
                         f"INTERCOM_WORKSPACE={workspace}: set INTERCOM_WORKSPACE={found.app_id} (or use that "
                         "workspace's token)")
    return found


def _port_taken(port: int) -> StartError:
    return StartError(f"port {port} is in use (another `make run`?): stop what uses it, or pick another port: "
                      f"make run PORT={port + 1 if port < 65535 else 8001}")


def check_running(state_file: Path) -> None:
    """StartError if a stack of this checkout still runs: a second one would take over its
    .local/stack.json (and delete it when it stops), so ./bridge and make demo would lose the first.
    A state file whose stack does not answer (it was killed) is left to be replaced."""
    from urllib.parse import urlsplit

    from infra.local.bridge_env import answers

    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(state, dict) or not answers(state.get("aws_endpoint_url")):
        return
    url = str(state.get("api_url"))
    port = urlsplit(url).port
    raise StartError(f"a stack of this checkout already runs on port {port} ({url}; ./bridge and make demo use it): "
                     f"stop it first (Ctrl-C in its terminal) — one `make run` per checkout")


def hold_checkout(state_file: Path) -> Any:
    """Take this checkout's `make run` lock (beside its state file) for as long as this process lives;
    the kernel lets go when it dies, however it dies. StartError if another `make run` of this checkout
    holds it: naming its port once its state file says it (check_running), or saying it is starting
    (two started at the same instant both passed a check of the state file alone)."""
    import fcntl

    state_file.parent.mkdir(exist_ok=True)
    lock = open(state_file.with_suffix(".lock"), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        check_running(state_file)
        raise StartError("another `make run` of this checkout is starting: wait for its banner (./bridge and "
                         "make demo will use it), or stop it first — one `make run` per checkout") from None
    return lock


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """Before the slow part of the start: StartError if the API's port cannot be listened on."""
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the HTTP server binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise _port_taken(port) if exc.errno == errno.EADDRINUSE else \
                StartError(f"cannot listen on port {port} ({exc.strerror}): pick another port: make run PORT=8000") \
                from None


def _start(parts: list, api_port: int, background: bool, reconcile_seconds: float, prefix: str, real: bool,
           workspace: str) -> LocalStack:
    server, endpoint = start_moto()
    parts.append(lambda: stop_moto(server))
    attempts = os.environ.get("BRIDGE_MAX_ATTEMPTS", "5")
    # The redrive is a backstop, as deployed: it leaves the worker all its tries (infra/deploy.py).
    resources = deploy(endpoint, prefix, visibility_timeout=10, max_receive_count=2 * int(attempts))
    env = {**resources.env(), "BRIDGE_MAX_ATTEMPTS": attempts,
           # the schedule below, for whoever reads this environment (`bridge doctor` expects its runs)
           "RECONCILE_EVERY_SECONDS": f"{reconcile_seconds:g}"}
    if real:
        intercom = rf = None
        intercom_url = os.environ.get("INTERCOM_BASE_URL", "https://api.intercom.io")
        rf_url = os.environ.get("RF_BASE_URL", "https://api.referral-factory.com/api/v2")
    else:
        intercom, rf = _simulators()
        parts += [intercom.stop, rf.stop]
        intercom_url, rf_url = intercom.base_url, rf.base_url
    env.update({"INTERCOM_BASE_URL": intercom_url, "RF_BASE_URL": rf_url})
    if intercom is not None:   # the simulator's authorize page: OAuth works locally in any browser
        env["INTERCOM_OAUTH_URL"] = f"{intercom_url}/oauth"
    os.environ.update(env)

    import app as app_module
    from chalicelib.services import admin
    from chalicelib.services.worker import RetryBatch
    from chalicelib.services.connections import connect_rf, connect_workspace, store_workspace
    from chalicelib.ports.secrets import KEPT_SECONDS
    from chalicelib.runtime import Runtime, default_runtime, reset_default_runtime

    reset_default_runtime(None)
    rt = default_runtime()
    # As an operator would: through the secret store (SSM on moto), never the table.
    client_secret = os.environ.get("INTERCOM_CLIENT_SECRET") or CLIENT_SECRET
    if real:
        token = os.environ["INTERCOM_TOKEN"]
        found = _check_intercom(rt, token, workspace, intercom_url)
        store_workspace(rt, workspace, token, client_secret, found.api_base(rt.config.intercom_base_url))
    else:
        connect_workspace(rt, workspace, USUAL["intercom"], client_secret)
    # Stored as long before as a worker keeps a token: no worker of this stack ran with another (a replay waits for
    # none: `dlq replay` right after `make run` works at once).
    connect_rf(Runtime(rt.config, clock=lambda: rt.clock() - 2 * KEPT_SECONDS),
               os.environ.get("RF_TOKEN") or USUAL["rf"], os.environ.get("RF_WEBHOOK_SECRET") or RF_WEBHOOK_SECRET)
    if not real:
        admin.apply_settings(rt, DEMO_SETTINGS.read_text())
        from chalicelib.services.connections import configure_oauth
        configure_oauth(rt, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET)
    # The API's context says the time left of the deployed API function's timeout (Chalice's local default is 60 s):
    # the OAuth callback gives Intercom what the deployed one would.
    from infra.deploy import BASE_CONFIG, function_timeout
    timeout = function_timeout(json.loads(BASE_CONFIG.read_text()), "local", "api_handler")
    try:
        api = serve_app(app_module.app, port=api_port, lambda_timeout=timeout)
    except OSError as exc:   # taken since check_port
        if exc.errno == errno.EADDRINUSE:
            raise _port_taken(api_port) from None
        raise
    parts.append(api.stop)
    # `./bridge workspace oauth-link` prints start links on this API (the CLI reads .local/stack.json's env).
    env["BRIDGE_API_URL"] = os.environ["BRIDGE_API_URL"] = api.url
    # (a batch the worker hands back in part raises RetryBatch: one line in the terminal, not a traceback)
    poller = QueuePoller(resources.client("sqs"), resources.queue_url, resources.queue_arn, app_module.worker,
                         expected=(RetryBatch,))
    stack = LocalStack(api.url, endpoint, env, intercom_url, rf_url, poller, parts, real=real,
                       workspace=workspace, intercom=intercom, rf=rf)
    if background:
        stop_event = threading.Event()
        thread = threading.Thread(target=poller.run_forever, args=(stop_event,), daemon=True)
        thread.start()
        parts.append(stop_event.set)
        stack.scheduler = Scheduler([("reconcile", reconcile_seconds,
                                      chalice_job(app_module.reconcile, "reconcile"))]).start()
    return stack


def _simulators():
    from infra.local.sims.intercom import IntercomSim
    from infra.local.sims.referral_factory import RFSim

    intercom = IntercomSim(app_id=WORKSPACE).start()
    intercom.client_id, intercom.client_secret = OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET   # its code exchange checks them
    for name, dtype in LOCAL_ATTRIBUTES.items():
        intercom.define_attribute(name, dtype)
    for name, email in LOCAL_USERS:
        intercom.add_contact(email, role="user", name=name)
    rf = RFSim().start()
    rf.add_campaign(42, "Friends of Acme")
    return intercom, rf


def api_port(env=os.environ) -> int:
    """`make run PORT=8080`: the local API's port (8000 by default)."""
    given = env.get("PORT") or "8000"
    if not given.isdigit() or not 0 < int(given) < 65536:
        raise StartError(f"PORT={given} is not a port number: e.g. make run PORT=8080")
    return int(given)


def banner(stack: LocalStack, every: str) -> str:
    """What `make run` prints once the stack is up: where each part runs, and what to do next (on the
    simulators: the demo and its campaign 42; on the real APIs: your own settings)."""
    lines = ["", "  Referral Factory <-> Intercom bridge, running locally"
             + (f" against the real Intercom (workspace {stack.workspace}) and Referral Factory" if stack.real else ""),
             f"  API              {stack.api_url}   (POST /webhooks/referral-factory, POST|HEAD /webhooks/intercom)",
             f"  AWS (moto)       {stack.endpoint_url}",
             f"  Intercom         {stack.intercom_url}",
             f"  Referral Factory {stack.rf_url}",
             f"  Worker           polling the work queue; reconciliation every {every} s"]
    state = STATE.relative_to(ROOT)
    if stack.real:
        lines += ["",
                  "  Next:                 ./bridge settings apply <your campaign.yaml>, then ./bridge doctor <campaign id>",
                  f"  Operator commands:    ./bridge ...   (finds this stack through {state})",
                  "  Real webhooks cannot reach 127.0.0.1 without a tunnel."]
    else:
        lines += ["  Connect by OAuth ./bridge workspace oauth-link   (a one-time start link, 30 minutes: the simulated "
                  "workspace's authorize page)",
                  "",
                  "  In another terminal:  make demo      (a referral joins, signs up, and qualifies)",
                  f"  Operator commands:    ./bridge explain <rf user id>   (finds this stack through {state})"]
    kept = "AWS (moto) keeps its state" if stack.real else "AWS (moto) and the simulators keep their state"
    lines += [f"  Ctrl-C stops everything, and a restart starts empty: {kept} in memory only "
              "(a crash and resume is rehearsed by `make chaos`: it kills workers, not the stack).", ""]
    return "\n".join(lines)


def raw_logs(env=os.environ) -> bool:
    """`make run LOGS=json`: the terminal shows the JSON lines the Lambdas write (by default: infra/local/terminal.py)."""
    given = env.get("LOGS", "")
    if given not in ("", "json"):
        raise StartError(f"LOGS={given}: give LOGS=json for the JSON lines the Lambdas write (or no LOGS: a short "
                         "line each)")
    return given == "json"


def main() -> int:
    """`make run`: start, say where everything runs, wait for Ctrl-C. A start that fails ends in one
    line on stderr (exit 1); Ctrl-C ends it quietly (130), while starting or once running. The bridge's
    log records show as a short line each, its metrics not at all (`raw_logs`: as they are)."""
    with ExitStack() as shown:
        return _main(shown)


def _main(shown: ExitStack) -> int:
    """`shown`: holds stdout's redirection to the terminal's short lines (unless LOGS=json) until the end."""
    from infra.local.terminal import Terminal

    every = os.environ.get("RECONCILE_EVERY_SECONDS", "60")
    try:
        port = api_port()
        if not raw_logs():
            shown.enter_context(redirect_stdout(Terminal(sys.stdout)))
        real_apis()                  # before the port: the first thing to fix is said first
        lock = hold_checkout(STATE)  # on any port: it would take over the running stack's state file
        check_port(port)
        stack = start(api_port=port, reconcile_seconds=float(every))
    except KeyboardInterrupt:
        return 130
    except StartError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    # Stopping is wanted from here on (before the banner: a Ctrl-C right after it stops the stack too).
    stopped = shown.enter_context(stop_signals())
    STATE.parent.mkdir(exist_ok=True)
    written = json.dumps(stack.state(), indent=2)
    STATE.write_text(written)
    print(banner(stack, every), flush=True)
    signum = stopped()
    stack.stop()
    forget_state(written, STATE)
    lock.close()                        # the next `make run` may start (as it may once this process ends)
    return 128 + signum                 # as the shell reports a signal: Ctrl-C 130, SIGTERM 143


@contextmanager
def stop_signals() -> Iterator[Callable[[], int]]:
    """From now on Ctrl-C (SIGINT) and SIGTERM are taken, not raised; yields what waits for one of them and returns
    its number. The kernel may give a process's signal to any of its threads, and Python runs the handler only
    when the main thread runs again: a main thread asleep on a lock (threading.Event.wait) slept on when a thread
    of the stack (a request's, the worker's) had taken the Ctrl-C, and `make run` ran on. Whichever thread takes
    it, Python writes the signal's number to the wakeup fd: the main thread sleeps reading that."""
    woken, wake = os.pipe()
    os.set_blocking(wake, False)
    before = signal.set_wakeup_fd(wake)
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: None)

    def stopped() -> int:
        while (signum := os.read(woken, 1)[0]) not in STOP_SIGNALS:
            pass
        return signum
    try:
        yield stopped
    finally:
        signal.set_wakeup_fd(before)
        os.close(woken)
        os.close(wake)


def forget_state(written: str, path: Path = STATE) -> None:
    """A stopped stack leaves no .local/stack.json behind (unless another `make run` wrote it since)."""
    try:
        if path.read_text() == written:
            path.unlink()
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
