"""Secrets (adapters/secrets.py: SSM; tests/fakes.py: MemorySecrets)."""
from __future__ import annotations

from typing import Optional, Protocol


class SecretStore(Protocol):
    """Secrets under one path. Names are relative to the path; `scoped(part)` is the store of a
    sub-path, which cannot name anything outside it. get answers None for a secret that is not set;
    put overwrites; delete of an absent one does nothing."""

    def get(self, name: str) -> Optional[str]: ...
    def put(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def scoped(self, part: str) -> "SecretStore": ...
