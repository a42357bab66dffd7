"""Use case: a lead the bridge created, looked at again once Intercom's search has caught up
(`VerifyMessage`, queued by services/join.py with the search lag as its delay).

Intercom lets leads share an email and its search lags creation, so a person who joins just after
a contact with their email was made elsewhere gets a new lead: neither the search nor a 409 could
show the older contact. Once search shows it: a lead of ours duplicating a user is merged into the
user (the only merge Intercom allows; with `duplicates: update`, as the update would have marked
the user); otherwise the link moves to the older contact and our lead stays. Either way the link
follows, the history says what was done and why, and the rule is evaluated on the contact the
person now has."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..domain import join as decide
from ..domain.history import REPLAYED, Entry
from ..domain.judge import Sighting, elsewhere
from ..domain.link import Link, PersonRef
from ..domain.qualification import QState
from ..domain.settings import CampaignSettings, valid_or_none
from ..errors import Deferred, Permanent
from ..messages import VerifyMessage
from ..observability import count
from ..ports import Busy, IntercomPort, Merged, NotFound
from .deps import WorkDeps, stored_settings

EARLY = 2.0     # seconds: a message SQS delivers this much before its time (clocks differ) is due


@dataclass
class Verification:
    """What one batch of verifications needs: their links, their campaigns' settings, and one
    search per workspace for the emails of those that are due."""

    links: dict[PersonRef, Link] = field(default_factory=dict)
    documents: dict[str, dict] = field(default_factory=dict)
    found: dict[str, list[dict]] = field(default_factory=dict)

    @classmethod
    def read(cls, messages: list[VerifyMessage], deps: WorkDeps) -> "Verification":
        links = deps.links.get_many(m.person_ref for m in messages)
        documents = deps.settings.documents({m.campaign_id for m in messages})
        # (a lead of a workspace its campaign left since is left as it is: not searched there, _verify)
        due = [m for m in messages if _due(m, deps) and _still_ours(m, links.get(m.person_ref))
               and _named(documents.get(m.campaign_id)) in (None, m.workspace)]
        found: dict[str, list[dict]] = {}
        for workspace in sorted({m.workspace for m in due}):
            found[workspace] = deps.apis.intercom(workspace).search([m.email for m in due if m.workspace == workspace])
        return cls(links, documents, found)


# What a duplicate check that `bridge dlq replay` sent back found, said in the person's history (the
# entry that resolves its dead letter; a check that was never parked writes nothing of its own).
FOUND = {"unique": "no other contact has this email", "gone": "the link no longer names the lead it was to check",
         "skipped": "the campaign has no settings", "merged": "merged the lead into the older contact (above)",
         "moved": "the link moved to the older contact (above)",
         "elsewhere": "the campaign is connected to another workspace now: the lead is left as it is"}


def on_verify(message: VerifyMessage, deps: WorkDeps, batch: Verification) -> str:
    outcome = _verify(message, deps, batch)
    if message.replayed_from:       # (forgotten since: not noted)
        deps.links.note(message.person_ref, [Entry("duplicate_check", outcome, f"duplicate check {REPLAYED}: "
                                                   f"{FOUND[outcome]}", {"replayed_from": message.replayed_from})])
    return outcome


def _verify(message: VerifyMessage, deps: WorkDeps, batch: Verification) -> str:
    now = deps.clock()
    if not _due(message, deps):
        raise Deferred("Intercom's search may not show every contact with this email yet: looking again later",
                       retry_after=message.not_before - now)
    link = batch.links.get(message.person_ref)
    if not _still_ours(message, link):
        return "gone"                # merged, moved or erased since: nothing of ours to look at
    assert link is not None
    settings = stored_settings(message.campaign_id, batch.documents.get(message.campaign_id))
    if settings is None:
        return "skipped"
    if deps.qualifier.moved_away(link, settings):
        # Linked in the workspace the campaign left (`settings apply --move-workspace`): its contacts are that
        # workspace's, never merged nor moved by the rules of the campaign's new one (the link is never judged).
        return "elsewhere"
    ours = {"id": message.contact_id, "role": link.contact_role, "created_at": message.created_at}
    same_email = [c for c in batch.found.get(message.workspace, [])
                  if (c.get("email") or "").lower() == message.email.lower()]
    duplicate = decide.duplicate_of(ours, same_email, settings.people(link.is_lead).duplicates)
    if duplicate is None:
        return "unique"
    intercom = deps.apis.intercom(message.workspace)
    target = _find(intercom, str(duplicate.target["id"]))
    if target is None:
        return "unique"              # gone since search listed it
    # Each link's baseline is read before the merge changes the target. The person's links of other campaigns on
    # our lead follow it too, before this one: a retry finds this one moved and has nothing of ours to look at.
    taken = [(other, s, decide.moved_baseline(s, other, target, hidden_by_search=True) if s is not None else {})
             for other, s in [*_others(deps, message, link), (link, settings)]]
    entry, now_contact = _merge_or_move(intercom, message, link, target, duplicate.merge)
    moved = []
    for other, other_settings, baseline in taken:
        said = entry if other is link else Entry(entry.event, entry.outcome, f"{entry.reason} (found by the duplicate "
                                                 f"check of campaign {link.campaign_id})", entry.details)
        try:
            # (what the link held on her lead is recorded, as a merge's webhook records it (decide.records_left: a
            # lead's under a rule, her baseline kept or not): one of its notifications, of an event from before the
            # move, delivered late, is judged against it (contact_events._late), and so, under `match: email`, is one of
            # the target from before the move, a duplicate's value then (contact_events.duplicate_then). A lead merged
            # is gone; one left in Intercom (`stays`) is a contact with her email as any other from the move on)
            merged = entry.outcome == "merged_into_existing"
            followed = deps.links.move(other, str(target["id"]), [said], role=target.get("role"),
                                       left=decide.records_left(other_settings, other, baseline), stays=not merged,
                                       **baseline)
        except Busy:                 # another's: moved meanwhile (its merge's webhook), nothing to follow
            if other is link:
                raise
            continue
        if followed is not None:     # (None: erased meanwhile by `bridge forget`: nothing to follow, nor retry)
            moved.append((followed, other_settings))
    count("DuplicatesResolved")
    for now_link, now_settings in moved:
        if now_settings is not None and now_settings.qualification is not None and now_link.is_lead \
                and now_link.qualification is QState.PENDING:
            deps.qualifier.evaluate(now_link, now_settings, Sighting(now_contact, "duplicate resolved"))
    return "merged" if entry.outcome == "merged_into_existing" else "moved"


def _others(deps: WorkDeps, message: VerifyMessage, link: Link) -> list[tuple[Link, Optional[CampaignSettings]]]:
    """The person's other links to the lead we created (they joined another campaign of the workspace too, whose
    join found that lead: in one batch, or once search showed it), each with its campaign's settings; but those of
    a campaign that left the workspace since, left as they are (as their own check would)."""
    ws, ours = message.workspace, message.contact_id
    others = [o for o in deps.lookup.look_up(contacts=[(ws, ours)]).linked_to_contact(ws, ours)
              if o.ref != link.ref and o.contact_id == ours and o.final]
    documents = deps.settings.documents({o.campaign_id for o in others}) if others else {}
    found = [(o, valid_or_none(documents.get(o.campaign_id))) for o in others]
    return [(o, s) for o, s in found if elsewhere(o, s) is None]


def _merge_or_move(intercom: IntercomPort, message: VerifyMessage, link: Link, target: dict,
                   merge: bool) -> tuple[Entry, dict]:
    ours, into, role = message.contact_id, str(target["id"]), target.get("role")
    found = (f"the lead {ours} the bridge created when the person joined has the email of {role} {into}, made "
             "before they joined, which Intercom's search did not show yet")
    details = {"from": ours, "into": into, "role": role}
    if merge:
        try:
            merged = intercom.merge_contacts(ours, into)
        except Permanent as exc:
            if _merged_into(intercom, ours) != into:     # not a merge whose answer was lost: move instead
                return Entry("contact", "moved_to_existing", f"{found}; Intercom refused to merge them "
                             f"({exc.reason}), so the link moves to {into}; the lead {ours} stays", details), target
            merged = target
        return Entry("contact", "merged_into_existing", f"{found}; merged it into the {role}, and the link follows "
                     "it", details), merged
    why = ("duplicates is skip, so the bridge leaves that contact untouched" if role == "user"
           else "Intercom merges a lead only into a user")
    return Entry("contact", "moved_to_existing", f"{found}; {why}: the link moves to {into} (the older contact), and "
                 f"the lead {ours} stays in Intercom", details), target


def _merged_into(intercom: IntercomPort, contact_id: str) -> Optional[str]:
    try:
        intercom.get_contact(contact_id)
    except Merged as merged:
        return merged.canonical_id
    except NotFound:
        return None
    return None


def _due(message: VerifyMessage, deps: WorkDeps) -> bool:
    return deps.clock() >= message.not_before - EARLY


def _still_ours(message: VerifyMessage, link: Optional[Link]) -> bool:
    return link is not None and link.contact_id == message.contact_id and link.workspace == message.workspace


def _named(document: Optional[dict]) -> Optional[str]:
    """The workspace the campaign's stored settings name (None: none stored, or not valid: _verify says why)."""
    settings = valid_or_none(document)
    return settings.workspace if settings is not None else None


def _find(intercom: IntercomPort, contact_id: str) -> Optional[dict]:
    try:
        return intercom.get_contact(contact_id)
    except (Merged, NotFound):
        return None
