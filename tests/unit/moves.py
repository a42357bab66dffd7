"""Builders for the workspace-move tests: `settings apply [--move-workspace]` on the worker's store, campaign
42 keeping referral counts in workspace ws, its referrer Rita (RF user 100), fake APIs that tell workspaces
apart, and a lead Rita referred joining."""
from __future__ import annotations

from typing import Any, Optional

import yaml

from chalicelib.messages import JoinMessage
from chalicelib.services.admin import apply_settings
from tests.fakes import FakeApis, FakeIntercom, FakeRF, FakeWork
from tests.unit.scenario import run
from tests.unit.test_referral_count import counting_settings

COUNT = "custom_attributes.referral_count"
ATTRIBUTES = {COUNT: {"data_type": "integer"}, "custom_attributes.referral_link": {"data_type": "string"},
              "name": {"data_type": "string"}, "email": {"data_type": "string"}}


def rita_in_rf() -> FakeRF:
    return FakeRF({"100": {"id": 100, "email": "rita@example.com"}})


class ByWorkspace(FakeApis):
    """The fake APIs, remembering which workspace's client made each contact update (one fake Intercom)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.updates: list[tuple[str, str]] = []

    def intercom(self, workspace: str) -> FakeIntercom:
        client, updates = self.intercom_, self.updates
        real = client.update_contact

        class Client:
            def __getattr__(self, name):
                return getattr(client, name)

            def update_contact(self, contact_id, body, *a, **kw):
                updates.append((workspace, contact_id))
                return real(contact_id, body, *a, **kw)
        return Client()  # type: ignore[return-value]


class Workspaces(FakeApis):
    """One fake Intercom per workspace (a contact id of one is not found in another)."""

    def __init__(self, intercoms: dict[str, FakeIntercom], rf: FakeRF):
        super().__init__(intercoms["ws"], rf)
        self.intercoms = intercoms

    def intercom(self, workspace: str) -> FakeIntercom:
        return self.intercoms[workspace]


def counting_world(apis: Optional[FakeApis] = None, workspace: str = "ws") -> tuple[FakeWork, dict]:
    """Campaign 42 keeps referral counts (and runs contact sync) in `workspace`."""
    work = FakeWork(apis or FakeApis(FakeIntercom(dict(ATTRIBUTES))))
    counting = {**counting_settings(), "workspace": workspace}
    work.store.settings.put("42", counting, workspace)
    return work, counting


def rita_refers(work: FakeWork, lead: str = "1") -> None:
    """A lead Rita referred joins (created in the campaign's workspace) and the referral-count messages
    queued so far are worked."""
    person = {"id": lead, "campaign_id": "42", "email": f"lead{lead}@example.com", "first_name": f"L{lead}",
              "type": "lead", "referrer_id": "100"}
    run(work, JoinMessage(campaign_id="42", rf_user_id=lead, person=person).wire())
    counts = [m for m in work.queue.sent if isinstance(m, dict) and m.get("kind") == "referral.count"]
    assert counts, "the lead's join asked for Rita's count to be written"
    run(work, *counts)


def operator(work: FakeWork) -> Any:
    """The CLI's runtime over the worker's store (what the settings commands use of it)."""
    return type("Operator", (), {"store": work.store, "clock": work.clock, "forget": lambda self: None})()


def apply(work: FakeWork, document: dict, move: bool = False) -> list[str]:
    """`bridge settings apply --offline [--move-workspace]` on the worker's store: its warnings."""
    warnings = apply_settings(operator(work), yaml.safe_dump(document), check_workspace=False,  # type: ignore
                              move_workspace=move)["warnings"]
    return [w for w in warnings if not w.startswith("--offline")]
