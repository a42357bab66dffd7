"""`bridge doctor` (and `bridge backfill`) when Intercom or Referral Factory answers with an error: the
advice follows the answer's status, never digits in its text. Only 401/403 say the token was refused
(not Intercom's 403 `api_plan_restricted`: the plan refuses every token; not RF's block of the IP);
a 429, a 5xx or a timeout says the vendor is unavailable or limiting the bridge now (nothing to change,
no token to replace); RF's 404 says the campaign is unknown to it (its id, or a token of another account)."""
from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from chalicelib.adapters.ratelimit import CircuitOpen
from chalicelib.domain.apps import MARKS
from chalicelib.errors import ApiError, Permanent, Transient, WorkError
from chalicelib.ports import PeoplePage
from chalicelib.services.backfill import BackfillError, backfill
from chalicelib.services.doctor import examine
from tests.support.answering_server import answering
from tests.support.cli import replays_advised
from tests.unit import scenario
from tests.unit.doctoring import Doctored, checks, healthy


def finding(rt: Doctored, check: str) -> dict:
    [found] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == check]
    return found


def raising(exc: WorkError):
    def call(*_: Any) -> dict:
        raise exc
    return call


UNAVAILABLE = {"429": lambda vendor: ApiError(vendor, 429, "Too many requests 401", retry_after=10),
               "500": lambda vendor: ApiError(vendor, 500, "Internal error (403)"),
               "timeout": lambda vendor: Transient(f"{vendor} did not answer: read timed out")}
WAITS = "nothing to change: the work waits; run `bridge doctor 42` again later"


def waiting(vendor: str, work: str) -> str:
    """Walkthrough: the why said "those that run out of tries wait in the dead-letter queue"; an outage uses up no try."""
    return (f"{work} wait in the queue, without using up a try, and go on by themselves once {vendor} answers; an "
            "outage (5xx, timeouts) longer than 24 h (BRIDGE_OUTAGE_HOURS) leaves them in the dead-letter queue")


@pytest.mark.parametrize("answer", list(UNAVAILABLE))
def test_intercom_unavailable_or_limiting_is_not_a_refused_token(answer):
    rt = Doctored()
    rt.work.apis.intercom_.me = raising(UNAVAILABLE[answer]("Intercom"))   # type: ignore[attr-defined]
    token = finding(rt, "intercom.token")
    assert not token["ok"] and token["what"].startswith("Intercom is unavailable or limiting the bridge now")
    assert "refused" not in token["what"] and "connect" not in token["fix"] and "token" not in token["fix"]
    assert token["fix"] == WAITS and token["why"] == waiting("Intercom", "joins and qualification checks")


@pytest.mark.parametrize("answer", list(UNAVAILABLE))
def test_intercom_unavailable_while_reading_the_attributes_is_not_a_scope_to_check(answer):
    """Scenario: Intercom answers `/me`, then times out, limits or fails (5xx) reading the data attributes.
    A user would see "check the token's scopes" for an outage; expected: the work waits, nothing to change."""
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    rt.work.apis.intercom_.data_attributes = raising(UNAVAILABLE[answer]("Intercom"))  # type: ignore[attr-defined]
    attributes = finding(rt, "intercom.attributes")
    assert not attributes["ok"] and attributes["what"].startswith("Intercom is unavailable or limiting the bridge now")
    assert attributes["fix"] == WAITS and "scope" not in attributes["fix"]
    assert attributes["why"] == waiting("Intercom", "joins and qualification checks")


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("token_app, reconnect", [
    ("private", "`bridge workspace connect ws` (it asks for the new token)"),
    # The public app's token (the workspace's admin uninstalled it): the operator has no token to type.
    ("oauth", "a new OAuth link for the workspace's admin, who authorizes the app again: `bridge workspace "
              "oauth-link --workspace ws`")])
def test_intercom_refusing_the_token_is_told_to_replace_it_the_way_it_was_given(status, token_app, reconnect):
    rt = Doctored()
    rt.store.connections.put_workspace(scenario.WS, ["token", MARKS[token_app]], token_app=token_app)
    rt.work.apis.intercom_.me = raising(ApiError("Intercom", status, "Unauthorized"))   # type: ignore[attr-defined]
    token = finding(rt, "intercom.token")
    assert token["what"].startswith("Intercom refused the token of workspace ws")
    # (401: the worker's work waits for the reconnect, then goes on by itself; any other refusal, a replay after it)
    assert token["fix"] == (f"{reconnect}; what waits for it then goes on by itself, with no replay" if status == 401
                            else f"{reconnect}, then `bridge dlq replay --reason \"Intercom answered 403\" "
                                 "--workspace ws`")


def test_the_replay_doctor_advises_for_intercoms_403_to_the_token_reaches_the_work_it_dead_lettered():
    """Intercom refuses the workspace's token with 403 (not the 401 the worker waits out): a join is dead-lettered
    with Intercom's answer as its reason. Doctor's [intercom.token] advised the reconnect, then `bridge dlq replay
    --reason "Intercom refuses workspace ws's token"`, the reason of a 401's letters only: it selected none of them,
    and the join stayed in the queue. The replay it advises reaches the letter."""
    from chalicelib.services.dead_letters import look, matches
    from tests.unit.test_join_use_case import join
    answer = "Intercom answered 403 token_unauthorized: Not authorized to access this resource"
    rt = Doctored()
    rt.work.apis.intercom_.me = raising(ApiError("Intercom", 403, "Not authorized to access this resource",
                                                 code="token_unauthorized"))   # type: ignore[attr-defined]
    rt.work.apis.intercom_.fail["create"] = Permanent(answer, status=403)
    assert scenario.run(rt.work, join())["dead"] == 1
    token = finding(rt, "intercom.token")
    assert token["what"] == f"Intercom refused the token of workspace ws: {answer}", token
    [reason] = replays_advised(token["fix"])
    letters = look(rt.work).letters
    assert [d.reason for d in letters] == [answer] and [matches(d, reason, None) for d in letters] == [True]
    from chalicelib.services.dead_letters import campaign_workspaces      # (narrowed to the workspace: it is ws's)
    assert "--workspace ws`" in token["fix"]
    of = campaign_workspaces(rt.work)
    assert [matches(d, reason, None, workspace="ws", workspace_of=of) for d in letters] == [True]


def test_a_refused_tokens_letters_advise_the_reconnect_and_its_replay_but_a_searchs_nothing_to_replay():
    """`dlq list`: a letter of work Intercom refused the token for says the one fix doctor and explain say; a search
    of changed contacts among them is superseded by the next that succeeds, as for any cause (nothing to replay)."""
    from chalicelib.domain.advice import token_fix
    from chalicelib.errors import refused_token
    from chalicelib.services.dead_letters import SEARCH, SEARCH_FIX, DeadLetter

    reason = f"Intercom answered 401 unauthorized: Access Token Invalid — {refused_token('ws')} (invalid or revoked)"
    join, search = (DeadLetter("m", reason, 1, None, kind, campaign, None, "ws", None, None, {})
                    for kind, campaign in (("rf.join", "42"), (SEARCH, None)))
    assert join.view()["fix"] == token_fix("ws") and "oauth-link --workspace ws" in token_fix("ws")
    assert search.view()["fix"] == SEARCH_FIX


def test_a_refused_tokens_reason_is_said_beside_its_fix_without_the_advice_the_fix_says_again():
    """`dlq list`, doctor's [dead_letters] and explain's text say a reason beside its fix: Intercom's refusal of a
    workspace's token (its reconnect and replay) and RF's of the stored token (rf_token_fix) are said once, in the fix;
    whose token Intercom refused stays said (the replay's `--reason`). Beside a search's fix (no reconnect in it), or
    with no fix, the reason is said whole; any other reason as it is."""
    from chalicelib.domain.advice import rf_token_fix, rf_token_reason, token_fix
    from chalicelib.errors import beside_fix, refused_reason
    from chalicelib.services.dead_letters import SEARCH, SEARCH_FIX, DeadLetter

    answer = "Intercom answered 401 unauthorized: Access Token Invalid"
    reason = refused_reason(answer, "ws")
    join, search = (DeadLetter("m", reason, 1, None, kind, campaign, None, "ws", None, None, {})
                    for kind, campaign in (("rf.join", "42"), (SEARCH, None)))
    said = f"{answer} — Intercom refuses workspace ws's token (invalid or revoked)"
    assert beside_fix(reason, join.view()["fix"]) == said and reason.startswith(said + ": reconnect the workspace")
    assert join.view()["fix"] == token_fix("ws")
    assert beside_fix(search.shown_reason, search.view()["fix"]) == search.shown_reason and \
        search.view()["fix"] == SEARCH_FIX and "reconnect the workspace" in search.shown_reason
    rf = rf_token_reason("Referral Factory answered 401: Unauthenticated.")
    assert [beside_fix(rf, fix) for fix in (rf_token_fix(), None)] == [
        "Referral Factory answered 401: Unauthenticated.", rf]
    other = "gave up after 3 tries: Intercom answered 503 — see the status page"
    assert beside_fix(other, "fix the cause, then `bridge dlq replay --campaign 42`") == other


@pytest.mark.parametrize("code, message", [("api_plan_restricted", "Active subscription needed."),
                                           ("", "Your plan does not include API access.")])
def test_intercom_refusing_the_api_for_the_workspaces_plan_is_not_told_to_replace_the_token(code, message):
    """Intercom's 403 `api_plan_restricted` refuses every token of the workspace: connecting a new one
    changes nothing; the plan must allow the API."""
    rt = Doctored()
    rt.work.apis.intercom_.me = raising(ApiError("Intercom", 403, message, code=code))  # type: ignore[attr-defined]
    token = finding(rt, "intercom.token")
    assert token["what"].startswith("Intercom refused the API to workspace ws: its plan does not include it")
    assert "plan" in token["fix"] and "a new token will not help" in token["fix"]
    assert "workspace connect" not in token["fix"]


@pytest.mark.parametrize("answer", list(UNAVAILABLE))
def test_rf_unavailable_or_limiting_is_not_a_wrong_campaign_or_token(answer):
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    rt.work.apis.rf_.campaign_answers = [UNAVAILABLE[answer]("Referral Factory")]
    campaign = finding(rt, "rf.campaign")
    assert not campaign["ok"] and campaign["what"].startswith("Referral Factory is unavailable or limiting the "
                                                              "bridge now: campaign 42 could not be checked")
    assert campaign["fix"] == WAITS and "campaign id" not in campaign["fix"]
    assert campaign["why"] == waiting("Referral Factory", "joins and qualifications")


@pytest.mark.parametrize("status, fix", [
    (404, "check the campaign id (the settings' campaign_id) and that the RF token is of the account that owns "
          "campaign 42 (`bridge rf connect` asks for the token); then `bridge dlq replay --campaign 42`"),
    (401, "Referral Factory refuses the RF token the bridge has stored (revoked or replaced in RF): "
          "`bridge rf connect` (it asks for the new token), then `bridge dlq replay --reason 'Referral Factory "
          "answered 401'`")])
def test_rf_not_knowing_the_campaign_or_refusing_the_token_says_which(status, fix):
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    rt.work.apis.rf_.campaign_answers = [ApiError("Referral Factory", status, "Nope")]
    assert finding(rt, "rf.campaign")["fix"] == fix + (" brings back the work that failed meanwhile (it is valid: "
                                                       "do not discard it)")


class EmptyCampaign:
    def __init__(self, exc: WorkError) -> None:
        self.exc = exc

    def users_page(self, *_: Any) -> PeoplePage:
        return PeoplePage([], None, 0)

    def get_campaign(self, campaign_id: str) -> dict:
        raise self.exc


@pytest.mark.parametrize("answer", list(UNAVAILABLE))
def test_backfill_of_an_rf_unavailable_or_limiting_says_to_run_it_again_later(answer):
    rt = Doctored()
    rt.rf = lambda: EmptyCampaign(UNAVAILABLE[answer]("Referral Factory"))            # type: ignore[method-assign]
    with pytest.raises(BackfillError) as said:
        backfill(rt, "42")                                                            # type: ignore[arg-type]
    assert str(said.value).endswith("— nothing to change: Referral Factory is unavailable or limiting the bridge "
                                    "now; run `bridge backfill 42` again later")
    rt.rf = lambda: EmptyCampaign(ApiError("Referral Factory", 401, "Unauthenticated"))  # type: ignore[method-assign]
    with pytest.raises(BackfillError) as said:
        backfill(rt, "42")                                                            # type: ignore[arg-type]
    assert "`bridge rf connect` (it asks for the new token)" in str(said.value)


BLOCKED = CircuitOpen("Referral Factory answered 403: Forbidden (since 2026-01-01T00:00:00Z): Referral Factory has "
                      "probably blocked this IP for going over its rate limit. No call goes to it until "
                      "2026-01-01T00:15:00Z, when one call checks again; the work waits in the queue", retry_after=900)


def test_rf_blocking_the_bridges_ip_is_said_with_what_to_do_not_run_again_later():
    """RF's 403 after repeated excess blocks the IP for up to days: "nothing to change, run again later"
    would have the operator wait days; doctor and backfill say RF blocked this IP and to ask RF's support."""
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    rt.work.apis.rf_.campaign_answers = [BLOCKED]
    campaign = finding(rt, "rf.campaign")
    assert campaign["what"].startswith("Referral Factory has blocked this IP: campaign 42 could not be checked")
    assert "up to days" in campaign["why"] and "not dead-lettered" in campaign["why"]
    assert campaign["fix"].startswith("ask Referral Factory's support to lift the block of the bridge's IP")
    assert "nothing to change" not in campaign["fix"] and "rf connect" not in campaign["fix"]
    rt.rf = lambda: EmptyCampaign(BLOCKED)                                           # type: ignore[method-assign]
    with pytest.raises(BackfillError) as said:
        backfill(rt, "42")                                                            # type: ignore[arg-type]
    assert "— ask Referral Factory's support to lift the block" in str(said.value)


def rf_answering(status: int, message: str) -> Any:
    """Referral Factory's real client, outside the shared limiter (as `bridge rf connect` asks RF), answered
    `status` to every call: what RF said, with no open circuit to say it for it."""
    from chalicelib.adapters.referral_factory import ReferralFactoryClient
    from tests.fakes import FakeClock
    with answering(status, {"message": message}) as (url, _):
        clock = FakeClock()
        rf = ReferralFactoryClient(url, "t", clock=clock, sleeper=clock.sleep, timeout=2)
        try:
            rf.get_campaign("42")
        except WorkError as exc:
            return EmptyCampaign(exc)
    raise AssertionError("RF's client took an error answer for a campaign")


def test_rfs_403_is_its_block_of_the_ip_however_it_is_seen_never_a_replay_of_letters_it_never_makes(capsys):
    """RF's 403 is its block of the bridge's IP: the worker's limiter opens its circuit, and the work waits
    (tests/integration/test_troubleshooting.py: RF's 403 makes no dead letter). Doctor and backfill told RF's
    403 as a refused token, with `bridge dlq replay --reason 'Referral Factory answered 403'`, which selects no
    letter (a refused token's letters say "answered 401"). Whatever client saw it, it is said as the block."""
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    blocked = rf_answering(403, "IP blocked")
    rt.rf = lambda: blocked                                                           # type: ignore[method-assign]
    view = examine(rt, "42").view()                                                   # type: ignore[arg-type]
    [campaign] = [f for f in view["findings"] if f["check"] == "rf.campaign"]
    assert campaign["what"].startswith("Referral Factory has blocked this IP"), campaign
    assert campaign["fix"].startswith("ask Referral Factory's support to lift the block"), campaign
    with pytest.raises(BackfillError) as said:
        backfill(rt, "42")                                                            # type: ignore[arg-type]
    assert "— ask Referral Factory's support to lift the block" in str(said.value), said.value
    assert replays_advised(view, str(said.value)) == []
    refused = rf_answering(401, "Unauthenticated.")             # the token's refusal: its letters' replay
    rt.rf = lambda: refused                                                           # type: ignore[method-assign]
    assert replays_advised(examine(rt, "42").view()) == ["Referral Factory answered 401"]   # type: ignore[arg-type]


def test_rfs_401_reason_is_the_one_fix_and_doctor_and_backfill_say_it_once_beside_the_answer():
    """RF's 401 reason was written by hand in its client ("the RF token is invalid: run `bridge rf connect`, then
    replay the dead-letter queue"), apart from the fix doctor and the dead letters give: doctor's [rf.campaign] and
    backfill said it in their finding, then the fix (a second, other replay). The reason is RF's answer, then the
    one fix (advice.rf_token_fix: the reconnect, then the replay by RF's refusal); where a command gives that fix
    itself, it says the answer alone beside it."""
    from chalicelib.domain.advice import rf_token_fix
    refused = rf_answering(401, "Unauthenticated.")
    answer = "Referral Factory answered 401: Unauthenticated."
    assert refused.exc.reason == f"{answer} — {rf_token_fix()}"
    assert refused.exc.status == 401 and refused.exc.message == "Unauthenticated."
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    rt.rf = lambda: refused                                                           # type: ignore[method-assign]
    campaign = finding(rt, "rf.campaign")
    assert (campaign["what"], campaign["fix"]) == (f"Referral Factory could not show campaign 42: {answer}",
                                                   rf_token_fix())
    with pytest.raises(BackfillError) as said:
        backfill(rt, "42")                                                            # type: ignore[arg-type]
    assert str(said.value) == f"Referral Factory could not show campaign 42: {answer} — {rf_token_fix()}"


class BlockedCampaign:
    """Referral Factory while it blocks the bridge's IP: the limiter's open circuit refuses every call."""

    def users_page(self, *_: Any) -> PeoplePage:
        raise BLOCKED

    def get_campaign(self, campaign_id: str) -> dict:
        raise BLOCKED


def test_backfill_while_rf_blocks_the_ip_says_to_ask_rfs_support(capsys):
    """README: "`bridge doctor` says so ("Referral Factory has blocked this IP"), as does `bridge backfill`".
    A blocked RF refuses backfill's first call, the page of people (the test above reaches the advice only
    through a campaign whose page comes back empty, which a block never gives): the operator read the open
    circuit's reason ("the work waits in the queue": backfill queued nothing) and no word of RF's support."""
    from chalicelib.cli import main
    rt = Doctored()
    rt.rf = lambda: BlockedCampaign()                                                 # type: ignore[method-assign]
    capsys.readouterr()
    code = main(["backfill", "42"], rt=rt)                                            # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert code == 1 and "ask Referral Factory's support to lift the block" in err, err


PLAN = "Intercom answered 403 api_plan_restricted: Active subscription needed."


def test_work_intercom_refused_for_the_workspaces_plan_is_advised_the_plan_not_a_new_token(capsys):
    """A join Intercom refuses with 403 `api_plan_restricted` is dead-lettered at once (a retry fails the
    same way); explain, doctor's dead-letter finding and `dlq list` say the plan refuses the API and that a
    new token will not help, not "fix the cause"."""
    from types import SimpleNamespace

    from chalicelib.config import Config
    from chalicelib.services.explain import as_text, explain
    from tests.support.cli import run_cli
    from tests.unit.test_join_use_case import join
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    rt.work.apis.intercom_.fail["create"] = Permanent(PLAN, status=403)
    assert scenario.run(rt.work, join())["dead"] == 1                                  # its first try: no retry
    [letter] = rt.work.queue.dead
    assert (letter["reason"], letter["attempts"]) == (PLAN, 1)
    said = ("Intercom's plan for {} does not include the API: upgrade it to a plan that does (a new token will not "
            "help: the plan refuses every token), then `bridge dlq replay --campaign 42` (see `bridge dlq list`)")

    fixes = [e["fix"] for e in explain(rt.work, "ann@example.com").view()["trail"] if e.get("fix")]
    assert fixes == [said.format("the workspace")] * 2            # the join's failure and its dead letter
    assert f"fix: {said.format('the workspace')}" in as_text(explain(rt.work, "ann@example.com"))
    [dead] = [f for f in examine(rt, "42").view()["findings"] if f["check"] == "dead_letters"]
    assert dead["fix"] == said.format("workspace ws")

    cli = SimpleNamespace(config=Config.from_env({"BRIDGE_DLQ_URL": "https://sqs/dlq"}), queue=rt.work.queue,
                          clock=rt.work.clock)
    code, out, _ = run_cli(cli, capsys, "dlq", "list")
    assert code == 0 and out.splitlines()[-2:] == [f"    {PLAN}", f"    fix: {said.format('the workspace')}"]
    code, out, _ = run_cli(cli, capsys, "dlq", "list", "--json")
    assert __import__("json").loads(out)["dead_letters"][0]["fix"] == said.format("the workspace")


def test_only_intercoms_plan_refusal_is_told_the_plan():
    from chalicelib.errors import plan_restricted
    assert plan_restricted(PLAN) and plan_restricted(f"gave up after 3 tries: {PLAN}")
    assert plan_restricted("Intercom answered 403: Your plan does not include API access.")
    assert not plan_restricted("Intercom answered 401: Unauthorized — plan B")         # not a 403
    assert not plan_restricted("Referral Factory answered 403 api_plan_restricted: no")   # not Intercom's
    assert not plan_restricted("Intercom answered 403 token_unauthorized: Not authorized")
    assert plan_restricted("anything", 403) is False and plan_restricted("api_plan_restricted", 403)


# --- a check that cannot run is said, never left out ----------------------------------------------------
def unchecked(view: dict, check: str) -> dict:
    [found] = [f for f in view["findings"] if f["check"] == check]
    assert found["ok"] and found["warn"] and found["what"].startswith("not checked: "), found
    return found


def test_with_intercom_unavailable_the_checks_needing_it_say_they_were_not_checked_and_why():
    """Before: `settings.workspace` and `duplicates` were silently missing from the findings."""
    rt = Doctored()
    rt.work.apis.intercom_.me = raising(UNAVAILABLE["500"]("Intercom"))                 # type: ignore[attr-defined]
    scenario.joined(rt.work, email="pat@example.com")                                   # a pending lead
    view = examine(rt, "42").view()
    against = unchecked(view, "settings.workspace")
    assert against["what"] == ("not checked: the settings against workspace ws's data attributes (they could "
                               "not be read)")
    assert against["fix"] == "fix what [intercom.token] says, then run `bridge doctor 42` again"
    assert unchecked(view, "duplicates")["fix"].startswith("fix what [intercom.token] says")
    assert not view["ok"] and "intercom.token" in {f["check"] for f in view["findings"] if not f["ok"]}  # the cause


def test_with_rf_unavailable_whether_its_newest_person_arrived_is_said_not_checked():
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    rt.work.apis.rf_.campaign_answers = [UNAVAILABLE["timeout"]("Referral Factory")]
    newest = unchecked(examine(rt, "42").view(), "webhooks.rf_missing")
    assert "reached the bridge" in newest["what"] and newest["fix"].startswith("fix what [rf.campaign] says")


def test_a_failed_search_for_a_pending_leads_duplicates_is_said_not_checked():
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    scenario.joined(rt.work, email="pat@example.com")
    rt.work.apis.intercom_.fail["search"] = ApiError("Intercom", 500, "Internal error")
    found = unchecked(examine(rt, "42").view(), "duplicates")
    assert "1 of 1 pending lead(s) searched (Intercom: " in found["what"] and "Internal error" in found["what"]


@pytest.mark.parametrize("vendor", ["Intercom", "Referral Factory"])
def test_a_letter_an_outage_outlasted_is_replayed_once_the_vendor_answers_not_after_fixing_a_cause(vendor):
    """Scenario: an outage longer than BRIDGE_OUTAGE_HOURS dead-letters campaign 42's work. Its reason says
    "replay it once <vendor> answers again"; `dlq list`, explain and doctor said "fix the cause" (there is none)."""
    from chalicelib.domain.outage import outage_wait
    from chalicelib.services.dead_letters import replay_fix
    reason = outage_wait(vendor, f"{vendor} answered 503", since=0.0, now=86400.0, budget=86400.0, status=503).reason
    assert replay_fix(reason, "42") == (f"once {vendor} answers again, `bridge dlq replay --campaign 42` "
                                        "(see `bridge dlq list`)")


# --- an RF token refused, or of another account, while a notification's letter waits ------------------
GONE = "Referral Factory answered 404: User not found."


def with_a_notifications_letter(reason: str, rf_answer: Optional[Exception]) -> dict:
    """Doctor's view of campaign 42 while an Intercom notification's letter (it names no campaign) failed for
    `reason`, and RF answers `rf_answer` when asked for the campaign."""
    rt = healthy()
    rt.config = type(rt.config).from_env({"BRIDGE_MAX_ATTEMPTS": "3", "BRIDGE_DLQ_URL": "memory://dlq"})
    rt.work.queue.dead_letter(json.dumps({"kind": "intercom.contact", "workspace": scenario.WS,
                                          "item": {"id": "c9", "type": "contact"}}), reason, 3, "2026-09-21T14:00:00Z")
    rt.work.apis.rf_.campaign_answers = [rf_answer]
    return examine(rt, "42").view()                                 # type: ignore[arg-type]


def test_a_revoked_rf_token_gets_one_replay_from_doctor_that_reaches_a_notifications_letter_too():
    """Scenario: RF refuses the bridge's token (revoked): a qualification an Intercom notification made
    dead-letters that notification (its message names no campaign). A user would see: [rf.campaign] said
    `bridge dlq replay --campaign 42`, which leaves that letter (a reward) in the queue, while [dead_letters]
    said another command. Expected: both say the one replay by RF's refusal, which reaches every letter."""
    revoked = ("Referral Factory answered 401: Unauthenticated. — the RF token is invalid: run `bridge rf connect`, "
               "then replay the dead-letter queue")
    view = with_a_notifications_letter(revoked, Permanent(revoked, status=401))
    [campaign], [letters] = checks(view, "rf.campaign"), checks(view, "dead_letters")
    replay = "`bridge dlq replay --reason 'Referral Factory answered 401'`"
    assert replay in campaign["fix"] and "--campaign" not in campaign["fix"], campaign["fix"]
    assert replay in letters["fix"], letters["fix"]


def test_with_an_rf_token_of_another_account_doctor_never_advises_discarding_a_notifications_qualification():
    """Scenario: the RF token is of another RF account than campaign 42's: RF answers 404 for the campaign and
    `User not found.` for every user, so a qualification an Intercom notification made dead-letters that
    notification (its message names no campaign). Doctor knows the token is the cause ([rf.campaign]) and says
    so for the campaign's own letters, but for the notification's it still advises
    `bridge dlq discard --reason "Referral Factory answered 404: User not found" --yes` — no --campaign: it
    takes every campaign's such letters out for good, valid qualifications (rewards) among them."""
    view = with_a_notifications_letter(f"gave up after 3 tries: {GONE}",
                                       Permanent("Referral Factory answered 404: Campaign not found.", status=404))
    [campaign] = checks(view, "rf.campaign")
    assert not campaign["ok"] and "`bridge rf connect`" in campaign["fix"]
    [letters] = checks(view, "dead_letters")
    assert "name no campaign" in letters["what"], letters
    assert "dlq discard" not in letters["fix"], letters["fix"]
    assert "`bridge rf connect`" in letters["fix"] and "dlq replay" in letters["fix"]


def own_budget_spent(vendor: str, budget: str) -> WorkError:
    """What the bridge's own shared budget raises when its slots are spent (by its workers), as the limiter says it."""
    from tests.support.budget import limiter, spend
    return spend(limiter(budget, 5, vendor, waiter="bridge doctor")[0])


def budget_table_throttled(vendor: str, budget: str) -> WorkError:
    """What the limiter raises when DynamoDB throttles its table (the shared budget's slots are kept there), before
    any call to the vendor."""
    from tests.support.budget import limiter
    gate, _ = limiter(budget, 5, vendor, throttled=True)
    with pytest.raises(WorkError) as throttled:
        gate.acquire()
    return throttled.value


HELD_BACK = {"own budget": own_budget_spent, "its table throttled": budget_table_throttled}


@pytest.mark.parametrize("held", list(HELD_BACK))
def test_a_call_the_bridges_own_budget_held_back_is_not_said_the_vendors_unavailability(held):
    """Scenario: the bridge's workers spent the shared RF budget (a burst of joins, a sync), or DynamoDB throttled the
    table it is kept in, as doctor asked RF about the campaign: RF was never called. Doctor said "Referral Factory is
    unavailable or limiting the bridge now", and the operator looked at RF's status page. Expected: it says whose
    limit held the call back, the bridge's own budget (and the setting that sizes it) or AWS's throttling of the
    bridge's table, and where to look."""
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}              # type: ignore[attr-defined]
    exc = HELD_BACK[held]("Referral Factory", "referral-factory")
    rt.work.apis.rf_.campaign_answers = [exc]
    campaign = finding(rt, "rf.campaign")
    assert not campaign["ok"] and "Referral Factory is unavailable" not in campaign["what"] + campaign["why"]
    assert "Referral Factory is" not in campaign["fix"] and "campaign id" not in campaign["fix"]
    if held == "own budget":
        assert campaign["what"] == ("the bridge's own Referral Factory budget is spent for now (its workers use it; "
                                    f"Referral Factory was not called): campaign 42 could not be checked ({exc.reason})")
        assert exc.reason == ("the bridge's own shared Referral Factory budget (5 calls per 60s) is spent for now: "
                              "Referral Factory was not called (the next slot is 20.0s away; bridge doctor may wait "
                              "0.0s more)")
        assert campaign["why"] == ("joins and qualifications wait in the queue, without using up a try, and go on by "
                                   "themselves as the budget frees slots")
        assert campaign["fix"] == ("nothing to change: run `bridge doctor 42` again in a minute; if the budget stays "
                                   "spent, the work needs more calls than RF_CALLS_PER_MINUTE allows (raise it only as "
                                   "far as Referral Factory's own limit allows)")
    else:
        assert campaign["what"] == ("DynamoDB throttled the bridge's own calls (Referral Factory was not called): "
                                    f"campaign 42 could not be checked ({exc.reason})")
        assert campaign["why"] == waiting("DynamoDB", "joins and qualifications").replace(
            "once DynamoDB answers; an outage (5xx, timeouts)", "once DynamoDB takes the bridge's calls again; a "
            "throttling")
        assert campaign["fix"] == ("nothing to change: the work waits; if it lasts, look at DynamoDB's throttled "
                                   "requests in CloudWatch; run `bridge doctor 42` again later")


@pytest.mark.parametrize("held", list(HELD_BACK))
def test_intercom_calls_the_bridges_own_budget_held_back_name_the_budget_or_aws_not_intercom(held):
    rt = Doctored()
    rt.work.apis.intercom_.me = raising(HELD_BACK[held]("Intercom", "intercom#ws"))    # type: ignore[attr-defined]
    token = finding(rt, "intercom.token")
    assert not token["ok"] and not token["what"].startswith("Intercom is unavailable")
    assert token["what"].startswith("the bridge's own Intercom budget is spent for now" if held == "own budget" else
                                    "DynamoDB throttled the bridge's own calls")
    assert "INTERCOM_CALLS_PER_10S" in token["fix"] if held == "own budget" else "CloudWatch" in token["fix"]


@pytest.mark.parametrize("held", list(HELD_BACK))
def test_backfill_that_the_bridges_own_budget_held_back_says_so_not_rf(held):
    rt = Doctored()
    rt.rf = lambda: EmptyCampaign(HELD_BACK[held]("Referral Factory", "referral-factory"))  # type: ignore[method-assign]
    with pytest.raises(BackfillError) as said:
        backfill(rt, "42")                                                            # type: ignore[arg-type]
    assert "Referral Factory is unavailable" not in str(said.value)
    assert str(said.value).endswith("run `bridge backfill 42` again later" if held != "own budget" else
                                    "run `bridge backfill 42` again in a minute")


def test_doctor_says_its_own_check_of_the_rf_token_in_a_notifications_user_not_found_fix():
    """A user walk: a notification's letter RF answered `User not found.` (it names no campaign) had the fix "... an RF
    token of another account than the campaign's says so of every user (`bridge doctor` checks it) ...", printed by
    doctor itself, right after its [rf.campaign] showed campaign 42 with the token. It says that check instead, and
    what checks a user of another campaign."""
    view = with_a_notifications_letter(f"gave up after 3 tries: {GONE}", None)        # RF shows campaign 42
    [campaign], [letters] = checks(view, "rf.campaign"), checks(view, "dead_letters")
    assert campaign["ok"] and "name no campaign" in letters["what"], (campaign, letters)
    assert "(`bridge doctor` checks it)" not in letters["fix"], letters["fix"]
    assert ("([rf.campaign] shows the RF token reaches campaign 42; for a user of another campaign, `bridge doctor "
            "<that campaign>` checks it)") in letters["fix"], letters["fix"]
