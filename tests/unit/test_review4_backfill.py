"""Review 4 of `bridge backfill`: the people RF lists unreadably are counted, and at most 20 are named
(a campaign imported with bad emails could list thousands, one line each)."""
from __future__ import annotations

import json

from tests.support.cli import run_cli
from tests.unit.test_answers import SETTINGS, WS, Backfilling


def test_backfill_names_at_most_20_unreadable_people_and_says_how_many_more_in_text_and_json(capsys):
    """Scenario: RF lists 23 people whose email holds a space and one readable lead. Expected: the count
    23, the first 20 named, then "… and 3 more"; --json has the 20 and `unreadable_more: 3`."""
    users = [{"id": n, "email": f"p{n} @x.co", "type": "person_invited", "referrer_id": 1} for n in range(1, 24)]
    rt = Backfilling(users + [{"id": 99, "email": "ok@x.co", "type": "person_invited", "referrer_id": 1}])
    rt.store.settings.put("42", SETTINGS, WS)
    code, out, _ = run_cli(rt, capsys, "backfill", "42")
    lines = out.splitlines()
    assert code == 0 and lines[1] == "      23  unreadable in Referral Factory", out
    named = [line for line in lines[2:22] if line.startswith("          - RF user ")]
    assert len(named) == 20 and named[0].startswith("          - RF user 1 (p***@x.co): email: ")
    assert lines[22:] == ["          … and 3 more", "       1  not in the bridge: would be joined",
                          "          - RF user 99 (o***@x.co)"], out
    view = json.loads(run_cli(rt, capsys, "backfill", "42", "--json")[1])
    assert view["outcomes"]["unreadable in Referral Factory"] == 23
    assert [p["rf_user_id"] for p in view["unreadable"]] == [str(n) for n in range(1, 21)]
    assert view["unreadable_more"] == 3


def test_a_backfill_with_few_unreadable_people_names_them_all_and_no_more():
    rt = Backfilling([{"id": 2, "email": "a b@x.co", "type": "person_invited", "referrer_id": 1}])
    rt.store.settings.put("42", SETTINGS, WS)
    from chalicelib.services.backfill import backfill
    view = backfill(rt, "42").view()
    assert len(view["unreadable"]) == 1 and view["unreadable_more"] == 0
