"""Connecting Intercom workspaces and Referral Factory (the operator's CLI; later the OAuth callback).

Secrets go to the secret store (SSM SecureString, see adapters/secrets.py); the table records only
that a workspace is connected, its API base and which secrets are set. What a reconnect is not
given is kept. The answers say what was set or kept, never a value."""
from __future__ import annotations

from typing import Optional, Protocol

from ..adapters.secrets import (EDGE, RF_TOKEN, RF_WEBHOOK_SECRET, WORKER, intercom_client_secret, intercom_token,
                                valid_workspace)
from ..ports import SecretStore, Store


class Connecting(Protocol):
    @property
    def store(self) -> Store: ...
    @property
    def secrets(self) -> SecretStore: ...


class ConnectError(Exception):
    """The operator's request cannot be done as given (one line, says what to do)."""


def connect_workspace(rt: Connecting, workspace: str, token: Optional[str] = None, client_secret: Optional[str] = None,
                      api_base: Optional[str] = None) -> dict:
    if not valid_workspace(workspace):
        raise ConnectError(f"{workspace!r} is not an Intercom app_id (letters, digits, _ and - only)")
    current = rt.store.connections.workspace(workspace)
    had = set(current.secrets if current is not None else ())
    if not token and "token" not in had:
        raise ConnectError(f"workspace {workspace} has no access token yet: give --token (or INTERCOM_TOKEN)")
    if api_base and not api_base.startswith(("https://", "http://127.0.0.1", "http://localhost")):  # gets the token
        raise ConnectError(f"--api-base must be an https:// URL, e.g. https://api.eu.intercom.io (got {api_base!r})")
    # Secrets first: the table never says a secret is set before it is.
    if token:
        rt.secrets.scoped(WORKER).put(intercom_token(workspace), token)
    if client_secret:
        rt.secrets.scoped(EDGE).put(intercom_client_secret(workspace), client_secret)
    given = {name for name, value in (("token", token), ("client-secret", client_secret)) if value}
    rt.store.connections.put_workspace(workspace, secrets=given, api_base=api_base)
    now = had | given
    return {"workspace": workspace,
            "token": "set" if token else "kept",
            "client_secret": "set" if client_secret else ("kept" if "client-secret" in now else "missing"),
            "api_base": api_base or (current.api_base if current is not None else None) or "default"}


def connect_rf(rt: Connecting, token: Optional[str] = None, webhook_secret: Optional[str] = None) -> dict:
    current = rt.store.connections.rf()
    had = set(current.secrets if current is not None else ())
    if not token and not webhook_secret:
        raise ConnectError("give --token and/or --webhook-secret (or RF_TOKEN, RF_WEBHOOK_SECRET)")
    if token:
        rt.secrets.scoped(WORKER).put(RF_TOKEN, token)
    if webhook_secret:
        rt.secrets.scoped(EDGE).put(RF_WEBHOOK_SECRET, webhook_secret)
    given = {name for name, value in (("token", token), ("webhook-secret", webhook_secret)) if value}
    rt.store.connections.put_rf(secrets=given)
    now = had | given
    return {"token": "set" if token else ("kept" if "token" in now else "missing"),
            "webhook_secret": "set" if webhook_secret else ("kept" if "webhook-secret" in now else "missing")}
