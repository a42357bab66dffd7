"""The referral count (product.md §4: "and optionally referral counts"), written back beside the link.

RF's user object carries no count, so the bridge keeps one: each lead whose join it applies counts
once for their referrer, in the join's own finishing write (LinkRepository.finish_many; a join applied
before the campaign kept counts is counted by `bridge backfill --apply`: count_applied_many). After that
write, one `referral.count` message per referrer asks for the count to be written to the referrer's
Intercom contact (the one sync enrolled, or the one their own join linked, as a referrer or a lead).

Two workers may write one referrer's count at once, and their PUTs may reach Intercom in any order.
So every PUT is followed by a read of the count: a worker whose value is no longer the count writes
again. Whichever PUT Intercom applies last, its worker then reads the latest count, and writes it if
its own was older: Intercom ends with the latest count. A failed PUT raises: the message is retried
(SQS), the count stays in the store, and the referrer's history says what Intercom answered."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from ..domain.history import REPLAYED, Entry
from ..domain.join import pick_existing
from ..domain.link import Link, LinkStatus, PersonRef, ReferralCount
from ..domain.mapping import ContactPayload
from ..domain.settings import CampaignSettings, valid_or_none
from ..domain.sync import count_attribute
from ..errors import Deferred, WorkError
from ..messages import ReferralCountMessage
from ..observability import logger
from ..ports import Merged, NotFound
from .deps import WorkDeps
from .qualification.checks import follow

REWRITES = 5          # PUTs one message makes while the count keeps moving; then it is tried again later


def messages(refs: set[PersonRef], unless_written: bool = False,
             contacts: Optional[dict[PersonRef, str]] = None) -> list[dict]:
    """`contacts`: a referrer's contact their own join linked (so the write need not find the link)."""
    return [ReferralCountMessage(campaign_id=r.campaign_id, rf_user_id=r.rf_user_id, unless_written=unless_written,
                                 contact_id=(contacts or {}).get(r)).wire() for r in sorted(refs)]


@dataclass(frozen=True)
class Known:
    """What a batch's count messages read at once: their campaigns' settings (None: none valid) and
    their referrers' links."""

    settings: dict[str, Optional[CampaignSettings]]
    links: dict[PersonRef, Link]


def read(messages_: list[ReferralCountMessage], deps: WorkDeps) -> Known:
    """Two batched reads for the whole batch (the counts themselves are read one by one, consistently)."""
    documents = deps.settings.documents({m.campaign_id for m in messages_})
    return Known({m.campaign_id: valid_or_none(documents.get(m.campaign_id)) for m in messages_},
                 deps.links.get_many(m.person_ref for m in messages_))


# Why a count write that `bridge dlq replay` sent back wrote nothing (said in the referrer's history: the
# entry that resolves its dead letter, so `bridge explain` stops showing its fix; a write never parked notes
# nothing).
UNWRITTEN = {"held": "Intercom holds the count already", "kept": "no contact known for the referrer yet",
             "off": "referral count off in the settings since: nothing to write",
             "nothing": "no lead counted since: nothing to write"}


def on_count(message: ReferralCountMessage, deps: WorkDeps, known: Optional[Known] = None) -> str:
    known = known or read([message], deps)
    outcome = _count(message, deps, known)
    if message.replayed_from and outcome in UNWRITTEN:      # (a referrer forgotten since, no link nor count: none)
        deps.links.note_latest(message.person_ref, Entry("referral_count", outcome, f"referral count {REPLAYED}: "
                                                                                f"{UNWRITTEN[outcome]}"))
    return "written" if outcome == "held" else outcome


def _count(message: ReferralCountMessage, deps: WorkDeps, known: Known) -> str:
    ref = message.person_ref
    settings = known.settings.get(ref.campaign_id)
    attribute = count_attribute(settings) if settings is not None else None
    if settings is None or not attribute:
        return "off"                                   # the setting was removed since: nothing to write
    count = deps.links.referrals(ref)
    if message.contact_id:
        # The referrer's own join linked their contact: it shows the count kept, 0 too (no lead yet, or
        # none since `bridge forget` erased their count), not what it may hold from before.
        count = count or ReferralCount()
    elif count is None or not (count.n or count.written):     # (a count forget lowered to 0 is written)
        return "nothing"
    if message.unless_written and count.held(attribute):
        return "held"
    return write(deps, settings, ref, count, known.links.get(ref), linked=message.contact_id,
                 replayed=bool(message.replayed_from))


def write(deps: WorkDeps, settings: CampaignSettings, ref: PersonRef, count: ReferralCount, link: Optional[Link],
          linked: Optional[str] = None, replayed: bool = False) -> str:
    """Write the count to the referrer's contact, and again while the store's count moved meanwhile.
    A referrer whose contact the bridge does not know keeps the count: it is written once sync
    enrols them, or their own join links them. So does one whose contact is in the workspace the campaign
    left: linked there, or enrolled there by sync."""
    attribute = count_attribute(settings)
    assert attribute
    if link is not None and _linked_contact(link) and link.workspace != settings.workspace:
        return _moved_away(deps, settings, ref, count, attribute, "was linked", link.contact_id, link.workspace)
    # The contact their own join linked first: a link follows merges (`move`); `linked`, what the join
    # that asked linked (its link may not be readable yet); the one sync enrolled is what the count
    # learnt then, in the workspace it learnt it.
    gone = _gone_contact(link)       # (deleted or archived in Intercom since: a PUT answers 404)
    contact_id = _linked_contact(link) or (linked if linked != gone else None)
    if contact_id is None and count.contact_id is not None and count.contact_id != gone:
        contact_id = count.contact_id
        workspace = count.workspace or _workspace_of(deps, settings, ref, contact_id)
        if workspace != settings.workspace:
            return _moved_away(deps, settings, ref, count, attribute, "was enrolled by contact sync", contact_id,
                               workspace)
    if contact_id is None and link is not None and gone is not None:
        deps.links.note_latest(ref, Entry(
            "referral_count", "not_written", f"referral count: {count.n} kept, not written to {attribute}: the "
            f"referrer's contact {gone} was {link.contact_state} in Intercom", {"count": count.n, "contact_id": gone}))
        return "gone"
    if contact_id is None:
        logger.info("referral count kept: no contact known for the referrer",
                    extra={"campaign_id": ref.campaign_id, "rf_user_id": ref.rf_user_id, "count": count.n})
        return "kept"
    intercom = deps.apis.intercom(settings.workspace)
    for _ in range(REWRITES):
        n = count.n
        try:
            intercom.update_contact(contact_id, ContactPayload({attribute: n}).body())
        except WorkError as exc:
            followed = _followed(deps, settings, ref, count, link, contact_id) if exc.status in (404, 410) else None
            if followed is not None:       # followed her contact: written there (or kept: deleted)
                return write(deps, settings, ref, *followed, replayed=replayed)
            if not isinstance(exc, Deferred):      # a wait for the rate budget is not a failure (erased: no note)
                deps.links.note(ref, [Entry("referral_count", "failed", f"referral count: {n} could not be "
                                            f"written to {attribute}: {exc.reason}",
                                            {"count": n, "contact_id": contact_id})])
            raise
        fresh = deps.links.referrals(ref)
        if fresh is None and not deps.links.get_many([ref], consistent=True):
            # `bridge forget` erased her meanwhile (neither her count nor her link is left; a referrer her own join
            # linked, with no lead yet, has a link and no count): nothing about her is written
            return "nothing"
        count = fresh or count
        if count.n == n:
            deps.links.referrals_written(ref, n, attribute)
            # One entry, the latest write (a referrer with 10,000 leads is written to up to 10,000 times).
            # (only while she is kept: a forget landing since the check above erased her, and writes nothing)
            deps.links.note_latest(ref, Entry("referral_count", "written", f"referral count: {n} written to "
                                              f"{attribute}" + (f", {REPLAYED}" if replayed else ""),
                                              {"count": n, "contact_id": contact_id}))
            return "written"
    # Not a failed try: the count is busy growing, and the next delivery writes the latest.
    raise Deferred(f"the referral count kept changing while it was written to {attribute}: written again later",
                   retry_after=5)


def _moved_away(deps: WorkDeps, settings: CampaignSettings, ref: PersonRef, count: ReferralCount, attribute: str,
                how: str, contact_id: Optional[str], workspace: Optional[str]) -> str:
    """The referrer's contact is in the workspace the campaign left (`settings apply --move-workspace`): the
    new workspace's client cannot write it (nor must it write that id there). Kept, as for a referrer whose
    contact is not known; her history says why (one entry, the latest). `workspace` None: the contact's
    workspace was not recorded, and the campaign's does not hold it (_workspace_of)."""
    where = (f"workspace {workspace}" if workspace is not None else
             f"a workspace the bridge did not record then (not {settings.workspace}, which has no such contact)")
    deps.links.note_latest(ref, Entry(
        "referral_count", "not_written", f"referral count: {count.n} kept, not written to {attribute}: the referrer "
        f"{how} in {where}; campaign {ref.campaign_id} is now connected to {settings.workspace} (its settings "
        "were applied naming it), which does not hold their contact",
        {"count": count.n, "contact_id": contact_id, "workspace": workspace}))
    logger.info("referral count kept: the referrer's contact is in the workspace the campaign left",
                extra={"campaign_id": ref.campaign_id, "rf_user_id": ref.rf_user_id, "count": count.n})
    return "moved"


def _workspace_of(deps: WorkDeps, settings: CampaignSettings, ref: PersonRef, contact_id: str) -> Optional[str]:
    """The workspace of a contact the count learnt before the bridge recorded it (older counts): the
    campaign's, if it holds the contact (one read, then recorded: asked once); None if it does not (the
    campaign moved since, or the contact was deleted): not written, and the count forgets the contact (asked
    once too: the count is then kept until sync enrols the referrer or their join links them). A read that
    fails raises (retried)."""
    try:
        deps.apis.intercom(settings.workspace).get_contact(contact_id)
    except NotFound:
        deps.links.drop_referrer_contact(ref, contact_id)
        return None
    except Merged:
        pass                   # merged into another of its contacts: it was the workspace's
    deps.links.referrer_contact(ref, contact_id, settings.workspace)
    return settings.workspace


def _followed(deps: WorkDeps, settings: CampaignSettings, ref: PersonRef, count: ReferralCount,
              link: Optional[Link], contact_id: str) -> Optional[tuple[ReferralCount, Optional[Link]]]:
    """Intercom no longer has the referrer's contact (a PUT answered 410 or 404; its webhook was lost): it is
    followed. Her link follows it as a lead's does (checks.follow: merged, to the survivor; gone, to the contact
    with her email, or marked deleted), the survivor read too for the baseline it gives her (two reads, three
    with a search); the count (the contact sync enrolled) follows a merge (one read), or the contact with her
    email (_enrolled_gone). The count and link to write with then; None when Intercom still
    has the contact (the PUT failed otherwise), or there is nothing to follow."""
    if link is not None and contact_id == _linked_contact(link):
        moved, contact = follow(link, settings, deps)
        return None if moved is None or str((contact or {}).get("id")) == contact_id else (count, moved)
    if contact_id != count.contact_id:
        return None
    try:
        deps.apis.intercom(settings.workspace).get_contact(contact_id)
        return None
    except Merged as merged:
        return (deps.links.referrer_contact(ref, merged.canonical_id, settings.workspace), link) \
            if merged.canonical_id else None
    except NotFound:
        return _enrolled_gone(deps, settings, ref, count, contact_id), link


def _enrolled_gone(deps: WorkDeps, settings: CampaignSettings, ref: PersonRef, count: ReferralCount,
                   contact_id: str) -> ReferralCount:
    """The contact sync enrolled the referrer with is gone (404): the count follows the contact with her email (the
    ledger's), or forgets it, and is kept until sync enrols her again (her history says why, once: no PUT is asked
    for meanwhile, so none fails)."""
    enrolled = deps.sync.entries(ref.campaign_id, [contact_id], consistent=True).get(contact_id)
    intercom = deps.apis.intercom(settings.workspace)
    survivor = pick_existing(intercom.search_by_email(enrolled.email)) if enrolled and enrolled.email else None
    if survivor is not None:
        return deps.links.referrer_contact(ref, str(survivor["id"]), settings.workspace)
    if deps.links.drop_referrer_contact(ref, contact_id, settings.workspace):
        deps.links.note_latest(ref, Entry(
            "referral_count", "not_written", f"referral count: {count.n} kept, not written to "
            f"{count_attribute(settings)}: the referrer's contact {contact_id} (enrolled by contact sync) was deleted "
            "in Intercom, which has no other contact with her email; written once sync enrols a contact of hers",
            {"count": count.n, "contact_id": contact_id}))
    fresh = deps.links.referrals(ref)        # (another contact sync recorded meanwhile; none: forgotten meanwhile)
    return fresh if fresh is not None and fresh.contact_id != contact_id else replace(count, contact_id=None,
                                                                                      workspace=None)


def _linked_contact(link: Optional[Link]) -> Optional[str]:
    """The contact the referrer's own join linked (as a referrer, or as a lead: leads refer people too), while
    Intercom has it."""
    return None if _gone_contact(link) else _referrer_contact(link)


def _gone_contact(link: Optional[Link]) -> Optional[str]:
    """The contact the referrer's own join linked, deleted or archived in Intercom since (its webhook said so)."""
    return _referrer_contact(link) if link is not None and link.contact_state else None


def _referrer_contact(link: Optional[Link]) -> Optional[str]:
    return link.contact_id if link is not None and link.status is LinkStatus.LINKED else None
