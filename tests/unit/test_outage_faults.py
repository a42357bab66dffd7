"""A vendor's outage under faults (domain/outage.py, services/worker.py): the vendor's own Retry-After is
honoured while the work waits, a 5xx whose Retry-After is too long for a Lambda is an outage like any other
5xx, and an outage budget that is no number of hours is refused by name."""
from __future__ import annotations

import json
from typing import Optional

import pytest

from chalicelib.adapters.intercom import IntercomClient
from chalicelib.config import Config
from chalicelib.errors import ApiError, WorkError
from chalicelib.messages import JoinMessage
from chalicelib.ports import Later
from chalicelib.services.worker import handle_batch
from tests.fakes import FakeApis, FakeClock, FakeIntercom, FakeRF, FakeWork
from tests.support.answering_server import answering

LEAD = {"campaign_id": "42", "first_name": "Ann", "type": "lead", "referrer_id": "3"}
SETTINGS = {"campaign_id": "42", "workspace": "ws",
            "leads": {"action": "create_lead", "duplicates": "update",
                      "fields": [{"from": "email", "to": "email"}, {"from": "first_name", "to": "name"}]},
            "referrers": {"action": "nothing"}}


def join(n: int = 7) -> str:
    return json.dumps(JoinMessage(campaign_id="42", rf_user_id=str(n),
                                  person={**LEAD, "id": str(n), "email": f"p{n}@example.com"}).wire())


def record(n: int, body: str, **attributes: Optional[float]) -> dict:
    """A Lambda SQS record (its first receive), with the worker's message attributes given."""
    return {"messageId": f"m{n}", "receiptHandle": f"rh{n}", "attributes": {"ApproximateReceiveCount": "1"},
            "body": body, "messageAttributes": {name: {"stringValue": str(value), "dataType": "Number"}
                                                for name, value in attributes.items() if value is not None}}


def test_a_vendor_that_answers_503_with_retry_after_is_not_called_again_before_that_time():
    # What a user sees: Intercom in announced maintenance answers 503 "Retry-After: 600"; the bridge comes
    # back after ~30 s, 30 s, 60 s... (every waiting record, each try several calls) instead of in 10 minutes,
    # spending the shared budget against the vendor's word. Before the outage waits, the record's retry was
    # set to the 600 s asked (README: "a `Retry-After` on a 5xx is honoured").
    intercom = FakeIntercom()
    work = FakeWork(FakeApis(intercom, FakeRF()))
    work.store.settings.put("42", SETTINGS, "ws")
    intercom.down = lambda: ApiError("Intercom", 503, "Service Unavailable", retry_after=600)
    handle_batch([record(1, join())], work)
    assert work.queue.dead == [] and len(work.queue.deferred) == 1      # it waits (an outage), no try used
    assert work.queue.deferred[0].delay >= 600


@pytest.fixture
def maintenance():
    """An Intercom that answers every request 503 with `Retry-After: 3600` (an announced maintenance)."""
    with answering(503, {"type": "error.list", "errors": [{"code": "service_unavailable",
                                                          "message": "Down for maintenance"}]},
                   {"Retry-After": "3600"}) as (url, _):
        yield url


def test_a_503_whose_retry_after_is_too_long_to_wait_in_a_lambda_is_intercoms_outage(maintenance, monkeypatch):
    # What a user sees: during a maintenance Intercom announces with Retry-After (the clearest outage signal
    # there is), each join's try is used up ("asked to wait 3600s"): after BRIDGE_MAX_ATTEMPTS tries (about
    # 5 h) they are dead-lettered "gave up after 5 tries", not waited out for BRIDGE_OUTAGE_HOURS as a 503
    # without Retry-After is, and explain/doctor never say Intercom is unavailable.
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    clock = FakeClock()
    api = IntercomClient(maintenance, "t", clock=clock, sleeper=clock.sleep, timeout=2)
    with pytest.raises(WorkError) as failed:
        api.get_contact("c1")
    assert failed.value.outage == "Intercom" and (failed.value.retry_after or 0) >= 3600


@pytest.mark.parametrize("hours", ["nan", "-1", "twenty-four"])
def test_an_outage_budget_that_is_no_number_of_hours_is_refused_naming_the_variable(hours):
    # What a user sees: BRIDGE_OUTAGE_HOURS=nan makes every outage wait forever ("up to nan h"), never
    # dead-lettered; -1 dead-letters every record at its first 5xx ("unavailable for -1 h"), with no try
    # at all; a word fails every Lambda with "could not convert string to float" that names no variable.
    with pytest.raises(ValueError, match="BRIDGE_OUTAGE_HOURS"):
        Config.from_env({"BRIDGE_OUTAGE_HOURS": hours})


def test_joins_dead_lettered_by_one_outage_are_one_doctor_finding_not_one_per_join():
    # What a user sees: after a day-long Intercom outage, `bridge doctor 42` lists each dead-lettered join as
    # its own finding ("1 dead letter(s) of campaign 42: Intercom unavailable for 24 h (since <its own
    # millisecond>; ...") — hundreds of findings, one per join, for one outage — because each reason carries
    # the record's own first-wait time, and doctor counts letters by their exact reason.
    from chalicelib.services.doctor import examine
    from tests.unit.doctoring import checks, healthy
    rt = healthy()
    intercom = rt.work.apis.intercom_
    intercom.down = lambda: ApiError("Intercom", 503, "Service Unavailable")
    first = rt.clock() - 25 * 3600                          # the outage began a day ago; they joined 7 s apart
    handle_batch([record(n, join(n), **{"bridge-outage-since": first + 7 * n}) for n in range(2)], rt.work)
    intercom.down = None
    assert len(rt.work.queue.dead) == 2
    letters = checks(examine(rt, "42").view(), "dead_letters")    # type: ignore[arg-type]
    assert [f["what"].split(":")[0] for f in letters] == ["2 dead letter(s) of campaign 42"], letters


def copy_of(later: Later, n: int) -> dict:
    """The Lambda record of a copy the worker sent to wait, as SQS hands it back (its attributes kept)."""
    return record(n, later.body, **{"bridge-tries": later.tries, "bridge-waits": later.waits,
                                    "bridge-outage-since": later.outage_since})


def test_an_outage_that_ended_does_not_spend_the_budget_of_the_next_one():
    # What a user sees: a join waited out a 23-hour Intercom outage; Intercom answered again (a 429: the
    # backlog the outage held back), and an hour later one 503 blip dead-letters it at once, "Intercom
    # unavailable for 24 h (since <yesterday>)", without a single wait: the first outage's start is carried
    # by every later copy, whatever the vendor answered since.
    intercom = FakeIntercom()
    work = FakeWork(FakeApis(intercom, FakeRF()))
    work.store.settings.put("42", SETTINGS, "ws")
    waited = record(1, join(), **{"bridge-outage-since": work.clock() - 23 * 3600})
    intercom.down = lambda: IntercomClient.retry_later(ApiError("Intercom", 429, "Too Many Requests", retry_after=60))
    handle_batch([waited], work)
    work.clock.now += 3600
    intercom.down = lambda: ApiError("Intercom", 503, "Service Unavailable")                # one blip
    handle_batch([copy_of(work.queue.deferred[-1], 1)], work)
    assert work.queue.dead == [], work.queue.dead[0]["reason"]
