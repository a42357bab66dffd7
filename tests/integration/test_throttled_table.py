"""DynamoDB throttling the bridge's table for hours is DynamoDB's outage, waited out as a vendor's is: a record the
throttle holds for longer than BRIDGE_MAX_ATTEMPTS tries is not dead-lettered, and completes once the throttle ends,
its reward paid once. On moto server and the simulators: the table's client gets DynamoDB's throttle answer
(ProvisionedThroughputExceededException, as after botocore's retries) for every call of 3 hours of the test's clock."""
from __future__ import annotations

from chalicelib.adapters.dynamo import models
from tests.support.aws_answers import answering, error

from .conftest import MAX_ATTEMPTS
from .test_exactly_once import puts

HOURS = 3


def test_a_qualification_the_throttled_table_holds_for_hours_waits_and_is_paid_once(bridge, intercom, rf, clock,
                                                                                   joined, monkeypatch):
    # What a user sees: RF qualified the lead, then the table throttled; each try failed on the throttle and after
    # BRIDGE_MAX_ATTEMPTS the notification was dead-lettered "gave up after 3 tries: ... ProvisionedThroughput...".
    lead, contact = joined()
    throttled: dict = {}

    def throttle(request: dict):
        if puts(rf) and clock.now < throttled.setdefault("until", clock.now + HOURS * 3600):  # from RF's yes on
            throttled["calls"] = throttled.get("calls", 0) + 1
            return error("ProvisionedThroughputExceededException", "The level of configured provisioned "
                         "throughput for the table was exceeded. Consider increasing your provisioning level")
        return None
    answering(monkeypatch, models._client(), None, throttle)
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    waits = 0
    while clock.now < throttled.get("until", clock.now + 1):
        [batch] = bridge.drain()
        assert batch.ok and batch.result["waiting"] == 1            # it waits: no try used, nothing dead
        waits += 1
        clock.now += 900                                            # the longest wait (SQS's longest delay)
        bridge.poller.release_delayed()
    assert waits > 2 * MAX_ATTEMPTS and throttled["calls"] >= waits and bridge.dead_letters() == []

    bridge.drain()                                                  # the throttle is over
    assert bridge.queued() == 0 and bridge.dead_letters() == []
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "qualified"
    assert puts(rf) == [{"id": lead["id"], "qualified": True}]     # the reward once: RF was asked before again
