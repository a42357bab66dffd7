"""Use case: Intercom told us about a contact (a webhook notification). A repeat is counted; a
deletion or an archive marks the links; a merge moves them to the survivor; any other change is
followed (the contact's role; its email, which the link and its pointer take) and judged against each
linked lead's rule (and, with `match: email`, against leads who share the email). A campaign whose stored
settings do not read fails alone (_unreadable)."""
from __future__ import annotations

from typing import Any, Optional

from ...domain import rules
from ...domain.history import REPLAYED, Entry, iso
from ...domain.join import moved_baseline, records_left
from ...domain.link import ContactState, DuplicateSeen, LeftContact, Link, email_now
from ...domain.judge import Sighting, before_view, elsewhere
from ...domain.mapping import ContactPayload, attribute_type, attribute_value, has_attribute
from ...domain.people import given_email
from ...domain.qualification import QState
from ...domain.settings import CampaignSettings, Qualification
from ...messages import ContactMessage
from ...observability import count, mask_email
from ...ports import Merged, NotFound
from ...ports.store import KEEP
from ...webhooks import ContactItem
from ..deps import WorkDeps
from .batch import Batch
from .checks import judged_lead, lead_letter
from .qualifier import OwedLetter

STATES: dict[str, Optional[ContactState]] = {
    "deleted": ContactState.DELETED, "archived": ContactState.ARCHIVED, "unarchived": None}


def whole(message: ContactMessage, deps: WorkDeps, batch: Batch) -> Optional[ContactMessage]:
    """The notification with its whole contact. One too large to queue came naming its contact only
    (ContactMessage.thin): the contact is read from Intercom now (the linked people's history says so), or, when
    Intercom no longer has it, None (its merge or deletion has a notification of its own). A deletion or an
    archive needs no contact (its topic says it all), nor does a repeat (it is not applied again)."""
    ws, contact_id = message.workspace, message.item.id
    if message.too_large is None or message.change in STATES or batch.seen(ws, message.notification_id):
        return message
    try:
        contact: Optional[dict] = deps.apis.intercom(ws).get_contact(contact_id)
        outcome, said = "read_from_intercom", "the contact was read from Intercom instead"
    except (Merged, NotFound) as gone:
        contact, outcome = None, "contact_gone"
        said = f"Intercom no longer has the contact ({'merged' if isinstance(gone, Merged) else '404'}): not judged"
    merged_from = message.item.merged_from.id if message.item.merged_from else None
    for link in [*batch.linked_to_contact(ws, contact_id), *batch.linked_to_contact(ws, merged_from)]:
        deps.links.note(link.ref, [Entry("intercom_notification", outcome, (
            f"notification {message.notification_id} ({message.topic}) was too large to queue "
            f"({message.too_large} bytes): {said}"), {"contact_id": contact_id})])
    if contact is None:
        return None
    # (a merge's survivor, as read, does not say which contact was merged into it: the notification does)
    read = {**contact, "merged_from": {"id": merged_from}} if merged_from else contact
    return message.model_copy(update={"item": ContactItem.model_validate(read)})


def on_contact_event(message: ContactMessage, deps: WorkDeps, batch: Batch) -> str:
    """`message`: with its whole contact (`whole`)."""
    ws, item = message.workspace, message.item.as_dict()
    direct = batch.linked_to_contact(ws, item.get("id"))
    if batch.seen(ws, message.notification_id):
        for link in direct:
            deps.links.note_repeat(link.ref, "intercom_notification",
                                   "the same Intercom notification arrived again and was ignored")
        return "repeat"
    replay = bool(message.replayed_from)
    # A contact read now (the notification was too large to queue) is the contact as it is, as a check's read.
    read = message.too_large is not None and message.change not in STATES
    via = f"webhook {message.topic}" + (", the contact read from Intercom" if read else "")
    seen = Sighting(item, via + (f", {REPLAYED}" if replay else ""), _event_time(message, item, read),
                    replay=replay, current=read, read_after_link=read)    # (the batch read its links first)
    if message.change in STATES:
        for link in direct:
            _set_state(link, STATES[message.change], seen, deps, batch)
    else:
        direct += _follow_merge(message, item, seen, deps, batch)
        for link in direct:
            _changed(link, item, message.topic, seen, deps, batch)
            _seen_before_merge(link, message, item, seen, deps, batch)
        _same_email(message, item, direct, seen, deps, batch)
    if not direct and not batch.linked_to_email(ws, item.get("email")):
        # Nobody is linked: nothing was applied, so a repeat of it would change nothing either. No
        # "seen" mark is written (a batch of such events costs one read, and no write).
        count("ContactsNotLinked")
        return "not_linked"
    batch.mark_seen(ws, message.notification_id)
    return "done" if direct else "not_linked"


def _event_time(message: ContactMessage, item: dict, read: bool = False) -> Optional[float]:
    """Role and state changes are ordered by the notification's own time (one clock for every
    topic; deletion stubs carry no updated_at). A contact `read` after the notification came is at least
    as new as both: the later of the two (a notification older than it, delivered later, changes nothing)."""
    sent, updated = rules.event_time(message.created_at), rules.event_time(item.get("updated_at"))
    if read:
        return max((t for t in (sent, updated) if t is not None), default=None)
    return sent or updated


def _set_state(link: Link, state: Optional[ContactState], seen: Sighting, deps: WorkDeps, batch: Batch) -> None:
    said = state.value if state else "unarchived"
    contact_id = seen.contact.get("id")
    entry = Entry("contact", said, f"Intercom says contact {contact_id} was {said}", {"contact_id": contact_id})
    batch.keep(deps.links.set_contact(link, [entry], when=seen.when, state=state) or link)


def _follow_merge(message: ContactMessage, item: dict, seen: Sighting, deps: WorkDeps, batch: Batch) -> list[Link]:
    """A merge: the links of the merged contact follow it to the survivor, as the notification shows it then (a
    notification about the survivor from before the merge, delivered late, does not set its role or email back)."""
    survivor, merged_from = item.get("id"), (item.get("merged_from") or {}).get("id")
    if message.change != "merged" or not merged_from or merged_from == survivor:
        return []
    moved = []
    for link in batch.linked_to_contact(message.workspace, merged_from):
        # (a lead's letter replays as a check, which follows the merge; a referrer's link follows it now: no rule
        # judges it, and its baseline is none whatever the settings say)
        if link.contact_id != merged_from or (link.is_lead and _unreadable(link, deps, batch)):
            continue
        entry = Entry("contact", "merged", f"contact {merged_from} was merged into {survivor}; the link follows it",
                      {"from": merged_from, "into": survivor})
        settings = batch.settings_for(link) if link.is_lead else None
        taken = moved_baseline(settings, link, item) if settings is not None else {}
        # (the merged contact's notifications, delivered late, are judged against the baseline the link had on it, as
        # they would have been before the merge, under either `match`; not against the survivor's, when one is taken
        # now: recorded as left, with what the link had on it, which judges those of events before the merge: _late)
        followed = deps.links.move(link, str(survivor), [entry], role=item.get("role"), when=seen.when,
                                   left=records_left(settings, link, taken), **taken)
        if followed is not None:        # (None: `bridge forget` erased her meanwhile: nobody to follow, nor retry)
            moved.append(batch.keep(followed))
    return moved


def _changed(link: Link, item: dict[str, Any], topic: str, seen: Sighting, deps: WorkDeps, batch: Batch) -> None:
    """The contact's role and email, where they changed, are followed (one write, in event time order), then
    its value is judged."""
    link = batch.link(link.ref) or link
    role = item.get("role") if item.get("role") and link.contact_role != item.get("role") else None
    email = email_now(link, item)
    entries = [Entry("contact", "role_changed", f"the contact is now a {role} ({topic})")] if role else []
    if email:
        was, now = mask_email(link.email), mask_email(email)
        to = now if now != was else f"another address ({now} masked alike)"
        entries.append(Entry("contact", "email_changed", f"the contact's email changed in Intercom from {was} to "
                             f"{to} ({topic}): the bridge knows the person by the new one",
                             {"from": was, "to": now, "contact_id": item.get("id")}))
    if entries:
        link = batch.keep(deps.links.set_contact(link, entries, when=seen.when, role=role or KEEP,
                                                 email=email or KEEP) or link)
    if _unreadable(link, deps, batch):
        return
    settings = batch.settings_for(link)
    then = duplicate_then(link, settings, item, seen)
    if then is not None:
        _late(link, then, settings, seen, deps, batch, duplicate=str(item.get("id")))
    else:
        _evaluate(link, settings, seen, deps, batch)


def duplicate_then(link: Link, settings: Optional[CampaignSettings], item: dict, seen: Sighting
                   ) -> Optional[LeftContact]:
    """`match: email`: a notification of the contact the link holds, of an event from before the link moved to it
    (judge.before_view), showing her email: in order, before the move, that contact was a duplicate of the one the
    link was on, and counted (_same_email: it may qualify her, never arm the link). What the link held on that one
    (Link.left_at), to judge it against as a duplicate's value; None: judged as usual (before_view: not hers then, no
    change; or no move recorded after the event). Her email is hers then (LeftContact.email, as the link left that
    one; the link's now for a record made before it was kept): a survivor with another email brings it to the link
    after the merge, and its values from before were not a duplicate's of hers."""
    if settings is None or settings.qualification is None or settings.qualification.match != "email" \
            or not before_view(link, seen) or given_email(item) is None:
        return None
    then = link.left_at(seen.when)
    if then is None or then.contact_id == item.get("id"):
        return None
    return then if given_email(item) == given_email({"email": then.email or link.email}) else None


def _same_email(message: ContactMessage, item: dict, direct: list[Link], seen: Sighting, deps: WorkDeps,
                batch: Batch) -> None:
    """The other leads with the contact's email (their links on another contact). A contact a lead's link left is hers
    then, under either `match`: one it moved off (Link.left: judged late against what the link held on it when of an
    event from before the move, else noted not judged: _late, _left), or one the duplicate check's move left in
    Intercom, of an event from before that move (Link.stayed_at: judged late, _late). Any other is a duplicate (one
    Intercom made): with `match: email` a lead qualifies on it (it may qualify her, never arm the link); with `match:
    contact` it does not count (_not_counted)."""
    contact_id, done = item.get("id"), {d.ref for d in direct}
    for link in batch.linked_to_email(message.workspace, item.get("email")):
        if link.ref in done or link.contact_id == contact_id:
            continue
        if link.left(contact_id):
            held = link.left_then(contact_id)
            if held is None or not held.before_move(seen.when):
                _left(link, message, held, deps)
            elif not _unreadable(link, deps, batch):
                _late(link, held, batch.settings_for(link), seen, deps, batch)
            continue
        then = link.stayed_at(contact_id, seen.when)
        if then is not None:
            # (her contact then, which the duplicate check's move left in Intercom: LinkRepository.move's `stays`. Of an
            # event from before the move, judged as hers then, against what the link held on it, under either `match`,
            # as a merged contact's (not as a duplicate's against the link's state since, armed maybe by the check's
            # sighting of the contact it moved to: that qualified her on a value she had had all along))
            if not _unreadable(link, deps, batch):
                _late(link, then, batch.settings_for(link), seen, deps, batch)
            continue
        if _unreadable(link, deps, batch):
            continue
        settings = batch.settings_for(link)
        if settings is None or settings.qualification is None:
            continue
        if settings.qualification.match != "email" and elsewhere(link, settings) is None:
            _not_counted(link, settings.qualification, item, seen, deps, batch)
            continue
        duplicate = Sighting(seen.contact, seen.via, seen.when, duplicate=contact_id, replay=seen.replay)
        _evaluate(link, settings, duplicate, deps, batch)


def _late(link: Link, held: LeftContact, settings: Optional[CampaignSettings], seen: Sighting, deps: WorkDeps,
          batch: Batch, duplicate: Optional[str] = None) -> None:
    """A notification about a contact the link left (a merge's, delivered after the merge moved the link to its
    survivor, the survivor's value its baseline since), of an event from before the move: judged as it would have
    been had it come in order, against the baseline and armed state the link had on that contact (`held`), whatever
    `match` says (it was her contact then). A qualification it reaches goes the usual way, once; its letter as
    _evaluate's. `duplicate`: the notification is of that contact, the link's now, of an event before the link left
    `held` for it, when it was a duplicate of hers (duplicate_then): judged as one (it may qualify her, never arms)."""
    if settings is None:
        return
    of = f"of contact {duplicate}, a duplicate of contact {held.contact_id} then" if duplicate else \
        f"of contact {held.contact_id}, which the link left"
    late = Sighting(seen.contact, f"{seen.via} (late: {of})", seen.when, duplicate=duplicate, replay=seen.replay)
    judged_lead(deps, link, lambda: batch.keep(deps.qualifier.evaluate_late(link, held, settings, late)),
                letter_if=lambda exc: isinstance(exc, OwedLetter))


def _left(link: Link, message: ContactMessage, held: Optional[LeftContact], deps: WorkDeps) -> None:
    """A notification about a contact the link moved off (a merge's, delivered after the merge moved the link to
    its survivor) that is not judged: of an event after the move (or of no known time), or the move was recorded
    before the bridge kept what the link held on that contact (`held` None). What it shows is not judged against
    the baseline the link holds now (another contact's). It changes nothing of the link; its history says why (once
    a contact, its repeats counted)."""
    left = message.item.id
    why = ("the bridge did not record the baseline the link had on it (it moved before the bridge did)"
           if held is None else "the event is not from before the move (by Intercom's time of each), so it is not "
           "one the link would have judged on that contact")
    deps.links.note_repeat(link.ref, f"left_contact#{left}", (
        f"a notification about contact {left} ({message.topic}) was not judged: the link left that contact for "
        f"{link.contact_id} (Intercom merged it there, or the bridge followed the person to another of her "
        f"contacts) and its baseline is no longer that contact's; {why}"), outcome="not_judged")


def _unreadable(link: Link, deps: WorkDeps, batch: Batch) -> bool:
    """Its campaign's stored settings do not read (invalid): that campaign fails alone, and the notification goes
    on for the other people it names. Its lead gets a dead letter of its own, with the reason: a check of the lead
    (checks.lead_letter), whose replay, once corrected settings are applied, reads the contact as it is then."""
    refusal = batch.refusal(link)
    if refusal is not None and link.is_lead and link.ref not in batch.lettered:
        batch.lettered.add(link.ref)           # (once a batch: a merge's survivor names her by her email too)
        lead_letter(deps, link, refusal)
    return refusal is not None


def _evaluate(link: Link, settings: Optional[CampaignSettings], seen: Sighting, deps: WorkDeps, batch: Batch) -> None:
    """The link judged. The letter its failed qualification owes is a check of the lead (checks.lead_letter), not
    this notification: a replay of it would judge its own value (another than RF was asked for, when it came
    after), and the other people it names are still judged. So is the letter of a qualification RF refuses on a
    contact read now (`seen.current`: the notification was too large to queue): its replay would read the contact
    again, as it is by then."""
    judged_lead(deps, link, lambda: batch.keep(deps.qualifier.evaluate(link, settings, seen)), seen.duplicate,
                letter_if=lambda exc: isinstance(exc, OwedLetter) or seen.current)


def _not_counted(link: Link, rule: Qualification, item: dict, seen: Sighting, deps: WorkDeps, batch: Batch) -> None:
    """`match: contact`: a duplicate contact (same email) reached the target, which does not count.
    The lead's history says so (one entry per duplicate contact, its repeats counted), so that the
    cause of "converted in Intercom but not qualified" is named, not guessed. The value and its event's time are
    recorded on the link (Link.duplicates_seen, the newest of that contact's): should Intercom merge her contact into
    this one, a notification about it delivered before the merge's is judged then (_seen_before_merge)."""
    if not link.is_lead or link.status != "linked" or link.qualification is not QState.PENDING \
            or not has_attribute(item, rule.attribute):
        return
    value = attribute_value(item, rule.attribute)
    if not rules.matches(rule, attribute_type(rule.attribute, deps.apis.attributes(link.workspace, (rule.attribute,))), value):
        return
    if seen.when is not None:       # (first: a worker that changed them meanwhile retries it, noted once)
        noted = DuplicateSeen(str(item.get("id")), value, rule.attribute, seen.when)
        batch.keep(deps.links.see_duplicate(batch.link(link.ref) or link, noted))
    deps.links.note_repeat(link.ref, f"duplicate_contact#{item.get('id')}", (
        f"attribute changed on contact {item.get('id')}, a duplicate of the linked contact {link.contact_id} "
        f"(same email): {rule.attribute} is {value!r} there — set `match: email` to count it"), outcome="not_counted")


def _seen_before_merge(link: Link, message: ContactMessage, item: dict, seen: Sighting, deps: WorkDeps,
                       batch: Batch) -> None:
    """A merge moved the link onto the survivor (`match: contact`): a value meeting the target seen on the survivor
    while it was not hers (Link.duplicates_seen: its notification delivered before the merge's) is judged now, as it
    would have been had it come after the merge, only when its event is later than the merge (the time the link left
    the merged contact: LeftContact.moved_at). One no later showed the survivor as the link took it (its baseline, or
    a value older than that): no change since the merge, not judged. Judged again by the merge's retry (a qualification
    reached goes the usual way: claimed, once)."""
    if message.change != "merged" or message.item.merged_from is None:
        return
    merged_from, link = message.item.merged_from.id, batch.link(link.ref) or link
    left, noted = link.left_then(merged_from), link.seen_on(item.get("id"))
    # (the merge that moved it: this one, the time the link left that contact; a merge at an unknown time, none)
    if link.contact_id != item.get("id") or left is None or noted is None or left.moved_at is None \
            or left.moved_at != seen.when or noted.at <= left.moved_at or link.qualification is not QState.PENDING \
            or _unreadable(link, deps, batch):
        return
    settings = batch.settings_for(link)
    if settings is None or settings.qualification is None or settings.qualification.attribute != noted.of:
        return
    # (the contact showing that value, standard or custom_attributes.x, as an update to Intercom names it)
    contact = {"id": item.get("id"), **ContactPayload({noted.of: noted.value}).body()}
    earlier = Sighting(contact, f"webhook about contact {item.get('id')} of {iso(noted.at)}, delivered before the "
                       f"merge of {merged_from} into it ({message.topic}): judged after the merge", noted.at,
                       replay=seen.replay)
    _evaluate(link, settings, earlier, deps, batch)
