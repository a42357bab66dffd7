"""A campaign's people in Referral Factory, page by page (`backfill`, contact sync, `doctor`)."""
from __future__ import annotations

from typing import Iterator, Optional

from ..errors import Permanent
from ..ports.apis import CampaignPeople, PeoplePage

PER_PAGE = 250                     # RF's largest page


def campaign_refused(rf: CampaignPeople, campaign_id: str) -> Optional[str]:
    """After RF's `User not found`: does RF know `campaign_id` with the current RF token (GET /campaigns/{id})?
    None: it shows it (the user was deleted there); else RF's refusal (a token of another account, RF says so of
    every user). RF not answering (a Transient, its budget) is raised: each caller says what that means for it
    (the qualifier: not known; a sync page: retried)."""
    try:
        rf.get_campaign(campaign_id)
    except Permanent as exc:
        return exc.reason
    return None


def pages(rf: CampaignPeople, campaign_id: str) -> Iterator[PeoplePage]:
    """The first page, then each page RF's `links.next` names, as RF gave it (a page number or a cursor:
    the bridge never makes one up), until a page names none or lists nobody. A link RF gave before is
    not followed again: the walk fails, saying so, rather than read the same pages until time runs out."""
    after: Optional[str] = None
    seen: set[str] = set()
    while True:
        page = rf.users_page(campaign_id, after, PER_PAGE)
        yield page
        if page.next is None or not page.listed:
            return
        if page.next in seen:
            raise Permanent(f"Referral Factory's list of people links back to a page it gave before ({page.next}): "
                            "not read again")
        seen.add(page.next)
        after = page.next
