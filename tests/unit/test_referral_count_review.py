"""Review: a referrer contact sync enrolled whose link Intercom refused still gets her referral count
(services/sync.py `_write_back`)."""
from __future__ import annotations

from chalicelib.errors import Permanent
from chalicelib.services import sync
from tests.unit.test_referral_count import lead_join, sent, world
from tests.unit.scenario import run


def test_a_referrer_whose_link_write_intercom_refused_still_gets_the_count_of_her_leads():
    """Her leads joined before sync enrolled her (their count kept, nobody to write it to). Sync enrols her; Intercom
    refuses the write of her link (another attribute than the count's). She counts as enrolled, yet the count
    never learns her contact: no count is written, this run or any later one while the link write keeps failing."""
    work = world()
    run(work, lead_join("1"), lead_join("2"))
    run(work, *sent(work))
    rita = work.apis.intercom_.add("rita@example.com", role="user")
    rita["name"] = "Rita"
    work.apis.rf_.create_user = lambda body: {**body, "id": 100, "url": "https://rf.example/r/rita"}  # type: ignore
    work.apis.intercom_.fail["update"] = Permanent("Intercom answered 400: referral_link is read-only", status=400)
    sync.start(work.deps, "42")
    run(work, *sent(work, "sync.page"))
    assert work.store.sync.run("42").counts == {"enrolled_writeback_failed": 1}
    run(work, *sent(work))
    assert rita["custom_attributes"].get("referral_count") == 2
