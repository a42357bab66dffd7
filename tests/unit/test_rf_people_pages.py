"""RF's list of people (`GET /users`, the next page in `links.next`): the link followed as RF gives it, on
RF's API base only, and only the campaign's own people kept."""
from __future__ import annotations

from typing import Optional

import pytest

from chalicelib.adapters.referral_factory import ReferralFactoryClient
from chalicelib.errors import Permanent
from chalicelib.ports import PeoplePage
from chalicelib.services import rf_people
from tests.support.answering_server import answering

LISTED = [{"id": 1, "campaign_id": 42, "email": "a@x.co"}, {"id": 2, "campaign_id": 43, "email": "b@x.co"},
          {"id": 3, "email": "c@x.co"}, {"id": 4, "campaign_id": "42", "email": "d@x.co"}]


def listing(next_link: Optional[str]) -> dict:
    return {"data": LISTED, "links": {"next": next_link}}


def test_a_page_keeps_the_campaign_s_own_people_and_its_link_is_followed_with_what_it_leaves_out():
    with answering(200, listing("/api/v2/users?cursor=eyJhIjoxfQ%3D%3D")) as (url, seen):
        rf = ReferralFactoryClient(url + "/api/v2", "t")
        first = rf.users_page("42")
        assert [p["id"] for p in first.people] == [1, 4] and first.listed == 4      # another's, and no campaign
        assert first.next == "/api/v2/users?cursor=eyJhIjoxfQ%3D%3D"
        rf.users_page("42", first.next)
    assert seen == ["/api/v2/users?campaign_id=42&per_page=250",
                    "/api/v2/users?cursor=eyJhIjoxfQ%3D%3D&campaign_id=42&per_page=250"]


@pytest.mark.parametrize("link", ["http://elsewhere.example/api/v2/users?page=2", "{url}/api/v3/users?page=2",
                                  "{url}/api/v2/../../admin?page=2", "https://{host}/api/v2/users?page=2"])
def test_a_link_off_rfs_api_base_is_not_followed(link):
    with answering(200, listing(None)) as (url, seen):
        rf = ReferralFactoryClient(url + "/api/v2", "t")
        with pytest.raises(Permanent, match="not on its API base .*set RF_BASE_URL"):
            rf.users_page("42", link.format(url=url, host=url.split("//")[1]))
    assert seen == []                                                  # the token went nowhere


class Looping:
    """RF whose every page links to the same next page."""

    def __init__(self) -> None:
        self.calls = 0

    def users_page(self, campaign_id: str, after: Optional[str] = None, per_page: int = 250) -> PeoplePage:
        self.calls += 1
        return PeoplePage([{"id": self.calls}], "/users?page=2", None, 1)

    def get_campaign(self, campaign_id: str) -> dict:
        return {}


def test_a_list_linking_back_to_a_page_it_gave_ends_the_walk_with_why():
    rf = Looping()
    with pytest.raises(Permanent, match="links back to a page it gave before"):
        list(rf_people.pages(rf, "42"))
    assert rf.calls == 2
