"""The AWS clients (DynamoDB, SQS, SSM) of a container, all made from one botocore session: botocore
reads its endpoint and service files once, and boto3 is not imported at all (a client is all the
bridge uses of it; its import, with s3transfer's, cost a cold start about 20 ms).

The session's loader checks a service's name in that service's own directory: botocore's lists all
of its ~440 service directories to check one name (twice, for the model and its endpoint rules),
which was ~25 ms of a container's first client.

It serves DynamoDB's, SQS's and SSM's models trimmed to the operations the bridge calls
(aws_models/, written by `make models`: infra/aws_models.py), which a client parses in a fraction of
the time of botocore's (SSM's is ~950 KB for 154 operations): only when a trimmed file was cut from the
installed botocore's model, else botocore's own file. Likewise botocore's endpoints.json (1.25 MB, read for the
session's first client: ~20 ms), every partition whole but its services cut to those three: botocore's whole
file is read only when another service's endpoints are asked for (an STS client for the credentials, say).

In a Lambda container (`bound(API)`, `bound(WORKER)`), every client keeps to its function's bounds, and within
an invocation (`within`) makes no attempt that could outlast its time: API Gateway's own 502 after a call that
hung past the API function's timeout would tell the sender nothing, and a worker killed by its timeout would
log nothing, count no try and give its whole batch back (SQS's redrive then dead-letters it without a reason).
The CLI and the local server keep each client's own settings.

Every client raises errors.Throttled, the service's outage, for a call AWS still throttles after botocore's own
retries (`_throttled`): the work waits it out as it waits out a vendor's, without using up a try."""
from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

TRIMMED = Path(__file__).with_name("aws_models")

_lock = threading.Lock()        # a botocore session is not thread-safe; the clients it makes are
_session: Any = None
_session_env: tuple[Optional[str], ...] = ()

# What a session reads from the environment once and keeps (its credentials above all).
_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class Bounds:
    """How long one call may take: each attempt's connect and read timeouts (seconds), and how many attempts
    (botocore's standard retries)."""
    connect: float
    read: float
    attempts: int

    @property
    def attempt(self) -> float:
        """The longest one attempt may take."""
        return self.connect + self.read

    @property
    def wait(self) -> float:
        """The longest wait botocore makes between two attempts: 2^i s after a throttled one, raised by up to
        5 s to an `x-amz-retry-after` (botocore.retries.standard.ExponentialBackoff)."""
        return min(2.0 ** (self.attempts - 2), 20) + 5 if self.attempts > 1 else 0.0

    @property
    def seconds(self) -> float:
        """The longest a call, all its attempts and the waits between them, may take."""
        return self.attempts * self.attempt + (self.attempts - 1) * self.wait

    def config(self) -> dict:
        return {"connect_timeout": self.connect, "read_timeout": self.read,
                "retries": {"total_max_attempts": self.attempts, "mode": "standard"}}


#: The API function's (webhooks, OAuth pages): DynamoDB, SQS and SSM answer its small calls in milliseconds.
API = Bounds(connect=0.5, read=2.0, attempts=2)
#: The worker's and reconciliation's (batched reads and transactions): a call, retries and all, fits in the time a
#: record is started with (BRIDGE_RECORD_BUDGET_MS) with the worker's settling after it (infra/deploy.py checks).
WORKER = Bounds(connect=1.0, read=5.0, attempts=2)


class OutOfTime(Exception):
    """An AWS call's attempt not made: it could have outlasted what the request has left."""


_bounds: Optional[Bounds] = None
_left: ContextVar[Callable[[], float]] = ContextVar("aws_left", default=lambda: math.inf)


def bound(bounds: Optional[Bounds]) -> None:
    """The clients made from now on keep to `bounds` (None: each to its own configuration), and within a
    request (`within`) end in its time."""
    global _bounds
    _bounds = bounds


@contextlib.contextmanager
def within(left: Callable[[], float]) -> Iterator[None]:
    """The calls made here (this thread, and the tasks it gives a services/concurrency.Pool), by clients made
    `bound`, end before `left()` seconds run out: an attempt is made only with its time left, another only with
    its wait's too (else the call fails as the last attempt did)."""
    token = _left.set(left)
    try:
        yield
    finally:
        _left.reset(token)


def time_left() -> float:
    """The seconds the work here (`within`) has before it must leave the time of one AWS attempt at the clients'
    bounds (the work's own write after it) to end in the request's time: for a vendor's call (adapters/http.py).
    Infinite outside `within`, or where the clients keep their own settings (not `bound`: the CLI, the local
    server)."""
    bounds = _bounds
    return math.inf if bounds is None else _left.get()() - bounds.attempt


def _keep_in_time(made: Any, bounds: Bounds) -> None:
    attempt = bounds.attempt

    def attempting(**_: Any) -> None:
        left = _left.get()()
        if left < attempt:
            raise OutOfTime(f"no AWS call made with {max(left, 0):.1f} s left of the function's time (an attempt "
                            f"may take {attempt:g} s)")

    def again(**_: Any) -> Optional[bool]:
        """Heard before botocore's retry handler: False (no retry) outweighs its answer; None leaves it to it."""
        return False if _left.get()() < bounds.wait + attempt else None
    made.meta.events.register("before-send", attempting)
    made.meta.events.register_first(f"needs-retry.{made.meta.service_model.service_id.hyphenize()}", again)


#: A cancelled DynamoDB transaction's reasons that say the table throttled it (its other items': "None").
THROTTLED_ITEMS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})


def _throttled(http_response: Any, parsed: dict, model: Any, **_: Any) -> None:
    """Heard after each call, its retries done: an answer that says AWS throttled it (botocore's own list of the
    codes, or a transaction cancelled for a throttled item and no condition) raises errors.Throttled instead of
    botocore's ClientError."""
    if http_response is None or http_response.status_code < 300:
        return
    from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

    from ..errors import Throttled

    reasons = [r.get("Code") for r in parsed.get("CancellationReasons") or ()]
    answer = RetryContext(1, operation_model=model, parsed_response=parsed, http_response=http_response)
    if ThrottledRetryableChecker().is_retryable(answer) or (
            THROTTLED_ITEMS.intersection(reasons) and "ConditionalCheckFailed" not in reasons):
        service, error = str(model.service_model.service_id), parsed.get("Error") or {}
        items = f" [{', '.join(map(str, reasons))}]" if reasons else ""
        raise Throttled(service, f"{service} throttled {model.name} ({error.get('Code')}: "
                                 f"{error.get('Message', '')}{items})")


def client(service: str, **config: Any) -> Any:
    """A new client of `service`, configured as botocore.config.Config(**config). Region, endpoint
    (AWS_ENDPOINT_URL) and credentials come from the environment, as boto3.client's would: a process
    whose AWS environment changed (the CLI's tests, one after another) gets a session of its own. Made
    after `bound(...)`: those bounds instead of `config`'s timeouts and retries."""
    from botocore.config import Config
    from botocore.session import get_session

    global _session, _session_env
    env = tuple(os.environ.get(k) for k in _ENV)
    with _lock:
        if _session is None or env != _session_env:
            _session, _session_env = get_session(), env
            _session.register_component("data_loader", _loader(_session.get_config_variable("data_path")))
        bounds = _bounds
        if bounds is not None:
            config = {**config, **bounds.config()}
        made = _session.create_client(service, config=Config(**config) if config else None)
    made.meta.events.register(f"after-call.{made.meta.service_model.service_id.hyphenize()}", _throttled)
    if bounds is not None:
        _keep_in_time(made, bounds)
    return made


def trimmed_model(name: str) -> Optional[dict]:
    """The trimmed model of `name` (a service model's data path, "ssm/2014-11-06/service-2"), when
    there is one and it was cut from this very model of the installed botocore."""
    service, _, rest = name.partition(os.sep)
    version, _, type_name = rest.partition(os.sep)
    trimmed = _trimmed(service) if type_name == "service-2" else None
    return trimmed["model"] if trimmed is not None and trimmed.get("api_version") == version else None


def trimmed_endpoints() -> Optional[dict]:
    """botocore's endpoints.json, each partition's services cut to the bridge's, when it was cut from the installed
    botocore's."""
    trimmed = _trimmed("endpoints")
    return None if trimmed is None else trimmed["endpoints"]


def _trimmed(name: str) -> Optional[dict]:
    """aws_models/<name>.json, when there is one and it was cut from the installed botocore (`make models`)."""
    import botocore

    path = TRIMMED / f"{name}.json"
    if not path.is_file():
        return None
    with path.open("rb") as f:
        trimmed = json.load(f)
    return trimmed if trimmed.get("botocore") == botocore.__version__ else None


class _Services(Mapping):
    """A partition's services in the trimmed endpoints.json: the ones kept, and any other from botocore's whole
    file (`whole`: by partition), read the first time one is asked for, or all of them."""

    def __init__(self, partition: str, kept: dict, whole: Callable[[], dict]) -> None:
        self.partition, self.kept, self.whole = partition, kept, whole

    def _all(self) -> dict:
        return self.whole()[self.partition]

    def __getitem__(self, name: str) -> Any:
        return self.kept[name] if name in self.kept else self._all()[name]

    def __contains__(self, name: object) -> bool:
        return name in self.kept or name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _endpoints(trimmed: dict, read_whole: Callable[[], dict]) -> dict:
    """The endpoint data a session's resolver gets: `trimmed`, whose partitions answer for another service from
    botocore's whole file (`read_whole()`, read once)."""
    whole = cache(lambda: {p["partition"]: p["services"] for p in read_whole()["partitions"]})
    return {**trimmed, "partitions": [{**p, "services": _Services(p["partition"], p["services"], whole)}
                                      for p in trimmed["partitions"]]}


def _loader(data_path: Optional[str]) -> Any:
    """botocore's loader (create_loader's, with AWS_DATA_PATH's extra paths), whose answer to "which
    services are there?" checks a name in its own directory and lists them all only when read, and
    which serves trimmed models and endpoints (none when AWS_DATA_PATH is set, nor for a file in ~/.aws/models:
    a file there overrides botocore's)."""
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

        def load_data_with_path(self, name: str) -> Any:
            """The session reads endpoints.json with its path (a path in botocore's data: its clients resolve
            endpoints as with botocore's own file)."""
            trimmed = trimmed_endpoints() if name == "endpoints" and not data_path else None
            if trimmed is None or any(self.file_loader.exists(os.path.join(p, name)) for p in users):
                return super().load_data_with_path(name)
            return (_endpoints(trimmed, lambda: Loader.load_data_with_path(self, name)[0]),
                    os.path.join(self.BUILTIN_DATA_PATH, name))

    base = create_loader(data_path)
    users = [p for p in base.search_paths if p != Loader.BUILTIN_DATA_PATH]
    return NamedLoader(extra_search_paths=base.search_paths, include_default_search_paths=False)
