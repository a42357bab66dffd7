"""What `make deploy` does to the table before this version's code goes live (infra/deploy.py, step 4b).

Settings moved to their own partition (keys.py: SETTINGS#<id>), so that the API function may read a campaign's
settings and never a link. Versions before 2026-11-28 read and write them in the campaign's partition
(CAMPAIGN#<id> / SETTINGS), and this version writes both in one transaction, so a version rolled back to reads
current settings. What such a version wrote there since (before this upgrade, or while it was rolled back to) is
what holds: mirror_settings makes each SETTINGS#<id> item a copy of its campaign's item, and removes one whose
campaign's item that version deleted. Each write is conditional on both items as read (in one transaction): a
write of settings meanwhile (this version's writes both) is read again, never overwritten. Run again, it writes
nothing. A later version that stops writing the campaign's item must stop running this in the same change: its
settings, absent there, would read as deleted, and every deploy would remove them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from botocore.exceptions import ClientError

from .keys import ROLLBACK_SETTINGS_PREFIX, SETTINGS_PREFIX, SETTINGS_SK, rollback_settings_key, settings_key

#: Known attributes of a settings item (models.SettingsItem): one absent when read is held absent.
SETTINGS_FIELDS = ("document", "workspace", "version", "updated_at", "count_backfill_attribute",
                   "count_backfill_since")
TRIES = 5          # reads and writes of one campaign's settings while other writes of them go on


class SettingsChanging(RuntimeError):
    """A campaign's settings were written at every try: run the deploy again."""


@dataclass
class Mirrored:
    copied: int = 0         # campaigns whose settings were copied to their own partition (new, or changed since)
    removed: int = 0        # settings removed from their own partition: a version before this one deleted them
    kept: int = 0           # already a copy


def _key(key: tuple[str, str]) -> dict:
    return {"pk": {"S": key[0]}, "sk": {"S": key[1]}}


def _campaigns(client: Any, table: str) -> list[str]:
    """Every campaign with settings at either key (one scan of the table: it names no index of them)."""
    found: set[str] = set()
    for page in client.get_paginator("scan").paginate(
            TableName=table, ConsistentRead=True, ProjectionExpression="pk",
            FilterExpression="sk = :s", ExpressionAttributeValues={":s": {"S": SETTINGS_SK}}):
        for item in page.get("Items", ()):
            pk = item["pk"]["S"]
            for prefix in (SETTINGS_PREFIX, ROLLBACK_SETTINGS_PREFIX):
                if pk.startswith(prefix):
                    found.add(pk[len(prefix):])
    return sorted(found, key=lambda c: (len(c), c))


def _as_read(item: Optional[dict]) -> dict:
    """A condition holding only while the item is as read (absent, or each of its attributes the same)."""
    if item is None:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    names, values, terms = {}, {}, []
    for n, name in enumerate(sorted({*item, *SETTINGS_FIELDS} - {"pk", "sk"})):
        names[f"#a{n}"] = name
        if name in item:
            values[f":v{n}"] = item[name]
            terms.append(f"#a{n} = :v{n}")
        else:
            terms.append(f"attribute_not_exists(#a{n})")
    return {"ConditionExpression": " AND ".join(["attribute_exists(pk)", *terms]),
            "ExpressionAttributeNames": names, **({"ExpressionAttributeValues": values} if values else {})}


def _read(client: Any, table: str, key: tuple[str, str]) -> Optional[dict]:
    return client.get_item(TableName=table, Key=_key(key), ConsistentRead=True).get("Item")


def _mirror_one(client: Any, table: str, campaign_id: str) -> Optional[str]:
    """One try: "kept", "copied" or "removed"; None when either item changed between the reads and the write."""
    new_key, old_key = settings_key(campaign_id), rollback_settings_key(campaign_id)
    new = _read(client, table, new_key)
    old = _read(client, table, old_key)
    want = {**old, **_key(new_key)} if old is not None else None
    if new == want:
        return "kept"
    check = {"ConditionCheck": {"TableName": table, "Key": _key(old_key), **_as_read(old)}}
    write = ({"Put": {"TableName": table, "Item": want, **_as_read(new)}} if want is not None else
             {"Delete": {"TableName": table, "Key": _key(new_key), **_as_read(new)}})
    try:
        client.transact_write_items(TransactItems=[check, write])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("TransactionCanceledException", "TransactionConflictException"):
            return None
        raise
    return "copied" if want is not None else "removed"


def mirror_settings(client: Any, table: str) -> Mirrored:
    """Each campaign's settings in their own partition as a version before this one left them (see above)."""
    done = Mirrored()
    for campaign_id in _campaigns(client, table):
        for _ in range(TRIES):
            outcome = _mirror_one(client, table, campaign_id)
            if outcome is not None:
                setattr(done, outcome, getattr(done, outcome) + 1)
                break
        else:
            raise SettingsChanging(f"the settings of campaign {campaign_id} were written at each of {TRIES} tries to "
                                   f"copy them to their own partition: run `make deploy` again once no "
                                   f"`bridge settings apply` runs")
    return done
