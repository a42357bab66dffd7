"""An Intercom outage while reconciliation searches changed contacts: each scheduled run's search
fails and becomes a dead letter. The operator is told once, that nothing is lost; the next search
that succeeds covers the whole window since the last successful one, and makes those letters
superseded (said alike by `dlq list` and `doctor`), taken out by `dlq discard --superseded`; a search whose
window a failed first search left uncovered is not said superseded."""
from __future__ import annotations

import json

import pytest

from chalicelib.domain.history import iso
from chalicelib.errors import ApiError, Deferred
from chalicelib.services.dead_letters import look
from chalicelib.services.doctor import examine
from chalicelib.services.qualification.changes import failed_name
from chalicelib.services.worker import RetryBatch, handle_batch
from tests.support.cli import run_cli
from tests.unit.doctoring import Doctored
from tests.unit.scenario import WS, changed, changes, joined, records

RUN_EVERY = 900


def doctored() -> Doctored:
    """A connected workspace with a dead-letter queue, its contacts searched by reconciliation."""
    rt = Doctored()
    rt.config = type(rt.config).from_env({"BRIDGE_MAX_ATTEMPTS": "3", "BRIDGE_DLQ_URL": "memory://dlq"})
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": WS}}          # type: ignore[attr-defined]
    joined(rt.work)
    return rt


def outage(rt: Doctored, runs: int, dead: bool = True) -> None:
    """`runs` scheduled runs whose search fails on every try (the worker's last try dead-letters it; `dead`
    False: on its first try, which the queue tries again)."""
    work = rt.work
    for _ in range(runs):
        work.clock.now += RUN_EVERY
        work.apis.intercom_.fail["search_contacts"] = ApiError("Intercom", 503, "Service Unavailable")
        [last_try] = records(changes(work))
        if not dead:
            with pytest.raises(RetryBatch):
                handle_batch([last_try], work)
            continue
        last_try["attributes"]["ApproximateReceiveCount"] = str(work.config.max_attempts)
        assert handle_batch([last_try], work)["dead"] == 1


def findings(rt: Doctored) -> list[dict]:
    return [f for f in examine(rt, "42").view()["findings"] if f["check"] == "dead_letters"]


def test_an_outage_is_told_once_and_the_next_search_covers_it_and_supersedes_its_dead_letters(capsys):
    rt = doctored()
    work, cli = rt.work, rt
    [contact] = work.apis.intercom_.contacts.values()
    assert handle_batch(records(changes(work)), work)["done"] == 1            # the last successful search
    outage(rt, 2)
    changed(work, contact, "Yes")                     # its webhook lost, during the outage
    outage(rt, 2)
    assert len(work.queue.dead) == 4
    [told] = findings(rt)                             # once, however many runs failed
    assert not told["ok"] and told["what"].startswith("4 search(es) of the changed contacts of workspace ws failed")
    assert "Intercom answered 503" in told["what"] and "nothing is lost" in told["why"]
    assert "dlq replay" not in told["fix"] and "`bridge dlq discard --superseded --yes`" in told["fix"]
    code, out, _ = run_cli(cli, capsys, "dlq", "list", "--json")
    assert code == 0 and all("superseded" not in d and "nothing to replay" in d["fix"]
                             for d in json.loads(out)["dead_letters"])

    work.clock.now += RUN_EVERY
    assert handle_batch(records(changes(work)), work)["done"] == 1            # Intercom is back
    assert work.apis.rf_.qualified == ["7"]           # the change made during the outage: nothing lost
    [told] = findings(rt)
    assert told["ok"] and told["warn"] and told["what"].startswith(
        "4 dead letter(s) of searches of the changed contacts of workspace ws are superseded")
    code, out, _ = run_cli(cli, capsys, "dlq", "list", "--json")
    assert [bool(d.get("superseded")) for d in json.loads(out)["dead_letters"]] == [True] * 4
    code, out, _ = run_cli(cli, capsys, "dlq", "discard", "--superseded", "--yes")
    assert code == 0 and out.startswith("4 dead letter(s) discarded") and work.queue.letters == {}
    # (a search names no person: "each person's history says so" promised a note nobody gets)
    assert out.startswith("4 dead letter(s) discarded (searches of changed contacts: they named no person)"), out
    [told] = findings(rt)
    assert told["ok"] and not told["warn"]


def test_discard_superseded_leaves_the_searches_an_outage_still_fails_and_every_other_letter(capsys):
    rt = doctored()
    work = rt.work
    outage(rt, 1)
    work.clock.now += RUN_EVERY
    assert handle_batch(records(changes(work)), work)["done"] == 1
    outage(rt, 1)                                     # a second outage: its letter is not superseded yet
    work.queue.dead_letter(json.dumps({"kind": "intercom.contact", "workspace": "ws", "item": {"id": "c9"}}),
                           "gave up after 3 tries: Intercom answered 503: Service Unavailable", 3, "now")
    code, out, _ = run_cli(rt, capsys, "dlq", "discard", "--superseded", "--yes")
    assert code == 0 and out.startswith("1 dead letter(s) discarded") and len(work.queue.letters) == 2


def test_discard_by_reason_of_searches_alone_does_not_say_a_persons_history_says_so(capsys):
    """`dlq discard --reason ...` matching searches of changed contacts only (not yet superseded) said "(each person's
    history says so)": a search names no person, so no history says anything. Said only when a letter named one."""
    rt = doctored()
    work = rt.work
    outage(rt, 2)
    [reason] = {letter["reason"] for letter in work.queue.dead}
    code, out, _ = run_cli(rt, capsys, "dlq", "discard", "--reason", "Intercom answered 503", "--yes")
    assert code == 0 and out.strip() == "2 dead letter(s) discarded (they named no person)", (reason, out)
    assert work.queue.letters == {}


@pytest.mark.parametrize("searched_before, runs, since", [(False, 2, "none has succeeded yet"),
                                                          (True, 5, "the last that succeeded ran 75 min ago")])
def test_while_an_outage_fails_the_searches_doctor_names_it_not_the_schedule(searched_before, runs, since):
    """Walkthrough: Intercom answered 503 to everything; doctor said "reconciliation has never searched ... check
    that the reconcile schedule runs ... apply settings once more". The schedule ran: its searches failed."""
    rt = doctored()
    if searched_before:
        assert handle_batch(records(changes(rt.work)), rt.work)["done"] == 1
    outage(rt, runs)
    [told] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == "reconciliation"]
    assert not told["ok"] and told["what"].startswith(
        f"Intercom is unavailable: reconciliation's searches of the changed contacts of workspace ws fail ({since}; "
        f"{runs} failed since ")
    assert told["what"].endswith("the last: gave up after 3 tries: Intercom unavailable: Intercom answered 503: "
                                 "Service Unavailable)")
    assert "check that the reconcile schedule runs" not in told["fix"] and "apply" not in told["fix"] and "nothing is lost" in told["why"]
    assert findings(rt) == [], "one outage's failed searches, said twice (two problems for one cause)"
    assert "`bridge dlq discard --superseded --yes`" in told["fix"]


@pytest.mark.parametrize("searched_before, since", [(False, "none has succeeded yet"),
                                                    (True, "the last that succeeded ran 75 min ago")])
def test_before_its_letter_is_dead_doctor_names_the_failing_search_not_the_schedule(searched_before, since):
    """Walkthrough: while the search was still retried (no dead letter yet), doctor said "the last search ...
    ran 7 min ago ... check that the reconcile schedule runs". It ran: its search fails, and doctor says so."""
    rt = doctored()
    if searched_before:
        assert handle_batch(records(changes(rt.work)), rt.work)["done"] == 1
    outage(rt, 5, dead=False)
    assert not rt.work.queue.dead
    [told] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == "reconciliation"]
    assert not told["ok"] and told["what"] == (
        f"Intercom is unavailable: reconciliation's searches of the changed contacts of workspace ws fail ({since}; "
        f"the last failed at {iso(rt.work.clock.now)}: Intercom answered 503: Service Unavailable; the queue tries "
        "it again)")
    assert "schedule" not in told["fix"] and "nothing to change" in told["fix"] and "nothing is lost" in told["why"]
    rt.work.clock.now += RUN_EVERY
    assert handle_batch(records(changes(rt.work)), rt.work)["done"] == 1     # Intercom is back: said no more
    [told] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == "reconciliation"]
    assert told["ok"]


def test_a_search_that_waits_for_the_rate_budget_is_not_said_to_fail():
    rt = doctored()
    rt.work.apis.intercom_.fail["search_contacts"] = Deferred("Intercom's rate budget is spent", retry_after=30)
    handle_batch(records(changes(rt.work)), rt.work)
    assert rt.work.store.cursor.get(failed_name(WS)) is None


def test_after_the_first_search_of_a_workspace_fails_the_next_that_succeeds_still_covers_its_window():
    """Scenario: a lead's contact meets the target (its webhook lost); reconciliation's very first search of
    the workspace (no cursor yet: it looks back 7 days) fails, and Intercom answers again 8 days later. The
    operator is told "nothing is lost: the next search that succeeds covers every change" and, once it did,
    that the failed search is superseded (`bridge dlq discard --superseded --yes`). But that search looked
    back 7 days from its own time, after the change: the lead is never qualified by a search, and a replay of
    the failed one (now from the cursor) would not find it either."""
    rt = doctored()
    work = rt.work
    [contact] = work.apis.intercom_.contacts.values()
    changed(work, contact, "Yes")                       # its webhook lost
    work.clock.now += 2 * 86400
    outage(rt, 1)                                        # the first search ever: it would have found the change
    [told] = [f for f in examine(rt, "42").view()["findings"] if "nothing is lost" in f["why"]]
    assert told["check"] == "reconciliation", told
    work.clock.now += 8 * 86400
    assert handle_batch(records(changes(work)), work)["done"] == 1      # Intercom is back
    [letter] = look(rt).letters
    assert work.apis.rf_.qualified == ["7"], (
        f"said superseded at {letter.superseded}, yet the change in its window was not found")
    assert letter.superseded                             # and so the failed search is said covered


def test_dlq_list_says_superseded_every_search_letter_discard_superseded_takes_out(capsys):
    """Scenario: a search of changed contacts failed on Intercom's 403 for the workspace's plan; the plan was
    upgraded and the next search succeeded. `bridge dlq list` shows that letter without `superseded`, with the
    plan's fix ("upgrade it ..., then `bridge dlq replay ...`"), while `bridge dlq discard --superseded` says
    it matches and takes it out: the list and the discard disagree about which letters are superseded."""
    rt = doctored()
    work = rt.work
    work.clock.now += 900
    work.queue.dead_letter(json.dumps(changes(work)), "gave up after 1 tries: Intercom answered 403 "
                           "api_plan_restricted: Active subscription needed.", 1, "2026-09-21T14:00:00Z")
    work.clock.now += 900
    assert handle_batch(records(changes(work)), work)["done"] == 1
    _, out, _ = run_cli(rt, capsys, "dlq", "list", "--json")
    listed = [d for d in json.loads(out)["dead_letters"] if d.get("superseded")]
    _, _, err = run_cli(rt, capsys, "dlq", "discard", "--superseded")
    assert f"bridge: {len(listed)} dead letter(s) match" in err, (listed, err)


def test_a_search_refused_the_workspaces_token_is_dead_lettered_without_the_replay_its_fix_says_is_none(capsys):
    """Walkthrough of the README's `make fault ARGS="intercom revoke-token"` rehearsal: reconciliation's search, refused
    the token, became a dead letter whose reason said "... reconnect the workspace, then `bridge dlq replay --reason
    ...`", beside the fix "nothing to replay: ... `bridge dlq discard --superseded --yes`" (doctor's finding, `dlq
    list`). The search's letter has a reason of its own, without the replay; doctor, `dlq list` and its counts show a
    letter stored before (with it) without it too (`--raw`: as stored), and `dlq discard` matches both, by `--superseded` and by the refusal's words."""
    from chalicelib.adapters.intercom import IntercomClient
    from chalicelib.errors import refused_token

    rt = doctored()
    work = rt.work
    assert handle_batch(records(changes(work)), work)["done"] == 1            # the last successful search
    refused = IntercomClient("https://intercom.test", "t", workspace=WS)._classify(
        ApiError("Intercom", 401, "Unauthorized", code="unauthorized"))
    assert "then `bridge dlq replay" in refused.reason          # the refusal's reason, as a join's letter keeps it
    work.clock.now += RUN_EVERY
    work.queue.dead_letter(json.dumps(changes(work)), refused.reason, 1, iso(work.clock.now))   # stored before
    [told] = findings(rt)
    assert told["what"].endswith(f"{refused_token(WS)} (invalid or revoked): reconnect the workspace"), told["what"]
    work.clock.now += RUN_EVERY
    work.apis.intercom_.fail["search_contacts"] = refused
    [last_try] = records(changes(work))
    assert handle_batch([last_try], work)["dead"] == 1
    old, new = work.queue.dead
    said = f"{refused.answer} — {refused_token(WS)} (invalid or revoked): reconnect the workspace"
    assert new["reason"] == said and json.loads(work.store.cursor.get(failed_name(WS)))["reason"] == said, new
    # A refused token never passes by itself: [reconciliation] says it at once, not [dead_letters] (said once)
    [told] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == "reconciliation"]
    assert findings(rt) == [] and "2 failed since" in told["what"], told["what"]
    # (its reason beside the fix, which says the reconnect: said there alone)
    shown = said.removesuffix(": reconnect the workspace")
    assert told["what"].endswith(shown + ")") and "nothing to replay" in told["fix"], told["what"]
    # `dlq list` shows the older letter's reason as doctor quotes it (no replay beside "nothing to replay": the
    # search's own reason), in its list and its counts alike; `--raw` shows it as stored (what a `--reason` matches)
    assert old["reason"].split(", then `bridge dlq replay")[0] == said != old["reason"]
    _, out, _ = run_cli(rt, capsys, "dlq", "list", "--json")
    listed = json.loads(out)
    assert [(d["reason"], "nothing to replay" in d["fix"]) for d in listed["dead_letters"]] == [(said, True)] * 2
    assert listed["by_reason"] == {said: 2}, listed["by_reason"]
    _, out, _ = run_cli(rt, capsys, "dlq", "list", "--json", "--show-payload", "--raw")
    assert [d["reason"] for d in json.loads(out)["dead_letters"]] == [old["reason"], said]
    _, out, _ = run_cli(rt, capsys, "dlq", "discard", "--reason", "no such reason", "--json")
    assert json.loads(out)["by_reason"] == {said: 2}, out     # the reasons there are, counted alike (nothing matches)
    work.clock.now += 4 * RUN_EVERY                   # late: [reconciliation] says it alike
    [late] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == "reconciliation"]
    assert not late["ok"] and late["what"].endswith(shown + ")") and "dlq replay" not in late["what"], late["what"]
    work.clock.now += RUN_EVERY                       # reconnected: the next search succeeds
    assert handle_batch(records(changes(work)), work)["done"] == 1
    _, _, err = run_cli(rt, capsys, "dlq", "discard", "--reason", refused_token(WS))
    assert "bridge: 2 dead letter(s) match" in err, err
    code, out, _ = run_cli(rt, capsys, "dlq", "discard", "--superseded", "--yes")
    assert code == 0 and out.startswith("2 dead letter(s) discarded") and work.queue.letters == {}, out


def a_search_refused_the_token() -> tuple[Doctored, str]:
    """A search succeeded, and the next one, 15 minutes later, Intercom refused the workspace's token to (its letter
    dead at once: it is never replayed); with Intercom's answer."""
    from chalicelib.errors import TokenRefused, refused_reason
    rt = doctored()
    work = rt.work
    assert handle_batch(records(changes(work)), work)["done"] == 1            # the last successful search
    work.clock.now += RUN_EVERY
    answer = "Intercom answered 401 unauthorized: Access Token Invalid"
    work.apis.intercom_.fail["search_contacts"] = TokenRefused(refused_reason(answer, WS), WS, "private", answer,
                                                               status=401)
    assert handle_batch(records(changes(work)), work)["dead"] == 1
    return rt, answer


def test_while_intercom_refuses_the_token_doctor_says_the_searches_fail_with_the_reconnect_not_that_one_ran():
    """Walkthrough (README, Intercom's token revoked): every search of changed contacts is refused; doctor's
    [reconciliation] said "ok: the last search of changed contacts of ws ran 15 min ago", the one before the
    token was revoked. A search that ran and failed is not a search that ran: a refused token never passes by
    itself, so it is said at once (a 503 only once the schedule is late), with the reconnect."""
    rt, answer = a_search_refused_the_token()
    [told] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == "reconciliation"]
    assert not told["ok"] and told["what"].startswith(
        f"reconciliation's searches of the changed contacts of workspace {WS} fail (the last that succeeded ran 15 "
        "min ago; "), told
    assert f"`bridge workspace connect {WS}`" in told["fix"] and "reconcile schedule" not in told["fix"], told
    assert findings(rt) == [], "the failed searches, said twice"


def test_doctors_reconciliation_line_says_a_refused_searchs_reason_without_the_reconnect_its_fix_says(capsys):
    """Walkthrough: [reconciliation] said "...; the last: Intercom answered 401 ... (invalid or revoked): reconnect
    the workspace)" beside its fix "`bridge workspace connect ws` ...; then ...": the advice said twice. The reason is
    said beside the fix as `dlq list` and [dead_letters] say one (errors.beside_fix): whose token was refused, once;
    the reconnect, in the fix alone. Alike once its letter is gone (the search's own stored reason)."""
    from chalicelib.errors import refused_token
    rt, answer = a_search_refused_the_token()
    work = rt.work
    said = f"{answer} — {refused_token(WS)} (invalid or revoked)"
    for letters in (1, 0):
        assert len(work.queue.letters) == letters
        [told] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == "reconciliation"]
        assert not told["ok"] and told["what"].endswith(f": {said})" if letters else f": {said}; the queue tries "
                                                        "it again)"), told["what"]
        assert "reconnect" not in told["what"], told["what"]
        assert told["fix"].startswith(f"`bridge workspace connect {WS}`"), told["fix"]
        code, out, _ = run_cli(rt, capsys, "dlq", "discard", "--reason", refused_token(WS), "--yes")
        assert code == 0
