"""Walking the vendors' lists page by page, whichever way they page. Referral Factory documents only
`GET /users?per_page=250` with the next page in `links.next`: it may ignore `campaign_id` (listing every
campaign's people) and page by a cursor rather than `?page=`. Intercom's search cursor is stateless, and
a search without `sort` comes in an order a write can change."""
from __future__ import annotations

import json
import math

import pytest

from chalicelib.domain.link import PersonRef
from tests.integration.conftest import lead_settings, new_lead
from tests.integration.test_sync import cli, segment, sync_settings
from tests.integration.test_troubleshooting import bad, doctor

RF_WAYS = {"as documented by the simulator": {},
           "every campaign's people, paged by cursor": {"campaign_filter": False, "cursor_links": True}}
LISTINGS = 30              # GET /users calls RF answers in a test: a walk that never ends fails, not hangs


def listings(rf) -> int:
    return sum(r["method"] == "GET" and r["path"] == "/users" for r in rf.requests)


@pytest.fixture(params=list(RF_WAYS))
def rf_way(request, rf, monkeypatch):
    """RF as the simulator pages by default, or the other way; 2 people a page, and a bound on the calls."""
    from chalicelib.services import rf_people
    for switch, value in RF_WAYS[request.param].items():
        setattr(rf, switch, value)
    monkeypatch.setattr(rf_people, "PER_PAGE", 2)
    gate = rf.gate
    rf.gate = lambda rec: (400, rf.error_body(400, "the test's bound on listings")) \
        if rec["path"] == "/users" and rec["method"] == "GET" and listings(rf) > LISTINGS else gate(rec)
    rf.add_campaign(43, "Another campaign")
    return request.param


def test_backfill_applies_the_campaign_s_own_people_only_reading_each_page_once(bridge, intercom, rf, rf_way, capsys):
    rita = rf.add_user(42, "rita@example.com", "Rita")
    olga = rf.add_user(43, "olga@example.com", "Olga")
    mine = [rita] + [rf.add_user(42 + i % 2, f"lead{i}@example.com", f"L{i}", referrer_id=(rita, olga)[i % 2]["id"])
                     for i in range(4)]
    others = [olga] + [p for p in mine if p["campaign_id"] == 43]
    mine = [p for p in mine if p["campaign_id"] == 42]
    bridge.apply(lead_settings())
    listed = len(rf.users) if RF_WAYS[rf_way] else len(mine)

    for argv in (("backfill", "42", "--json"), ("backfill", "42", "--apply", "--json")):
        before = listings(rf)
        code, out, _ = cli(bridge, *argv, capsys=capsys)
        report = json.loads(out)
        assert code == 0 and report["people_in_rf"] == len(mine) == 3
        assert report["other_campaigns_ignored"] == listed - len(mine)
        assert list(report["outcomes"].values()) == [3]                     # each of the campaign's: to be joined
        assert listings(rf) - before == math.ceil(listed / 2)              # each page once
    bridge.drain()
    assert all(len(intercom.contacts_by_email(p["email"])) == 1 for p in mine)
    assert all(intercom.contacts_by_email(p["email"]) == [] for p in others)
    assert all(bridge.rt.store.links.get(PersonRef("42", str(p["id"]))) is None for p in others)


def test_sync_tells_and_finds_the_campaign_s_own_people_by_their_campaign(bridge, intercom, rf, rf_way, clock,
                                                                          capsys):
    """Olga is in another campaign only: the dry run would enrol her, and when RF's answer to her create was lost,
    the retry finds the user that create made in this campaign — not her other campaign's, listed first."""
    rita = rf.add_user(42, "rita@example.com", "Rita")
    olga = rf.add_user(43, "olga@example.com", "Olga")
    for i in range(3):
        rf.add_user(42 + i % 2, f"filler{i}@example.com", f"F{i}")
    seg, _ = segment(intercom, 0)
    contacts = [intercom.add_contact(p["email"], role="user", name=p["first_name"]) for p in (rita, olga)]
    intercom.segment_members[seg].update(c["id"] for c in contacts)
    bridge.apply(sync_settings(seg))
    listed = len(rf.users) if RF_WAYS[rf_way] else 3

    code, out, _ = cli(bridge, "sync", "start", "42", "--dry-run", capsys=capsys)
    dry = json.loads(out)
    assert code == 0 and dry["would_enrol"] == 1 and dry["skipped"]["already_in_campaign"]["count"] == 1
    assert listings(rf) == math.ceil(listed / 2)

    rf.lose_answer_next("POST", r"^/users$", "500")      # Olga's create (Rita's is refused: already in 42)
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    clock.now += 120
    bridge.poller.release_delayed()
    bridge.drain()
    [mine] = rf.users_by_email("olga@example.com", 42)
    assert intercom.get(contacts[1]["id"])["custom_attributes"]["referral_link"] == mine["url"] != olga["url"]
    [note] = bridge.history(42, mine["id"])["history"]
    assert note["reason"].endswith("(found in Referral Factory: an earlier, interrupted try created them)")
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["status"], status["enrolled"], status["skipped"]) == ("done", 1, 1)
    assert listings(rf) <= 2 * math.ceil((listed + 1) / 2)             # the dry run's walk, and the retry's


def test_doctor_finds_the_campaign_s_newest_person_whichever_way_rf_lists_people(bridge, rf, rf_way, clock, capsys):
    bridge.apply(lead_settings())
    lead = new_lead(rf, email="quiet@example.com")              # (after Rita, the referrer)
    clock.sleep(600)
    rf.add_user(43, "olga@example.com", "Olga")                 # newer, of another campaign
    [missing] = bad(doctor(bridge, capsys)[1], "webhooks.rf_missing")
    assert missing["what"] == (f"the newest person in RF's campaign 42 (RF user {lead['id']}, joined "
                               f"{lead['signed_up_at']}) never reached the bridge (2 people in RF)")


def test_a_contact_written_while_a_sync_run_pages_on_is_still_enrolled(bridge, intercom, rf, clock, monkeypatch,
                                                                       capsys):
    """Intercom may order a search without `sort` by what writes change (here updated_at, descending): a contact
    of a later page written meanwhile would move to the first, and the run would never read it."""
    from chalicelib.services import sync
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    intercom.unsorted_by = "updated_at"
    seg, contacts = segment(intercom, 6)
    bridge.apply(sync_settings(seg))
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    clock.now += 60
    bridge.poller.poll_once()                                # the first page
    clock.now += 60
    intercom.update_contact(contacts[0]["id"], name="Ann")   # someone edits a contact the run has not read yet
    bridge.drain()
    for c in contacts:
        [user] = rf.users_by_email(c["email"], 42)
        assert intercom.get(c["id"])["custom_attributes"]["referral_link"] == user["url"]
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["status"], status["enrolled"]) == ("done", 6)


def test_sync_enrols_each_contact_whose_look_up_in_rf_failed_on_the_page_s_next_try(bridge, intercom, rf, clock,
                                                                                     capsys):
    """Both creates were applied, their answers lost; on the page's retry RF's list of people answers 503 past the
    retries. The contact looked up after the first was skipped as already in the campaign for good: her RF user
    never linked back. Both are enrolled, with their links, once RF's list answers again."""
    seg, contacts = segment(intercom, 2)
    bridge.apply(sync_settings(seg))
    rf.lose_answer_next("POST", r"^/users$", "500", times=2)
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    rf.fail_next("GET", r"^/users$", 503, times=4)              # one look-up's tries (the first and 3 retries)
    for _ in range(2):                                          # the retry the list fails, then the next
        clock.now += 120
        bridge.poller.release_delayed()
        bridge.drain()
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["status"], status["enrolled"], status["skipped"]) == ("done", 2, 0)
    assert [intercom.get(c["id"])["custom_attributes"]["referral_link"] for c in contacts] == [
        rf.users_by_email(c["email"], 42)[0]["url"] for c in contacts]
    assert listings(rf) == 4 + 1                                # the failed look-up's tries, then one walk
