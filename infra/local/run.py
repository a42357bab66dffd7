"""`make run`: the whole pipeline on this machine.

moto in server mode (DynamoDB + SQS over real HTTP) with the resources of
infra/template.yaml, the HTTP API on http://127.0.0.1:8000, the SQS worker driven like
Lambda's event source mapping, the scheduled reconciliation — and, unless real
credentials are given (INTERCOM_TOKEN + RF_TOKEN), simulators of Intercom and Referral
Factory seeded with a demo campaign, so `make demo` shows a referral qualify end to end."""
from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from infra.local.aws import deploy, start_moto, stop_moto
from infra.local.esm import QueuePoller
from infra.local.http import serve_app
from infra.local.scheduler import Scheduler, chalice_job

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".local" / "stack.json"
WORKSPACE = os.environ.get("INTERCOM_WORKSPACE", "vne310wv")
CLIENT_SECRET = "local-intercom-client-secret"
RF_WEBHOOK_SECRET = "local-rf-webhook-secret"
DEMO_SETTINGS = ROOT / "docs" / "examples" / "campaign.yaml"
# The simulated workspace's custom attributes: what docs/examples/campaign.yaml and the README map.
LOCAL_ATTRIBUTES = {"referral_code": "string", "lead_source": "string", "signed_up": "string",
                    "referral_link": "string", "score": "float"}


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
    intercom: Any = None    # the simulators (None with real APIs): their request logs, state, faults
    rf: Any = None

    def state(self) -> dict:
        """What .local/stack.json records. Never a secret given in the environment: with real APIs,
        only the names of the variables the secrets came from (a file of secrets on disk would
        outlive the shell); the local defaults are dummies the demo and the bench sign with."""
        state = {"api_url": self.api_url, "aws_endpoint_url": self.endpoint_url, "intercom_url": self.intercom_url,
                 "rf_url": self.rf_url, "workspace": WORKSPACE, "mode": "real" if self.real else "simulators",
                 "env": self.env}
        for key, var, default in (("intercom_client_secret", "INTERCOM_CLIENT_SECRET", CLIENT_SECRET),
                                  ("rf_webhook_secret", "RF_WEBHOOK_SECRET", RF_WEBHOOK_SECRET)):
            given = os.environ.get(var)
            state[key] = None if given else default
            state[f"{key}_from"] = f"${var}" if given else "local default"
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
    (moto keeps its state per process: a second stack in the same process needs another prefix.)"""
    parts: list[Any] = []
    server, endpoint = start_moto()
    parts.append(lambda: stop_moto(server))
    resources = deploy(endpoint, prefix, visibility_timeout=10, max_receive_count=10)
    env = {**resources.env(), "BRIDGE_MAX_ATTEMPTS": os.environ.get("BRIDGE_MAX_ATTEMPTS", "5")}
    real = os.environ.get("INTERCOM_TOKEN") and os.environ.get("RF_TOKEN")
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
    from chalicelib.services.connections import connect_rf, connect_workspace
    from chalicelib.runtime import default_runtime, reset_default_runtime

    reset_default_runtime(None)
    rt = default_runtime()
    # As an operator would: through the secret store (SSM on moto), never the table.
    connect_workspace(rt, WORKSPACE, os.environ.get("INTERCOM_TOKEN") or "sim-token",
                      os.environ.get("INTERCOM_CLIENT_SECRET") or CLIENT_SECRET)
    connect_rf(rt, os.environ.get("RF_TOKEN") or "rf-token", os.environ.get("RF_WEBHOOK_SECRET") or RF_WEBHOOK_SECRET)
    if not real:
        admin.apply_settings(rt, DEMO_SETTINGS.read_text())
        from chalicelib.services.connections import configure_oauth
        configure_oauth(rt, "local-public-app", os.environ.get("INTERCOM_CLIENT_SECRET") or CLIENT_SECRET)
    api = serve_app(app_module.app, port=api_port)
    parts.append(api.stop)
    poller = QueuePoller(resources.client("sqs"), resources.queue_url, resources.queue_arn, app_module.worker)
    stack = LocalStack(api.url, endpoint, env, intercom_url, rf_url, poller, parts, real=bool(real),
                       intercom=intercom, rf=rf)
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
    for name, dtype in LOCAL_ATTRIBUTES.items():
        intercom.define_attribute(name, dtype)
    rf = RFSim().start()
    rf.add_campaign(42, "Friends of Acme")
    return intercom, rf


def api_port(env=os.environ) -> int:
    """`make run PORT=8080`: the local API's port (8000 by default)."""
    return int(env.get("PORT") or 8000)


def main() -> None:
    stack = start(api_port=api_port(),
                  reconcile_seconds=float(os.environ.get("RECONCILE_EVERY_SECONDS", "60")))
    STATE.parent.mkdir(exist_ok=True)
    STATE.write_text(json.dumps(stack.state(), indent=2))
    print(f"""
  Referral Factory <-> Intercom bridge, running locally
  API             {stack.api_url}   (POST /webhooks/referral-factory, POST|HEAD /webhooks/intercom)
  AWS (moto)      {stack.endpoint_url}
  Intercom        {stack.intercom_url}
  Referral Factory {stack.rf_url}
  Worker          polling the work queue; reconciliation every {os.environ.get('RECONCILE_EVERY_SECONDS', '60')} s
  Connect by OAuth {stack.api_url}/oauth/intercom/start   (simulators: the simulated workspace's authorize page)

  In another terminal:  make demo      (a referral joins, signs up, and qualifies)
  Operator commands:    ./bridge history 42 <rf user id>   (finds this stack through {STATE.relative_to(ROOT)})
  Ctrl-C stops everything.
""", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    stack.stop()


if __name__ == "__main__":
    main()
