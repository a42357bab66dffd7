"""A replay of thousands of dead letters on a slow link lasts far longer than the time it hides each
letter: it keeps the letters it has not sent yet hidden while it sends (so no other reader sees or
takes them), sends each exactly once, and takes each out of the dead-letter queue once its copy was
sent. A letter that came back all the same (a stall) is not sent, is reported, and the next replay
sends it; Ctrl-C leaves every letter not sent visible again at once. On the queue's in-memory twin,
which keeps SQS's hide times by a fake clock."""
from __future__ import annotations

import json
from typing import Callable, Optional, Sequence

import pytest

from chalicelib.adapters.queue import MAX_BODY_BYTES, REPLAY_ROOM, encode
from chalicelib.domain.history import iso
from chalicelib.ports import Later, ReceivedLetter
from chalicelib.services.dead_letters import REPLAY_SECONDS, look, replay
from tests.fakes import FakeClock, FakeQueue
from tests.unit.test_dead_letters_scan import Rt, SlowLink, visible_now

LETTERS = 3_000


class SlowSends(SlowLink):
    """Each message sent to the work queue takes `send_seconds` (a batch of ten, ten times that);
    `before_send(seconds_sending)` runs before each send call, the clock already moved."""

    def __init__(self, clock: FakeClock, send_seconds: float = 1.0):
        super().__init__(clock, receive_seconds=1.0)
        self.send_seconds, self.sending_since = send_seconds, None
        self.before_send: Callable[[float], None] = lambda seconds: None

    def _slow(self, n: int) -> None:
        self.fake_clock.now += self.send_seconds * n
        if self.sending_since is None:
            self.sending_since = self.fake_clock.now
        self.before_send(self.fake_clock.now - self.sending_since)

    def send_many(self, messages: Sequence[dict | str], delay: float = 0) -> None:
        self._slow(len(messages))
        super().send_many(messages, delay)


def dead_letters(n: int = LETTERS) -> Rt:
    clock = FakeClock()
    queue = SlowSends(clock)
    for i in range(n):
        queue.dead_letter(json.dumps({"kind": "join", "campaign_id": "42", "rf_user_id": str(i)}), "boom", 3, "t")
    return Rt(queue, clock)


def sent_ids(queue: SlowSends) -> list[str]:
    return [(json.loads(m) if isinstance(m, str) else m)["rf_user_id"] for m in queue.sent]


def once(hook: Callable[[float], None], after: float) -> Callable[[float], None]:
    """`hook` run at the first send `after` seconds into sending, never again."""
    done: list[bool] = []

    def run(seconds: float) -> None:
        if seconds >= after and not done:
            done.append(True)
            hook(seconds)
    return run


def test_a_replay_far_longer_than_its_hide_time_sends_each_letter_once_and_empties_the_queue():
    """3,000 letters, a second each to send (50 minutes), each hidden for 5 minutes: halfway, another
    operator's `dlq list` sees none of them (all still hidden), and none is sent twice or left behind."""
    rt = dead_letters()
    assert REPLAY_SECONDS == 300
    listed: list = []
    rt.queue.before_send = once(lambda _: listed.append(look(Rt(rt.queue, rt.clock))), after=1_500)
    done = replay(rt, reason="boom")
    assert done == {"replayed": LETTERS, "left": 0, "not_seen": 0}
    assert rt.clock() > 10 * REPLAY_SECONDS
    assert listed[0].letters == [] and listed[0].not_seen > 0          # hidden from the other reader
    ids = sent_ids(rt.queue)
    assert len(ids) == len(set(ids)) == LETTERS                         # each sent exactly once
    assert rt.queue.dead_count() == 0                                   # each taken out once sent
    # Sent and deleted 10 a call; hidden again 10 a call, each letter about every half hide time.
    assert rt.queue.batch_calls == [10] * (LETTERS // 10) and rt.queue.dead_calls["delete"] == LETTERS // 10
    assert rt.queue.dead_calls["hide"] <= LETTERS // 10 * (rt.clock() // (REPLAY_SECONDS / 2) + 1)


def test_letters_that_came_back_during_a_stalled_send_are_not_sent_and_the_next_replay_sends_them():
    """A send stalls for 400 s (botocore's timeouts and retries): every letter not sent yet came back,
    and another reader takes 30 meanwhile, among them the ten in that send. No letter that came back
    is sent; the replay says they were not read, they stay dead letters, and the next replay (the
    other reader done) sends them. The ten sent in the stall, back from the other reader before the
    replay ends, are taken out by it: none is sent twice."""
    rt = dead_letters()
    other: list[ReceivedLetter] = []

    def stall(_: float) -> None:
        rt.clock.now += 400
        other.extend(rt.queue.receive_dead(max_messages=30, visibility=120))    # another reader holds them
    rt.queue.before_send = once(stall, after=1_000)
    first = replay(rt, reason="boom")
    ids = sent_ids(rt.queue)
    assert len(ids) == len(set(ids)) == first["replayed"] < LETTERS         # none sent twice
    assert first["cut"] and first["left"] == 0 and first["not_seen"] == LETTERS - first["replayed"]
    taken = {json.loads(m.body)["rf_user_id"] for m in other}
    assert len(taken & set(ids)) == 10 and "sent_late" not in first         # the ten sent in the stall...
    assert rt.queue.dead_count() == LETTERS - first["replayed"]             # ...taken out; the others stay
    rt.queue.hide_dead_many([m.handle for m in other], 0)          # the other reader ends
    assert visible_now(rt.queue) == rt.queue.dead_count()
    second = replay(rt, reason="boom")
    assert second == {"replayed": LETTERS - first["replayed"], "left": 0, "not_seen": 0}
    ids = sent_ids(rt.queue)
    assert len(ids) == len(set(ids)) == LETTERS                             # each sent once
    assert rt.queue.dead_count() == 0


def test_letters_sent_while_a_dlq_list_held_them_are_taken_out_by_the_same_replay_and_never_sent_twice():
    """The second send of ten stalls past every letter's hide time, and a `dlq list` runs meanwhile: it
    receives them all and lets them go. The replay's delete of the ten it sent is no longer the latest
    receipt (SQS ignores it): the replay finds them again and takes them out. After it, `dlq list`
    shows only the five not sent, and the next replay sends those: each letter once."""
    rt = dead_letters(25)
    listed: list = []

    def stall(_: float) -> None:
        rt.clock.now += REPLAY_SECONDS + 100
        listed.append(look(Rt(rt.queue, rt.clock)))
    rt.queue.before_send = once(stall, after=10)
    first = replay(rt, reason="boom")
    assert len(listed[0].letters) == 15                                  # the ten being sent, and five more
    assert first == {"replayed": 20, "left": 0, "not_seen": 5, "cut": True}
    after = look(rt)
    assert sorted(int(d.rf_user_id or 0) for d in after.letters) == list(range(20, 25)) and after.not_seen == 0
    assert replay(rt, reason="boom") == {"replayed": 5, "left": 0, "not_seen": 0}
    ids = sent_ids(rt.queue)
    assert sorted(ids, key=int) == [str(i) for i in range(25)]               # none sent twice
    assert rt.queue.dead_count() == 0


def test_ctrl_c_mid_replay_leaves_every_letter_not_sent_visible_again_at_once():
    """Ctrl-C 20 minutes into sending: until then no letter was visible to another reader; after it,
    each letter sent is gone, each other one is visible at once, and the next replay sends those."""
    rt = dead_letters()
    visible_at_ctrl_c: list[int] = []

    def ctrl_c(_: float) -> Optional[None]:
        visible_at_ctrl_c.append(visible_now(rt.queue))
        raise KeyboardInterrupt
    rt.queue.before_send = once(ctrl_c, after=1_200)
    with pytest.raises(KeyboardInterrupt):
        replay(rt, reason="boom")
    ids = sent_ids(rt.queue)
    assert visible_at_ctrl_c == [0]                                          # all held hidden till then
    assert 0 < len(ids) == len(set(ids)) < LETTERS
    assert rt.queue.dead_count() == LETTERS - len(ids) == visible_now(rt.queue)   # the rest visible at once
    rt.queue.before_send = lambda seconds: None
    assert replay(rt, reason="boom")["replayed"] == LETTERS - len(ids)
    ids = sent_ids(rt.queue)
    assert len(ids) == len(set(ids)) == LETTERS and rt.queue.dead_count() == 0


def test_ctrl_c_in_the_hide_that_follows_a_send_still_takes_the_letters_sent_out_of_the_queue():
    """A slow send (200 s): the letters still held are due to be hidden again, and Ctrl-C lands in that
    hide. The ten just sent are taken out of the dead-letter queue before it (never left visible, to be
    sent again by the next replay); the fifteen others are visible again at once."""
    rt = dead_letters(25)
    real_hide, sends = rt.queue.hide_dead_many, []
    rt.queue.before_send = lambda seconds: setattr(rt.clock, "now", rt.clock.now + 200) or sends.append(1)

    def hide(handles: list[str], seconds: int) -> set[str]:
        if seconds > 0 and sends:
            raise KeyboardInterrupt
        return real_hide(handles, seconds)
    rt.queue.hide_dead_many = hide                   # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        replay(rt, reason="boom")
    assert len(sent_ids(rt.queue)) == 10 and len(sends) == 1                        # one send of ten
    assert rt.queue.dead_count() == 25 - 10 == visible_now(rt.queue)
    del rt.queue.hide_dead_many                      # the next replay, not interrupted
    assert sorted(replay(rt, reason="boom").items()) == [("left", 0), ("not_seen", 0), ("replayed", 15)]
    assert sorted(sent_ids(rt.queue), key=int) == [str(i) for i in range(25)]          # none sent twice


class RefusingDeletes:
    """An SQS client holding one dead letter; DeleteMessageBatch answers that each delete failed."""

    def __init__(self) -> None:
        self.released: list[str] = []
        self.received = False

    def receive_message(self, **kw: object) -> dict:
        if self.received:
            return {}
        self.received = True
        return {"Messages": [{"MessageId": "d1", "ReceiptHandle": "h1", "Attributes": {}, "MessageAttributes": {
            "reason": {"DataType": "String", "StringValue": "boom"}}, "Body": json.dumps(
                {"kind": "rf.join", "campaign_id": "42", "rf_user_id": "7", "person": {"id": "7"}})}]}

    def get_queue_attributes(self, **kw: object) -> dict:
        return {"Attributes": {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "1"}}

    def change_message_visibility_batch(self, Entries: list[dict], **kw: object) -> dict:
        self.released += [e["ReceiptHandle"] for e in Entries if e["VisibilityTimeout"] == 0]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def send_message_batch(self, Entries: list[dict], **kw: object) -> dict:
        return {"Successful": [{"Id": e["Id"], "MessageId": "w1"} for e in Entries]}

    def delete_message_batch(self, Entries: list[dict], **kw: object) -> dict:
        return {"Failed": [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in Entries]}


def test_a_letter_sent_back_that_sqs_would_not_delete_is_said_to_be_still_a_dead_letter():
    from chalicelib.adapters.queue import Queue
    sqs = RefusingDeletes()
    done = replay(Rt(Queue("https://q/work", "https://q/dlq", client=sqs), FakeClock()))
    assert done == {"replayed": 1, "left": 0, "not_seen": 0,
                    "not_taken_out": 1, "not_taken_out_because": {"InternalError": 1}}
    assert sqs.released == ["h1"]                                   # visible again at once, not hidden for 5 min


def test_the_next_replay_sends_again_the_letters_sqs_would_not_take_out(capsys):
    from types import SimpleNamespace

    from tests.support.cli import run_cli
    rt = dead_letters(25)
    rt.config = SimpleNamespace(dlq_url=rt.queue.dlq_url)         # type: ignore[attr-defined]
    rt.queue.refuse_delete = lambda handle: "InternalError" if handle.startswith("d4@") else None
    code, out, err = run_cli(rt, capsys, "dlq", "replay")
    assert code == 1 and out == "25 message(s) sent back to the work queue\n"
    assert err == ("bridge: SQS would not take 1 message(s) sent back out of the dead-letter queue (InternalError): "
                   "they are still dead letters, and `bridge dlq replay` sends them again (harmless: a message that "
                   "comes twice is worked once)\n")
    assert rt.queue.dead_count() == 1 == visible_now(rt.queue)
    rt.queue.refuse_delete = lambda handle: None
    assert run_cli(rt, capsys, "dlq", "replay", "--json")[:2] == (
        0, json.dumps({"replayed": 1, "left": 0, "not_seen": 0}, indent=2) + "\n")
    assert sorted(sent_ids(rt.queue), key=int) == sorted([str(i) for i in range(25)] + ["3"], key=int)
    assert rt.queue.dead_count() == 0


def test_a_letter_sqs_refuses_stays_a_dead_letter_and_is_named_once_every_other_is_sent():
    rt = dead_letters(25)
    rt.queue.refuse = lambda m: "InvalidMessageContents" if json.loads(m)["rf_user_id"] == "3" else None
    assert replay(rt, reason="boom") == {"replayed": 24, "left": 0, "not_seen": 0, "refused": 1,
                                         "refused_because": {"InvalidMessageContents": 1}}
    assert sorted(sent_ids(rt.queue), key=int) == [str(i) for i in range(25) if i != 3]
    assert rt.queue.dead_count() == 1 == visible_now(rt.queue)                 # visible again at once


def test_the_operator_is_told_which_letters_a_stall_left_behind_and_to_run_the_replay_again(capsys):
    """The ten sent in a stall are held by another reader past the replay's end: it cannot see them to
    take them out, and says so."""
    from types import SimpleNamespace

    from tests.support.cli import run_cli
    rt = dead_letters()
    rt.config = SimpleNamespace(dlq_url=rt.queue.dlq_url)         # type: ignore[attr-defined]

    def stall(_: float) -> None:
        rt.clock.now += 400
        rt.queue.receive_dead(max_messages=10, visibility=3_600)             # another reader, for an hour
    rt.queue.before_send = once(stall, after=1_000)
    code, out, err = run_cli(rt, capsys, "dlq", "replay")
    replayed = len(sent_ids(rt.queue))
    assert code == 1 and out == (f"{replayed} message(s) sent back to the work queue; up to 10 of them came back "
                                 "during a stall before they were taken out, and another command held them when "
                                 "the replay looked again: they may still be dead letters, and be sent again "
                                 "(harmless: a message that comes twice is worked once)\n")
    assert err.startswith(f"bridge: about {LETTERS - replayed} more dead letter(s) were not read (the scan stopped "
                          "before the end") and err.endswith("run `bridge dlq replay` again\n")


@pytest.mark.parametrize("as_json", [False, True])
def test_the_operator_is_told_what_was_sent_back_and_what_sqs_refused(capsys, as_json):
    """SQS refuses one copy of 25: the answer still says the 24 sent back (text or --json), and one line
    names the one refused and SQS's reason, never the letter's body (it may hold an email)."""
    from types import SimpleNamespace

    from tests.support.cli import run_cli
    rt = dead_letters(25)
    rt.config = SimpleNamespace(dlq_url=rt.queue.dlq_url)         # type: ignore[attr-defined]
    rt.queue.refuse = lambda m: "InvalidMessageContents: bad" if json.loads(m)["rf_user_id"] == "3" else None
    code, out, err = run_cli(rt, capsys, "dlq", "replay", *(["--json"] if as_json else []))
    assert code == 1
    if as_json:
        assert json.loads(out) == {"replayed": 24, "left": 0, "not_seen": 0, "refused": 1,
                                   "refused_because": {"InvalidMessageContents: bad": 1}}
    else:
        assert out == "24 message(s) sent back to the work queue\n"
    assert err == ("bridge: SQS refused 1 message(s) sent back to the work queue (InvalidMessageContents: bad): "
                   "they are still dead letters (`bridge dlq list` shows them); fix the cause, then run "
                   "`bridge dlq replay` again\n")
    assert rt.queue.dead_count() == 1 == visible_now(rt.queue)



GONE = "Referral Factory answered 404: User not found."


@pytest.mark.parametrize("stored, replayed_after, delayed, failure", [
    ("token", 30, 570, GONE), ("token", 599, 1, GONE), ("token", 600, 0, GONE), ("token", 3_600, 0, GONE),
    ("webhook-secret", 30, 0, GONE), ("token", 30, 0, "Referral Factory answered 401: Unauthenticated.")],
    ids=["30s-after-the-token", "599s-after", "600s-after", "an-hour-after", "30s-after-the-webhook-secret-only",
         "30s-after-the-token-of-letters-refused-for-the-token"])
def test_a_replay_right_after_rf_connect_runs_once_no_worker_holds_the_old_token_and_says_when(
        capsys, stored, replayed_after, delayed, failure):
    """The README's flow after an RF token of another account (every user "not found": never a 401 a worker would
    read the new token on): `bridge rf connect`, then `bridge dlq replay`. A running worker keeps the token it read
    and its client 5 minutes each: a copy worked at once met the old token and was dead-lettered again. Sent within
    those 10 minutes, the copies wait in the queue until they are over, and the line says until when; later, or
    after a connect that stored only the webhook secret (the token was stored long before), they do not wait; nor
    do letters RF refused the old token for (a 401: a worker that meets it again reads the new token at once)."""
    from tests.fakes import FakeWork
    from tests.support.cli import run_cli
    from tests.unit.test_join_use_case import join
    work = FakeWork(BRIDGE_DLQ_URL=FakeQueue.dlq_url)
    work.store.connections.put_rf(["token", "webhook-secret"])             # set up long before
    work.clock.now += 3_600
    for user in ("7", "8"):
        work.queue.dead_letter(json.dumps(join(user=user)), f"{failure} (user {user})", 3, iso(work.clock()))
    work.clock.now += 60
    work.store.connections.put_rf([stored])                                # `bridge rf connect`
    connected = iso(work.clock())
    work.clock.now += replayed_after
    runs_from = iso(work.clock() + delayed)
    code, out, _ = run_cli(work, capsys, "dlq", "replay", "--reason", "user 7")
    code_json, out_json, _ = run_cli(work, capsys, "dlq", "replay", "--reason", "user 8", "--json")
    assert (code, code_json) == (0, 0) and work.queue.sent_delays == [delayed, delayed]
    if delayed:
        assert out == (f"1 message(s) sent back to the work queue; they run from about {runs_from[11:19]} UTC, when "
                       f"every worker has read the RF token stored at {connected[11:19]} UTC; 1 left in the "
                       "dead-letter queue (not matching)\n")
        assert json.loads(out_json) == {"replayed": 1, "left": 0, "not_seen": 0, "runs_from": runs_from,
                                        "rf_token_stored_at": connected, "delayed": 1}
    else:
        assert out == "1 message(s) sent back to the work queue; 1 left in the dead-letter queue (not matching)\n"
        assert json.loads(out_json) == {"replayed": 1, "left": 0, "not_seen": 0}


def test_a_replay_right_after_rf_connect_runs_the_letters_rf_refused_the_token_of_at_once_beside_others_that_wait(
        capsys):
    """An operator's walk: docs/operating.md says a replay in the 10 minutes after `bridge rf connect` makes its
    letters wait "all but letters RF refused the old token for (401), which run at once". One replay of both kinds
    (a plain `bridge dlq replay`, as the README's rehearsal runs it) sent them in one batch, and the 401's waited the
    10 minutes too, as the others."""
    from tests.fakes import FakeWork
    from tests.support.cli import run_cli
    from tests.unit.test_join_use_case import join
    work = FakeWork(BRIDGE_DLQ_URL=FakeQueue.dlq_url)
    work.store.connections.put_rf(["token", "webhook-secret"])
    work.clock.now += 3_600
    for user, failure in (("7", GONE), ("8", "Referral Factory answered 401: Unauthenticated.")):
        work.queue.dead_letter(json.dumps(join(user=user)), failure, 3, iso(work.clock()))
    work.clock.now += 60
    work.store.connections.put_rf(["token"])                               # `bridge rf connect`
    work.clock.now += 30
    connected = iso(work.clock() - 30)
    code, out, _ = run_cli(work, capsys, "dlq", "replay")
    assert (code, out) == (0, f"2 message(s) sent back to the work queue; 1 of them run from about "
                              f"{iso(work.clock() + 570)[11:19]} UTC, when every worker has read the RF token stored "
                              f"at {connected[11:19]} UTC (the others, refused for the old RF token, at once)\n"), out
    delays = {json.loads(m)["rf_user_id"] if isinstance(m, str) else m["rf_user_id"]: d
              for m, d in zip(work.queue.sent, work.queue.sent_delays)}
    assert delays == {"7": 570, "8": 0}, delays


@pytest.mark.parametrize("connected_at, replayed_after, said", [
    ("2026-09-21T23:55:00Z", 60, "they run from about 2026-09-22 00:05:00 UTC, when every worker has read the RF token "
                                 "stored at 23:55:00 UTC"),
    ("2026-09-21T23:58:00Z", 180, "they run from about 00:08:00 UTC, when every worker has read the RF token stored "
                                  "at 2026-09-21 23:58:00 UTC")], ids=["runs-tomorrow", "stored-yesterday"])
def test_a_replay_around_midnight_says_the_day_of_a_time_not_todays(capsys, connected_at, replayed_after, said):
    """`bridge rf connect` at 23:55 UTC, then `bridge dlq replay`: "they run from about 00:05:00 UTC" read as a time
    of today, long past. A time of another day than now's is said with its date."""
    from chalicelib.domain.history import epoch
    from tests.fakes import FakeWork
    from tests.support.cli import run_cli
    from tests.unit.test_join_use_case import join
    work = FakeWork(BRIDGE_DLQ_URL=FakeQueue.dlq_url)
    work.clock.now = epoch(connected_at) - 60
    work.queue.dead_letter(json.dumps(join(user="7")), GONE, 3, iso(work.clock()))
    work.clock.now += 60
    work.store.connections.put_rf(["token"])                               # `bridge rf connect`
    work.clock.now += replayed_after
    code, out, _ = run_cli(work, capsys, "dlq", "replay", "--all")
    assert (code, out) == (0, f"1 message(s) sent back to the work queue; {said}\n")


def test_a_letter_as_large_as_the_queue_takes_is_replayed_with_its_mark_and_its_copy_can_wait():
    """The queue keeps room beyond a message's largest size for what travels with it later, a replay's mark
    (`replayed_from`) among it: a letter that fitted is sent back with it, and its copy waits in the queue
    like any other, not refused as too large (the replay stopped at it, every time)."""
    clock = FakeClock()
    queue = FakeQueue(clock)
    body = {"kind": "rf.join", "campaign_id": "42", "rf_user_id": "7",
            "person": {"id": "7", "campaign_id": "42", "email": "ann@example.com", "notes": ""}}
    body["person"]["notes"] = "x" * (MAX_BODY_BYTES - len(encode(body).encode()))
    queue.dead_letter(encode(body), "boom", 3, "t")
    assert replay(Rt(queue, clock), reason="boom") == {"replayed": 1, "left": 0, "not_seen": 0}
    copy = encode(queue.sent[0])
    assert json.loads(copy)["replayed_from"] == "d1" and len(copy.encode()) > MAX_BODY_BYTES
    queue.defer([Later(copy, 60, tries=1, waits=1)])         # (a worker's wait: the copy sent back as it came)
    assert queue.deferred[0].body == copy


def test_a_notification_whose_own_data_names_replayed_from_is_queued_to_the_size_any_is_so_its_letter_is_replayed():
    """The room beyond a message's largest size is for a replay's own mark: a notification whose contact has a
    custom attribute of that name (a workspace may) is as large as any other may be, not queued whole into that
    room, where its replay's mark did not fit (the replay stopped at its letter every time)."""
    from tests.unit.test_intake_and_settle import event, intercom

    item = {"type": "contact", "id": "c1", "email": "a@b.co", "updated_at": 5,
            "custom_attributes": {"replayed_from": "a workspace's own", "note": ""}}
    _, small = intercom(event(item=item))
    item["custom_attributes"]["note"] = "x" * (MAX_BODY_BYTES + REPLAY_ROOM - 10
                                               - len(encode(small.queue.sent[0]).encode()))
    reply, edge = intercom(event(item=item))
    [message] = edge.queue.sent
    assert reply.status == 200
    edge.queue.dead_letter(encode(message), "boom", 3, "t")
    assert replay(Rt(edge.queue, edge.clock), reason="boom") == {"replayed": 1, "left": 0, "not_seen": 0}


def test_a_dead_letter_a_later_version_queued_is_replayed_with_the_fields_this_one_does_not_know():
    """Rolled back over a later version's dead letters: a replay sends each back marked replayed, with what this
    version does not know of it (a field of the message, one of the person RF sent) as it came, for the version
    rolled forward again to read."""
    clock = FakeClock()
    queue = FakeQueue()
    join = {"campaign_id": "42", "rf_user_id": "7", "kind": "rf.join", "later": {"n": 1}, "received_at": 1.0,
            "person": {"id": "7", "campaign_id": "42", "type": "lead", "email": "ann@example.com", "new": True}}
    queue.dead_letter(json.dumps(join), "boom", 5, "2026-01-01T00:00:00Z")
    assert replay(Rt(queue, clock), reason="boom")["replayed"] == 1
    [sent] = [json.loads(m) if isinstance(m, str) else m for m in queue.sent]
    assert (sent["later"], sent["person"]["new"], sent["kind"]) == ({"n": 1}, True, "rf.join")
    assert sent["replayed_from"] and queue.dead_count() == 0
