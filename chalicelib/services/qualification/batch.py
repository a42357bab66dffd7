"""What one batch of Intercom messages needs from the store, read in a few batched calls: one
lookup answers "seen?" and "linked?" for all of them, one read gives their campaigns' settings.
The batch keeps the links as the use cases leave them, so a later message of the same batch sees
what an earlier one changed (armed, moved, qualified)."""
from __future__ import annotations

from typing import Iterable, Optional, Union

from ...domain.link import Link, PersonRef
from ...domain.settings import CampaignSettings, SettingsError, parse_settings
from ...errors import InvalidSettings
from ...messages import CheckMessage, ContactMessage
from ...ports import Found
from ..deps import WorkDeps

Message = Union[ContactMessage, CheckMessage]


class Batch:
    def __init__(self, found: Found, documents: dict[str, dict], deps: WorkDeps):
        self.found, self.deps = found, deps
        self.settings: dict[str, CampaignSettings] = {}
        self.invalid: dict[str, str] = {}
        self.lettered: set[PersonRef] = set()     # leads a letter of their own was sent for (contact_events._unreadable)
        for campaign, document in documents.items():
            try:
                self.settings[campaign] = parse_settings(document)
            except SettingsError as exc:
                self.invalid[campaign] = "; ".join(exc.problems)

    @classmethod
    def read(cls, messages: Iterable[Message], deps: WorkDeps) -> "Batch":
        contacts, emails, notifications, refs = [], [], [], []
        for m in messages:
            if isinstance(m, CheckMessage):
                refs.append(m.person_ref)
                continue
            if m.notification_id:
                notifications.append((m.workspace, m.notification_id))
            contacts += [(m.workspace, c) for c in (m.item.id, m.item.merged_from and m.item.merged_from.id) if c]
            if m.item.email:
                emails.append((m.workspace, m.item.email))
        found = deps.lookup.look_up(contacts=contacts, emails=emails, notifications=notifications, refs=refs)
        return cls(found, deps.settings.documents({link.campaign_id for link in found.links.values()}), deps)

    def link(self, ref: PersonRef) -> Optional[Link]:
        return self.found.links.get(ref)

    def linked_to_contact(self, workspace: str, contact_id: Optional[str]) -> list[Link]:
        return self.found.linked_to_contact(workspace, contact_id)

    def linked_to_email(self, workspace: str, email: Optional[str]) -> list[Link]:
        return self.found.linked_to_email(workspace, email)

    def keep(self, link: Link) -> Link:
        """The link as a use case left it: what the batch's later messages see."""
        self.found.links[link.ref] = link
        return link

    def settings_for(self, link: Link) -> Optional[CampaignSettings]:
        refusal = self.refusal(link)
        if refusal is not None:
            raise refusal
        return self.settings.get(link.campaign_id)

    def refusal(self, link: Link) -> Optional[InvalidSettings]:
        """Why the link's campaign cannot be judged, about it: its stored settings do not read (None: they do)."""
        if link.campaign_id not in self.invalid:
            return None
        refusal = InvalidSettings(link.campaign_id, self.invalid[link.campaign_id])
        refusal.about(*link.ref)
        return refusal

    def seen(self, workspace: str, notification_id: Optional[str]) -> bool:
        return bool(notification_id) and (workspace, notification_id) in self.found.seen

    def mark_seen(self, workspace: str, notification_id: Optional[str]) -> None:
        if notification_id:
            self.deps.lookup.mark_seen(workspace, notification_id)
            self.found.seen.add((workspace, notification_id))       # repeats within the batch
