"""Operator commands behind the CLI: settings, connections, dead letters, history."""
from __future__ import annotations

import json
from typing import Any, Optional, Protocol

import yaml

from .. import messages
from ..domain.link import PersonRef
from ..domain.mapping import MARKER_ATTRIBUTE, MARKER_DESCRIPTION, MARKER_NAME
from ..domain.settings import SettingsError, check_against_workspace, parse_settings
from ..errors import WorkError
from ..ports import DeadLetterQueue, IntercomPort
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


def dead_letters(rt: Operator, limit: int = 100) -> list[dict]:
    """Peek at the dead-letter queue (messages stay there). Each has a reason: the worker's own, or,
    for a message SQS moved there itself, one told from how often it was received."""
    out: list[dict] = []
    seen: set[str] = set()
    while len(out) < limit:
        batch = rt.queue.receive_dead(visibility=0)
        fresh = [m for m in batch if m["MessageId"] not in seen]
        if not fresh:
            break
        for m in fresh:
            seen.add(m["MessageId"])
            attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
            if not attrs.get("reason"):
                attrs.update(_moved_by_sqs(m))
            out.append({"message_id": m["MessageId"], "body": _body(m["Body"]), **attrs})
    return out[:limit]


def _moved_by_sqs(m: dict) -> dict:
    """SQS's redrive policy moves a message after maxReceiveCount receives that ended without an
    answer: the worker crashed or ran out of time each time, before it could record a reason.
    SQS's count includes this peek (and earlier `dlq list` peeks), hence "about"."""
    receives = max(1, int(m.get("Attributes", {}).get("ApproximateReceiveCount", "2")) - 1)
    return {"reason": f"moved by SQS after about {receives} receives: the worker crashed or timed out each time",
            "attempts": str(receives)}


def _body(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text          # an unreadable message is shown as it came


def replay_dead_letters(rt: Operator, limit: int = 1000) -> int:
    """Move dead letters back to the work queue; each is tried again from scratch, marked as a
    replay. One no model can read goes back as it is (a fixed bridge may read it now)."""
    moved = 0
    while moved < limit:
        batch = rt.queue.receive_dead(visibility=300)
        if not batch:
            break
        for m in batch:
            try:
                rt.queue.send(messages.parse(m["Body"]).replayed(m["MessageId"]).wire())
            except messages.Unreadable:
                rt.queue.send(m["Body"])
            rt.queue.delete_dead(m["ReceiptHandle"])
            moved += 1
    return moved


def person_history(rt: Operator, campaign_id: str, rf_user_id: str) -> dict:
    ref = PersonRef(campaign_id, rf_user_id)
    link = rt.store.links.get(ref)
    return {"campaign_id": campaign_id, "rf_user_id": rf_user_id, "link": link.view() if link else None,
            "history": [entry.view() for entry in rt.store.history.entries(ref)]}
