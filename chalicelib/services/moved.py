"""A campaign moved between workspaces, as the store tells it: what `bridge settings apply` and `bridge
doctor` both read of it."""
from __future__ import annotations

from ..ports import Store


def applied_elsewhere(store: Store, campaign_id: str, workspace: str) -> bool:
    """The campaign's settings were once applied naming another workspace than `workspace` (each workspace's
    campaign list says it, never pruned: one read each)."""
    return any(campaign_id in store.settings.campaigns(w) for w in sorted(store.connections.workspaces())
               if w != workspace)
