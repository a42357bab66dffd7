"""Operator commands behind the CLI: settings, connections, dead letters, history."""
from __future__ import annotations

from typing import Any, Optional, Protocol

import yaml

from ..domain.link import PersonRef
from ..domain.mapping import MARKER_ATTRIBUTE, MARKER_DESCRIPTION, MARKER_NAME
from ..domain.settings import SettingsError, check_against_workspace, parse_settings
from ..errors import WorkError
from ..ports import DeadLetterQueue, IntercomPort
from .dead_letters import list_dead, replay
from .deps import Stack


class Operator(Stack[DeadLetterQueue], Protocol):
    """What the operator's commands are given (the composition root's Runtime)."""

    def intercom(self, workspace: str) -> IntercomPort: ...
    def forget(self) -> None: ...


def load_document(text: str) -> Any:
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise SettingsError([f"(document): not valid YAML or JSON — {exc}"]) from None


def apply_settings(rt: Operator, text: str, check_workspace: bool = True) -> dict:
    """Validate and store a campaign's settings. Returns {campaign_id, version, warnings}."""
    settings = parse_settings(load_document(text))
    warnings: list[str] = []
    created: list[str] = []
    if check_workspace:
        if rt.store.connections.workspace(settings.workspace) is None:
            warnings.append(f"workspace {settings.workspace} is not connected yet: attributes were not checked "
                            f"(run `bridge workspace connect {settings.workspace} --token ...`)")
        else:
            try:
                attributes = rt.intercom(settings.workspace).data_attributes()
            except WorkError as exc:
                raise SettingsError([f"workspace: could not read attributes from Intercom — {exc.reason}"]) from None
            problems = check_against_workspace(settings, attributes)
            if problems:
                raise SettingsError(problems)
            warnings += _marker(rt, settings.workspace, attributes, created)
    version = rt.store.settings.put(settings.campaign_id, settings.to_document(), settings.workspace)
    rt.forget()
    return {"campaign_id": settings.campaign_id, "version": version, **({"created": created} if created else {}),
            "warnings": warnings}


def _marker(rt: Operator, workspace: str, attributes: dict, created: list[str]) -> list[str]:
    """The bridge's marker attribute (which RF person a contact was created for), created in the
    workspace when it is missing. Returns a warning when it could not be (the worker tries again)."""
    if MARKER_ATTRIBUTE in attributes:
        return []
    try:
        rt.intercom(workspace).create_data_attribute(MARKER_NAME, "string", MARKER_DESCRIPTION)
    except WorkError as exc:
        return [f"could not create the text attribute {MARKER_NAME} in workspace {workspace} ({exc.reason}): the "
                "bridge marks the contacts it creates with it — create it in Intercom (Settings > Data > People, "
                "type Text)"]
    created.append(MARKER_ATTRIBUTE)
    return []


def show_settings(rt: Operator, campaign_id: str) -> Optional[dict]:
    item = rt.store.settings.get(campaign_id)
    if item is None:
        return None
    return {"version": item.version, "updated_at": item.updated_at, "settings": item.document}


def dead_letters(rt: Operator) -> list[dict]:
    """Every dead letter, each with its reason and its payload (services/dead_letters.py reads them)."""
    return [{"message_id": d.message_id, "body": d.body,
             **{k: v for k, v in (("reason", d.reason), ("attempts", d.attempts), ("failed_at", d.failed_at))
                if v is not None}} for d in list_dead(rt)]


def replay_dead_letters(rt: Operator, reason: Optional[str] = None, campaign: Optional[str] = None) -> int:
    """Move dead letters (all, or those of a reason or a campaign) back to the work queue."""
    return int(replay(rt, reason, campaign)["replayed"])


def person_history(rt: Operator, campaign_id: str, rf_user_id: str) -> dict:
    ref = PersonRef(campaign_id, rf_user_id)
    link = rt.store.links.get(ref)
    return {"campaign_id": campaign_id, "rf_user_id": rf_user_id, "link": link.view() if link else None,
            "history": [entry.view() for entry in rt.store.history.entries(ref)]}
