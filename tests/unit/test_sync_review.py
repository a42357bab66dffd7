"""Review findings on contact sync's counts and report across runs (services/sync.py, services/doctor.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from chalicelib.errors import Permanent
from chalicelib.services import sync
from tests.unit.test_sync import drain, enrolled_without_link, sync_settings, world

REFUSED = "Intercom answered 400: attribute is read-only"


def refused_write_back(n: int = 1) -> object:
    """`n` contacts enrolled by run 1, whose link Intercom refused to write."""
    work = world(n)
    work.apis.intercom_.fail["update"] = Permanent(REFUSED, status=400)
    sync.start(work.deps, "42")
    drain(work)
    return work


@pytest.mark.parametrize("case", ["writeback_failed", "no_link_yet"])
def test_a_full_run_that_still_cannot_write_a_referrers_link_saw_them_in_the_source(case):
    """Run 1 enrolled her without writing her link (Intercom refused it, or RF had none yet); full run 2 finds
    her in the source and still cannot write it. `sync report` must not list her as having left the source
    since run 2 ("A full run marks who it saw"): she is still there, and run 2 counted her (already enrolled)."""
    if case == "writeback_failed":
        work = refused_write_back()
        work.apis.intercom_.fail["update"] = Permanent(REFUSED, status=400)
    else:
        work = enrolled_without_link()
    sync.start(work.deps, "42")
    drain(work)
    found = sync.report(work.deps, "42")
    assert found["run"]["already_enrolled"] == 1 and found["run"]["status"] == "done"
    assert found["left"]["count"] == 0, found["left"]


def test_doctor_points_to_sync_report_for_referrers_whose_link_intercom_refused():
    """Before, a refused write-back was a skip, and doctor said "see `bridge sync report 42` for the 1 skipped".
    It is now counted as enrolled, and doctor says only "enrolled 1 (1 link not written)": nothing names where
    Intercom's refusal is read, though it repeats each run until the operator fixes it."""
    from chalicelib.domain.settings import parse_settings
    from chalicelib.services.doctor import Report, _sync

    work = refused_write_back()
    report = Report("42")
    _sync(SimpleNamespace(store=work.store, clock=work.clock), report, parse_settings(sync_settings()))
    [finding] = report.findings
    assert "enrolled 1 (1 link not written)" in finding.what
    assert "bridge sync report 42" in " ".join((finding.what, finding.why, finding.fix)), finding


def test_explain_names_the_run_that_enrolled_a_referrer_not_the_later_run_that_wrote_her_link():
    """Run 1 enrolled her (its status says "enrolled 1 (1 link not written)", her history "enrolled by sync run 1")
    and run 2 wrote the link Intercom had refused (a link written later, not an enrolment). `explain` must still
    say run 1 enrolled her, not run 2."""
    from chalicelib.services.explain import as_text, explain

    work = refused_write_back()
    work.store.connections.register_workspace("ws")
    sync.start(work.deps, "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"linked": 1}
    [user], [contact] = work.apis.rf_.created, work.apis.intercom_.contacts.values()
    found = explain(work, "p0@example.com")
    assert found.view()["enrolled_by_sync"] == [{"campaign_id": "42", "rf_user_id": str(user["id"]),
                                                 "contact_id": contact["id"], "run": 1}]
    assert "enrolled by contact sync (run 1)" in as_text(found)


def test_a_contact_skipped_before_whose_create_answer_is_lost_is_found_on_the_retry_not_skipped():
    """Run 1 skipped her (no name); the operator fills it in. Run 2 creates her in RF, but the answer is lost and the
    page fails. Its retry must find her in RF (as DynamoDB's ledger does: its `intend` writes `creating` over the
    skip), not skip her as "already in the campaign" — the in-memory twin keeps the old skip under `intend`, so
    the retry takes RF's 422 for someone else's user: enrolled in RF, her link never written."""
    from chalicelib.errors import Uncertain

    work = world(0)
    her = work.apis.intercom_.add("her@example.com", role="user")
    sync.start(work.deps, "42")
    drain(work)
    assert work.store.sync.run("42").counts == {"missing_field": 1}
    her["name"] = "Her"
    real = work.apis.rf_.create_user
    lost = [True]

    def lost_after_applying(body):
        user = real(body)
        if lost:
            lost.pop()
            raise Uncertain("Referral Factory POST /users: no answer")    # RF made the user; the answer never came
        return user
    work.apis.rf_.create_user = lost_after_applying
    sync.start(work.deps, "42")
    page = work.queue.sent[0]
    with pytest.raises(Exception, match="records will be retried"):
        drain(work)
    work.queue.sent.append(page)
    drain(work)
    assert len(work.apis.rf_.created) == 1
    assert work.store.sync.run("42").counts == {"enrolled": 1}
    assert her["custom_attributes"].get("referral_link") == work.apis.rf_.created[0]["url"]
