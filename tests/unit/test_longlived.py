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


def test_doctor_counts_a_years_old_pending_leads_up_to_a_bound(monkeypatch):
    """The pending index keeps every lead that never converted, for good: doctor counted all those past the one-by-one
    sweep at each run, reading a year of them (tens of thousands of index entries) to say one number. It counts up
    to PENDING_SCAN, as it reads the index for the campaign's own leads, and says `N or more`."""
    from chalicelib.services import doctor
    monkeypatch.setattr(doctor, "PENDING_SCAN", 2)
    rt = healthy()
    for n in range(3):
        scenario.joined(rt.work, str(100 + n), f"old{n}@example.com")
    rt.work.clock.now += 30 * 86400
    [old] = checks(look(rt)[0], "reconciliation.sweep")
    assert old["what"].startswith("2 or more pending lead(s) (all campaigns) joined over 7 days ago"), old["what"]


def test_a_join_dead_lettered_longer_ago_than_sqs_keeps_a_letter_is_advised_a_backfill_not_a_replay():
    """SQS keeps a dead letter 14 days, then deletes it without a word. Months on, `explain` still advised
    `bridge dlq replay --campaign 42` for the failed join: the replay finds nothing to send back. Past the 14 days
    it advises the backfill that sends the join again."""
    from chalicelib.errors import Permanent
    from chalicelib.services.explain import as_text, explain
    from tests.unit.test_explain_trail import AMY, REFUSED
    from tests.unit.test_join_use_case import join, world
    work = world()
    work.apis.intercom_.fail["create"] = Permanent(REFUSED)
    assert scenario.run(work, join(AMY))["dead"] == 1

    def fixes() -> set[str]:
        return {line.strip() for line in as_text(explain(work, "ann@example.com")).splitlines() if "fix:" in line}
    work.clock.now += 13 * 86400
    assert fixes() == {"fix: fix the cause named here, then `bridge dlq replay --campaign 42`"}
    work.clock.now += 2 * 86400
    assert fixes() == {"fix: fix the cause named here, then `bridge backfill 42 --apply` sends the join again (its dead "
                       "letter is gone: SQS keeps one 14 days)"}


def test_the_days_explain_counts_a_dead_letter_kept_are_the_dead_letter_queues_own():
    import re
    from pathlib import Path
    from chalicelib.domain.judge import DEAD_LETTER_DAYS
    template = (Path(__file__).resolve().parents[2] / "infra" / "template.yaml").read_text()
    [kept] = re.findall(r"\n  DeadLetterQueue:\n(?:    .*\n)*?      MessageRetentionPeriod: (\d+)", template)
    assert int(kept) == DEAD_LETTER_DAYS * 86400
