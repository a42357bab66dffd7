"""Reading the dead-letter queue ends, even when the scan outlasts the time it hides each letter."""
from __future__ import annotations

from chalicelib.services.dead_letters import holding


class ComingBack:
    """A dead-letter queue of `n` letters whose hide time runs out after `hidden_for` receives: the
    first letters received come back while the scan is still going (as SQS's would)."""

    def __init__(self, n: int, hidden_for: int):
        self.visible = [f"m{i}" for i in range(n)]
        self.hidden: list[tuple[int, str]] = []       # (receive at which it comes back, id)
        self.receives, self.hidden_for, self.released = 0, hidden_for, []

    def receive_dead(self, max_messages: int = 10, visibility: int = 0) -> list[dict]:
        self.receives += 1
        assert self.receives < 10_000, "still receiving: the letters it holds keep coming back"
        back = [i for at, i in self.hidden if at <= self.receives]
        self.hidden = [(at, i) for at, i in self.hidden if at > self.receives]
        self.visible = back + self.visible
        batch, self.visible = self.visible[:max_messages], self.visible[max_messages:]
        self.hidden += [(self.receives + self.hidden_for, i) for i in batch]
        return [{"MessageId": i, "ReceiptHandle": f"{i}@{self.receives}", "Body": "{}"} for i in batch]

    def dead_count(self) -> int:
        return len(self.visible) + len(self.hidden)

    def release_dead_many(self, handles: list[str]) -> None:
        self.released += handles


class Rt:
    def __init__(self, queue):
        self.queue = queue


def test_a_scan_longer_than_the_hide_time_ends_with_every_letter_once():
    """It stops where the first letters come back (the rest are counted as not seen): it never loops."""
    queue = ComingBack(2_000, hidden_for=50)           # 200 receives to read them all; each hidden for 50
    with holding(Rt(queue), 60) as (received, held, not_seen, cut):
        ids = [m["MessageId"] for m in received]
    assert queue.receives < 400 and len(ids) == len(set(ids))
    assert cut and not_seen == 2_000 - len(ids)                # not read (not "hidden by another command")
    assert set(held) == set(ids) and len(queue.released) == len(ids)          # all visible again after


def test_a_scan_shorter_than_the_hide_time_reads_every_letter():
    queue = ComingBack(95, hidden_for=1_000)
    with holding(Rt(queue), 60) as (received, _, not_seen, cut):
        assert len(received) == 95 and not_seen == 0 and not cut


class Deleting(ComingBack):
    """ComingBack, whose letter `about` is about the person, and which records deletes."""

    def __init__(self, n: int, hidden_for: int, about: int):
        super().__init__(n, hidden_for)
        self.about, self.deleted = f"m{about}", []

    def receive_dead(self, max_messages: int = 10, visibility: int = 0) -> list[dict]:
        return [{**m, "Body": '{"campaign_id": "42", "rf_user_id": "7"}' if m["MessageId"] == self.about else "{}"}
                for m in super().receive_dead(max_messages, visibility)]

    def delete_dead(self, handle: str) -> None:
        self.deleted.append((handle.split("@")[0], self.receives))       # and at which receive
        self.hidden = [(at, i) for at, i in self.hidden if i != handle.split("@")[0]]


def test_forget_deletes_the_persons_letter_as_soon_as_it_is_received():
    """Deleted while its handle is fresh, not after the whole scan; the others are released."""
    from chalicelib.services.privacy import forget_dead_letters
    queue = Deleting(40, hidden_for=1_000, about=3)
    assert forget_dead_letters(Rt(queue), "ann@example.com", {("42", "7")}, set()) == (1, 0, False)
    assert queue.deleted == [("m3", 1)] and queue.receives == 5           # at its receive, not after the scan
    assert len(queue.released) == 39 and "m3@1" not in queue.released


def test_a_list_cut_short_says_the_rest_were_not_read_not_hidden_by_another_command():
    from chalicelib.services.dead_letters import look
    found = look(Rt(ComingBack(2_000, hidden_for=50)))
    assert found.cut and found.not_seen == 2_000 - len(found.letters)

