"""Review 3 of doctor's "refusals followed by accepted webhooks" (services/doctor._refusal_findings): a
refusal for one person's data is not fixed by other people's joins being accepted."""
from __future__ import annotations

from tests.unit.test_doctor_walk import checks, healthy, look, refuse


def test_a_join_refused_for_its_email_stays_a_problem_when_other_peoples_joins_are_accepted_after_it():
    """Scenario: RF sends Ann's join with an email holding a space: the edge refuses it (400 invalid_field,
    "email: holds a character no email address can ..."). A minute later Bob joins with a good email and
    his join is accepted, as every other join is: nothing about Ann changed (her email is still wrong in RF,
    and `bridge backfill` reads her as unreadable until it is fixed there).
    Expected: doctor keeps the refusal a problem (exit 1) with its fix — fix the email in Referral Factory,
    then backfill. An accepted join says the webhook works, not that a person's bad data was fixed.
    Today any accepted join newer than the refusal turns it into an ok warning "joins accepted since ...:
    fixed?" (exit 0), and its fix loses "fix the email in Referral Factory" (only `bridge backfill`, which
    cannot send her while her email is wrong)."""
    rt = healthy()
    rt.work.clock.now += 60
    refuse(rt, "campaign:42", "invalid_field", "email: holds a character no email address can (a space, U+0020, "
                                               "at character 4): fix the email in Referral Factory")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")                       # Bob's join, accepted
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert "fix the email in Referral Factory" in refused["fix"], refused
    assert not refused["ok"] and not view["ok"], text
    assert "fixed?" not in refused["what"] and "do not fix it" in refused["what"], refused
