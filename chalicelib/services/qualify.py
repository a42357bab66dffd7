"""Qualification: Intercom contact changes (webhooks, reconciliation) evaluated against the
campaign's rule; a met rule marks the referral qualified in Referral Factory exactly once."""
from __future__ import annotations

from typing import Optional

from ..adapters.intercom import Merged, NotFound
from ..adapters.store import LinkItem, contact_key, email_key, notification_key
from ..domain import rules
from ..domain.mapping import attribute_type, attribute_value
from ..domain.settings import CampaignSettings, parse_settings
from ..errors import Permanent, Transient
from ..observability import count, logger

GONE = {"contact.deleted": "deleted", "contact.archived": "archived", "contact.user.deleted": "deleted",
        "contact.lead.deleted": "deleted"}


class Batch:
    """What one batch of Intercom messages needs from DynamoDB, read in a few batched calls."""

    def __init__(self, messages: list[dict], rt):
        self.rt = rt
        keys = []
        for m in messages:
            item, ws = m.get("item") or {}, m["workspace"]
            if m.get("notification_id"):
                keys.append(notification_key(ws, m["notification_id"]))
            for cid in (item.get("id"), (item.get("merged_from") or {}).get("id"), m.get("contact_id")):
                if cid:
                    keys.append(contact_key(ws, cid))
            if item.get("email"):
                keys.append(email_key(ws, item["email"]))
        self.pointers = rt.store.pointers(keys)     # one read answers "seen?" and "linked?" for all
        refs = set().union(*self.pointers.values()) if self.pointers else set()
        refs |= {f"{m['campaign_id']}#{m['rf_user_id']}" for m in messages if m.get("rf_user_id")}
        self.links = rt.store.links_by_ref(refs)
        campaigns = {link.campaign_id for link in self.links.values()}
        self.settings = {c: parse_settings(doc) for c, doc in rt.store.settings_documents(campaigns).items()}

    def linked(self, workspace: str, key: tuple[str, str]) -> list[LinkItem]:
        refs = self.pointers.get(key[0], set())
        return [self.links[r] for r in sorted(refs) if r in self.links and self.links[r].workspace == workspace]


def on_contact_event(message: dict, rt, batch: Batch) -> str:
    """One Intercom contact notification."""
    ws, topic, item = message["workspace"], message["topic"], message.get("item") or {}
    contact_id = item.get("id")
    direct = batch.linked(ws, contact_key(ws, contact_id)) if contact_id else []
    notification = message.get("notification_id")
    if notification and notification_key(ws, notification)[0] in batch.pointers:
        for link in direct:
            rt.store.note_repeat(link.campaign_id, link.rf_user_id, "intercom_notification",
                                 "the same Intercom notification arrived again and was ignored")
        return "repeat"
    when = rules.event_time(item.get("updated_at")) or rules.event_time(message.get("created_at"))
    via = f"webhook {topic}"
    if topic in GONE:
        for link in direct:
            rt.store.set_link(link, [{"event": "contact", "outcome": GONE[topic], "reason":
                                      f"Intercom says contact {contact_id} was {GONE[topic]}; the referral "
                                      "cannot qualify through it any more",
                                      "details": {"contact_id": contact_id}}], contact_state=GONE[topic])
    elif topic == "contact.unarchive":
        for link in direct:
            rt.store.set_link(link, [{"event": "contact", "outcome": "unarchived", "reason":
                                      f"Intercom says contact {contact_id} was unarchived"}], contact_state=None)
    else:
        merged_from = (item.get("merged_from") or {}).get("id")
        if topic == "contact.merged" and merged_from:
            for link in batch.linked(ws, contact_key(ws, merged_from)):
                rt.store.move_link(link, contact_id, [{"event": "contact", "outcome": "merged", "reason":
                                   f"contact {merged_from} was merged into {contact_id}; the link follows it",
                                   "details": {"from": merged_from, "into": contact_id}}], role=item.get("role"))
                direct.append(link)
        for link in direct:
            if item.get("role") and link.contact_role != item["role"]:
                rt.store.set_link(link, [{"event": "contact", "outcome": "role_changed", "reason":
                                          f"the contact is now a {item['role']} ({topic})"}],
                                  contact_role=item["role"])
            evaluate(rt, link, batch.settings.get(link.campaign_id), item, via, when)
        if item.get("email"):
            for link in batch.linked(ws, email_key(ws, item["email"])):
                settings = batch.settings.get(link.campaign_id)
                if link.ref in {d.ref for d in direct} or link.contact_id == contact_id or settings is None or \
                        settings.qualification is None or settings.qualification.match != "email":
                    continue
                evaluate(rt, link, settings, item, via, when, duplicate=contact_id)
    if not direct:
        count("ContactsNotLinked")
    if notification:
        rt.store.mark_notification(ws, notification)
    return "done" if direct else "not_linked"


def on_check(message: dict, rt, batch: Batch) -> str:
    """Reconciliation: read the lead's contact now, as if its webhook had arrived."""
    link = batch.links.get(f"{message['campaign_id']}#{message['rf_user_id']}")
    settings = batch.settings.get(str(message["campaign_id"]))
    if link is None or link.qualification not in ("pending", "failed") or not link.contact_id or settings is None:
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
        rt.store.set_link(link, [{"event": "contact", "outcome": "deleted", "reason":
                                  f"Intercom no longer has contact {link.contact_id} (404)"}], contact_state="deleted")
        return "gone"
    evaluate(rt, link, settings, contact, "reconciliation", rules.event_time(contact.get("updated_at")))
    return "done"


def evaluate(rt, link: LinkItem, settings: Optional[CampaignSettings], contact: dict, via: str,
             when: Optional[float], duplicate: Optional[str] = None) -> None:
    rule = settings.qualification if settings else None
    if rule is None or link.status != "linked":
        return
    if link.qualification == "qualified":
        rt.store.note_repeat(link.campaign_id, link.rf_user_id, "qualification",
                             "already qualified: later changes to the contact are ignored")
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
    if not result.met and not link.armed and rules.arms(rule, dtype, value) and (when is None or joined is None
                                                                              or when >= joined):
        rt.store.set_link(link, [entry], armed=True)
    else:
        rt.store.append_history(link.campaign_id, link.rf_user_id, [entry])
    if result.met:
        qualify(rt, link, via)


def qualify(rt, link: LinkItem, via: str) -> str:
    token = rt.store.start_qualifying(link)
    if token is None:
        if link.qualification == "qualified":
            rt.store.note_repeat(link.campaign_id, link.rf_user_id, "qualification",
                                 "already qualified: later changes to the contact are ignored")
            return "already"
        rt.store.append_history(link.campaign_id, link.rf_user_id, [{
            "event": "qualification", "outcome": "in_progress_elsewhere",
            "reason": "another worker is qualifying this referral right now"}])
        return "elsewhere"
    try:
        rt.rf().qualify(link.rf_user_id)
    except Transient as exc:
        rt.store.finish_qualifying(link, token, state="pending", reason=exc.reason, history=[{
            "event": "qualification", "outcome": "retrying", "reason": exc.reason}])
        raise exc.about(link.campaign_id, link.rf_user_id)
    except Permanent as exc:
        rt.store.finish_qualifying(link, token, state="failed", reason=exc.reason, history=[{
            "event": "qualification", "outcome": "failed", "reason": exc.reason}])
        count("QualificationsFailed")
        raise exc.about(link.campaign_id, link.rf_user_id)
    rt.store.finish_qualifying(link, token, state="qualified", history=[{
        "event": "qualification", "outcome": "qualified", "reason":
        f"Referral Factory confirmed the qualification of user {link.rf_user_id} (via {via})"}])
    count("ReferralsQualified")
    logger.info("referral qualified", extra={"campaign_id": link.campaign_id, "rf_user_id": link.rf_user_id})
    return "qualified"
