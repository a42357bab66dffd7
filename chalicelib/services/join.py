"""Use case: a person joined a campaign. Apply its settings: create or find the Intercom contact,
link it to the RF person, and record every decision in the person's history. Each step is a small
function that returns what it found; only `_apply` strings them together."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from ..domain import join as decide
from ..domain import people
from ..domain.history import Entry
from ..domain.link import LEAD, JoinClaim, JoinResult, Link, LinkStatus, PersonRef
from ..domain.judge import Sighting
from ..domain.qualification import QState
from ..domain.settings import CampaignSettings, SettingsError, parse_settings
from ..errors import Permanent
from ..messages import JoinMessage
from ..observability import count, logger, mask_email
from ..ports import Apis, Conflict, IntercomPort, LinkRepository, Merged, NotFound
from .deps import WorkDeps


@dataclass(frozen=True)
class Known:
    """What a failed try records: the email, and the contact it was working with (with its baseline)."""

    email: Optional[str]
    contact_id: Optional[str] = None
    baseline: Any = None


@dataclass(frozen=True)
class Person:
    """The person as the mapping reads them, and what had to be read from Referral Factory."""

    values: dict[str, Any]
    fetched: tuple[str, ...] = ()

    @property
    def email(self) -> Optional[str]:
        return (self.values.get("email") or "").lower() or None

    @property
    def received(self) -> Entry:
        return Entry("join_received", "received", details={
            "type": self.values.get("type"), "fetched_from_referral_factory": list(self.fetched)})


@dataclass(frozen=True)
class Reached:
    """The contact the join ends with, how, and its history."""

    contact: dict
    outcome: str                 # created | updated | linked
    baseline: Any
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Applied:
    outcome: str                 # created | updated | linked | ignored
    result: JoinResult
    entries: list[Entry]
    resumed: Optional[dict] = None


def process_join(message: JoinMessage, deps: WorkDeps, link: Optional[Link], settings_doc: Optional[dict]) -> str:
    """`link` and `settings_doc`: what the worker's batched read found. Returns the outcome
    (created, updated, linked, ignored, repeat)."""
    settings, ref = _settings(message.campaign_id, settings_doc), message.person_ref
    if link is not None and link.final:
        return _repeat(deps, ref)
    claim = deps.links.claim(ref, settings.workspace)
    if claim is None:
        return _repeat(deps, ref)
    # A contact we created on an earlier, failed try is ours: resume with it (and with the
    # baseline recorded when it was created), not as a duplicate.
    email = people.given_email(message.person.as_dict())
    known = Known(email, link.contact_id, link.baseline) if link is not None else Known(email)
    applied = _apply(settings, message, claim, known, deps)
    deps.links.finish(claim, applied.result, applied.entries)
    count({"created": "ContactsCreated", "ignored": "JoinsSkipped"}.get(applied.outcome, "ContactsLinked"))
    if applied.resumed is not None and applied.result.qualification is QState.PENDING:
        # Webhooks that came while the join was unfinished were not applied: look now.
        resumed = deps.links.get(ref)
        if resumed is not None:
            deps.qualifier.evaluate(resumed, settings.qualification, Sighting(applied.resumed, "join resumed"))
    return applied.outcome


def _settings(campaign_id: str, document: Optional[dict]) -> CampaignSettings:
    if document is None:
        raise Permanent(f"campaign {campaign_id} has no settings — apply them with `bridge settings apply`")
    try:
        return parse_settings(document)
    except SettingsError as exc:
        raise Permanent(f"the stored settings of campaign {campaign_id} are invalid ({'; '.join(exc.problems)}) "
                        "— apply corrected settings, then replay") from None


def _repeat(deps: WorkDeps, ref: PersonRef) -> str:
    deps.history.note_repeat(ref, "join", "the same join arrived again and was ignored: it had already been applied")
    count("JoinRepeatsIgnored")
    return "repeat"


def _apply(settings: CampaignSettings, message: JoinMessage, claim: JoinClaim, known: Known,
           deps: WorkDeps) -> Applied:
    """The join's steps. A failure records what is known on the link (so that the next try resumes
    with our contact, and `bridge forget` finds a failed join too), then goes on to the worker."""
    try:
        person = _person(settings, message, deps.apis)
        known = dataclasses.replace(known, email=person.email)
        plan = decide.plan(settings, person.values, deps.apis.attributes(settings.workspace))
        if isinstance(plan, decide.Skip):
            return _skipped(plan, person)
        intercom = deps.apis.intercom(settings.workspace)
        resumed, vanished = _resume(intercom, known)
        if vanished is not None:
            known = Known(known.email)
        reached = _created(resumed, plan) if resumed else _find_or_create(intercom, plan, settings, claim, deps.links)
        if reached.outcome == "created":
            known = dataclasses.replace(known, contact_id=reached.contact["id"], baseline=reached.baseline)
        entries = [person.received, *_field_errors(plan), *([vanished] if vanished else []), *reached.entries,
                   *_tag(intercom, plan, reached)]
    except Exception as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        deps.links.finish(claim, JoinResult(LinkStatus.FAILED, email=known.email, contact_id=known.contact_id,
                                            baseline=known.baseline, reason=reason),
                          [Entry("join", "failed", reason)])
        raise
    return _linked(settings, person, reached, entries, resumed is not None)


def _person(settings: CampaignSettings, message: JoinMessage, apis: Apis) -> Person:
    """The webhook's person, completed from Referral Factory with what the mapping needs."""
    values = {"id": message.rf_user_id, "campaign_id": message.campaign_id, **message.person.as_dict()}
    sources = {r.from_ for p in (settings.leads, settings.referrers) for r in p.fields if r.from_}
    fetched: list[str] = []
    if people.missing(values, sources):
        values = people.merge(values, people.normalise(apis.rf().get_user(values["id"])))
        fetched.append("user")
    wanted = {s for s in sources if s.startswith("referrer_")}
    if wanted and values.get("referrer_id") and not wanted <= set(values):
        values = people.with_referrer(values, people.normalise(apis.rf().get_user(values["referrer_id"])))
        fetched.append("referrer")
    if "campaign_name" in sources and "campaign_name" not in values:
        values["campaign_name"] = apis.campaign_name(settings.campaign_id)
    return Person(values, tuple(fetched))


def _skipped(skip: decide.Skip, person: Person) -> Applied:
    if skip.outcome == "failed":
        raise Permanent(skip.reason)
    result = JoinResult(LinkStatus.IGNORED, kind=person.values.get("type"), email=person.email, reason=skip.reason)
    return Applied("ignored", result, [person.received, Entry("join", "ignored", skip.reason)])


def _field_errors(plan: decide.Plan) -> list[Entry]:
    errors = [{"to": e.to, "source": e.source, "reason": e.reason} for e in plan.payload.errors]
    if not errors:
        return []
    count("FieldConversionErrors", len(errors))
    return [Entry("fields", "not_written", "some mapped values could not be converted; the contact was still "
                  "created or linked", {"errors": errors})]


def _resume(intercom: IntercomPort, known: Known) -> tuple[Optional[Reached], Optional[Entry]]:
    """The contact an earlier try created, if it still exists; else the entry that says it vanished."""
    if not known.contact_id:
        return None, None
    contact = _find(intercom, known.contact_id)
    if contact is None:
        return None, Entry("contact", "vanished", f"contact {known.contact_id}, created by an earlier try, no "
                           "longer exists; starting over")
    # The baseline is what the contact was created with (a resumed try may read a value the lead
    # reached since).
    return Reached(contact, "created", known.baseline, (Entry(
        "contact", "resumed", "an earlier try created this contact and then failed; resuming with it",
        {"contact_id": contact["id"]}),)), None


def _created(reached: Reached, plan: decide.Plan) -> Reached:
    contact = reached.contact
    return dataclasses.replace(reached, entries=reached.entries + (Entry(
        "contact", "created", f"no contact with this email existed; created a {plan.role}",
        {"contact_id": contact["id"], "role": contact.get("role"), "attributes": sorted(plan.payload.attributes)}),))


def _find_or_create(intercom: IntercomPort, plan: decide.Plan, settings: CampaignSettings, claim: JoinClaim,
                    links: LinkRepository) -> Reached:
    existing = decide.pick_existing(intercom.search_by_email(str(plan.payload.email)))
    found_by = "email search"
    if existing is None:
        try:
            created = intercom.create_contact(plan.create_body())
        except Conflict as conflict:
            if not conflict.contact_id:
                raise Permanent(f"Intercom reported a conflict without a contact id: {conflict}") from None
            existing, found_by = _get(intercom, conflict.contact_id), "409 conflict on create (search had not caught up)"
        else:
            baseline = decide.baseline(settings, created)
            links.note_created(claim, created["id"], baseline)
            return _created(Reached(created, "created", baseline), plan)
    assert existing is not None
    return _existing(intercom, plan, settings, existing, found_by)


def _existing(intercom: IntercomPort, plan: decide.Plan, settings: CampaignSettings, existing: dict,
              found_by: str) -> Reached:
    found = f"a {existing.get('role')} with this email already exists (found by {found_by})"
    update = decide.duplicate_action(plan)
    if update is None:
        contact = _get(intercom, existing["id"]) if found_by == "email search" else existing   # search lags
        return Reached(contact, "linked", decide.baseline(settings, contact), (Entry(
            "contact", "skipped_existing", f"{found}; duplicates is skip, so it was left untouched and linked",
            {"contact_id": existing["id"], "role": existing.get("role")}),))
    contact = intercom.update_contact(existing["id"], update)
    return Reached(contact, "updated", decide.baseline(settings, contact), (Entry(
        "contact", "updated_existing", f"{found}; duplicates is update, so it was marked as referred and linked",
        {"contact_id": existing["id"], "attributes": sorted(update)}),))


def _tag(intercom: IntercomPort, plan: decide.Plan, reached: Reached) -> list[Entry]:
    if not plan.people.tag or reached.outcome == "linked":
        return []
    intercom.tag_contact(reached.contact["id"], plan.people.tag)
    return [Entry("tag", "tagged", details={"tag": plan.people.tag})]


def _linked(settings: CampaignSettings, person: Person, reached: Reached, entries: list[Entry],
            resumed: bool) -> Applied:
    contact = reached.contact
    logger.info("join applied", extra={"campaign_id": settings.campaign_id, "outcome": reached.outcome,
                                       "email": mask_email(person.email), "contact_id": contact["id"]})
    kind = person.values.get("type")
    pending = kind == LEAD and settings.qualification is not None
    result = JoinResult(LinkStatus.LINKED, kind=kind, email=person.email, contact_id=contact["id"],
                        contact_role=contact.get("role"), baseline=reached.baseline,
                        qualification=QState.PENDING if pending else None)
    return Applied(reached.outcome, result, entries, contact if resumed else None)


def _get(intercom: IntercomPort, contact_id: str) -> dict:
    """Read a contact Intercom pointed at, following a merge; a vanished one is a permanent failure."""
    contact = _find(intercom, contact_id)
    if contact is None:
        raise Permanent(f"Intercom pointed at contact {contact_id}, which no longer exists (404)")
    return contact


def _find(intercom: IntercomPort, contact_id: str) -> Optional[dict]:
    """Read a contact, following a merge; None when it no longer exists."""
    try:
        try:
            return intercom.get_contact(contact_id)
        except Merged as merged:
            if merged.canonical_id:
                return intercom.get_contact(merged.canonical_id)
            raise Permanent(f"contact {contact_id} was merged and Intercom gave no canonical link") from None
    except NotFound:
        return None
