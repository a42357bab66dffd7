"""`bridge backfill CAMPAIGN`: apply the campaign's current settings to the people who joined before
they existed, or while webhooks were refused or lost. Reads the campaign's people from Referral
Factory page by page (through the shared rate limiter), compares them with the links the bridge
keeps (one batched read per page), and — with `apply` — queues a join for each person the bridge
has not applied, exactly as the webhook would: the same join pipeline, so the same settings,
duplicate handling, limits and history. Idempotent: an applied join is final, so a second run
finds nobody to send. A dry run (the default) only counts."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from ..domain import people as people_
from ..domain.link import LinkStatus, PersonRef
from ..domain.settings import SettingsError, parse_settings
from ..messages import JoinMessage
from ..ports import Store, WorkQueue
from ..webhooks import BodyError, rf_person

PER_PAGE = 250

# outcomes
LINKED = "already linked"
IGNORED = "already applied: nothing to do by the settings"
IN_PROGRESS = "being joined right now"
RETRY = "failed earlier: joined again"
MISSING = "not in the bridge: joined"
NOTHING = "nothing to do (the settings' action is nothing)"
UNREADABLE = "unreadable in Referral Factory"


class Backfilling(Protocol):
    @property
    def store(self) -> Store: ...
    @property
    def queue(self) -> WorkQueue: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    def rf(self) -> Any: ...                           # ports.apis.CampaignPeople


class BackfillError(Exception):
    """A clear refusal (the campaign has no settings, ...)."""


@dataclass
class Result:
    campaign_id: str
    applied: bool
    read: int = 0
    queued: int = 0
    outcomes: Counter = field(default_factory=Counter)

    def view(self) -> dict:
        dry = {RETRY: "failed earlier: would be joined again", MISSING: "not in the bridge: would be joined"}
        outcomes = {(k if self.applied else dry.get(k, k)): v for k, v in self.outcomes.most_common()}
        return {"campaign_id": self.campaign_id, "dry_run": not self.applied, "people_in_rf": self.read,
                "queued": self.queued, "outcomes": outcomes}


def backfill(rt: Backfilling, campaign_id: str, apply: bool = False,
             progress: Optional[Callable[[int, Optional[int], int], None]] = None) -> Result:
    """`progress(read, total, queued)` is called after each page."""
    stored = rt.store.settings.get(str(campaign_id))
    if stored is None:
        raise BackfillError(f"campaign {campaign_id} has no settings here: apply them first (`bridge settings apply`)")
    try:
        settings = parse_settings(stored.document)
    except SettingsError as exc:
        raise BackfillError(f"the stored settings of campaign {campaign_id} are invalid: {'; '.join(exc.problems)}")
    result = Result(str(campaign_id), apply)
    page = 1
    while True:
        users, more, total = rt.rf().users_page(result.campaign_id, page, PER_PAGE)
        links = rt.store.links.get_many(PersonRef(result.campaign_id, str(u.get("id"))) for u in users)
        to_send = []
        for user in users:
            outcome, message = _classify(user, links, settings, result.campaign_id, rt.clock())
            result.outcomes[outcome] += 1
            if message is not None:
                to_send.append(message.wire())
        result.read += len(users)
        if apply and to_send:
            rt.queue.send_many(to_send)
            result.queued += len(to_send)
        if progress:
            progress(result.read, total, result.queued if apply else sum(
                result.outcomes[o] for o in (MISSING, RETRY)))
        if not more or not users:
            return result
        page += 1


def _classify(user: dict, links: dict, settings: Any, campaign_id: str, now: float) -> tuple[str, Optional[JoinMessage]]:
    try:
        person = rf_person({**user, "campaign_id": campaign_id})
    except BodyError:
        return UNREADABLE, None
    link = links.get(PersonRef(campaign_id, person.id))
    if link is not None and link.status is LinkStatus.LINKED:
        return LINKED, None
    if link is not None and link.status is LinkStatus.IGNORED:
        return IGNORED, None
    if link is not None and link.status is LinkStatus.IN_PROGRESS:
        return IN_PROGRESS, None
    kind = people_.normalise(user).get("type")
    if kind in ("lead", "referrer") and settings.people(kind == "lead").action == "nothing":
        return NOTHING, None
    message = JoinMessage(campaign_id=campaign_id, rf_user_id=person.id, person=person, received_at=now)
    return (RETRY if link is not None else MISSING), message
