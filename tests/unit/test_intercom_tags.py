"""`POST /tags` with a list of contacts tags all of them, or none (404) when one is gone: Intercom's client against the
simulator, and the twin the services are tested with, say so alike (IntercomPort.tag_contacts raises NotFound)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest

from chalicelib.ports import NotFound
from tests.fakes import FakeIntercom


@contextmanager
def simulated() -> Iterator[tuple]:
    from chalicelib.adapters.intercom import IntercomClient
    from infra.local.sims.intercom import IntercomSim

    with IntercomSim() as sim:
        client = IntercomClient(sim.base_url, "sim-token", max_wait=0)
        yield (client, lambda email, role: sim.add_contact(email, role=role)["id"], sim.merge,
               lambda cid: [t["name"] for t in sim.get(cid)["tags"]["data"]])


@contextmanager
def twin() -> Iterator[tuple]:
    fake = FakeIntercom()
    yield (fake, lambda email, role: fake.add(email, role)["id"], fake.merge_contacts,
           lambda cid: [name for c, name in fake.tags if c == cid])


@pytest.mark.parametrize("intercom", [simulated, twin])
def test_a_tag_call_naming_a_lead_merged_since_tags_none_and_says_not_found(intercom):
    with intercom() as (port, add, merge, tags_of):
        bob, lead, user = add("bob@example.com", "lead"), add("ann@example.com", "lead"), add("ann@example.com", "user")
        merge(lead, user)
        with pytest.raises(NotFound):
            port.tag_contacts([bob, lead], "Referred")
        assert tags_of(bob) == [] and tags_of(user) == []
        port.tag_contacts([bob, user], "Referred")
        assert tags_of(bob) == tags_of(user) == ["Referred"]


def test_a_tag_call_answered_410_for_a_merged_contact_says_not_found_as_for_404():
    """Intercom documents no answer of `POST /tags` for a contact merged away; its GET answers 410 `contact_merged`
    for one. Answered so, the batch's tag call is one the join tags contact by contact (not every join failed)."""
    from chalicelib.adapters.intercom import IntercomClient
    from infra.local.sims.intercom import IntercomSim

    with IntercomSim() as sim:
        sim.fail_next("POST", r"/tags", 410, {"type": "error.list", "errors": [
            {"code": "contact_merged", "message": "Contact was merged"}]})
        with pytest.raises(NotFound):
            IntercomClient(sim.base_url, "sim-token", max_wait=0).tag_contacts(
                [sim.add_contact("ann@example.com", role="lead")["id"]], "Referred")
