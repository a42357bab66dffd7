"""The records a link stores in JSON attributes (LeftContact, DuplicateSeen), as a rollback meets them: a later
version's keys are kept, and a record written back unchanged is written as it was read, to the letter (the writes
that hold to the records as read compare their JSON text)."""
from __future__ import annotations

import dataclasses
import json

from chalicelib.domain.link import DuplicateSeen, LeftContact

ATTR = "custom_attributes.signed_up"


def test_a_record_read_and_not_changed_is_written_back_as_read_whatever_a_later_version_added():
    """Its keys in their order, its values as written (an int where this version writes a float, a default written
    out where this one leaves it out), and keys this version does not know, amid its own or after them."""
    stored = {"baseline": "No", "later": {"n": 1}, "baseline_of": ATTR, "armed": False, "armed_by": None,
              "moved_at": 200, "kept": False, "more": [1]}
    left = LeftContact.of_stored("c1", stored)
    assert left == LeftContact("c1", "No", ATTR, False, None, 200.0)       # (what it does not know is no part of it)
    assert json.dumps(left.as_stored()) == json.dumps(stored)
    seen = {"via": "search", "value": "Yes", "of": ATTR, "at": 150}
    assert json.dumps(DuplicateSeen.of_stored("c3", seen).as_stored()) == json.dumps(seen)


def test_a_record_read_and_changed_keeps_what_it_does_not_know_in_place_with_its_own_fields_set():
    stored = {"baseline": "No", "later": {"n": 1}, "baseline_of": ATTR, "armed": False, "armed_by": None,
              "moved_at": 200.0, "armed_at": 50.0, "kept": False}
    armed = dataclasses.replace(LeftContact.of_stored("c1", stored), armed=True, armed_by="rule", armed_at=None,
                                email="ann@example.com")
    assert list(armed.as_stored().items()) == [
        ("baseline", "No"), ("later", {"n": 1}), ("baseline_of", ATTR), ("armed", True), ("armed_by", "rule"),
        ("moved_at", 200.0), ("kept", False), ("email", "ann@example.com")]    # (armed_at: none now, left out)
    assert LeftContact.of_stored("c1", armed.as_stored()) == armed


def test_a_record_this_version_made_is_stored_as_it_always_was():
    made = LeftContact("c1", "No", ATTR, True, "rule", 200.0, armed_at=100.0)
    assert list(made.as_stored()) == ["baseline", "baseline_of", "armed", "armed_by", "moved_at", "armed_at"]
    assert LeftContact.of_stored("c1", made.as_stored()) == made
    assert DuplicateSeen("c3", "Yes", ATTR, 1.0).as_stored() == {"value": "Yes", "of": ATTR, "at": 1.0}
