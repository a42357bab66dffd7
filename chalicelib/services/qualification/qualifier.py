"""Judge what was seen of a contact, act on the verdict, and qualify the referral in Referral
Factory exactly once (a claim in the store, RF asked first when another worker may have called it)."""
from __future__ import annotations

from typing import Optional

from ...domain.history import Entry
from ...domain.link import Claim, Link
from ...domain.mapping import attribute_type
from ...domain.judge import Action, Sighting, judge
from ...domain.qualification import QState
from ...domain.settings import Qualification
from ...errors import Permanent, Transient
from ...observability import count, logger
from ...ports import Apis, HistoryLog, LinkRepository


class Qualifier:
    def __init__(self, links: LinkRepository, history: HistoryLog, apis: Apis):
        self.links, self.history, self.apis = links, history, apis

    def evaluate(self, link: Link, rule: Optional[Qualification], seen: Sighting) -> Link:
        """Returns the link as it is afterwards."""
        verdict = judge(link, rule, seen, lambda name: attribute_type(name, self.apis.attributes(link.workspace)))
        if verdict.repeat is not None:
            self.history.note_repeat(link.ref, verdict.repeat.event, verdict.repeat.reason)
        entries = [verdict.entry] if verdict.entry is not None else []
        if verdict.action is Action.ARM:
            return self.links.arm(link, entries)
        if entries:
            self.history.append(link.ref, entries)
        if verdict.action is Action.QUALIFY:
            return self.qualify(link, seen.via, replay=seen.replay)
        return link

    def qualify(self, link: Link, via: str, replay: bool = False) -> Link:
        claim = self.links.start_qualifying(link, replay=replay)
        if not isinstance(claim, Claim):
            return self._not_claimed(claim)
        # A worker died mid-call (or we took over its lease): RF may have said yes already.
        taking_over = link.qualification is QState.QUALIFYING or claim.took_over
        try:
            if not (taking_over and self._qualified_in_rf(link)):
                self.apis.rf().qualify(link.rf_user_id)
        except Transient as exc:
            self.links.finish_qualifying(claim, QState.PENDING, [Entry("qualification", "retrying", exc.reason)],
                                         reason=exc.reason)
            raise exc.about(*link.ref)
        except Permanent as exc:
            if self._qualified_in_rf(link):    # e.g. a resent PUT answered "already qualified"
                return self._qualified(claim, via)
            self.links.finish_qualifying(claim, QState.FAILED, [Entry("qualification", "failed", exc.reason)],
                                         reason=exc.reason)
            count("QualificationsFailed")
            raise exc.about(*link.ref)
        return self._qualified(claim, via)

    def _not_claimed(self, current: Link) -> Link:
        if current.qualification in (QState.QUALIFIED, QState.FAILED):
            state = current.qualification.value
            self.history.note_repeat(current.ref, f"qualification_{state}", f"already {state}: nothing more to do")
        else:
            self.history.append(current.ref, [Entry("qualification", "in_progress_elsewhere",
                                                    "another worker is qualifying this referral right now")])
        return current

    def _qualified_in_rf(self, link: Link) -> bool:
        try:
            return bool(self.apis.rf().get_user(link.rf_user_id).get("qualified_at"))
        except (Permanent, Transient):
            return False

    def _qualified(self, claim: Claim, via: str) -> Link:
        link = claim.link
        done = self.links.finish_qualifying(claim, QState.QUALIFIED, [Entry(
            "qualification", "qualified",
            f"Referral Factory confirmed the qualification of user {link.rf_user_id} (via {via})")])
        count("ReferralsQualified")
        logger.info("referral qualified", extra={"campaign_id": link.campaign_id, "rf_user_id": link.rf_user_id})
        return done
