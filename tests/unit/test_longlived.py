"""A deployment a year old: what the bridge keeps and reads once a big campaign has run for months."""
from __future__ import annotations

from tests.unit import scenario
from tests.unit.doctoring import checks, healthy, look


def test_a_new_campaigns_pending_leads_are_seen_behind_a_years_backlog_of_another(monkeypatch):
    """The pending index is shared by every campaign, oldest first. Campaign 41 has left a year's leads pending (most
    referrals never convert); campaign 42 is new, and Intercom's webhooks were never subscribed for it. Doctor 42
    read only 41's oldest leads, found none of 42's, and so never said the setup's problem: no notification while
    its leads wait."""
    from chalicelib.services import doctor
    monkeypatch.setattr(doctor, "PENDING_SCAN", 3)
    rt = healthy()
    for n in range(3):                          # a year's backlog of another campaign, older than 42's
        scenario.joined(rt.work, str(100 + n), f"old{n}@example.com", campaign="41")
    scenario.joined(rt.work, "7", "ann@example.com")
    view, text = look(rt)
    [silent] = checks(view, "webhooks.intercom")
    assert not silent["ok"] and "while 1 lead(s) are pending" in silent["what"], text
