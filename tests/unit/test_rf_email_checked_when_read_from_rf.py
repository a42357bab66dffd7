"""An RF email holding a character no address can (a NUL, a zero-width space, a space) is refused when the
webhook carries it (webhooks.RFEmail), so that nobody is keyed, masked and forgotten as another address.
A webhook naming only the id has the join read the person from Referral Factory: the same email must not
get through that way."""
from __future__ import annotations

from chalicelib.domain.link import LinkStatus, PersonRef
from tests.unit.scenario import run
from tests.unit.test_join_use_case import RF_USERS, join, world


def test_an_email_with_an_invisible_character_read_from_rf_is_not_joined_as_an_address():
    """`{"id": 7, "campaign_id": 42}` (the webhook names only the user): RF answers `ann\\u200b@example.com`.
    The same address in the webhook is a 400 naming U+200B; read from RF it created an Intercom contact of
    that address and pointed the link's email at it (`bridge forget ann@example.com` never finds them)."""
    work = world()
    work.apis.rf_.users["7"] = {**RF_USERS["7"], "email": "ann\u200b@example.com"}
    run(work, join({"id": "7", "campaign_id": "42"}))
    emails = [c.get("email") for c in work.apis.intercom_.contacts.values()]
    assert not any("\u200b" in (e or "") for e in emails), emails
    link = work.store.links.get(PersonRef("42", "7"))
    assert link is None or link.status is not LinkStatus.LINKED or "\u200b" not in (link.email or ""), link
