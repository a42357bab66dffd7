"""`make fault` (infra/local/fault.py) breaks the running simulators over their HTTP controls (/_sim/): what
an operator rehearsing an incident sets is what a client of the simulated API gets, and `clear` ends it.
Timed faults run on the simulators' injected clock (no sleeping)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests

from infra.local import fault


@pytest.fixture
def make_fault(intercom, rf, tmp_path, capsys):
    """`make fault ARGS="..."` on a stack of these simulators: (exit code, the line printed, stdout or stderr)."""
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"api_url": intercom.base_url, "intercom_url": intercom.base_url,
                                 "rf_url": rf.base_url, "workspace": "vne310wv", "mode": "simulators"}))

    def run(args: str, lines: int = 1) -> tuple[int, str]:
        code = fault.main(args.split(), state)
        out, err = capsys.readouterr()
        said = (out + err).splitlines()
        assert len(said) == lines, said
        return code, "\n".join(said)
    return run


def rf_campaigns(rf, token="rf-token") -> int:
    return requests.get(f"{rf.base_url}/campaigns", headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code


def intercom_me(intercom) -> int:
    return requests.get(f"{intercom.base_url}/me", headers={"Authorization": "Bearer sim-token", "Intercom-Version": "2.16"},
                        timeout=5).status_code


def test_a_status_for_the_next_n_calls_is_what_the_client_gets_then_the_api_answers_again(make_fault, rf):
    code, line = make_fault("rf 503 --times 2")
    assert code == 0 and line.startswith("Referral Factory simulator: the next 2 calls answer 503")
    assert [rf_campaigns(rf) for _ in range(3)] == [503, 503, 200]
    assert rf.count() == 3                                                   # the controls are no API calls


def test_a_throttle_carries_its_retry_after_and_lasts_its_seconds_on_the_simulators_clock(make_fault, rf, clock):
    code, line = make_fault("rf 429 --retry-after 30 --for 60")
    assert code == 0 and "every call answers 429 (Retry-After: 30) for 60 s" in line
    answer = requests.get(f"{rf.base_url}/campaigns", headers={"Authorization": "Bearer rf-token"}, timeout=5)
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "30")
    assert "every call answers 429" in make_fault("show")[1]
    clock.now += 60
    assert rf_campaigns(rf) == 200
    assert make_fault("show")[1] == "Intercom simulator: no faults; Referral Factory simulator: no faults"


def test_clear_ends_an_outage_of_both_simulators(make_fault, intercom, rf):
    make_fault("intercom 503 --for 120")
    make_fault("rf 500 --times 5")
    assert (intercom_me(intercom), rf_campaigns(rf)) == (503, 500)
    code, line = make_fault("clear")
    assert code == 0 and line == ("Intercom simulator: 1 fault cleared — it answers normally; "
                                  "Referral Factory simulator: 1 fault cleared — it answers normally")
    assert (intercom_me(intercom), rf_campaigns(rf)) == (200, 200)


def test_a_revoked_token_is_refused_and_the_new_one_the_line_names_accepted(make_fault, rf):
    code, line = make_fault("rf revoke-token")
    new = line.split("accepts ")[1].split(":")[0]
    assert code == 0 and f"./bridge rf connect --token {new}, then ./bridge dlq replay" in line
    assert (rf_campaigns(rf), rf_campaigns(rf, new)) == (401, 200)


def test_a_revoked_intercom_token_is_told_to_be_reconnected_with_no_replay(make_fault, intercom):
    """Intercom refusing the workspace's token: its work waits for the reconnect, then goes on by itself."""
    code, line = make_fault("intercom revoke-token")
    new = line.split("accepts ")[1].split(":")[0]
    assert code == 0 and line.endswith(f"--token {new} (the work waiting for it then goes on by itself, no replay)")
    assert "dlq replay" not in line and intercom.tokens == {new}


def test_clear_after_a_revoked_token_does_not_say_rf_answers_normally_while_it_refuses_the_bridges_token(
        make_fault, rf):
    # What a user sees: rehearsing a revoked token, then `make fault ARGS=clear` ("the outage is over") prints
    # "Referral Factory simulator: no faults — it answers normally", yet RF still answers 401 to the bridge's
    # rf-token and every qualification goes on to the dead-letter queue. Clear gives the usual token back, and
    # its line says so.
    make_fault("rf revoke-token")
    code, line = make_fault("rf clear")
    assert code == 0 and "it answers normally, with its usual token rf-token again instead of " in line, line
    assert rf_campaigns(rf) == 200


def test_show_after_a_revoked_token_names_the_token_the_simulator_accepts_instead(make_fault, rf):
    # What a user sees: `make fault ARGS=show` said "no faults" while RF refused the bridge's rf-token: no line
    # named the token RF accepted, nor that the usual one was refused.
    new = make_fault("rf revoke-token")[1].split("accepts ")[1].split(":")[0]
    assert make_fault("rf show")[1] == f"Referral Factory simulator: no faults, refuses the usual token rf-token (401) " \
                                       f"and accepts {new}"


def test_drop_applies_the_call_then_gives_no_answer(make_fault, rf):
    make_fault("rf drop --method post --path users")
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{rf.base_url}/users", json={"campaign_id": 42, "first_name": "Ann", "email": "ann@example.com"},
                      headers={"Authorization": "Bearer rf-token"}, timeout=5)
    assert [u["email"] for u in rf.users.values()] == ["ann@example.com"]       # applied all the same
    assert rf_campaigns(rf) == 200


@pytest.mark.parametrize("args, said", [
    ("rf 200", "Referral Factory simulator: status must be an HTTP error status, 400-599"),
    ("intercom 404 --applied", "--applied goes with 500"),
    ("rf 503 --times 0", "Referral Factory simulator: times must be a whole number of calls, at least 1"),
])
def test_a_fault_the_simulator_cannot_play_is_one_line_and_nothing_changes(make_fault, rf, args, said):
    code, line = make_fault(args)
    assert code == 1 and line.startswith(said)
    assert rf.faults() == [] and rf_campaigns(rf) == 200


class _NotJson:
    status_code = 502

    def json(self):
        raise ValueError("Expecting value: line 1 column 1 (char 0)")


@pytest.mark.parametrize("answers, said", [
    (requests.ReadTimeout("read timed out"), "the Referral Factory simulator did not answer (ReadTimeout)"),
    (_NotJson(), "Referral Factory simulator: answered 502 without JSON at ")])
def test_a_simulator_that_times_out_or_answers_no_json_is_one_line_not_a_traceback(make_fault, monkeypatch,
                                                                                    answers, said):
    def answer(*_, **__):
        if isinstance(answers, Exception):
            raise answers
        return answers
    monkeypatch.setattr(requests, "request", answer)
    code, line = make_fault("rf 503")
    assert code == 1 and line.startswith(said), line


def test_without_a_running_stack_it_says_start_it(tmp_path, capsys):
    assert fault.main(["clear"], tmp_path / "none.json") == 1
    assert capsys.readouterr().err == "start the stack first: make run\n"


def test_the_log_shows_how_many_qualifications_rf_received_and_its_answers(make_fault, intercom, rf, clock):
    """Walkthrough: a rehearsal could not see from the simulator that a referral was rewarded exactly once."""
    referrer = rf.add_user(42, "ref@example.com", "Ref")
    lead = rf.add_user(42, "lead@example.com", "Lea", referrer_id=referrer["id"])
    make_fault("rf 503 --path qualification")
    for _ in range(2):
        requests.put(f"{rf.base_url}/users/qualification", json={"id": lead["id"], "qualified": True},
                     headers={"Authorization": "Bearer rf-token"}, timeout=5)
    assert rf_campaigns(rf) == 200 and intercom_me(intercom) == 200
    at = f"{datetime.fromtimestamp(clock(), timezone.utc):%H:%M:%S}"
    code, said = make_fault("rf log --method put --path qualification", lines=3)
    assert code == 0 and said == ("Referral Factory simulator: received 2 PUT call(s) to a path matching "
                                  f"'qualification'\n  {at} PUT /users/qualification 503 (user {lead['id']})\n"
                                  f"  {at} PUT /users/qualification 200 (user {lead['id']})")
    code, said = make_fault("log --last 1", lines=4)
    assert code == 0 and said == (f"Intercom simulator: received 1 call(s)\n  {at} GET /me 200\n"
                                  "Referral Factory simulator: received 3 call(s) (the last 1 shown)\n"
                                  f"  {at} GET /campaigns 200")
    assert rf.count() == 3                                                   # reading the log is no API call
    answer = requests.get(f"{rf.base_url.split('/api')[0]}/_sim/log", params={"last": "0"}, timeout=5)
    assert (answer.status_code, answer.json()) == (400, {"error": "last must be a whole number of calls, 1 to 1000"})


def test_the_log_shows_one_users_qualifications_so_a_rehearsal_sees_her_rewarded_once(make_fault, rf, clock):
    """Walkthrough: README's `rf log --method PUT --path qualification` promised "the 429s, then a single 200",
    but it showed the earlier demos' 200s too, and no line named whose qualification each was."""
    referrer = rf.add_user(42, "ref@example.com", "Ref")
    earlier, ann = (rf.add_user(42, f"{name}@example.com", name, referrer_id=referrer["id"]) for name in ("Eve", "Ann"))

    def qualify(user: dict) -> None:
        requests.put(f"{rf.base_url}/users/qualification", json={"id": user["id"], "qualified": True},
                     headers={"Authorization": "Bearer rf-token"}, timeout=5)
    qualify(earlier)
    make_fault("rf 429 --times 2 --path qualification")
    for _ in range(3):
        qualify(ann)
    at = f"{datetime.fromtimestamp(clock(), timezone.utc):%H:%M:%S}"
    code, said = make_fault(f"rf log --user {ann['id']} --method PUT --path qualification", lines=4)
    assert code == 0 and said == (f"Referral Factory simulator: received 3 PUT call(s) to a path matching "
                                  f"'qualification' about user {ann['id']}\n"
                                  + "".join(f"  {at} PUT /users/qualification {status} (user {ann['id']})\n"
                                            for status in (429, 429, 200))).rstrip("\n")
    assert f"PUT /users/qualification 200 (user {earlier['id']})" in make_fault("rf log", lines=5)[1]
    answer = requests.get(f"{rf.base_url.split('/api')[0]}/_sim/log", params={"user": str(earlier["id"])}, timeout=5)
    assert [(c["path"], c["status"], c["user"]) for c in answer.json()["calls"]] == [
        ("/users/qualification", 200, str(earlier["id"]))]


def test_only_rfs_log_names_users(make_fault):
    code, said = make_fault("intercom log --user 1001")
    assert code == 1 and said == "--user goes with rf log (Referral Factory's calls name its users)"


def test_the_usage_line_is_a_command_to_type(capsys):
    """Walkthrough: `--help` said `usage: make fault ARGS= [-h] ...`."""
    with pytest.raises(SystemExit):
        fault.parse(["--help"])
    assert capsys.readouterr().out.startswith('usage: make fault ARGS="{intercom,rf} WHAT [options]"  |  '
                                              'make fault ARGS="clear|show|log [options]"\n'
                                              "       (or: .venv/bin/python -m infra.local.fault ...")


@pytest.mark.parametrize("args", ["rf 429 --path (", "rf log --path ("])
def test_a_path_that_is_no_regex_names_the_option(capsys, args):
    """Walkthrough: `make fault ARGS="rf 429 --path '('"` said "missing ), unterminated subpattern at position 0"."""
    with pytest.raises(SystemExit) as stopped:
        fault.parse(args.split())
    assert stopped.value.code == 2 and capsys.readouterr().err.splitlines()[-1] == (
        "make fault: error: argument --path: '(' is not a regular expression (missing ), unterminated subpattern at "
        "position 0)")
