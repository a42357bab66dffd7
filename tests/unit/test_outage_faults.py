"""A vendor's outage under faults (domain/outage.py, services/worker.py): the vendor's own Retry-After is
honoured while the work waits, a 5xx whose Retry-After is too long for a Lambda is an outage like any other
5xx, and an outage budget that is no number of hours is refused by name."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.adapters.intercom import IntercomClient
from chalicelib.config import Config
from chalicelib.errors import ApiError, WorkError
from chalicelib.messages import JoinMessage
from chalicelib.services.worker import handle_batch
from tests.fakes import FakeApis, FakeClock, FakeIntercom, FakeRF, FakeWork

LEAD = {"campaign_id": "42", "id": "7", "email": "a@example.com", "first_name": "Ann", "type": "lead",
        "referrer_id": "3"}
SETTINGS = {"campaign_id": "42", "workspace": "ws",
            "leads": {"action": "create_lead", "duplicates": "update",
                      "fields": [{"from": "email", "to": "email"}, {"from": "first_name", "to": "name"}]},
            "referrers": {"action": "nothing"}}


def test_a_vendor_that_answers_503_with_retry_after_is_not_called_again_before_that_time():
    # What a user sees: Intercom in announced maintenance answers 503 "Retry-After: 600"; the bridge comes
    # back after ~30 s, 30 s, 60 s... (every waiting record, each try several calls) instead of in 10 minutes,
    # spending the shared budget against the vendor's word. Before the outage waits, the record's retry was
    # set to the 600 s asked (README: "a `Retry-After` on a 5xx is honoured").
    intercom = FakeIntercom()
    work = FakeWork(FakeApis(intercom, FakeRF()))
    work.store.settings.put("42", SETTINGS, "ws")
    intercom.down = lambda: ApiError("Intercom", 503, "Service Unavailable", retry_after=600)
    handle_batch([{"messageId": "m1", "receiptHandle": "rh1", "attributes": {"ApproximateReceiveCount": "1"},
                   "body": json.dumps(JoinMessage(campaign_id="42", rf_user_id="7", person=LEAD).wire())}], work)
    assert work.queue.dead == [] and len(work.queue.deferred) == 1      # it waits (an outage), no try used
    assert work.queue.deferred[0].delay >= 600


@pytest.fixture
def maintenance():
    """An Intercom that answers every request 503 with `Retry-After: 3600` (an announced maintenance)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"type": "error.list", "errors": [{"code": "service_unavailable",
                                                                 "message": "Down for maintenance"}]}).encode()
            self.send_response(503)
            self.send_header("Retry-After", "3600")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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
    from tests.unit.test_doctor_walk import checks, healthy
    rt = healthy()
    intercom = rt.work.apis.intercom_
    intercom.down = lambda: ApiError("Intercom", 503, "Service Unavailable")
    first = rt.clock() - 25 * 3600                          # the outage began a day ago; they joined 7 s apart
    handle_batch([{"messageId": f"m{n}", "receiptHandle": f"rh{n}", "attributes": {"ApproximateReceiveCount": "1"},
                   "messageAttributes": {"bridge-outage-since": {"stringValue": str(first + 7 * n),
                                                                 "dataType": "Number"}},
                   "body": json.dumps(JoinMessage(campaign_id="42", rf_user_id=str(n),
                                                  person={**LEAD, "id": str(n), "email": f"p{n}@example.com"}).wire())}
                  for n in range(2)], rt.work)
    intercom.down = None
    assert len(rt.work.queue.dead) == 2
    letters = checks(examine(rt, "42").view(), "dead_letters")    # type: ignore[arg-type]
    assert [f["what"].split(":")[0] for f in letters] == ["2 dead letter(s) of campaign 42"], letters
