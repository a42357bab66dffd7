"""What the webhook edge remembers for the operator (adapters/dynamo/edge.py; adapters/memory.py):
the requests it refused, as a bounded, expiring log per scope, and when it last heard each webhook.

Bounded by construction, whatever an unauthenticated caller sends:
- a scope is a campaign that has settings (`campaign:<id>`), a connected workspace
  (`workspace:<app_id>`), or the ONE bucket `unknown` for everything else;
- a reason is one of the edge's own error codes (a fixed set);
- the same log keeps, for doctor, the mapped fields a join could not write (`fields:<id>`, written by the
  worker when the join is applied): its reason is `<attribute>: <kind>` (the campaign's mapping, a few kinds),
  its samples name the person (masked) and the RF field, never the value;
- a scope holds one counter per reason and hour (expiring after REFUSALS_KEEP_DAYS), and at most
  SAMPLES samples per reason (the first of each hour overwrite the ring); many refusals of one reason
  are counted in one write (the worker counts a batch's fields not written so);
- `heard` is one item per scope and kind, overwritten (the runtime writes it at most once every
  HEARD_EVERY_SECONDS per container: a webhook costs no write beyond that, so the latest may be up to that
  much later than the one written). Only an accepted webhook writes it, so its scope is a campaign that has
  settings or a connected workspace: it never expires (a campaign quiet for months was heard, not never)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

UNKNOWN = "unknown"
SAMPLES = 5                       # samples kept per scope and reason (a ring)
REFUSALS_KEEP_DAYS = 7
HEARD_EVERY_SECONDS = 60          # the edge notes "heard a join / a notification" at most this often per container


def campaign_scope(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def workspace_scope(workspace: str) -> str:
    return f"workspace:{workspace}"


def fields_scope(campaign_id: str) -> str:
    """The campaign's mapped fields that joins applied without (values that could not be converted)."""
    return f"fields:{campaign_id}"


@dataclass(frozen=True)
class RefusalCount:
    """How many requests of one scope were refused for one reason in one hour."""

    reason: str
    count: int
    first_at: str
    last_at: str


@dataclass(frozen=True)
class RefusalSample:
    """One refused request, as much as the edge could read of it (never a secret, never the body). The
    person named by a body that did not authenticate (a wrong or no secret) is kept only as digests
    (EdgeLog.digest): `explain` and `forget` recognise the person they are asked about; it does not read back
    (the key, the table's name, is no secret: a guessed value can be tested against it).
    So is the contact (its id, its email) an Intercom notification names whose signature did not verify."""

    reason: str
    at: str
    message: str
    rf_user_id: Optional[str] = None
    email_hash: Optional[str] = None     # an older version's: the normalised email's bare sha256 (read, never written)
    email_masked: Optional[str] = None
    contact_id: Optional[str] = None
    campaign_id: Optional[str] = None    # the campaign the body named (kept in the unknown bucket too)
    rf_user_digest: Optional[str] = None  # an unauthenticated body's RF user id, digested
    email_digest: Optional[str] = None    # the email, digested (any sample's: `explain` and `forget` match it)
    contact_digest: Optional[str] = None  # an unauthenticated Intercom notification's contact id, digested


@dataclass(frozen=True)
class Refusals:
    counts: list[RefusalCount]
    samples: list[RefusalSample]


class EdgeLog(Protocol):
    def refused(self, scope: str, *samples: RefusalSample, count: Optional[int] = None) -> None:
        """Count `count` refusals of the samples' one reason (by default one per sample) in one write, and
        keep the samples while the ring of their reason is not yet full this hour (the first go first)."""
    def refusals(self, scope: str) -> Refusals:
        """What is kept for the scope (expired counters are left out), newest first."""
    def forget(self, scope: str, about: Callable[[RefusalSample], bool]) -> int:
        """Delete the scope's samples about a person (erasure; the counters hold nobody): how many."""
    def heard(self, scope: str, what: str) -> None:
        """Now is when the edge last accepted a `what` (join, notification) for the scope."""
    def last_heard(self, scope: str, what: str) -> Optional[str]: ...
    def digest(self, kind: str, value: str) -> str:
        """How the log names what it must not keep (people.digest, keyed with its table's name)."""
