"""The AWS clients (DynamoDB, SQS, SSM) of a container, all made from one botocore session: botocore
reads its endpoint and service files once, and boto3 is not imported at all (a client is all the
bridge uses of it; its import, with s3transfer's, cost a cold start about 20 ms)."""
from __future__ import annotations

import os
import threading
from typing import Any, Optional

_lock = threading.Lock()        # a botocore session is not thread-safe; the clients it makes are
_session: Any = None
_session_env: tuple[Optional[str], ...] = ()

# What a session reads from the environment once and keeps (its credentials above all).
_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")


def client(service: str, **config: Any) -> Any:
    """A new client of `service`, configured as botocore.config.Config(**config). Region, endpoint
    (AWS_ENDPOINT_URL) and credentials come from the environment, as boto3.client's would: a process
    whose AWS environment changed (the CLI's tests, one after another) gets a session of its own."""
    from botocore.config import Config
    from botocore.session import get_session

    global _session, _session_env
    env = tuple(os.environ.get(k) for k in _ENV)
    with _lock:
        if _session is None or env != _session_env:
            _session, _session_env = get_session(), env
        return _session.create_client(service, config=Config(**config) if config else None)
