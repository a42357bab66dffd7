"""The HTTP clients against the simulators over real HTTP, when an answer is lost after the vendor
applied the request. A request that may not be sent twice (RF's qualification: a reward; Intercom's
create) is never re-sent by the client: it raises Uncertain, and the caller looks before it sends
again. What surely was not applied (a 429, no connection) is still retried, and so is anything that
may be sent twice."""
from __future__ import annotations

import socket

import pytest

from chalicelib.adapters.intercom import IntercomClient
from chalicelib.adapters.referral_factory import ReferralFactoryClient
from chalicelib.errors import Transient, Uncertain


@pytest.fixture
def lead(rf):
    referrer = rf.add_user(42, "rita@example.com", "Rita")
    return rf.add_user(42, "lee@example.com", "Lee", referrer_id=referrer["id"])


def rf_client(rf, clock, timeout=5.0):
    return ReferralFactoryClient(rf.base_url, "rf-token", timeout=timeout, clock=clock, sleeper=clock.sleep)


def puts(rf) -> list[int]:
    return [c["status"] for c in rf.qualification_calls]


@pytest.mark.parametrize("how", ["drop", "500"])
def test_a_lost_qualification_answer_is_uncertain_and_the_put_is_sent_once(rf, clock, lead, how):
    rf.lose_answer_next("PUT", "^/users/qualification$", how)
    with pytest.raises(Uncertain, match="it is not sent again without looking first"):
        rf_client(rf, clock).qualify(str(lead["id"]))
    assert puts(rf) == [200] and rf.qualified[lead["id"]]          # applied, once
    assert rf.get_user(lead["id"])["qualified_at"]                  # what the caller reads before re-sending


def test_four_lost_answers_in_a_row_are_four_uncertain_calls_of_one_put_each(rf, clock, lead):
    rf.lose_answer_next("PUT", "^/users/qualification$", "drop", times=4)
    client = rf_client(rf, clock)
    for attempt in range(1, 5):
        with pytest.raises(Uncertain):
            client.qualify(str(lead["id"]))
        assert len(puts(rf)) == attempt                             # the client never re-sent on its own
    assert len(rf.qualification_events) == 1                        # one state change at RF


def test_an_answer_that_comes_after_the_timeout_is_uncertain(rf, clock, lead):
    rf.lose_answer_next("PUT", "^/users/qualification$", "stall", seconds=0.5)
    with pytest.raises(Uncertain, match="ReadTimeout"):
        rf_client(rf, clock, timeout=0.1).qualify(str(lead["id"]))
    assert puts(rf) == [200]


def test_a_429_proves_the_put_was_not_applied_so_it_is_retried(rf, clock, lead):
    rf.fail_next("PUT", "^/users/qualification$", 429, headers={"Retry-After": "2"})
    rf_client(rf, clock).qualify(str(lead["id"]))
    assert puts(rf) == [429, 200] and len(rf.qualification_events) == 1
    assert clock.slept == [2.0]                                     # RF's Retry-After, waited


def test_a_5xx_to_the_put_is_uncertain_even_if_it_was_not_applied(rf, clock, lead):
    rf.fail_next("PUT", "^/users/qualification$", 503)
    with pytest.raises(Uncertain, match="Referral Factory answered 503"):
        rf_client(rf, clock).qualify(str(lead["id"]))
    assert puts(rf) == [503] and rf.qualified == {}


def test_what_may_be_sent_twice_is_retried_after_a_lost_answer(rf, clock, lead):
    rf.lose_answer_next("GET", f"^/users/{lead['id']}$", "drop")
    assert rf_client(rf, clock).get_user(str(lead["id"]))["email"] == "lee@example.com"
    assert rf.count("GET", f"/users/{lead['id']}") == 2


def test_no_connection_at_all_is_a_plain_retry_not_uncertain(clock):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                                  # nothing listens there
    client = ReferralFactoryClient(f"http://127.0.0.1:{port}/api/v2", "t", timeout=1, clock=clock, sleeper=clock.sleep)
    with pytest.raises(Transient) as exc:
        client.qualify("7")
    assert not isinstance(exc.value, Uncertain) and "unreachable" in exc.value.reason


def test_intercoms_create_is_sent_once_and_its_search_is_retried(intercom, clock):
    client = IntercomClient(intercom.base_url, "sim-token", clock=clock, sleeper=clock.sleep)
    intercom.lose_answer_next("POST", "^/contacts$", "drop")
    with pytest.raises(Uncertain):
        client.create_contact({"role": "lead", "email": "lee@example.com"})
    assert len(intercom.contacts_by_email("lee@example.com")) == 1 and intercom.count("POST", "/contacts") == 1
    intercom.make_searchable()
    intercom.lose_answer_next("POST", "^/contacts/search$", "500")
    assert [c["email"] for c in client.search_by_email("lee@example.com")] == ["lee@example.com"]
    assert intercom.count("POST", "/contacts/search") == 2
