"""`bridge dlq replay --reason "Intercom answered 403"` replayed other workspaces' 403 letters too (they failed
again). `--workspace <id>` narrows list, replay and discard to one workspace's letters: those whose message names
it (Intercom's notifications, searches, checks), and those of a campaign whose settings are in it (a join, a sync
page); and the fixes that print a replay for one workspace's failure name it."""
from __future__ import annotations

import json
from types import SimpleNamespace

from chalicelib.config import Config
from chalicelib.errors import answer_refused_fix
from chalicelib.services import dead_letters
from tests.support.cli import run_cli
from tests.unit import scenario

FORBIDDEN = "Intercom answered 403: token lacks a scope"


def letters():
    work = scenario.world()                                       # campaign 42 is workspace ws's
    work.store.settings.put("43", scenario.settings(), "ws-b")
    for body in ({"kind": "intercom.contact", "workspace": "ws", "item": {"id": "c1"}},
                 {"kind": "intercom.contact", "workspace": "ws-b", "item": {"id": "c2"}},
                 {"kind": "join", "campaign_id": "42", "rf_user_id": "7"},
                 {"kind": "join", "campaign_id": "43", "rf_user_id": "8"}):
        work.queue.dead_letter(json.dumps(body), FORBIDDEN, 1, "2026-11-28T12:00:00Z")
    return work


def left(work) -> list[str]:
    return sorted(str(d.workspace or d.campaign_id) for d in dead_letters.look(work).letters)


def test_a_replay_by_reason_and_workspace_sends_back_that_workspaces_letters_only():
    work = letters()
    done = dead_letters.replay(work, reason="Intercom answered 403", workspace="ws")
    assert (done["replayed"], done["left"]) == (2, 2)
    assert left(work) == ["43", "ws-b"]


def test_a_discard_by_workspace_alone_takes_out_that_workspaces_letters_only():
    work = letters()
    assert dead_letters.discard(work, workspace="ws-b")["discarded"] == 2
    assert left(work) == ["42", "ws"]


def test_the_cli_narrows_list_replay_and_discard_by_workspace(capsys):
    work = letters()
    cli = SimpleNamespace(config=Config.from_env({"BRIDGE_DLQ_URL": "https://sqs/dlq"}), queue=work.queue,
                          clock=work.clock, store=work.store)
    code, out, _ = run_cli(cli, capsys, "dlq", "list", "--workspace", "ws", "--json")
    assert code == 0 and json.loads(out)["total"] == 2
    code, _, err = run_cli(cli, capsys, "dlq", "discard", "--workspace", "ws")          # without --yes: says how many
    assert code == 1 and err.startswith("bridge: 2 dead letter(s) match"), err
    code, out, _ = run_cli(cli, capsys, "dlq", "discard", "--workspace", "ws", "--yes", "--json")
    assert code == 0 and json.loads(out)["discarded"] == 2 and left(work) == ["43", "ws-b"]
    code, out, _ = run_cli(cli, capsys, "dlq", "replay", "--reason", "Intercom answered 403", "--workspace", "ws-b",
                           "--json")
    assert code == 0 and json.loads(out)["replayed"] == 2
    assert run_cli(cli, capsys, "dlq", "replay", "--all", "--workspace", "ws")[0] == 2


def test_the_fix_of_a_workspaces_403_replays_that_workspaces_letters_only():
    assert answer_refused_fix("ws", 403, "private").endswith(
        '`bridge dlq replay --reason "Intercom answered 403" --workspace ws`')


def test_the_fix_of_a_notifications_letter_refused_for_its_workspaces_plan_replays_that_workspaces_only():
    from chalicelib.services.dead_letters import replay_fix
    plan = "Intercom answered 403 api_plan_restricted: Active subscription needed"
    assert "--workspace ws` (its message names no campaign" in replay_fix(plan, None, "ws")


def test_dlq_list_shows_by_reason_and_campaign_the_letters_a_replay_or_discard_by_them_would_take(capsys):
    """`dlq list` took --workspace only: an operator could not see which letters `dlq replay` / `dlq discard
    --reason R --campaign C` would take before running it. `dlq list` takes both, selecting by the same rule
    (dead_letters.selection) as they do: the letters it lists are those they take, counted by reason and campaign."""
    work = letters()
    work.queue.dead_letter(json.dumps({"kind": "join", "campaign_id": "42", "rf_user_id": "9"}),
                           "Referral Factory answered 500", 1, "2026-11-28T12:00:00Z")
    cli = SimpleNamespace(config=Config.from_env({"BRIDGE_DLQ_URL": "https://sqs/dlq"}), queue=work.queue,
                          clock=work.clock, store=work.store)

    def listed(*selectors: str) -> dict:
        code, out, _ = run_cli(cli, capsys, "dlq", "list", *selectors, "--json")
        assert code == 0
        return json.loads(out)

    by_campaign = listed("--campaign", "42")
    assert (by_campaign["total"], by_campaign["read"]) == (2, 5)
    assert by_campaign["by_campaign"] == {"42": 2}
    assert sorted(d["rf_user_id"] for d in by_campaign["dead_letters"]) == ["7", "9"]
    by_reason = listed("--reason", "intercom ANSWERED 403")              # matched as replay matches it: any case
    assert (by_reason["total"], by_reason["read"]) == (4, 5) and by_reason["by_reason"] == {FORBIDDEN: 4}
    both = listed("--reason", "answered 403", "--campaign", "42", "--workspace", "ws")
    assert (both["total"], [d["rf_user_id"] for d in both["dead_letters"]]) == (1, ["7"])
    assert listed("--campaign", "44")["total"] == 0
    assert "read" not in listed()                                        # no selector: every letter read is listed

    code, out, _ = run_cli(cli, capsys, "dlq", "list", "--reason", "answered 403", "--campaign", "42")
    assert code == 0 and out.startswith("1 dead letter(s) match --reason 'answered 403' --campaign 42 (of 5 read)\n")
    # What list showed is what the replay by the same selectors takes, no more.
    code, out, _ = run_cli(cli, capsys, "dlq", "replay", "--reason", "answered 403", "--campaign", "42", "--json")
    assert code == 0 and (json.loads(out)["replayed"], json.loads(out)["left"]) == (1, 4)
    assert listed("--campaign", "42")["total"] == 1
