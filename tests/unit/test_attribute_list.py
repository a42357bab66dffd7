"""Issue 9: the workspace's Intercom attribute list, shared by the worker containers through the
connection record while it is younger than CACHE_SECONDS (runtime.Runtime.attributes)."""
from __future__ import annotations

import dataclasses
import logging

import pytest

from chalicelib.adapters.memory import MemoryStore
from chalicelib.config import Config
from chalicelib.errors import Disconnected, Permanent
from chalicelib.ports import AttributeList
from chalicelib.runtime import CACHE_SECONDS, Runtime
from tests.fakes import FakeClock, FakeIntercom, FakeQueue, MemorySecrets

KEPT = {"custom_attributes.visits": {"data_type": "integer"}}


def runtime(store: MemoryStore, clock: FakeClock) -> Runtime:
    """A cold container. Its Intercom client points nowhere: a call to Intercom would fail."""
    secrets = MemorySecrets("/p", {"/p/worker/intercom/ws1/token": "tok"})
    return Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p", "INTERCOM_BASE_URL": "http://127.0.0.1:9"}),
                   clock=clock, sleeper=clock.sleep, queue=FakeQueue(), store=store, secrets=secrets)


def connected(clock: FakeClock, kept_at: float) -> MemoryStore:
    store = MemoryStore(clock)
    store.connections.put_workspace("ws1", ["token"])
    store.connections.keep_attributes("ws1", AttributeList(KEPT, kept_at))
    return store


def test_a_cold_container_uses_the_kept_list_until_5_minutes_after_it_was_read():
    clock = FakeClock()
    rt = runtime(connected(clock, clock.now - 60), clock)
    assert rt.attributes("ws1") == KEPT                     # no call: the client would fail
    intercom = FakeIntercom()
    intercom.attributes = {"custom_attributes.visits": {"data_type": "string", "archived": True, "label": "v"}}
    rt._cache[("intercom", "ws1")] = (float("inf"), intercom)   # the container's client, warm
    clock.now += CACHE_SECONDS - 61
    assert rt.attributes("ws1") == KEPT
    clock.now += 1                                          # 5 minutes since the kept list was read
    assert rt.attributes("ws1") == {"custom_attributes.visits": {"data_type": "string", "archived": True}}
    assert rt.store.connections.workspace("ws1").attribute_list == AttributeList(
        {"custom_attributes.visits": {"data_type": "string", "archived": True}}, clock.now)


def test_a_kept_list_read_a_moment_ahead_of_this_containers_clock_is_used_5_minutes_from_now_at_most():
    clock = FakeClock()
    rt = runtime(connected(clock, clock.now + 2), clock)           # another container's clock, 2 s ahead
    assert rt.attributes("ws1") == KEPT
    clock.now += CACHE_SECONDS
    rt._cache[("intercom", "ws1")] = (float("inf"), FakeIntercom())
    assert rt.attributes("ws1") == FakeIntercom().attributes


def test_a_list_stamped_an_hour_ahead_is_never_used_and_this_containers_read_replaces_it():
    """A writer's clock an hour ahead: its list would be adopted again and again, and block every
    fresher one. It is taken for a clock's error: not used, and replaced by this container's read."""
    clock = FakeClock()
    store = connected(clock, clock.now + 3600)
    rt = runtime(store, clock)
    intercom = FakeIntercom()
    rt._cache[("intercom", "ws1")] = (float("inf"), intercom)
    assert rt.attributes("ws1") == intercom.attributes != KEPT      # read now, not the skewed list
    kept = store.connections.workspace("ws1").attribute_list
    assert kept == AttributeList(intercom.attributes, clock.now)    # and kept for the others
    other = runtime(store, clock)                                    # a cold container after it
    other._cache[("intercom", "ws1")] = (float("inf"), FakeIntercom())
    intercom.attributes = {}                                         # (a read now would differ)
    assert other.attributes("ws1") == kept.attributes


@pytest.mark.parametrize("status, refused", [("disconnected", Disconnected), ("pending", Permanent)])
def test_a_connection_not_active_never_serves_its_kept_list(status, refused):
    clock = FakeClock()
    store = connected(clock, clock.now)
    if status == "disconnected":
        store.connections.disconnect_workspace("ws1")
    else:                                   # a status the bridge does not know: not connected
        conn = store.connections.workspace("ws1")
        store.connections.workspaces_["ws1"] = dataclasses.replace(conn, status=status)   # type: ignore[attr-defined]
    rt = runtime(store, clock)
    with pytest.raises(refused):
        rt.attributes("ws1")
    with pytest.raises(refused):
        rt.ensure_attribute("ws1", "rf_person", "the marker")


def test_a_list_that_cannot_be_kept_is_used_all_the_same_and_said(caplog):
    clock = FakeClock()
    store = MemoryStore(clock)
    store.connections.put_workspace("ws1", ["token"])

    def refused(workspace, listed):
        raise RuntimeError("DynamoDB throttled")
    store.connections.keep_attributes = refused                                   # type: ignore[method-assign]
    rt = runtime(store, clock)
    intercom = FakeIntercom()
    rt._cache[("intercom", "ws1")] = (float("inf"), intercom)
    with caplog.at_level(logging.WARNING):
        assert "custom_attributes.rf_person" not in rt.attributes("ws1")
        rt.ensure_attribute("ws1", "rf_person", "the marker")                   # created, and seen
    assert "custom_attributes.rf_person" in intercom.attributes
    assert "could not keep the workspace's attribute list" in caplog.text


def test_a_refused_write_reads_a_list_older_than_its_try_again_once_and_keeps_it_not_one_read_since():
    """`attributes_again`: a list read before the try began is read again (and kept for the others);
    one read since (by this try, or by another thread's re-read for the same batch) is what a read
    would say: no call."""
    clock = FakeClock()
    rt = runtime(connected(clock, clock.now - 60), clock)
    assert rt.attributes("ws1") == KEPT                     # adopted: read a minute ago by another container
    intercom = FakeIntercom()
    intercom.attributes = {"custom_attributes.visits": {"data_type": "float"}}
    reads = []
    listed = intercom.data_attributes
    intercom.data_attributes = lambda: reads.append(1) or listed()     # type: ignore[method-assign]
    rt._cache[("intercom", "ws1")] = (float("inf"), intercom)
    began = clock.now
    assert rt.attributes_again("ws1", began) == {"custom_attributes.visits": {"data_type": "float"}}
    assert rt.store.connections.workspace("ws1").attribute_list == AttributeList(
        {"custom_attributes.visits": {"data_type": "float"}}, began)
    assert rt.attributes_again("ws1", began) == {"custom_attributes.visits": {"data_type": "float"}}
    assert len(reads) == 1
