"""Qualification: Intercom contact changes (webhooks, reconciliation) evaluated against the
campaign's rule; a met rule marks the referral qualified in Referral Factory exactly once."""
from __future__ import annotations

from typing import Optional

from ..adapters.intercom import Merged, NotFound
from ..adapters.store import LinkItem, contact_key, email_key, notification_key
from ..domain import rules
from ..domain.mapping import attribute_type, attribute_value, has_attribute
from ..domain.settings import CampaignSettings, SettingsError, parse_settings
from ..errors import Permanent, Transient
from ..messages import CheckMessage, ContactMessage
from ..observability import count, logger


class Batch:
    """What one batch of Intercom messages needs from DynamoDB, read in a few batched calls."""

    def __init__(self, messages: list[ContactMessage | CheckMessage], rt):
        self.rt = rt
        keys = []
        for m in messages:
            if not isinstance(m, ContactMessage):
                continue
            ws, item = m.workspace, m.item
            if m.notification_id:
                keys.append(notification_key(ws, m.notification_id))
            for cid in (item.id, item.merged_from.id if item.merged_from else None):
                if cid:
                    keys.append(contact_key(ws, cid))
            if item.email:
                keys.append(email_key(ws, item.email))
        self.pointers = rt.store.pointers(keys)     # one read answers "seen?" and "linked?" for all
        refs = set().union(*self.pointers.values()) if self.pointers else set()
        refs |= {f"{m.campaign_id}#{m.rf_user_id}" for m in messages if isinstance(m, CheckMessage)}
        self.links = rt.store.links_by_ref(refs)
        self.settings: dict[str, CampaignSettings] = {}
        self.invalid: dict[str, str] = {}
        for campaign, doc in rt.store.settings_documents({l.campaign_id for l in self.links.values()}).items():
            try:
                self.settings[campaign] = parse_settings(doc)
            except SettingsError as exc:
                self.invalid[campaign] = "; ".join(exc.problems)

    def linked(self, workspace: str, key: tuple[str, str]) -> list[LinkItem]:
        refs = self.pointers.get(key[0], set())
        return [self.links[r] for r in sorted(refs) if r in self.links and self.links[r].workspace == workspace]

    def settings_for(self, link: LinkItem) -> Optional[CampaignSettings]:
        if link.campaign_id in self.invalid:
            raise Permanent(f"the stored settings of campaign {link.campaign_id} are invalid "
                            f"({self.invalid[link.campaign_id]}) — apply corrected settings, then replay")
        return self.settings.get(link.campaign_id)

    def seen(self, workspace: str, notification_id: Optional[str]) -> bool:
        return bool(notification_id) and notification_key(workspace, notification_id)[0] in self.pointers

    def mark_seen(self, workspace: str, notification_id: Optional[str]) -> None:
        if notification_id:
            self.rt.store.mark_notification(workspace, notification_id)
            self.pointers[notification_key(workspace, notification_id)[0]] = set()  # repeats within the batch


def on_contact_event(message: ContactMessage, rt, batch: Batch) -> str:
    """One Intercom contact notification."""
    ws, topic, item = message.workspace, message.topic, message.item.as_dict()
    contact_id = item.get("id")
    direct = batch.linked(ws, contact_key(ws, contact_id)) if contact_id else []
    notification = message.notification_id
    if batch.seen(ws, notification):
        for link in direct:
            rt.store.note_repeat(link.campaign_id, link.rf_user_id, "intercom_notification",
                                 "the same Intercom notification arrived again and was ignored")
        return "repeat"
    # Role/state changes are ordered by the notification's own time (one clock for every topic;
    # deletion stubs carry no updated_at).
    when = rules.event_time(message.created_at) or rules.event_time(item.get("updated_at"))
    via = f"webhook {topic}"
    replay = bool(message.replayed_from)
    if message.change in ("deleted", "archived", "unarchived"):
        state = None if message.change == "unarchived" else message.change
        for link in direct:
            rt.store.set_link(link, [{"event": "contact", "outcome": state or "unarchived", "reason":
                                      f"Intercom says contact {contact_id} was {state or 'unarchived'}",
                                      "details": {"contact_id": contact_id}}], when=when, contact_state=state)
    else:
        merged_from = (item.get("merged_from") or {}).get("id")
        if message.change == "merged" and merged_from and merged_from != contact_id:
            for link in batch.linked(ws, contact_key(ws, merged_from)):
                if link.contact_id != merged_from:
                    continue
                rt.store.move_link(link, contact_id, [{"event": "contact", "outcome": "merged", "reason":
                                   f"contact {merged_from} was merged into {contact_id}; the link follows it",
                                   "details": {"from": merged_from, "into": contact_id}}], role=item.get("role"))
                direct.append(link)
        for link in direct:
            if item.get("role") and link.contact_role != item["role"]:
                rt.store.set_link(link, [{"event": "contact", "outcome": "role_changed", "reason":
                                          f"the contact is now a {item['role']} ({topic})"}],
                                  when=when, contact_role=item["role"])
            evaluate(rt, link, batch.settings_for(link), item, via, when, replay=replay)
        if item.get("email"):
            for link in batch.linked(ws, email_key(ws, item["email"])):
                if link.ref in {d.ref for d in direct} or link.contact_id == contact_id:
                    continue
                settings = batch.settings_for(link)
                if settings is None or settings.qualification is None or settings.qualification.match != "email":
                    continue
                evaluate(rt, link, settings, item, via, when, duplicate=contact_id, replay=replay)
    if not direct:
        count("ContactsNotLinked")
    batch.mark_seen(ws, notification)
    return "done" if direct else "not_linked"


def on_check(message: CheckMessage, rt, batch: Batch) -> str:
    """Reconciliation: read the lead's contact now, as if its webhook had arrived."""
    link = batch.links.get(f"{message.campaign_id}#{message.rf_user_id}")
    if link is None or not link.contact_id:
        return "skipped"
    if link.campaign_id in batch.invalid and not message.replayed_from:
        rt.store.note_repeat(link.campaign_id, link.rf_user_id, "reconciliation_settings_invalid",
                             f"not checked: the stored settings are invalid ({batch.invalid[link.campaign_id]})")
        return "skipped"
    settings = batch.settings_for(link)
    replay = bool(message.replayed_from)
    if settings is None or settings.qualification is None or link.kind != "lead":
        rt.store.unpend(link, "the campaign has no qualification rule any more: reconciliation stops checking")
        return "skipped"
    if link.qualification not in ("pending", "qualifying") and not (replay and link.qualification == "failed"):
        return "skipped"
    intercom = rt.intercom(link.workspace)
    try:
        contact = intercom.get_contact(link.contact_id)
    except Merged as merged:
        if not merged.canonical_id:
            raise Permanent(f"contact {link.contact_id} was merged but Intercom gave no canonical link") from None
        rt.store.move_link(link, merged.canonical_id, [{"event": "contact", "outcome": "merged", "reason":
                           f"Intercom answered 410: contact {link.contact_id} was merged into "
                           f"{merged.canonical_id}; the link follows it"}])
        contact = intercom.get_contact(merged.canonical_id)
    except NotFound:
        # Some API versions answer 404 for a merged contact: look for the person by email first.
        from ..domain.join import pick_existing
        survivor = pick_existing(intercom.search_by_email(link.email)) if link.email else None
        if survivor is None:
            rt.store.set_link(link, [{"event": "contact", "outcome": "deleted", "reason":
                                      f"Intercom no longer has contact {link.contact_id} (404) nor another "
                                      "contact with this email"}], contact_state="deleted")
            rt.store.unpend(link, "the contact is gone: reconciliation stops checking")
            return "gone"
        rt.store.move_link(link, survivor["id"], [{"event": "contact", "outcome": "moved", "reason":
                           f"contact {link.contact_id} is gone (404); the contact with the same email, "
                           f"{survivor['id']}, takes its place"}], role=survivor.get("role"))
        contact = intercom.get_contact(survivor["id"])
    evaluate(rt, link, settings, contact, "reconciliation", rules.event_time(contact.get("updated_at")), replay=replay)
    return "done"


def evaluate(rt, link: LinkItem, settings: Optional[CampaignSettings], contact: dict, via: str,
             when: Optional[float], duplicate: Optional[str] = None, replay: bool = False) -> None:
    rule = settings.qualification if settings else None
    if rule is None or link.status != "linked" or not has_attribute(contact, rule.attribute):
        return  # nothing to judge (e.g. a tag or deletion event carries no attributes)
    if link.kind == "lead" and link.qualification is None:
        rt.store.note_repeat(link.campaign_id, link.rf_user_id, "qualification_untracked",
                             "this lead joined before the campaign had a qualification rule, so its value at "
                             "join time is unknown: it is not qualified automatically")
        return
    if link.qualification in ("qualified", "failed") and not (replay and link.qualification == "failed"):
        rt.store.note_repeat(link.campaign_id, link.rf_user_id, f"qualification_{link.qualification}", {
            "qualified": "already qualified: later changes to the contact are ignored",
            "failed": "qualifying failed earlier (see the dead-letter queue): replay it once the cause is fixed",
        }[link.qualification])
        return
    dtype = attribute_type(rule.attribute, rt.attributes(link.workspace))
    value = attribute_value(contact, rule.attribute)
    result = rules.evaluate(rule, dtype, value, link.baseline, bool(link.armed))
    details = {**result.as_details(), "via": via, "contact_id": contact.get("id")}
    if duplicate:
        details["duplicate_contact_id"] = duplicate
    reason = result.reason + (f" (on duplicate contact {duplicate} with the same email)" if duplicate else "")
    if link.kind != "lead":
        if result.met:
            rt.store.append_history(link.campaign_id, link.rf_user_id, [{
                "event": "evaluation", "outcome": "not_qualified", "details": details,
                "reason": f"{reason}, but this person is a referrer: referrers never qualify"}])
        return
    entry = {"event": "evaluation", "outcome": "met" if result.met else "not_met", "reason": reason,
             "details": details}
    joined = rules.event_time(link.joined_at)
    # Seeing a non-target value after joining makes a later return to the target a real change.
    # Only the linked contact itself can show that; a duplicate's value says nothing of it.
    arm = (not result.met and not link.armed and not duplicate and rules.arms(rule, dtype, value)
           and (when is None or joined is None or when >= joined))
    if arm:
        rt.store.set_link(link, [entry], armed=True)
    else:
        rt.store.append_history(link.campaign_id, link.rf_user_id, [entry])
    if result.met:
        qualify(rt, link, via, allow_failed=replay)


def _already_qualified_in_rf(rt, link: LinkItem) -> bool:
    try:
        return bool(rt.rf().get_user(link.rf_user_id).get("qualified_at"))
    except (Permanent, Transient):
        return False


def qualify(rt, link: LinkItem, via: str, allow_failed: bool = False) -> str:
    taking_over = link.qualification == "qualifying"   # a worker died mid-call: RF may have said yes
    token = rt.store.start_qualifying(link, lease=rt.config.lease_seconds, allow_failed=allow_failed)
    if token is None:
        if link.qualification in ("qualified", "failed"):
            rt.store.note_repeat(link.campaign_id, link.rf_user_id, f"qualification_{link.qualification}",
                                 f"already {link.qualification}: nothing more to do")
            return "already"
        rt.store.append_history(link.campaign_id, link.rf_user_id, [{
            "event": "qualification", "outcome": "in_progress_elsewhere",
            "reason": "another worker is qualifying this referral right now"}])
        return "elsewhere"
    try:
        if not (taking_over and _already_qualified_in_rf(rt, link)):
            rt.rf().qualify(link.rf_user_id)
    except Transient as exc:
        rt.store.finish_qualifying(link, token, state="pending", reason=exc.reason, history=[{
            "event": "qualification", "outcome": "retrying", "reason": exc.reason}])
        raise exc.about(link.campaign_id, link.rf_user_id)
    except Permanent as exc:
        if _already_qualified_in_rf(rt, link):   # e.g. a resent PUT answered "already qualified"
            return _qualified(rt, link, token, via)
        rt.store.finish_qualifying(link, token, state="failed", reason=exc.reason, history=[{
            "event": "qualification", "outcome": "failed", "reason": exc.reason}])
        count("QualificationsFailed")
        raise exc.about(link.campaign_id, link.rf_user_id)
    return _qualified(rt, link, token, via)


def _qualified(rt, link: LinkItem, token: str, via: str) -> str:
    rt.store.finish_qualifying(link, token, state="qualified", history=[{
        "event": "qualification", "outcome": "qualified", "reason":
        f"Referral Factory confirmed the qualification of user {link.rf_user_id} (via {via})"}])
    count("ReferralsQualified")
    logger.info("referral qualified", extra={"campaign_id": link.campaign_id, "rf_user_id": link.rf_user_id})
    return "qualified"
