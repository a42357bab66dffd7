"""What an id may be: the one rule for the ids webhooks carry (campaign, person, workspace) and the
ids settings name, so that settings can only name a campaign a webhook can reach. Pure."""
from __future__ import annotations

import re
from typing import Any

ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
ID_RULE = "a number, or text of letters, digits, '-' and '_' (at most 128)"


def as_id(value: Any) -> str:
    """Ids are numbers or short text of letters, digits, `-` and `_`: they go into URL paths and
    storage keys, so nothing else is let through. Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif isinstance(value, float) and value.is_integer():
        value = str(int(value))
    if not isinstance(value, str) or not ID.match(value):
        raise ValueError(f"must be {ID_RULE}")
    return value


def not_an_id(value: Any) -> str:
    """Why `value` is refused as a campaign's or a workspace's id (`settings check`, `doctor`)."""
    return (f"{value!r} is not an id a webhook can carry — write the id exactly as Referral Factory / Intercom "
            f"show it: {ID_RULE}")


def is_id(value: str) -> bool:
    return bool(ID.match(value))
