"""Secrets in SSM Parameter Store (SecureString), under one path per stage (BRIDGE_SECRETS_PATH),
named as ports/secrets.py lays them out (a path per function, so IAM grants each its own part).

A function gets a store scoped to its own part (`scoped("edge")`): names are relative and
validated, so the edge's reader has no way to name a `worker/` parameter."""
from __future__ import annotations

import itertools
import re
from typing import Callable, Generic, Iterator, Optional, TypeVar

_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+\Z")


class Scoped:
    """Name handling shared by the real store and its in-memory twin: a prefix, and relative names
    whose segments are plain words (no `..`, no empty or absolute parts)."""

    def __init__(self, prefix: str):
        self.prefix = "/" + prefix.strip("/")

    def full_name(self, name: str) -> str:
        parts = name.split("/") if isinstance(name, str) else [""]
        if not all(_SEGMENT.match(p) and p not in (".", "..") for p in parts):
            raise ValueError(f"not a secret name: {name!r}")
        return f"{self.prefix}/{name}"


class SsmSecrets(Scoped):
    """The real store. The client is created on first use (adapters/aws.py; AWS_ENDPOINT_URL points it at moto)
    and shared by the scoped views."""

    def __init__(self, prefix: str, client=None, _root: Optional["SsmSecrets"] = None):
        super().__init__(prefix)
        self._client, self._root = client, _root

    @property
    def client(self):
        if self._root is not None:
            return self._root.client
        if self._client is None:
            from . import aws  # deferred: only the paths that read a secret pay for it

            self._client = aws.client("ssm", connect_timeout=3, read_timeout=5,
                                      retries={"max_attempts": 3, "mode": "standard"})
        return self._client

    def scoped(self, part: str) -> "SsmSecrets":
        return SsmSecrets(self.full_name(part), _root=self._root or self)

    def get(self, name: str) -> Optional[str]:
        full = self.full_name(name)
        try:
            return self.client.get_parameter(Name=full, WithDecryption=True)["Parameter"]["Value"]
        except self.client.exceptions.ParameterNotFound:
            return None

    def put(self, name: str, value: str) -> None:
        self.client.put_parameter(Name=self.full_name(name), Value=value, Type="SecureString", Overwrite=True)

    def delete(self, name: str) -> None:
        try:
            self.client.delete_parameter(Name=self.full_name(name))
        except self.client.exceptions.ParameterNotFound:
            pass


RECHECK_SECONDS = 5.0
MAX_CACHED = 1024    # callers choose the names (app_id): absences are not kept beyond this many
V = TypeVar("V")


class SecretCache(Generic[V]):
    """A function's secrets (or what names them: a workspace's signing secrets), cached for the container.
    The one place that decides when to read again:

    - a value (or its absence, unless `keep_absent` is False: then it is answered, never kept) is read
      once and kept `ttl` seconds;
    - `get(name, accept)`: when the cached value is absent or does not satisfy `accept` (e.g. a
      signature fails against it; `accept` only ever sees a set value), the store is asked again
      before the caller refuses — so a secret connected or rotated a moment ago works at once —
      but at most once every `recheck` seconds per secret, so callers cannot force reads;
    - `refresh(name, stale)`: an explicit re-read after the remote side refused `stale` (a 401)."""

    def __init__(self, read: Callable[[str], Optional[V]], clock: Callable[[], float], ttl: float,
                 recheck: float = RECHECK_SECONDS, keep_absent: bool = True):
        self.read, self.clock, self.ttl, self.recheck, self.keep_absent = read, clock, ttl, recheck, keep_absent
        self._values: dict[str, tuple[float, Optional[V]]] = {}     # name -> (read at, value)
        self._rechecked: dict[str, float] = {}                     # name -> last re-read before refusing

    def _read(self, name: str) -> Optional[V]:
        value = self.read(name)
        if value is None and not self.keep_absent:
            return value
        if len(self._values) >= MAX_CACHED:
            self._values = {k: v for k, v in self._values.items() if v[1] is not None}
            self._rechecked = {k: v for k, v in self._rechecked.items() if k in self._values}
        self._values[name] = (self.clock(), value)
        return value

    def get(self, name: str, accept: Optional[Callable[[V], bool]] = None) -> Optional[V]:
        hit = self._values.get(name)
        if hit is None or hit[0] + self.ttl <= self.clock():
            return self._read(name)                       # just read: as fresh as it gets
        if hit[1] and (accept is None or accept(hit[1])):
            return hit[1]
        last = self._rechecked.get(name)
        if last is not None and self.clock() - last < self.recheck:
            return hit[1]                                  # refused on the cached value
        self._rechecked[name] = self.clock()
        return self._read(name)

    def first(self, names: Optional[list[str]], accept: Optional[Callable[[V], bool]] = None) -> Optional[V]:
        """The first value of `names` that `accept`s (None: any set one), else None. The values cached fresh
        first; then `get` of each in turn, those whose value as cached (however old) `accept`s first: one
        name's webhooks cost no read (nor a recheck) of the others', even as the cached values expire."""
        def ok(value: Optional[V]) -> bool:
            return bool(value and (accept is None or accept(value)))
        names = list(names or ())
        cached = {name: self._values[name] for name in names if name in self._values}
        fresh = (hit[1] for hit in cached.values() if hit[0] + self.ttl > self.clock())

        def read() -> Iterator[Optional[V]]:
            likely = [name for name in names if name in cached and ok(cached[name][1])]
            yield from (self.get(name, accept) for name in likely + [n for n in names if n not in likely])
        return next(filter(ok, itertools.chain(fresh, read())), None)

    def kept(self, name: str) -> Optional[V]:
        """The value last read and kept, however old (no read)."""
        hit = self._values.get(name)
        return hit[1] if hit else None

    def refresh(self, name: str, stale: Optional[V]) -> Optional[V]:
        """Read again; the new value if it differs from `stale`, else None."""
        value = self._read(name)
        return value if value and value != stale else None

    def discard(self, name: str) -> None:
        """Keep nothing of `name`: a read made before it was known to be needed (what it read, kept,
        would outlive a secret changed a moment later: a stale value, used until a 401 says so)."""
        self._values.pop(name, None)
        self._rechecked.pop(name, None)

    def clear(self) -> None:
        self._values.clear()
        self._rechecked.clear()
