"""The chaos run's referral count checks (harness._referral_counts) judge the simulators' state and the
raw table: a count over, under or missing is reported; a right one, or none for a referrer without
leads, is not. No stack is started."""
from __future__ import annotations

from infra.local.chaos.harness import CAMPAIGN, COUNT_ATTRIBUTE, Person, _referral_counts
from infra.local.sims.intercom import IntercomSim


def lead(i: int, referrer: int) -> Person:
    return Person(i, "new", f"lead{i}@example.com", f"Lead{i}", ["Yes"], [0.0],
                  rf={"id": 1000 + i, "referrer_id": referrer})


def referrer(rf_id: int) -> dict:
    return {"id": rf_id, "email": f"ref{rf_id}@example.com"}


def stored(rf_id: int, n: int) -> dict:
    return {"pk": f"CAMPAIGN#{CAMPAIGN}", "sk": f"REFERRALS#{rf_id}", "n": n, "written": n}


def test_each_referrers_contact_and_stored_count_are_judged_against_the_leads_that_joined_with_them():
    intercom = IntercomSim()
    contact = {rid: intercom.add_contact(f"ref{rid}@example.com", role="user",
                                         custom_attributes={COUNT_ATTRIBUTE: held})["id"]
               for rid, held in ((1, 2), (2, 2), (5, 1), (6, 1))}
    merged = intercom.add_contact("ref5@example.com", role="user", custom_attributes={COUNT_ATTRIBUTE: 2})
    intercom.merged_into[contact[5]] = merged["id"]          # the count followed the merge
    people = [lead(0, 1), lead(1, 1), lead(2, 2), lead(3, 3), lead(4, 5), lead(5, 5), lead(6, 6), lead(7, 6)]
    referrers = [referrer(r) for r in (1, 2, 3, 4, 5, 6)]       # 4 has no leads, and no contact
    links = {str(r): {"contact_id": contact[r]} for r in (1, 2, 5, 6)}
    table = [stored(1, 2), stored(2, 2), stored(3, 1), stored(5, 2), stored(6, 1)]
    exact, stored_problems = _referral_counts(people, referrers, intercom, links, {}, table, {})
    assert [d.split(" (stored")[0] for d in exact] == [
        f"over: referrer #1 (rf 2): Intercom holds 2 on {contact[2]}, 1 leads joined",
        "no contact: referrer #2 (rf 3): Intercom holds None on None, 1 leads joined",
        f"under: referrer #5 (rf 6): Intercom holds 1 on {contact[6]}, 2 leads joined"]
    assert stored_problems == ["over: referrer #1 (rf 2): stored n 2, written 2, contact None, 1 leads joined",
                               "under: referrer #5 (rf 6): stored n 1, written 1, contact None, 2 leads joined"]
