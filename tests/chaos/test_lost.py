"""The chaos run's lost notifications (`LOST`, harness.People.notify): a share of Intercom's notifications is never
delivered (no copy), never a probe's, and the judge does not count as missed a person whose only change away from
the target it was never told of (require_change). No stack is started."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from infra.local.chaos.harness import ATTRIBUTE, TARGET, People, Person, _judge
from infra.local.sims.intercom import IntercomSim
from infra.local.sims.referral_factory import RFSim


class Scheduled:
    def __init__(self):
        self.events: list = []

    def schedule(self, event, spread):
        self.events.append(event.key)


def crowd(lost: float, *persons: Person) -> tuple[IntercomSim, People, Scheduled]:
    intercom, deliveries = IntercomSim(), Scheduled()
    for p in persons:
        intercom.add_contact(p.email, role="lead", custom_attributes={ATTRIBUTE: "No"})
    return intercom, People(intercom, list(persons), deliveries, spread=0.0, lost=lost, seed=7), deliveries  # type: ignore[arg-type]


def person(i: int, kind: str = "new") -> Person:
    return Person(i, kind, f"p{i}@example.com", f"P{i}", ["No", TARGET], [0.0, 0.0], rf={"id": 1000 + i})


def test_a_lost_notification_is_never_scheduled_and_says_so_a_probes_always_is():
    ann, probe = person(0), person(1, "probe:rf_answer_lost_once")
    _, people, deliveries = crowd(1.0, ann, probe)
    for p in (ann, probe):
        people.change(p, "No")
        people.sign_up(p)
    assert deliveries.events == ["change:1:0", "merge:1"]
    assert (ann.lost, probe.lost, people.notified) == (["No", "merge"], [], 4)
    assert people.lost_at > 0

    _, people, deliveries = crowd(0.0, bob := person(2))
    people.change(bob, TARGET)
    assert (deliveries.events, bob.lost, people.lost_at) == (["change:2:0"], [], 0.0)


@pytest.mark.parametrize("lost, missed", [(["No"], 0), ([TARGET], 1), ([], 1)])
def test_a_return_to_the_target_is_missed_only_if_the_change_away_was_told(lost, missed):
    """A contact already at "Yes" when its person joined goes "No", then "Yes": with the "No" lost, the bridge
    cannot know the "Yes" is a change (require_change), so it is not judged a missed qualification."""
    intercom, rf = IntercomSim(), RFSim()
    eve = Person(0, "existing_yes", "eve@example.com", "Eve", ["No", TARGET], [0.0, 0.0], lost=lost)
    eve.rf = rf.add_user(42, eve.email, "Eve")
    eve.last_contact = intercom.add_contact(eve.email, role="user", custom_attributes={ATTRIBUTE: TARGET})["id"]
    checks = _judge([eve], [], intercom, rf, {eve.last_contact: {}}, [], [], SimpleNamespace(statuses={}), set(),
                    {}, [], [])
    assert checks["no_missed_qualification"].count == missed
