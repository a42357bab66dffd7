"""Use case: reconciliation's check of one lead — read its contact now, as if its webhook had
arrived (a lost webhook must not lose a qualification)."""
from __future__ import annotations

import json
from typing import Callable, Optional

from ...domain import rules
from ...domain.history import REPLAYED, Entry, replayed_said
from ...domain.join import moved_baseline, pick_existing, records_left
from ...domain.link import ContactState, Link
from ...domain.judge import Sighting, finishes_on_replay
from ...domain.qualification import UNFINISHED, open_states
from ...domain.settings import CampaignSettings
from ...errors import Permanent
from ...messages import CheckMessage
from ...ports import Merged, NotFound
from ..deps import WorkDeps
from .batch import Batch
from .qualifier import owed_letter


def on_check(message: CheckMessage, deps: WorkDeps, batch: Batch) -> str:
    link = batch.link(message.person_ref)
    replay = bool(message.replayed_from)
    if link is None or not link.contact_id:
        return "skipped"
    if link.owes_letter and not replay:
        # It failed (a check resuming it, or judging it) and its letter may not exist: this check is it.
        raise owed_letter(link)
    if link.qualification in UNFINISHED:
        # Decided and left unfinished (RF's answer lost, or a worker died holding the claim): finish
        # it, whatever the contact says now and whatever the settings became (RF asked first: Qualifier).
        batch.keep(deps.qualifier.resume(link, "reconciliation"))
        return "done"
    if link.campaign_id in batch.invalid and not replay:
        deps.links.note_repeat(link.ref, "reconciliation_settings_invalid",
                               f"not checked: the stored settings are invalid ({batch.invalid[link.campaign_id]})")
        return "skipped"
    if finishes_on_replay(link, replay):
        # The rule was met and RF refused the qualification. The decision sticks: it is finished whatever the
        # contact says now, and whatever the settings became since (the rule turned off, the campaign deleted: RF
        # asked first, Qualifier), as a webhook's replay does (domain/judge.py).
        batch.keep(deps.qualifier.qualify(link, "reconciliation, " + replayed_said(str(message.replayed_from),
                                                                              link.campaign_id), replay=True))
        return "done"
    settings = batch.settings_for(link)
    if not link.is_lead:
        batch.keep(deps.links.unpend(link, "the campaign has no qualification rule any more: "
                                           "reconciliation stops checking"))
        return "skipped"
    if settings is None or settings.qualification is None:
        # Nothing to judge it by now (the rule turned off, the settings deleted): a check queued before, or a replay.
        # It stays in the pending index: settings applied again with a rule resume its checks (the sweep leaves it
        # out meanwhile: reconcile._sweep).
        deps.links.note_repeat(link.ref, "reconciliation_no_rule", "not checked: the campaign has no qualification "
                               "rule now; checked again once settings with a rule are applied")
        return "skipped"
    if link.qualification not in open_states(replay):
        return "skipped"
    after = check_link(link, settings, deps, replay)
    if after is None:
        return "gone"
    batch.keep(after)
    return "done"


def lead_letter(deps: WorkDeps, link: Link, exc: Permanent, duplicate: Optional[str] = None) -> None:
    """The lead's own dead letter for its qualification refused for good (`exc`, about it): a check of it, whose
    replay finishes the qualification whatever the contact says by then (on_check). `duplicate`: the contact
    (`match: email`) the lead was judged on, which the check names (`explain` on that contact shows the letter)."""
    check = CheckMessage(campaign_id=link.campaign_id, rf_user_id=link.rf_user_id, workspace=link.workspace,
                         duplicate_contact_id=duplicate)
    deps.dead_letter(json.dumps(check.wire()), exc.reason, 1, exc.person, check.kind,
                     {"duplicate_contact_id": duplicate} if duplicate else None)


def judged_lead(deps: WorkDeps, link: Link, judge: Callable[[], object], duplicate: Optional[str] = None,
                letter_if: Callable[[Permanent], bool] = lambda _: True) -> None:
    """One lead judged. Its qualification refused for good (RF's 4xx, said in the lead's history: a failure `about`
    it) is the lead's own dead letter, a check of it, and the search goes on: only a replay reopens a failed
    qualification, and a replayed search judges the leads still waiting, not it (a check names its campaign and
    lead: `dlq replay --campaign` reaches it, and its replay asks RF again); the other leads of the search are
    not held back by one. `duplicate`: the lead was judged on another contact with its email (`match: email`),
    which the check names (`explain` on that contact shows the letter); its replay finishes the qualification
    whatever either contact says by then (checks.on_check). `letter_if`: which of its refusals are the lead's letter
    (the others leave with the record)."""
    try:
        judge()
    except Permanent as exc:
        if exc.person != link.ref or not letter_if(exc):
            raise
        lead_letter(deps, link, exc, duplicate)


def check_link(link: Link, settings: CampaignSettings, deps: WorkDeps, replay: bool) -> Optional[Link]:
    """Read the lead's contact now (following a merge) and judge it, as if its webhook had come.
    None when the contact is gone for good. A link made in another workspace than the campaign's now
    is left as it is (its contact is not read with that workspace's token: Qualifier.moved_away). It
    stays pending, so that moving the campaign back makes it count again; the sweep checks it only
    until RECONCILE_SWEEP_DAYS, each time one counted history entry. (A check naming a duplicate contact,
    `match: email`, is the letter of a qualification RF refused: its replay finishes it, on_check.)"""
    if deps.qualifier.moved_away(link, settings):
        return link
    via = "reconciliation" + (f", {REPLAYED}" if replay else "")
    read = _read_contact(link, settings, deps)
    if read is None:
        return None
    link, contact = read
    seen = Sighting(contact, via, rules.event_time(contact.get("updated_at")), replay=replay, current=True,
                    read_after_link=True)
    return deps.qualifier.evaluate(link, settings, seen)


def _read_contact(link: Link, settings: CampaignSettings, deps: WorkDeps) -> Optional[tuple[Link, dict]]:
    """The lead's contact, following it (follow). None when the contact is gone for good: reconciliation stops
    checking; or when `bridge forget` erased the lead as it was followed (nobody to check)."""
    moved, contact = follow(link, settings, deps)
    if moved is None and contact is not None:
        return None                 # erased meanwhile: the move wrote nothing back
    if contact is None:
        deps.links.unpend(moved or link, "the contact is gone: reconciliation stops checking")
        return None
    return moved or link, contact


def follow(link: Link, settings: CampaignSettings, deps: WorkDeps) -> tuple[Optional[Link], Optional[dict]]:
    """The link's contact read now, following it where Intercom no longer has it (its webhook lost): merged (410),
    the link moves to the survivor; gone (404: some API versions answer so for a merged contact), to the contact
    with its email, or it is marked deleted. A lead's link moving takes the baseline that contact gives it
    (domain/join.moved_baseline). The link then (None: erased meanwhile) and the contact it holds (None: gone
    for good). A merge Intercom names no survivor of raises Permanent."""
    intercom = deps.apis.intercom(link.workspace)
    contact_id = str(link.contact_id)
    try:
        return link, intercom.get_contact(contact_id)
    except Merged as merged:
        if not merged.canonical_id:
            raise Permanent(f"contact {contact_id} was merged but Intercom gave no canonical link") from None
        survivor, entry = merged.canonical_id, Entry(
            "contact", "merged", f"Intercom answered 410: contact {contact_id} was merged into "
            f"{merged.canonical_id}; the link follows it")
    except NotFound:
        found = pick_existing(intercom.search_by_email(link.email)) if link.email else None
        if found is None:
            return deps.links.set_contact(link, [Entry(
                "contact", "deleted", f"Intercom no longer has contact {contact_id} (404) nor another contact "
                "with this email")], state=ContactState.DELETED), None
        survivor, entry = str(found["id"]), Entry(
            "contact", "moved", f"contact {contact_id} is gone (404); the contact with the same email, "
            f"{found['id']}, takes its place")
    contact = intercom.get_contact(survivor)
    taken = moved_baseline(settings, link, contact)
    # (the contact it leaves is gone: its notifications, delivered late, are not judged against another's baseline,
    # but against the one the link had on it, recorded by the move with the time of the move: contact_events._late)
    return deps.links.move(link, survivor, [entry], role=contact.get("role"),
                           left=records_left(settings, link, taken), **taken), contact
