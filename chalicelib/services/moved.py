"""A campaign moved between workspaces, as the store tells it: what `bridge settings apply` and `bridge
doctor` both read of it, and the campaigns a workspace still holds (its list keeps those moved away)."""
from __future__ import annotations

from ..domain.settings import CampaignSettings, valid_or_none
from ..ports import SettingsRepository, Store


def applied_elsewhere(store: Store, campaign_id: str, workspace: str) -> bool:
    """The campaign's settings were once applied naming another workspace than `workspace` (each workspace's
    campaign list says it, never pruned: one read each)."""
    return any(campaign_id in store.settings.campaigns(w) for w in sorted(store.connections.workspaces())
               if w != workspace)


def valid_campaigns(settings: SettingsRepository, workspace: str) -> dict[str, CampaignSettings]:
    """The workspace's campaigns whose settings are valid and still name it (its list keeps those moved to
    another workspace since): one batched read."""
    documents = settings.documents(settings.campaigns(workspace))
    return {c: s for c, document in documents.items() if (s := valid_or_none(document)) is not None
            and s.workspace == workspace}
