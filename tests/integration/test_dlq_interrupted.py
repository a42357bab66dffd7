"""`bridge dlq list` and `replay` never hide dead letters: a list interrupted (Ctrl-C, an error) leaves
every letter visible at once, so the next list or replay sees them all; an interrupted replay leaves
the letters it did not send back visible at once and the ones it sent back gone; and a replay or list
that runs while another command holds letters says how many it could not see."""
from __future__ import annotations

import json

import pytest

from chalicelib.ports import ReceivedLetter
from tests.support.cli import run_cli as run

LETTERS = 30


def listed(bridge, capsys) -> dict:
    code, out, _ = run(bridge.operator(), capsys, "dlq", "list", "--json")
    assert code == 0
    return json.loads(out)


@pytest.fixture
def dead(bridge):
    """30 dead letters, 3 pages of SQS's 10 and more."""
    for i in range(LETTERS):
        bridge.rt.queue.dead_letter(json.dumps({"kind": "rf.join", "campaign_id": "43", "rf_user_id": str(i)}),
                                    "gave up", 3, "now")
    return LETTERS


def interrupt(rt, name: str, after: int, exc: BaseException = KeyboardInterrupt()) -> list:
    """The runtime's queue raises `exc` at its call number `after + 1` of `name` (once)."""
    real, calls = getattr(rt.queue, name), []

    def wrapped(*args, **kwargs):
        calls.append(args)
        if len(calls) == after + 1:
            raise exc
        return real(*args, **kwargs)
    setattr(rt.queue, name, wrapped)
    return calls


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), ConnectionError("network down")])
def test_an_interrupted_list_leaves_every_dead_letter_visible_at_once(bridge, capsys, dead, exc):
    rt = bridge.operator()
    interrupt(rt, "receive_dead", after=2, exc=exc)               # 2 pages read, then Ctrl-C
    code, out, _ = run(rt, capsys, "dlq", "list")
    assert code == (130 if isinstance(exc, KeyboardInterrupt) else 1) and out == ""
    again = listed(bridge, capsys)
    assert again["total"] == dead and again["not_seen"] == 0
    code, out, err = run(bridge.operator(), capsys, "dlq", "replay")
    assert (code, out, err) == (0, f"{dead} message(s) sent back to the work queue\n", "")


def test_a_finished_list_leaves_the_queue_as_it_was(bridge, capsys, dead):
    assert listed(bridge, capsys)["total"] == dead
    assert bridge.rt.queue.dead_count() == dead
    attrs = bridge.resources.client("sqs").get_queue_attributes(
        QueueUrl=bridge.rt.config.dlq_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_replay_interrupted_before_a_letter_reached_the_queue_leaves_the_rest_visible_at_once(
        bridge, capsys, dead):
    rt = bridge.operator()
    interrupt(rt, "send_many", after=1)                            # Ctrl-C while the 2nd ten are sent
    assert run(rt, capsys, "dlq", "replay")[:2] == (130, "")
    assert bridge.queued() == 10                                   # 10 sent back
    assert listed(bridge, capsys)["total"] == dead - 10            # the 20 others, at once
    assert run(bridge.operator(), capsys, "dlq", "replay")[:2] == (0, f"{dead - 10} message(s) sent back to "
                                                                       "the work queue\n")
    assert bridge.queued() == dead and listed(bridge, capsys)["total"] == 0


def test_a_replay_interrupted_after_sending_letters_still_takes_them_out_of_the_queue(bridge, capsys, dead):
    rt = bridge.operator()
    interrupt(rt, "delete_dead_many", after=1)                     # the 2nd ten sent back, Ctrl-C at their delete
    assert run(rt, capsys, "dlq", "replay")[:2] == (130, "")
    assert bridge.queued() == 20
    assert listed(bridge, capsys)["total"] == dead - 20            # sent once, never left to be sent again
    run(bridge.operator(), capsys, "dlq", "replay")
    assert bridge.queued() == dead


def test_a_replay_while_a_list_holds_letters_says_how_many_it_could_not_see(bridge, capsys, dead):
    rt, looker = bridge.operator(), bridge.operator()
    held: list[ReceivedLetter] = []
    real = rt.queue.receive_dead

    def list_meanwhile(*args, **kwargs):                          # a `dlq list` has read one page so far
        if not held:
            held.extend(looker.queue.receive_dead(max_messages=10, visibility=120))
        return real(*args, **kwargs)
    rt.queue.receive_dead = list_meanwhile
    code, out, err = run(rt, capsys, "dlq", "replay")
    assert (code, out) == (1, f"{dead - 10} message(s) sent back to the work queue\n")
    assert err == ("bridge: about 10 more dead letter(s) were hidden by another command (a `dlq list`, `doctor`, "
                   "`forget`, `dlq replay` or `dlq discard` running, or one killed) and not sent back: "
                   "run `bridge dlq replay` again when it ends (SQS's count is approximate: for a minute after "
                   "letters are taken out it may still count them)\n")
    looker.queue.hide_dead_many([m.handle for m in held], 0)    # the list ends
    assert run(bridge.operator(), capsys, "dlq", "replay")[:2] == (0, "10 message(s) sent back to the work queue\n")
    assert bridge.queued() == dead


def test_a_list_during_a_replay_says_how_many_it_could_not_see(bridge, capsys, dead):
    rt, seen = bridge.operator(), []
    real = rt.queue.send_many

    def list_meanwhile(body, **kwargs):                           # the replay holds every letter now
        if not seen:
            code, out, _ = run(bridge.operator(), capsys, "dlq", "list")
            seen.append(out)
            code, out, _ = run(bridge.operator(), capsys, "dlq", "list", "--json")
            seen.append(json.loads(out))
        return real(body, **kwargs)
    rt.queue.send_many = list_meanwhile
    run(rt, capsys, "dlq", "replay")
    assert seen[0].startswith(f"0 dead letter(s)\nabout {dead} more are hidden by another command")
    assert seen[1]["total"] == 0 and seen[1]["not_seen"] == dead
    after = listed(bridge, capsys)
    assert after["total"] == 0 and after["not_seen"] == 0 and bridge.queued() == dead


def test_forget_while_a_list_holds_dead_letters_says_it_could_not_look_at_them_and_exits_1(bridge, capsys):
    """Dead letters about the person that another command holds hidden are not erased: `forget` says
    so (and exits 1), rather than reporting its erasure as complete; run again, it erases them."""
    for i in range(12):
        bridge.rt.queue.dead_letter(json.dumps({"kind": "rf.join", "campaign_id": "43", "rf_user_id": str(i),
                                                "person": {"email": "ann@example.com"}}), "gave up", 3, "now")
    looker = bridge.operator()
    held = looker.queue.receive_dead(max_messages=10, visibility=120)     # a `dlq list` is reading
    code, out, _ = run(bridge.operator(), capsys, "forget", "ann@example.com")
    answer = json.loads(out)
    assert code == 1 and answer["dead_letters"] == 12 - len(held)
    assert answer["dead_letters_not_seen"].startswith(f"about {len(held)} more were hidden by another command")
    assert "(a `dlq list`, `doctor`, `forget`, `dlq replay` or `dlq discard` running, or one killed)" in answer["dead_letters_not_seen"]
    looker.queue.hide_dead_many([m.handle for m in held], 0)    # the list ends
    code, out, _ = run(bridge.operator(), capsys, "forget", "ann@example.com")
    assert code == 0 and json.loads(out)["dead_letters"] == len(held) and listed(bridge, capsys)["total"] == 0
