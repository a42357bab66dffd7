"""The AWS clients (DynamoDB, SQS, SSM) of a container, all made from one botocore session: botocore
reads its endpoint and service files once, and boto3 is not imported at all (a client is all the
bridge uses of it; its import, with s3transfer's, cost a cold start about 20 ms).

The session's loader checks a service's name in that service's own directory: botocore's lists all
of its ~440 service directories to check one name (twice, for the model and its endpoint rules),
which was ~25 ms of a container's first client.

It serves DynamoDB's, SQS's and SSM's models trimmed to the operations the bridge calls
(aws_models/, written by `make models`: infra/aws_models.py), which a client parses in a fraction of
the time of botocore's (SSM's is ~950 KB for 154 operations): only when a trimmed file was cut from the
installed botocore's model, else botocore's own file."""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Optional

TRIMMED = Path(__file__).with_name("aws_models")

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
            _session.register_component("data_loader", _loader(_session.get_config_variable("data_path")))
        return _session.create_client(service, config=Config(**config) if config else None)


def trimmed_model(name: str) -> Optional[dict]:
    """The trimmed model of `name` (a service model's data path, "ssm/2014-11-06/service-2"), when
    there is one and it was cut from this very model of the installed botocore."""
    import botocore

    service, _, rest = name.partition(os.sep)
    version, _, type_name = rest.partition(os.sep)
    path = TRIMMED / f"{service}.json"
    if type_name != "service-2" or not path.is_file():
        return None
    with path.open("rb") as f:
        trimmed = json.load(f)
    fresh = trimmed.get("botocore") == botocore.__version__ and trimmed.get("api_version") == version
    return trimmed["model"] if fresh else None


def _loader(data_path: Optional[str]) -> Any:
    """botocore's loader (create_loader's, with AWS_DATA_PATH's extra paths), whose answer to "which
    services are there?" checks a name in its own directory and lists them all only when read, and
    which serves trimmed models (none when AWS_DATA_PATH is set, nor for a model in ~/.aws/models: a
    model there overrides botocore's)."""
    from botocore.exceptions import DataNotFoundError
    from botocore.loaders import Loader, create_loader

    class ServiceNames(Sequence):
        def __init__(self, loader: Loader, type_name: str) -> None:
            self.loader, self.type_name = loader, type_name

        def __contains__(self, name: object) -> bool:
            try:
                return isinstance(name, str) and bool(self.loader.list_api_versions(name, self.type_name))
            except DataNotFoundError:
                return False

        @cached_property
        def _all(self) -> list[str]:
            return Loader.list_available_services(self.loader, self.type_name)

        def __getitem__(self, index: Any) -> Any:
            return self._all[index]

        def __len__(self) -> int:
            return len(self._all)

        def __iter__(self) -> Iterator[str]:
            return iter(self._all)

    class NamedLoader(Loader):
        def list_available_services(self, type_name: str) -> Sequence:
            return ServiceNames(self, type_name)

        def load_data(self, name: str) -> Any:
            model = None if data_path else trimmed_model(name)
            if model is not None and any(self.file_loader.exists(os.path.join(p, name)) for p in users):
                model = None        # ~/.aws/models (`aws configure add-model`) holds it: botocore reads that one
            return super().load_data(name) if model is None else model

    base = create_loader(data_path)
    users = [p for p in base.search_paths if p != Loader.BUILTIN_DATA_PATH]
    return NamedLoader(extra_search_paths=base.search_paths, include_default_search_paths=False)
