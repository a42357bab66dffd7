"""The AWS clients (DynamoDB, SQS, SSM) of a container, all made from one botocore session: botocore
reads its endpoint and service files once, and boto3 is not imported at all (a client is all the
bridge uses of it; its import, with s3transfer's, cost a cold start about 20 ms)."""
from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()        # a botocore session is not thread-safe; the clients it makes are
_session: Any = None


def client(service: str, **config: Any) -> Any:
    """A new client of `service`, configured as botocore.config.Config(**config). Region, endpoint
    (AWS_ENDPOINT_URL) and credentials come from the environment, as boto3.client's would."""
    from botocore.config import Config
    from botocore.session import get_session

    global _session
    with _lock:
        if _session is None:
            _session = get_session()
        return _session.create_client(service, config=Config(**config) if config else None)
