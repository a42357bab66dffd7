"""Intercom and Referral Factory, as the services see them (adapters/intercom.py and
adapters/referral_factory.py over HTTP; tests/fakes.py in memory). Both raise errors.Transient
(retry later) and errors.Permanent (dead-letter with the reason) besides what is named here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Protocol, Sequence


class Conflict(Exception):
    """POST /contacts answered 409: a contact with these details already exists (`archived`: Intercom's
    "archived contact" variant — that contact is archived, and Intercom shows it nowhere until unarchived)."""

    def __init__(self, contact_id: Optional[str], message: str, archived: bool = False):
        super().__init__(message)
        self.contact_id, self.archived = contact_id, archived


class Merged(Exception):
    """GET answered 410 contact_merged: the contact now lives at `canonical_id`."""

    def __init__(self, canonical_id: Optional[str]):
        super().__init__(f"contact merged into {canonical_id}")
        self.canonical_id = canonical_id


class NotFound(Exception):
    """GET answered 404: the contact no longer exists."""


@dataclass(frozen=True)
class PeoplePage:
    """One page of RF's list of people (`GET /users`), as ReferralFactoryPort.users_page reads it."""
    people: list[dict]              # the campaign's people on it: those whose own campaign_id is the campaign's
    next: Optional[str]             # RF's link to the next page (`links.next`), as RF gave it; None: the last page
    total: Optional[int] = None     # how many RF says its list holds (`meta.total`), of every campaign if it lists them
    listed: int = 0                 # how many RF listed on the page, whatever their campaign


class Refused(Exception):
    """RF refused a request with a 4xx (a 422's validation errors by field in `fields`)."""

    def __init__(self, status: int, message: str, fields: Optional[dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields or {}


class IntercomPort(Protocol):
    def ahead(self, calls: int) -> None:
        """The shared budget's slots for the next `calls` calls taken now, in one write, before the caller starts
        other writes that would hold its first call back (none taken: the calls wait for them as ever)."""
    def search_by_email(self, email: str) -> list[dict]: ...
    def search(self, emails: Sequence[str] = (), markers: Sequence[str] = ()) -> list[dict]:
        """Every contact with one of these emails or our marker set to one of these values, in as
        few searches as the API allows (`IN`, 15 values a filter, 15 filters a group)."""
    def search_contacts(self, query: dict, starting_after: Optional[str] = None,
                        per_page: int = 150) -> tuple[list[dict], Optional[str]]:
        """One page of a contact search (`query`: Intercom's search query object), and the cursor of
        the next page (None: the last page). Contacts come oldest first (by `created_at`), an order that
        updates cannot change: a contact written while a walk pages on is neither read twice nor missed."""
    def search_page(self, query: dict, starting_after: Optional[str] = None,
                    per_page: int = 150) -> tuple[list[dict], Optional[str], Optional[int]]:
        """As search_contacts, with the search's total count (None: not given)."""
    def create_contact(self, body: dict) -> dict: ...            # raises Conflict on 409
    def update_contact(self, contact_id: str, body: dict) -> dict: ...
    def get_contact(self, contact_id: str) -> dict: ...           # raises Merged, NotFound
    def merge_contacts(self, lead_id: str, into_id: str) -> dict:
        """Merge a lead into a user; the user as it is afterwards."""
    def data_attributes(self) -> dict[str, dict]: ...
    def create_data_attribute(self, name: str, data_type: str, description: str) -> dict: ...
    def tag_contacts(self, contact_ids: Sequence[str], tag_name: str) -> None:
        """Tag every contact with the tag of this name (created when missing), in one call per 50. Raises
        NotFound when one of a call's contacts is gone (merged, deleted, archived): none of them is tagged."""
    def segments(self) -> list[dict]:
        """Every segment of the workspace (however many: pages followed)."""


class ReferralFactoryPort(Protocol):
    def get_user(self, user_id: str) -> dict: ...
    def get_campaign(self, campaign_id: str) -> dict: ...
    def qualify(self, user_id: str) -> dict: ...
    def create_user(self, body: dict) -> dict:
        """`POST /users`; raises Refused on a 4xx (e.g. 422: the email is taken, the user limit)."""
    def users_page(self, campaign_id: str, after: Optional[str] = None, per_page: int = 250) -> PeoplePage:
        """The first page of the campaign's people, or (`after`) the page RF's link from the one before names.
        Only the campaign's people, by their own campaign_id: RF may list every campaign's."""


class IntercomAccount(Protocol):
    """What `doctor` asks of a workspace's token (adapters/intercom.py)."""

    def me(self) -> dict: ...                                      # GET /me: app.id_code is the workspace
    def search_by_email(self, email: str) -> list[dict]: ...
    def data_attributes(self) -> dict[str, dict]: ...


class CampaignPeople(Protocol):
    """What `doctor` and `backfill` ask of Referral Factory (adapters/referral_factory.py)."""

    def get_campaign(self, campaign_id: str) -> dict: ...
    def users_page(self, campaign_id: str, after: Optional[str] = None,
                   per_page: int = 250) -> PeoplePage: ...                    # as ReferralFactoryPort's
    def get_user(self, user_id: str) -> dict: ...     # (backfill: a refused lead RF no longer lists; 404: deleted)


class Apis(Protocol):
    """The clients of one container, by workspace, with what is worth caching between invocations."""

    def intercom(self, workspace: str) -> IntercomPort: ...
    def rf(self) -> ReferralFactoryPort: ...
    def attributes(self, workspace: str, naming: Iterable[str] = ()) -> dict[str, dict]:
        """Intercom's data attributes (kept a while), read again when they do not name a custom attribute in
        `naming` (a rule's or a mapping's: maybe created since) and are not fresh (runtime.UNLISTED_RECHECK)."""
    def attributes_again(self, workspace: str, since: float) -> dict[str, dict]:
        """Intercom's data attributes for a write it refused: read again (one call, kept for the other
        containers), unless the list held was read at `since` or later (reading again would say the same)."""
    def ensure_attribute(self, workspace: str, name: str, description: str) -> None:
        """The text attribute custom_attributes.<name> exists in the workspace (created if not)."""
    def campaign_name(self, campaign_id: str) -> Optional[str]: ...
    def answered(self, vendor: str, where: Optional[str]) -> Optional[float]:
        """When this container last got an answer from `vendor` (errors.WorkError.outage's name) at its API base
        `where` (the failure's: one Intercom region's outage is not another's) that was not an outage's (any but a
        5xx; None: none since it started, or `where` not known)."""


class IntercomAuth(Protocol):
    """Intercom's answers about tokens (adapters/intercom.py: IntercomAuthClient). Errors are
    errors.Permanent (a refused code or token, with Intercom's message) or errors.Transient: errors.NoAnswer
    when none came in time, errors.Deferred (its `retry_after`: when to try again) for a 429 longer to wait than
    the call may. `within`: the seconds the call may take in all (one try; with none left it is
    not sent); None: the client's own timeout (and, for `whoami`, retries)."""

    def exchange(self, code: str, client_id: str, client_secret: str, within: Optional[float] = None) -> str:
        """POST /auth/eagle/token: the access token for an OAuth code (sent once: a code is single-use)."""
    def whoami(self, token: str, api_base: Optional[str] = None, within: Optional[float] = None) -> dict:
        """GET /me with this token (on `api_base`, else the configured base): the admin and its app."""


class ReferralFactoryAuth(Protocol):
    """Referral Factory asked with a token not yet stored (adapters/referral_factory.py:
    ReferralFactoryClient). Errors are errors.Permanent (a refused token) or errors.WorkError: errors.Deferred for
    a 429 longer to wait than the call may."""

    def check_token(self) -> None:
        """GET /campaigns (its first page): Permanent when RF refuses the token."""
