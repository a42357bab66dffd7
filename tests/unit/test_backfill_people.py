"""`bridge backfill`'s dry run names whom it would act on, so that they can be reviewed before `--apply`:
each outcome that sends a join or counts a lead lists its people (RF user id, email masked as everywhere
else in the CLI) — the first 20 in the text, then "… and N more"; every one of them with `--json`."""
from __future__ import annotations

import json

from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from chalicelib.services.backfill import backfill
from tests.support.cli import run_cli
from tests.support.meanwhile import before
from tests.unit.test_answers import COUNTING, SETTINGS, WS, Backfilling, _lead

MISSING = "not in the bridge: would be joined"
RETRY = "failed earlier: would be joined again"


def lead(n: int, referrer: int = 1) -> dict:
    return {"id": n, "email": f"lead{n}@x.co", "type": "person_invited", "referrer_id": referrer}


def test_the_dry_run_names_the_people_it_would_join_first_20_in_text_and_all_in_json(capsys):
    """Scenario: 23 leads RF lists that the bridge never applied, and one whose join failed. Expected: each
    outcome's people under its count (RF id, masked email), 20 of them then "… and 3 more"; --json has all."""
    rt = Backfilling([lead(n) for n in range(1, 25)])
    rt.store.settings.put("42", SETTINGS, WS)
    failed = rt.store.links.claim(PersonRef("42", "24"), WS)
    rt.store.links.finish(failed, JoinResult(LinkStatus.FAILED, reason="boom"), [])
    code, out, _ = run_cli(rt, capsys, "backfill", "42")
    lines = out.splitlines()
    assert code == 0 and lines[1] == f"      23  {MISSING}", out
    assert lines[2:22] == [f"          - RF user {n} (l***@x.co)" for n in range(1, 21)], out
    assert lines[22:] == ["          … and 3 more", f"       1  {RETRY}", "          - RF user 24 (l***@x.co)"], out
    assert "lead1@" not in out
    view = json.loads(run_cli(rt, capsys, "backfill", "42", "--json")[1])
    assert view["people"] == {MISSING: [{"rf_user_id": str(n), "email": "l***@x.co"} for n in range(1, 24)],
                              RETRY: [{"rf_user_id": "24", "email": "l***@x.co"}]}
    assert "lead1@" not in json.dumps(view)


def test_the_people_sent_or_counted_are_named_by_an_apply_too_and_a_counted_lead_with_its_referrer():
    """The leads a count backfill would count are named with the referrer they count for; `--apply` names
    whom it sent or counted, as the dry run did; outcomes that act on nobody (nothing to do) name nobody."""
    users = [{"id": 1, "email": "r@x.co", "type": "person_referring", "referrer_id": None}, lead(2), lead(3, 9),
             lead(4)]
    rt = Backfilling(users)
    rt.store.settings.put("42", {**COUNTING, "leads": {"action": "nothing"}}, WS)
    _lead(rt.store, "2")
    _lead(rt.store, "3")
    dry = backfill(rt, "42").view()
    counted = [{"rf_user_id": "2", "email": "l***@x.co", "referrer_id": "1"},
               {"rf_user_id": "3", "email": "l***@x.co", "referrer_id": "9"}]
    referrer = [{"rf_user_id": "1", "email": "r***@x.co"}]
    assert dry["people"] == {"already applied: would be counted for their referrer": counted, MISSING: referrer}
    assert dry["outcomes"]["nothing to do (the settings' action is nothing)"] == 1      # (lead 4: named nowhere)
    done = backfill(rt, "42", apply=True).view()
    assert done["people"] == {"already applied: counted now for their referrer": counted,
                              "not in the bridge: joined": referrer}


def test_a_person_too_large_to_queue_whole_is_queued_thin_and_the_apply_goes_on(capsys):
    """A lead RF holds 300 KB of notes about: their join does not fit in SQS (256 KiB). The apply stopped at their
    page (`the messages could not be queued (the message is … bytes …): run backfill again`), and each run again
    stopped there: the people after them were never sent. Their join is queued without its largest fields, as
    the webhook's is (the worker reads them from RF); every other join of the page is sent as it was, once."""
    rt = Backfilling([lead(n) for n in range(1, 15)] + [lead(15)])
    rt._rf.per_page = 12                                    # (more than one batch of ten a page)
    rt._rf.users[11]["meta"] = {"notes": "x" * 300_000, "team": "blue"}
    rt.store.settings.put("42", SETTINGS, WS)
    code, out, err = run_cli(rt, capsys, "backfill", "42", "--apply")
    assert (code, err) == (0, "") and out.startswith("campaign 42: 15 people in Referral Factory, 15 queued"), out
    sent = {m["rf_user_id"]: m for m in rt.queue.sent}
    assert len(rt.queue.sent) == len(sent) == 15
    big = sent.pop("12")
    assert big["too_large"] > 256 * 1024 - 2048 and big["left_out"] == 1
    assert big["person"] == {**sent["11"]["person"], "id": "12", "email": "lead12@x.co", "meta.team": "blue"}
    assert not any("too_large" in m for m in sent.values())


def test_people_rf_lists_again_on_a_later_page_as_newcomers_push_them_down_are_read_and_sent_once():
    """RF's pages are offsets into its list, newest first: two people join while the apply reads page 1, so
    the last two of page 1 are listed again at the top of page 2. Each person is read, said and sent once:
    `people_in_rf` and `queued` are the people, not the rows RF listed."""
    rt = Backfilling([lead(n) for n in range(1, 6)])
    rt.store.settings.put("42", SETTINGS, WS)
    users_page = rt._rf.users_page

    def newcomers_after_page_1(campaign_id, after=None, per_page=250):
        page = users_page(campaign_id, after, per_page)
        if after is None:
            rt._rf.users[:0] = [{"campaign_id": 42, **lead(n)} for n in (7, 6)]
        return page
    rt._rf.users_page = newcomers_after_page_1
    done = backfill(rt, "42", apply=True).view()
    assert sorted(int(m["rf_user_id"]) for m in rt.queue.sent) == [1, 2, 3, 4, 5]
    assert (done["people_in_rf"], done["queued"], done["outcomes"]) == (5, 5, {"not in the bridge: joined": 5})
    assert [p["rf_user_id"] for p in done["people"]["not in the bridge: joined"]] == ["1", "2", "3", "4", "5"]


def test_a_lead_counted_now_whose_baseline_is_taken_at_the_target_is_still_named_for_the_operator_to_check():
    """Counts and a qualification rule (require_change) came after Ann's join: one `--apply` counts her for her
    referrer and takes her value now as her baseline. She is at the target already, so she never qualifies by
    herself unless her value changes away and back: the apply names her apart, to check in Intercom (a reward
    may be owed), whether or not it counted her too."""
    from tests.fakes import FakeIntercom
    from tests.unit.scenario import RULE

    rt = Backfilling([lead(2), lead(3)])
    intercom = FakeIntercom({"custom_attributes.signed_up": {"data_type": "string"}})
    rt.intercom = lambda workspace: intercom                                 # type: ignore[attr-defined]
    rt.attributes = lambda workspace, naming=(): intercom.attributes         # type: ignore[attr-defined]
    rt.store.settings.put("42", {**COUNTING, "qualification": RULE}, WS)
    for user, value, counted in (("2", "Yes", None), ("3", "Yes", "1")):     # (lead 3 counted by her join)
        contact = intercom.add(f"lead{user}@x.co", signed_up=value)
        claim = rt.store.links.claim(PersonRef("42", user), WS)
        rt.store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", contact_id=contact["id"],
                                                counts_for=counted), [])
    done = backfill(rt, "42", apply=True).view()
    held = [o for o in done["outcomes"] if o.startswith("baseline not known under the qualification rule: already")]
    assert held and [p["rf_user_id"] for p in done["people"][held[0]]] == ["2", "3"], done


def test_an_apply_after_the_count_moved_to_another_attribute_says_the_count_writes_it_queued(capsys):
    """The counts go to a new attribute: the apply counts nobody (each lead counts already) and asks for each
    kept count's write there. Its text says so, as `count_writes_queued` does in --json."""
    rt = Backfilling([lead(2), lead(3, 9)])
    rt.store.settings.put("42", COUNTING, WS)
    _lead(rt.store, "2", counts_for="1")
    _lead(rt.store, "3", counts_for="9")
    rt.store.settings.put("42", {**COUNTING, "sync": {"referral_count_attribute": "custom_attributes.referrals"}}, WS)
    code, out, _ = run_cli(rt, capsys, "backfill", "42", "--apply")
    assert code == 0 and out.splitlines()[0] == "campaign 42: 2 people in Referral Factory, 0 queued, 2 count " \
                                                "writes queued", out
    assert len(rt.queue.sent) == 2


def test_an_apply_after_the_count_moved_asks_for_the_counts_of_referrers_whose_leads_rf_no_longer_lists():
    """Lead 3, who counts for referrer 9, was deleted in RF: the apply that follows a move of the counts to another
    attribute reads no page naming her, yet Intercom still lacks 9's count there. Every count the campaign keeps
    that the new attribute lacks is asked for, once (not one held there already, nor a 0 never written)."""
    rt = Backfilling([lead(2)])
    rt.store.settings.put("42", COUNTING, WS)
    _lead(rt.store, "2", counts_for="1")
    _lead(rt.store, "3", counts_for="9")
    rt.store.links.referrer_contact(PersonRef("42", "5"), "c5", WS)           # sync enrolled her: no lead yet
    moved = "custom_attributes.referrals"
    _lead(rt.store, "4", counts_for="6")
    rt.store.links.referrals_written(PersonRef("42", "6"), 1, moved)          # (held there already)
    rt.store.settings.put("42", {**COUNTING, "sync": {"referral_count_attribute": moved}}, WS)
    done = backfill(rt, "42", apply=True).view()
    assert [(m["kind"], m["rf_user_id"]) for m in rt.queue.sent] == [("referral.count", "1"), ("referral.count", "9")]
    assert done["count_writes_queued"] == 2


def test_each_baseline_taken_is_dated_by_the_read_of_its_own_contact():
    """`--apply` takes a lead's baseline as soon as it has read her contact (one write each, as before), dated by the
    read's answer (Link.baseline_at, by the second: judge takes a value from an event older than that as no change
    after it; a read of 30 seconds, retried, follows the changes made meanwhile). Taken after the whole page's reads,
    a change she made after her read, notified before the page's last, would be taken as one from before her
    baseline: not judged; dated by the take, one made between the read and the write, too (review-baseline-at)."""
    from tests.fakes import FakeIntercom
    from tests.unit.scenario import RULE

    rt = Backfilling([lead(2), lead(3)])
    intercom = FakeIntercom({"custom_attributes.signed_up": {"data_type": "string"}})
    rt.intercom = lambda workspace: intercom                                 # type: ignore[attr-defined]
    rt.attributes = lambda workspace, naming=(): intercom.attributes         # type: ignore[attr-defined]
    rt.store.settings.put("42", {**SETTINGS, "qualification": RULE}, WS)
    for user in ("2", "3"):
        contact = intercom.add(f"lead{user}@x.co", signed_up="No")
        claim = rt.store.links.claim(PersonRef("42", user), WS)
        rt.store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", contact_id=contact["id"]), [])
    start = rt.clock.now
    with before(intercom, "get_contact", lambda: rt.clock.sleep(30)), \
            before(rt.store.links, "take_baselines", lambda: rt.clock.sleep(2.5)):   # each read 30 s, each write 2.5 s
        backfill(rt, "42", apply=True)
    taken = {user: rt.store.links.get(PersonRef("42", user)) for user in ("2", "3")}
    assert {user: (link.baseline, link.baseline_at) for user, link in taken.items()} == {
        "2": ("No", start + 30), "3": ("No", start + 62)}
