"""Reading the dead-letter queue reads every letter once, even when the scan outlasts the time it
hides each letter (thousands of letters on a slow link): it hides the letters it holds again before
their time runs out. On the queue's in-memory twin, which keeps SQS's hide times by a fake clock."""
from __future__ import annotations

import json

from chalicelib.adapters.memory import MemoryStore
from chalicelib.ports import ReceivedLetter
from chalicelib.services.dead_letters import holding, look
from tests.fakes import FakeClock, FakeQueue


class SlowLink(FakeQueue):
    """Each receive takes `receive_seconds` and each hide call `hide_seconds` (the clock moves before
    the queue answers)."""

    def __init__(self, clock: FakeClock, receive_seconds: float = 1.0, hide_seconds: float = 0.0):
        super().__init__(clock)
        self.fake_clock, self.receive_seconds, self.hide_seconds = clock, receive_seconds, hide_seconds

    def receive_dead(self, max_messages: int = 10, visibility: int = 60) -> list[ReceivedLetter]:
        self.fake_clock.now += self.receive_seconds
        return super().receive_dead(max_messages, visibility)

    def hide_dead_many(self, receipt_handles: list[str], seconds: int) -> set[str]:
        self.fake_clock.now += self.hide_seconds if seconds > 0 else 0
        return super().hide_dead_many(receipt_handles, seconds)


class Rt:
    def __init__(self, queue: FakeQueue, clock: FakeClock):
        self.queue, self.clock = queue, clock
        self.store = MemoryStore(clock)          # the histories a replay notes its letters in


def letters(n: int, hide_seconds: float = 0.0, about: int | None = None, receive_seconds: float = 1.0) -> Rt:
    clock = FakeClock()
    queue = SlowLink(clock, receive_seconds, hide_seconds)
    for i in range(n):
        body = {"kind": "join", "campaign_id": "42", "rf_user_id": "7" if i == about else str(1000 + i)}
        queue.dead_letter(json.dumps(body), "boom", 3, "2026-01-01T00:00:00Z")
    return Rt(queue, clock)


def visible_now(queue: FakeQueue) -> int:
    return sum(at <= queue.clock() for at in queue._visible_at.values())


def test_a_scan_longer_than_the_hide_time_reads_every_letter_exactly_once():
    """2,000 letters, 200 receives of a second each, each letter hidden for 60 s: no letter comes back."""
    rt = letters(2_000)
    start = rt.clock()
    with holding(rt, 60) as (received, held, not_seen, cut, _):
        assert rt.clock() - start >= 200                                    # more than three hide times
        ids = [m.message_id for m in received]
        assert visible_now(rt.queue) == 0                                   # all still hidden while held
    assert len(ids) == len(set(ids)) == 2_000 and not_seen == 0 and not cut
    assert {m.receive_count for m in received} == {1}      # none received twice
    assert rt.queue.dead_calls["receive"] == 201                        # the last one answers nothing
    assert visible_now(rt.queue) == 2_000                                   # all visible again at once after
    # Hidden again 10 a call, each letter about every half hide time: ~2,000 / 10 * 200 / 30, not one by one.
    assert rt.queue.dead_calls["hide"] <= 1_400


def test_a_scan_shorter_than_the_hide_time_hides_nothing_again():
    rt = letters(95)
    with holding(rt, 60) as (received, _, not_seen, cut, _):
        assert len(received) == 95 and not_seen == 0 and not cut
    assert rt.queue.dead_calls["hide"] == 0 and visible_now(rt.queue) == 95


def test_a_scan_reaching_its_limit_says_the_rest_were_not_read():
    rt = letters(95)
    with holding(rt, 60, limit=50) as (received, _, not_seen, cut, _):
        assert len(received) == 50 and cut and not_seen == 45
    assert visible_now(rt.queue) == 95


def test_a_link_too_slow_to_hide_them_again_in_time_ends_the_scan_with_every_letter_once():
    """Each hide call takes longer than the hide time: the letters come back all the same. It stops
    there (never loops), lists each letter once, and says the rest were not read (not hidden by
    another command)."""
    rt = letters(2_000, hide_seconds=100)
    found = look(rt)
    ids = [d.message_id for d in found.letters]
    assert len(ids) == len(set(ids)) < 2_000
    assert found.cut and found.not_seen == 2_000 - len(ids)
    assert visible_now(rt.queue) == 2_000


def test_forget_deletes_the_persons_letter_as_soon_as_it_is_received():
    """Deleted while its handle is fresh, not after the whole scan; the others are released."""
    from chalicelib.services.privacy import forget_dead_letters
    rt = letters(40, about=3)
    deleted_at: list[int] = []
    delete = rt.queue.delete_dead
    rt.queue.delete_dead = lambda handle: (deleted_at.append(rt.queue.dead_calls["receive"]),  # type: ignore
                                           delete(handle))[1]
    assert forget_dead_letters(rt, "ann@example.com", {("42", "7")}, set()) == (1, 0, False)
    assert deleted_at == [1] and rt.queue.dead_calls["receive"] == 5        # at its receive, not after the scan
    assert rt.queue.dead_count() == 39 and visible_now(rt.queue) == 39


def test_a_slow_forget_deletes_every_letter_about_the_person_and_reads_all_the_others():
    """400 s of receives, each letter hidden for forget's 300 s: the letter about them comes last."""
    from chalicelib.services.privacy import FORGET_SECONDS, forget_dead_letters
    rt = letters(2_000, about=1_999, receive_seconds=2)                    # the last letter it receives
    assert 200 * 2 > FORGET_SECONDS
    assert forget_dead_letters(rt, "ann@example.com", {("42", "7")}, set()) == (1, 0, False)
    assert rt.queue.dead_count() == 1_999 and visible_now(rt.queue) == 1_999


class OneStall(SlowLink):
    """One hide-again call stalls for 200 s (botocore's read timeout and its retries): the letters it
    was to hide come back, and the queue refuses to hide them again."""

    def __init__(self, clock: FakeClock):
        super().__init__(clock, receive_seconds=1.0, hide_seconds=2.0)
        self.stalled, self.start = False, clock.now

    def hide_dead_many(self, receipt_handles: list[str], seconds: int) -> set[str]:
        if seconds > 0 and not self.stalled and self.fake_clock.now - self.start >= 200:
            self.stalled = True
            self.fake_clock.now += 200
        return super().hide_dead_many(receipt_handles, seconds)


def test_a_replay_whose_letters_came_back_during_a_stall_sends_only_those_it_holds_and_says_the_rest():
    """Letters read but no longer held (they came back; another reader may hold them) are not sent:
    each letter held is sent once and leaves the queue, the others are "not read", and a second replay
    sends them."""
    from chalicelib.services.dead_letters import replay

    rt = letters(0)
    rt.queue = OneStall(rt.clock)
    for i in range(3_000):
        rt.queue.dead_letter(json.dumps({"kind": "join", "campaign_id": "42", "rf_user_id": str(i)}), "boom", 3, "t")
    first = replay(rt, reason="boom")
    assert first["not_seen"] > 0 and first["cut"] and first["left"] == 0
    assert first["replayed"] + first["not_seen"] >= 3_000
    sent = [json.loads(m)["rf_user_id"] if isinstance(m, str) else m["rf_user_id"] for m in rt.queue.sent]
    assert len(sent) == len(set(sent)) == first["replayed"]                          # none sent twice
    assert rt.queue.dead_count() == 3_000 - first["replayed"]                        # each sent one left the queue
    rt.clock.now += 3_600
    second = replay(rt, reason="boom")
    assert first["replayed"] + second["replayed"] == 3_000 and second["not_seen"] == 0
