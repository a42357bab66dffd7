"""Pointers: which links point at a contact or an email, and the notifications already applied.
One BatchGetItem of pointers and one of links answer a whole batch."""
from __future__ import annotations

from typing import Callable, Iterable

from ...domain.link import PersonRef
from ...ports.store import Found, normal_email
from .keys import Key, contact_key, email_key, link_key, notification_key
from .models import LinkItem, NotificationItem, PointerItem, applied, batch_get


class DynamoLookup:
    def __init__(self, clock: Callable[[], float]):
        self.clock = clock

    def look_up(self, *, contacts: Iterable[tuple[str, str]] = (), emails: Iterable[tuple[str, str]] = (),
                notifications: Iterable[tuple[str, str]] = (), refs: Iterable[PersonRef] = ()) -> Found:
        wanted: dict[Key, tuple[str, tuple[str, str]]] = {}
        for kind, pairs, key in (("contact", contacts, contact_key), ("email", emails, email_key),
                                 ("notification", notifications, notification_key)):
            for workspace, value in pairs:
                pair = (workspace, normal_email(value) if kind == "email" else value)
                wanted[key(workspace, value)] = (kind, pair)
        found = Found()
        now = self.clock()
        pointed: set[PersonRef] = set(PersonRef(*r) for r in refs)
        for item in batch_get(PointerItem, wanted):
            kind, pair = wanted[(item.pk, item.sk)]
            names = frozenset(PersonRef.parse(r) for r in item.links or ())
            if kind == "notification":
                if item.expires_at is None or item.expires_at > now:    # past it: gone (TTL deletes it late)
                    found.seen.add(pair)
            else:
                (found.by_contact if kind == "contact" else found.by_email)[pair] = names
                pointed |= names
        links = (i.to_link() for i in batch_get(LinkItem, (link_key(r) for r in sorted(pointed))))
        found.links = {link.ref: link for link in links}
        return found

    def mark_seen(self, workspace: str, notification_id: str, keep_days: int = 7) -> None:
        NotificationItem(*notification_key(workspace, notification_id),
                         expires_at=int(self.clock()) + keep_days * 86400).save()

    def first_seen(self, workspace: str, notification_id: str, keep_days: int = 7) -> bool:
        now = int(self.clock())
        item = NotificationItem(*notification_key(workspace, notification_id), expires_at=now + keep_days * 86400)
        return applied(lambda: item.save(condition=NotificationItem.pk.does_not_exist()
                                         | (NotificationItem.expires_at <= now)))

    def forget_email(self, workspace: str, email: str) -> None:
        PointerItem(*email_key(workspace, email)).delete()


def drop_reference(key: Key, ref: PersonRef) -> int:
    """Remove one link from a pointer; delete the pointer when no link is left. 1 if it was there."""
    if not applied(lambda: PointerItem(*key).update(actions=[PointerItem.links.delete({str(ref)})],
                                                    condition=PointerItem.pk.exists())):
        return 0
    applied(lambda: PointerItem(*key).delete(condition=PointerItem.links.does_not_exist()))   # (links left: kept)
    return 1
