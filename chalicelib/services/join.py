"""Apply a campaign's settings to a person who joined: create or find the Intercom contact,
link it to the RF person, and record every decision in the person's history."""
from __future__ import annotations

from typing import Any

from ..adapters.intercom import Conflict, Merged, NotFound
from ..domain import join as decide
from ..domain import people
from ..domain.settings import CampaignSettings, SettingsError, parse_settings
from ..errors import Permanent
from ..messages import JoinMessage
from ..observability import count, logger, mask_email


def process_join(message: JoinMessage, rt, prefetched_link=None, settings_doc: dict | None = None) -> str:
    """Returns the outcome ("created", "updated", "linked", "ignored", "repeat")."""
    campaign_id, rf_user_id = message.campaign_id, message.rf_user_id
    if settings_doc is None:
        raise Permanent(f"campaign {campaign_id} has no settings — apply them with `bridge settings apply`")
    try:
        settings = parse_settings(settings_doc)
    except SettingsError as exc:
        raise Permanent(f"the stored settings of campaign {campaign_id} are invalid ({'; '.join(exc.problems)}) "
                        "— apply corrected settings, then replay") from None
    store = rt.store
    if prefetched_link is not None and prefetched_link.final:
        return _repeat(store, campaign_id, rf_user_id)
    token = store.claim_join(campaign_id, rf_user_id, settings.workspace, lease=rt.config.lease_seconds)
    if token is None:
        return _repeat(store, campaign_id, rf_user_id)
    # A contact we created on an earlier, failed try is ours: resume with it (and with the
    # baseline recorded when it was created), not as a duplicate.
    progress = {"token": token, "campaign_id": campaign_id, "rf_user_id": rf_user_id,
                "contact_id": getattr(prefetched_link, "contact_id", None),
                "baseline": getattr(prefetched_link, "baseline", None),
                "email": people.given_email(message.person.as_dict())}
    try:
        outcome, fields, history = _apply(settings, message, rt, progress)
    except Exception as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        store.finish_join(campaign_id, rf_user_id, token, status="failed", workspace=settings.workspace,
                          reason=reason, contact_id=progress.get("contact_id"), baseline=progress.get("baseline"),
                          email=progress.get("email"),   # so that `bridge forget` finds a failed join too
                          history=[{"event": "join", "outcome": "failed", "reason": reason}])
        raise
    status = "ignored" if outcome == "ignored" else "linked"
    store.finish_join(campaign_id, rf_user_id, token, status=status, workspace=settings.workspace,
                      history=history, **fields)
    count({"created": "ContactsCreated", "ignored": "JoinsSkipped"}.get(outcome, "ContactsLinked"))
    if progress.get("resumed") and fields.get("qualification") == "pending":
        # Webhooks that came while the join was unfinished were not applied: look now.
        from .qualify import evaluate
        link = store.get_link(campaign_id, rf_user_id)
        evaluate(rt, link, settings, progress["resumed"], "join resumed", None)
    return outcome


def _get(intercom, contact_id: str, missing_ok: bool = False) -> dict | None:
    """Read a contact, following a merge; a vanished contact is a clear permanent failure."""
    try:
        try:
            return intercom.get_contact(contact_id)
        except Merged as merged:
            if merged.canonical_id:
                return intercom.get_contact(merged.canonical_id)
            raise Permanent(f"contact {contact_id} was merged and Intercom gave no canonical link") from None
    except NotFound:
        if missing_ok:
            return None
        raise Permanent(f"Intercom pointed at contact {contact_id}, which no longer exists (404)") from None


def _repeat(store, campaign_id: str, rf_user_id: str) -> str:
    store.note_repeat(campaign_id, rf_user_id, "join", "the same join arrived again and was ignored: "
                      "it had already been applied")
    count("JoinRepeatsIgnored")
    return "repeat"


def _person(settings: CampaignSettings, message: JoinMessage, rt) -> dict:
    person = message.person.as_dict()
    person.setdefault("id", message.rf_user_id)
    person.setdefault("campaign_id", message.campaign_id)
    sources = {r.from_ for p in (settings.leads, settings.referrers) for r in p.fields if r.from_}
    fetched = []
    if people.missing(person, sources):
        person = people.merge(person, people.normalise(rt.rf().get_user(person["id"])))
        fetched.append("user")
    if any(s.startswith("referrer_") for s in sources) and person.get("referrer_id") and \
            not all(s in person for s in sources if s.startswith("referrer_")):
        person = people.with_referrer(person, people.normalise(rt.rf().get_user(person["referrer_id"])))
        fetched.append("referrer")
    if "campaign_name" in sources and "campaign_name" not in person:
        person["campaign_name"] = rt.campaign_name(settings.campaign_id)
    person["_fetched"] = fetched
    return person


def _apply(settings: CampaignSettings, message: JoinMessage, rt, progress: dict) -> tuple[str, dict, list[dict]]:
    person = _person(settings, message, rt)
    history: list[dict] = [{"event": "join_received", "outcome": "received", "details": {
        "type": person.get("type"), "fetched_from_referral_factory": person.pop("_fetched")}}]
    base = {"kind": person.get("type"), "email": (person.get("email") or "").lower() or None}
    progress["email"] = base["email"]
    attributes = rt.attributes(settings.workspace)
    plan = decide.plan(settings, person, attributes)
    if isinstance(plan, decide.Skip):
        if plan.outcome == "failed":
            raise Permanent(plan.reason)
        history.append({"event": "join", "outcome": "ignored", "reason": plan.reason})
        return "ignored", {**base, "reason": plan.reason}, history
    field_errors = [{"to": e.to, "source": e.source, "reason": e.reason} for e in plan.payload.errors]
    if field_errors:
        count("FieldConversionErrors", len(field_errors))
        history.append({"event": "fields", "outcome": "not_written", "reason":
                        "some mapped values could not be converted; the contact was still created or linked",
                        "details": {"errors": field_errors}})
    intercom = rt.intercom(settings.workspace)
    email = plan.payload.email
    created = existing = None
    if progress.get("contact_id"):
        created = _get(intercom, progress["contact_id"], missing_ok=True)
        if created is None:
            history.append({"event": "contact", "outcome": "vanished", "reason":
                            f"contact {progress['contact_id']}, created by an earlier try, no longer exists; "
                            "starting over"})
            progress.update(contact_id=None, baseline=None)
        else:
            progress["resumed"] = created
            history.append({"event": "contact", "outcome": "resumed", "reason":
                            "an earlier try created this contact and then failed; resuming with it",
                            "details": {"contact_id": created["id"]}})
    if created is None:
        existing = decide.pick_existing(intercom.search_by_email(email))
        found_by = "email search" if existing else None
        if existing is None:
            try:
                created = intercom.create_contact(plan.create_body())
                progress.update(contact_id=created["id"], baseline=decide.baseline(settings, created))
                rt.store.note_created(progress["campaign_id"], progress["rf_user_id"], progress["token"],
                                      created["id"], progress["baseline"])
            except Conflict as conflict:
                if not conflict.contact_id:
                    raise Permanent(f"Intercom reported a conflict without a contact id: {conflict}") from None
                existing = _get(intercom, conflict.contact_id)
                found_by = "409 conflict on create (search had not caught up)"
    if created is not None:
        contact, outcome = created, "created"
        history.append({"event": "contact", "outcome": "created", "reason":
                        f"no contact with this email existed; created a {plan.role}",
                        "details": {"contact_id": contact["id"], "role": contact.get("role"),
                                    "attributes": sorted(plan.payload.attributes)}})
    else:
        update = decide.duplicate_action(plan)
        if update is None:
            contact = _get(intercom, existing["id"]) if found_by == "email search" else existing  # search lags
            outcome = "linked"
            history.append({"event": "contact", "outcome": "skipped_existing", "reason":
                            f"a {existing.get('role')} with this email already exists (found by {found_by}); "
                            "duplicates is skip, so it was left untouched and linked",
                            "details": {"contact_id": existing["id"], "role": existing.get("role")}})
        else:
            contact = intercom.update_contact(existing["id"], update)
            outcome = "updated"
            history.append({"event": "contact", "outcome": "updated_existing", "reason":
                            f"a {existing.get('role')} with this email already exists (found by {found_by}); "
                            "duplicates is update, so it was marked as referred and linked",
                            "details": {"contact_id": existing["id"], "attributes": sorted(update)}})
    if plan.people.tag and outcome != "linked":
        intercom.tag_contact(contact["id"], plan.people.tag)
        history.append({"event": "tag", "outcome": "tagged", "details": {"tag": plan.people.tag}})
    # The baseline is the value when the person joined: for a contact we created, what it was
    # created with (a resumed try may read a value the lead reached since).
    baseline = progress["baseline"] if created is not None else decide.baseline(settings, contact)
    logger.info("join applied", extra={"campaign_id": settings.campaign_id, "outcome": outcome,
                                       "email": mask_email(email), "contact_id": contact["id"]})
    fields: dict[str, Any] = {**base, "contact_id": contact["id"], "contact_role": contact.get("role"),
                              "baseline": baseline, "reason": None}
    if person.get("type") == "lead" and settings.qualification is not None:
        fields["qualification"] = "pending"
    return outcome, fields, history

