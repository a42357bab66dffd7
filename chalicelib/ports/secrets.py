"""Secrets (adapters/secrets.py: SSM; tests/fakes.py: MemorySecrets), and the names they are kept
under. The second segment of a name says who may read it, so IAM grants a path per function:

  <path>/edge/rf/webhook-secret                   RF's webhook header value            read by the API function
  <path>/edge/intercom/<workspace>/client-secret  the private app's client secret      read by the API function
                                                  (or an old OAuth callback's copy of the public app's:
                                                  `bridge workspace oauth-app` deletes such copies)
  <path>/edge/oauth/{client-id,client-secret,     the public app's (OAuth): one for    read by the API function
                    state-key}                    every workspace connected through it
  <path>/worker/rf/token                          the RF API token                     read by the worker
  <path>/worker/intercom/<workspace>/token        the workspace's access token         read by the worker

The CLI writes them."""
from __future__ import annotations

import re
from typing import Optional, Protocol

from ..domain.apps import PRIVATE

EDGE, WORKER = "edge", "worker"
RF_WEBHOOK_SECRET = "rf/webhook-secret"            # under edge/
RF_TOKEN = "rf/token"                              # under worker/
#: How long a container keeps a secret it read, and a client made with one (runtime.CACHE_SECONDS): a running
#: worker may call with a token up to twice that long after another was stored (on a 401 it reads it again at once;
#: an RF token of another account is never refused, its every user is "not found").
KEPT_SECONDS = 300


def read_by_every_worker(stored_at: float) -> float:
    """When every running worker calls with a token stored at `stored_at` (epoch seconds), at the latest: a worker
    that read the old one just before keeps it, then a client made with it, KEPT_SECONDS each."""
    return stored_at + 2 * KEPT_SECONDS
_WORKSPACE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


def valid_workspace(workspace: object) -> bool:
    return isinstance(workspace, str) and bool(_WORKSPACE.match(workspace))


def intercom_client_secret(workspace: str) -> str:     # under edge/
    return f"intercom/{workspace}/client-secret"


# The public app's OAuth settings, under edge/ (the API function runs the OAuth routes, and verifies the
# webhooks of the workspaces connected through the app with its client secret: domain/apps.py).
OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_STATE_KEY = "oauth/client-id", "oauth/client-secret", "oauth/state-key"


def app_client_secret(app: str, workspace: str) -> str:     # under edge/
    """Where the client secret that signs the app's webhooks for the workspace is kept."""
    return intercom_client_secret(workspace) if app == PRIVATE else OAUTH_CLIENT_SECRET


def intercom_token(workspace: str) -> str:              # under worker/
    return f"intercom/{workspace}/token"


class SecretStore(Protocol):
    """Secrets under one path. Names are relative to the path; `scoped(part)` is the store of a
    sub-path, which cannot name anything outside it. get answers None for a secret that is not set;
    put overwrites; delete of an absent one does nothing."""

    def get(self, name: str) -> Optional[str]: ...
    def put(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def scoped(self, part: str) -> "SecretStore": ...
