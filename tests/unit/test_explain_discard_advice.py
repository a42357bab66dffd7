"""`bridge explain`'s advice to discard (a letter Referral Factory answers 404 for: a replay would fail the
same way) must name a command that reaches the letter: a letter of an Intercom notification names no
campaign, so `--campaign` leaves it behind, as it does for a replay."""
from __future__ import annotations

from chalicelib.errors import Permanent
from chalicelib.services import dead_letters
from tests.unit import scenario
from tests.unit.test_explain_trail import trail

GONE = "Referral Factory answered 404: User not found."


def test_after_the_advised_discard_explain_no_longer_shows_the_notifications_failure_as_open():
    """The same letter discarded as the dead letter's own fix says (by its reason): it is gone, but the
    discard wrote no history (the letter's message names no campaign nor RF user, though the worker
    recorded the failure under Ann), so explain still shows the qualification failure and the dead letter
    unresolved, each still advising the discard that was just done."""
    work = scenario.world()
    _, contact = scenario.joined(work)
    work.apis.rf_.answers = [Permanent(GONE, status=404)]
    assert scenario.run(work, scenario.event(scenario.set_value(work, contact, "Yes")))["dead"] == 1
    assert dead_letters.discard(work, reason="Referral Factory answered 404")["discarded"] == 1
    assert work.queue.dead_count() == 0
    _, view = trail(work, "7")
    still = [(e["event"], e.get("fix")) for e in view["trail"] if e["outcome"] == "failed" and e.get("fix")]
    assert still == [], still
