"""`bridge explain`'s advice to discard (a letter Referral Factory answers 404 for: a replay would fail the
same way) must name a command that reaches the letter: a letter of an Intercom notification names no
campaign, so `--campaign` leaves it behind, as it does for a replay."""
from __future__ import annotations

import re

from chalicelib.errors import Permanent
from chalicelib.services import dead_letters
from tests.unit import scenario
from tests.unit.test_explain_trail import trail

GONE = "Referral Factory answered 404: User not found."


def test_every_discard_explain_advises_for_a_notifications_dead_letter_reaches_that_letter():
    """Ann's lead qualifies by an Intercom notification; RF answers 404 to the qualification (deleted there).
    The dead letter (kind intercom.contact) says `dlq discard --reason "Referral Factory answered 404" --yes`,
    but the qualification failure above it says the same with `--campaign 42`: run as said, it matches
    nothing ("0 dead letter(s) match"), the letter stays and doctor stays BAD."""
    work = scenario.world()
    _, contact = scenario.joined(work)
    work.apis.rf_.answers = [Permanent(GONE, status=404)]
    assert scenario.run(work, scenario.event(scenario.set_value(work, contact, "Yes")))["dead"] == 1
    [letter] = [dead_letters.read(m) for m in work.queue.letters.values()]
    assert letter.kind == "intercom.contact" and letter.campaign_id is None
    _, view = trail(work, "7")
    advised = [e for e in view["trail"] if "dlq discard" in (e.get("fix") or "")]
    assert advised
    for e in advised:
        said = re.search(r'dlq discard --reason "([^"]+)"(?: --campaign (\S+))? --yes', e["fix"])
        assert said, e["fix"]
        assert dead_letters.matches(letter, said.group(1), said.group(2)), (e["event"], e["fix"])


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
