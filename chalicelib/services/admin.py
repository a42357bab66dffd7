"""Operator commands behind the CLI: settings, connections, dead letters, history."""
from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Optional, Protocol

import yaml

from ..domain import rules
from ..domain.advice import how_many
from ..domain.history import iso
from ..domain.link import LEAD, REFERRER, LinkStatus, PersonRef
from ..domain.mapping import MARKER_ATTRIBUTE, MARKER_DESCRIPTION, MARKER_NAME, compact_attributes
from ..domain.settings import (CampaignSettings, Qualification, SettingsError, own_attributes, parse_settings,
                               shared_attributes, unworkable, valid_or_none)
from ..domain.sync import count_attribute
from ..domain.workspace_check import boolean_text_warnings, check_against_workspace, option_warnings
from ..errors import WorkError
from ..ports import AttributeList, CountBackfill, DeadLetterQueue, IntercomPort
from ..ports.store import SCAN_LIMIT, StoredSettings
from .backfill import unknown_baselines
from .moved import applied_elsewhere, valid_campaigns
from .qualification.changes import back_name
from .deps import Stack


class Operator(Stack[DeadLetterQueue], Protocol):
    """What the operator's commands are given (the composition root's Runtime)."""

    def intercom(self, workspace: str) -> IntercomPort: ...
    def forget(self) -> None: ...


# The settings' ids, and who shows them. Each is taken as the text written: YAML 1.1 reads an unquoted 042
# as octal 34, 4:20 as 260, 0x2A, 42.0 and +42 as 42 — another campaign (or workspace, segment) silently.
ID_KEYS = {"campaign_id": "Referral Factory", "workspace": "Intercom", "segment_id": "Intercom"}
PLAIN_NUMBER = re.compile(r"0|[1-9][0-9]*")      # the only unquoted numbers whose text YAML keeps


class _Loader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (YAML itself keeps the last
    silently) and an unquoted id YAML would not keep as written (ID_KEYS), and notes each `value:` /
    `initial_value:` whose unquoted Yes/No/On/Off it reads as a boolean."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.problems: list[str] = []
        self.notes: list[str] = []

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line = key_node.start_mark.line + 1
            key = (key_node.tag, key_node.value)
            if key in first:
                self.problems.append(f"line {line}: the key '{key_node.value}' is given twice (first on line "
                                     f"{first[key]}) — keep one: YAML would silently use the last")
            else:
                first[key] = line
            if key_node.value in ID_KEYS:
                self._id(key_node.value, value_node)
            if key_node.value in ("value", "initial_value") and isinstance(value_node, yaml.ScalarNode) and \
                    value_node.tag == "tag:yaml.org,2002:bool" and value_node.style is None and \
                    value_node.value.lower() in ("yes", "no", "on", "off"):
                word, read = value_node.value, value_node.value.lower() in ("yes", "on")
                self.notes.append(f"line {value_node.start_mark.line + 1}: {key_node.value}: {word} is read as the "
                                  f"boolean {str(read).lower()}, not the text \"{word}\" — for a text attribute, "
                                  f"quote it ({key_node.value}: \"{word}\"); a true/false attribute takes it as is")
        return super().construct_mapping(node, deep=deep)

    def _id(self, key: str, node: Any) -> None:
        if not isinstance(node, yaml.ScalarNode) or node.style is not None or node.tag in (
                "tag:yaml.org,2002:str", "tag:yaml.org,2002:null"):     # quoted, text, or empty (the model says)
            return
        if node.tag == "tag:yaml.org,2002:int" and PLAIN_NUMBER.fullmatch(node.value):
            return
        try:
            read = yaml.safe_load(node.value)            # (apart: a node this loader fails on stays broken)
        except (ValueError, yaml.YAMLError):             # e.g. 2024-13-45: a date YAML cannot even make
            read = None
        what = (f"the boolean {str(read).lower()}" if isinstance(read, bool) else
                f"the number {read}" if isinstance(read, (int, float)) else
                "an impossible date" if read is None else f"the {type(read).__name__} {read}")
        self.problems.append(f"line {node.start_mark.line + 1}: {key}: {node.value} is read by YAML as {what}, not "
                             f"the text \"{node.value}\" — write the id exactly as {ID_KEYS[key]} shows it, quoted: "
                             f"{key}: \"{node.value}\"")


def read_document(text: str) -> tuple[Any, list[str]]:
    """A settings file (YAML, or JSON, which is YAML too) and its warnings. Raises SettingsError:
    not YAML (in one line, saying where), a key given twice, or an id YAML would not keep as written
    (each with its line)."""
    loader: Optional[_Loader] = None
    try:
        loader = _Loader(text)          # refuses a control character already
        try:
            doc = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise SettingsError([f"(document): not valid YAML or JSON — {_where(exc)}"]) from None
    except ValueError as exc:           # a value YAML cannot make, e.g. the date 2024-13-45
        raise SettingsError((loader.problems if loader is not None else []) or [
            f"(document): a value YAML cannot read: {exc} — quote it to keep it as text"]) from None
    assert loader is not None
    if loader.problems:
        raise SettingsError(loader.problems)
    return _shown(doc), loader.notes


def _where(exc: yaml.YAMLError) -> str:
    """PyYAML's several lines (each quoting the file), as one: "line 3, column 5: what is wrong"."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None or not getattr(exc, "problem", None):
        return " ".join(str(exc).replace(' in "<unicode string>",', " at").split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"     # type: ignore[attr-defined]
    context, at = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    return where + (f" ({context}{f' on line {at.line + 1}' if at else ''})" if context else "")


SHOWN = {"version", "updated_at", "settings"}


def _shown(doc: Any) -> Any:
    """What `bridge settings show` printed is a settings file too: its `settings` (edit, then apply)."""
    if isinstance(doc, dict) and set(doc) == SHOWN and isinstance(doc["settings"], dict):
        return doc["settings"]
    return doc


def check_settings(text: str) -> tuple[CampaignSettings, list[str]]:
    """What `bridge settings check` says without the workspace: the settings, or every problem of
    the document at once (SettingsError); and its warnings."""
    doc, notes = read_document(text)
    settings = parse_settings(doc)
    problems = unworkable(settings)
    if problems:
        raise SettingsError(problems)
    return settings, notes


class MovesWorkspace(SettingsError):
    """The settings move a campaign that has linked people to another workspace, unconfirmed, or one whose join is
    part-way in another workspace."""


class NotChecked(Exception):
    """The live workspace could not be read to check the settings (Intercom away, the token refused): nothing
    was stored."""


def apply_settings(rt: Operator, text: str, check_workspace: bool = True, move_workspace: bool = False) -> dict:
    """Validate and store a campaign's settings. Returns {campaign_id, version, warnings}. Raises
    MovesWorkspace when they name another workspace than the stored ones while people are linked, unless
    `move_workspace`."""
    settings, notes = check_settings(text)
    stored = rt.store.settings.get(settings.campaign_id)        # read once: what each check below compares with
    before = valid_or_none(stored.document if stored is not None else None)
    enrolled, read_all = _enrolled_by_sync(rt, settings, stored)
    warnings: list[str] = _moved_workspace(rt, settings, stored, enrolled, read_all, move_workspace)
    created: list[str] = []
    checked = False
    if check_workspace:
        if rt.store.connections.workspace(settings.workspace) is None:
            warnings.append(f"workspace {settings.workspace} is not connected yet: attributes were not checked "
                            f"(run `bridge workspace connect {settings.workspace}`: it asks for the token)")
        else:
            intercom = rt.intercom(settings.workspace)
            read_at = rt.clock()
            try:
                attributes = intercom.data_attributes()
                segments = intercom.segments() if settings.sync and settings.sync.source == "segment" else None
            except WorkError as exc:        # the settings may well be valid: not said to be invalid
                raise NotChecked(f"settings of campaign {settings.campaign_id} not stored: workspace "
                                 f"{settings.workspace}'s attributes could not be read from Intercom to check them "
                                 f"({exc.reason}) — apply them again once that is fixed (`bridge doctor "
                                 f"{settings.campaign_id}` says what is wrong), or with --offline (`bridge doctor "
                                 f"{settings.campaign_id}` then checks the attributes)") from None
            problems = check_against_workspace(settings, attributes, segments)
            if problems:
                raise SettingsError(problems)
            checked = True
            warnings += option_warnings(settings, attributes)
            warnings += boolean_text_warnings(settings, attributes)
            warnings += _marker(rt, settings.workspace, attributes, created)
            # The list just read (with the marker, if made now), for cold workers: an attribute created
            # in Intercom before `settings apply` is known to them at once.
            listed = {**compact_attributes(attributes), **{name: {"data_type": "string"} for name in created}}
            rt.store.connections.keep_attributes(settings.workspace, AttributeList(listed, read_at))
    else:
        warnings.append(f"--offline: workspace {settings.workspace}'s attributes were not checked — `bridge doctor "
                        f"{settings.campaign_id}` checks them (or apply again without --offline)")
    if not checked:                 # the live check did not run: say what it would have decided
        warnings += notes
    _record_rule(rt, settings.campaign_id, before, settings.qualification)   # (so _rule_changed counts those leads)
    moved, owed = _count_moved(rt, settings, stored, before)
    warnings += moved + _consequences(rt, settings, stored, before, enrolled)
    if own_attributes(settings):       # (as `bridge doctor` reports it)
        warnings += [f"{shared.said} — {shared.why}: {shared.fix}" for shared in
                     shared_attributes(settings, valid_campaigns(rt.store.settings, settings.workspace))]
    _part_way_elsewhere(rt, settings, stored)
    version = rt.store.settings.put(settings.campaign_id, settings.to_document(), settings.workspace, owed)
    warnings += _look_back(rt, settings, before, version)
    rt.forget()
    return {"campaign_id": settings.campaign_id, "version": version, **({"created": created} if created else {}),
            "warnings": warnings}


def _record_rule(rt: Operator, campaign_id: str, before: Optional[CampaignSettings],
                 rule: Optional[Qualification]) -> None:
    """Settings about to replace the stored rule (rules.replaced): links stored before links named the rule they
    were judged under (an earlier version's) record it first (LinkRepository.stamp_rule), so that the new rule
    never takes their baseline, nor their `armed`, as its own: a lead of "No" for signed_up would otherwise be
    qualified on its next update under plan = pro, their contact on pro all along. Before the settings are
    stored: an apply cut short is applied again, and records what is left."""
    was = before.qualification if before is not None else None
    if was is not None and rules.replaced(rule, was):
        rt.store.links.stamp_rule(campaign_id, was.attribute, rules.key(was))


def _moved_workspace(rt: Operator, settings: CampaignSettings, stored: Optional[StoredSettings],
                     enrolled: Counter[str], read_all: bool, confirmed: bool) -> list[str]:
    """A campaign moved to another workspace leaves its linked people behind: their contacts stay in the
    old workspace, whose changes never qualify the campaign again (Qualifier.moved_away), and no referral
    count is written to them (referral_count.write keeps it), nor to the referrers contact sync enrolled
    there (their counts know those contacts). Refused while people are linked in another workspace than
    the one named (however many links come first; with no settings stored, deleted and applied again,
    wherever they are linked), or, when it keeps counts, contact sync enrolled referrers before the move,
    unless confirmed; then said. `enrolled`, `read_all`: as _enrolled_by_sync read them."""
    if stored is not None and stored.workspace == settings.workspace:
        return []
    linked, whole = rt.store.links.linked_elsewhere(settings.campaign_id, settings.workspace, PEOPLE_COUNTED)
    counting = bool(count_attribute(settings))
    was_enrolled = enrolled[stored.workspace] if stored is not None else 0
    unchecked = _unchecked(settings, stored, whole, read_all)
    if not linked:
        return _enrolled_moved(settings, stored.workspace if stored is not None else "", was_enrolled,
                               confirmed) + unchecked
    n = sum(linked.values())
    people = how_many(n, n >= PEOPLE_COUNTED, "linked person", "linked people")
    old, new = _and(sorted(linked)), settings.workspace
    was = stored.workspace if stored is not None else max(sorted(linked), key=linked.__getitem__)
    also = f"; nor to {_referrers(was_enrolled)} contact sync enrolled in {was}" if was_enrolled else ""
    if not confirmed:
        raise MovesWorkspace([
            f"workspace: campaign {settings.campaign_id} has {people} in workspace {old}; moved to {new}, they would "
            f"no longer qualify{', nor would referral counts be written to them' if counting else ''} (their "
            f"contacts stay in {old}, whose changes no longer count{also}) — add --move-workspace to move it "
            f"anyway, or keep workspace: {was}"])
    return [f"campaign {settings.campaign_id} moved from workspace {was} to {new}: its {people} of {old} will no "
            f"longer qualify{', nor will referral counts be written to them' if counting else ''} (their contacts "
            f"stay in {old}{'; their counts are kept' if counting else ''}{also}; new joins are created in {new})"
            ] + unchecked


def _part_way_elsewhere(rt: Operator, settings: CampaignSettings, stored: Optional[StoredSettings]) -> None:
    """MovesWorkspace, whatever --move-workspace, while one of the campaign's joins is part-way (Link.part_way) in
    another workspace than the one named: it would end linked there (its worker read the settings before the
    move), where it never qualifies, or its retry make the person a second contact in the new one. Checked last,
    right before the settings are stored: a join claimed meanwhile (the live workspace's checks call Intercom)
    is seen too."""
    if stored is not None and stored.workspace == settings.workspace:
        return
    c, new = settings.campaign_id, settings.workspace
    joining, _ = rt.store.links.joining_elsewhere(c, new, PEOPLE_COUNTED)
    if joining:
        n = sum(joining.values())
        old, it = _and(sorted(joining)), "it" if n == 1 else "they"
        raise MovesWorkspace([
            f"workspace: campaign {c} has {how_many(n, n >= PEOPLE_COUNTED, 'join', 'joins')} part-way in workspace "
            f"{old} (claimed by a worker, or its contact made there, not yet linked); moved to {new} now, {it} would "
            f"end linked in {old}, where nothing qualifies the campaign any more, or make a second contact in {new} — "
            f"apply again once {it} ended: within minutes, or once Intercom takes the workspace's token again or its "
            f"outage ends (up to BRIDGE_OUTAGE_HOURS): `bridge doctor {c}` says which (a failed one once its dead "
            f"letter is replayed: `bridge dlq replay --campaign {c}`)"])


def _unchecked(settings: CampaignSettings, stored: Optional[StoredSettings], whole: bool, read_all: bool) -> list[str]:
    """What a move's bounded reads did not check (each stops after SCAN_LIMIT items): said, not taken as none."""
    c, new, past = settings.campaign_id, settings.workspace, f"not checked past the first {SCAN_LIMIT:,}"
    said = [] if whole else [f"campaign {c}'s people linked in other workspaces than {new} were {past} joins: any "
                             f"among the rest no longer qualify (`bridge doctor {c}` after the move)"]
    if not read_all and stored is not None:
        said.append(f"referrers contact sync enrolled in workspace {stored.workspace} were {past} entries of campaign "
                    f"{c}'s sync ledger: any among the rest no longer have their referral counts written")
    return said


def _consequences(rt: Operator, settings: CampaignSettings, stored: Optional[StoredSettings],
                  before: Optional[CampaignSettings], enrolled: Counter[str]) -> list[str]:
    """What the settings change for people already seen, said before they are stored (each read bounded,
    and made only when the change calls for it): a side whose action now creates after `nothing` (its
    ignored joins are sent only by a backfill); a rule nobody can meet (leads are never linked); a campaign
    back in the workspace people are linked in (they count again). `before`: the stored settings, parsed."""
    said = []
    if settings.qualification is not None and settings.leads.action == "nothing":
        said.append(f"leads.action is nothing, so no lead is linked to a contact and the qualification rule "
                    f"({settings.qualification.attribute}) can never qualify anyone: set leads.action to "
                    "create_lead or create_user to qualify leads")
    said += _rule_changed(rt, settings, before)
    switched = {kind for kind, is_lead in ((LEAD, True), (REFERRER, False)) if before is not None
                and before.people(is_lead).action == "nothing" and settings.people(is_lead).action != "nothing"}
    if switched:
        found, whole = rt.store.links.ignored_in(settings.campaign_id, PEOPLE_COUNTED)
        n = sum(count for kind, count in found.items() if kind in switched or kind not in (LEAD, REFERRER))
        side = f"{'leads' if LEAD in switched else 'referrers'}.action" if len(switched) == 1 else "action"
        if n:
            who = how_many(n, sum(found.values()) >= PEOPLE_COUNTED, "person", "people")
            said.append(f"{who}'s {'join was' if n == 1 else 'joins were'} ignored under {side} nothing: `bridge backfill {settings.campaign_id}` (a dry run) lists "
                        f"them, then `bridge backfill {settings.campaign_id} --apply` sends them")
        if not whole:
            said.append(f"joins ignored under {side} nothing were not checked past the first {SCAN_LIMIT:,} joins of "
                        f"campaign {settings.campaign_id}: `bridge backfill {settings.campaign_id}` (a dry run) lists "
                        "every one")
    if stored is not None and stored.workspace != settings.workspace:
        back, _ = rt.store.links.linked_elsewhere(settings.campaign_id, stored.workspace, PEOPLE_COUNTED)
        n = back.get(settings.workspace, 0)
        if n:
            people = how_many(n, sum(back.values()) >= PEOPLE_COUNTED, "linked person", "linked people")
            said.append(f"campaign {settings.campaign_id} moved back to workspace {settings.workspace}: its {people} "
                        f"of {settings.workspace} {'counts' if n == 1 else 'count'} again (changes to their contacts "
                        f"can qualify them{', and referral counts are written to them' if count_attribute(settings) else ''})")
        back_home = enrolled[settings.workspace]
        if back_home:
            said.append(f"campaign {settings.campaign_id} moved back to workspace {settings.workspace}: its "
                        f"{_referrers(back_home)} that contact sync enrolled in {settings.workspace} "
                        f"{'counts' if back_home == 1 else 'count'} again "
                        "(their referral counts are written to them)")
    return said


def _rule_changed(rt: Operator, settings: CampaignSettings, before: Optional[CampaignSettings]) -> list[str]:
    """A rule added, on another attribute than the stored one, or now requiring a change: the leads linked
    before it have no baseline under it, and are not qualified automatically until a backfill takes them in.
    (A new target on the same attribute needs none: the value at join time is still what it was; _look_back
    finds the leads already at it.)"""
    rule, was = settings.qualification, before.qualification if before is not None else None
    if rule is None:
        return []
    if was is not None and was.attribute == rule.attribute and not (rule.require_change and not was.require_change):
        return []
    unknown = unknown_baselines(rt.store, settings, PEOPLE_COUNTED)
    assert unknown is not None
    said = [f"{unknown.what} — {unknown.fix}"] if unknown.n else []
    if not unknown.complete:
        said.append(f"leads linked before the qualification rule were not checked past the first {SCAN_LIMIT:,} "
                    f"joins of campaign {settings.campaign_id}: `bridge backfill {settings.campaign_id}` (a dry run) "
                    "lists every one")
    return said


def _look_back(rt: Operator, settings: CampaignSettings, before: Optional[CampaignSettings], version: int) -> list[str]:
    """A rule that may qualify values contacts reached under the stored one (rules.meets_more): a pending lead past
    the sweep's age already at the new target would wait for its contact's next change, as the search of changed
    contacts asks for recent changes only. The workspace's marker makes the next search look back to the oldest
    pending lead (once: the search that completes clears it). Written after the settings: a search that saw the
    marker reads these settings."""
    if not rules.meets_more(settings.qualification, before.qualification if before is not None else None):
        return []
    marker = json.dumps({"campaign_id": settings.campaign_id, "version": version, "at": iso(rt.clock())})
    rt.store.cursor.set(marker, back_name(settings.workspace))
    return [f"campaign {settings.campaign_id}'s new rule may qualify leads whose contacts already meet it: the next "
            "reconciliation's search of changed contacts looks back to the oldest pending lead, once"]


def _enrolled_by_sync(rt: Operator, settings: CampaignSettings,
                      stored: Optional[StoredSettings]) -> tuple[Counter[str], bool]:
    """Of a campaign that keeps counts moved from the stored settings' workspace to another, the referrers
    contact sync enrolled in each of the two whose counts know their contact (not those their own join linked:
    `linked_elsewhere` counts them), counting up to PEOPLE_COUNTED in each. Entries that do not say their
    workspace (written before entries said it) count as enrolled in the stored settings' workspace while the
    campaign was never applied naming another (else in none). The sync ledger is read once, page by page,
    until that many are found in both, none is left, or SCAN_LIMIT entries were read (a query of one
    partition, only when a campaign moves): with whether it was read to its end (or to PEOPLE_COUNTED found
    in the workspace left)."""
    found: Counter[str] = Counter()
    if stored is None or stored.workspace == settings.workspace or not count_attribute(settings):
        return found, True
    left, named = stored.workspace, settings.workspace
    home = None if applied_elsewhere(rt.store, stored.campaign_id, left) else left
    read = 0
    for entry in rt.store.sync.ledger(settings.campaign_id, SCAN_LIMIT):
        read += 1
        where = entry.workspace or home
        if entry.count_known and not entry.adopted and where in (left, named) and found[where] < PEOPLE_COUNTED:
            found[where] += 1
        if found[left] >= PEOPLE_COUNTED and found[named] >= PEOPLE_COUNTED:
            break
    return found, found[left] >= PEOPLE_COUNTED or read < SCAN_LIMIT


def _referrers(n: int) -> str:
    return how_many(n, n >= PEOPLE_COUNTED, "referrer", "referrers")


def _enrolled_moved(settings: CampaignSettings, was: str, enrolled: int, confirmed: bool) -> list[str]:
    """A move of a campaign nobody is linked in: refused (unless confirmed, then said) while it keeps counts
    of referrers contact sync enrolled in the workspace it leaves: their counts are no longer written."""
    if not enrolled:
        return []
    who, new = _referrers(enrolled), settings.workspace
    if not confirmed:
        raise MovesWorkspace([
            f"workspace: campaign {settings.campaign_id} has {who} that contact sync enrolled in workspace {was}; "
            f"moved to {new}, their referral counts would no longer be written (their contacts stay in {was}) — "
            f"add --move-workspace to move it anyway, or keep workspace: {was}"])
    return [f"campaign {settings.campaign_id} moved from workspace {was} to {new}: its {who} that contact sync "
            f"enrolled in {was} will no longer have their referral counts written (their contacts stay in {was}; "
            "their counts are kept)"]


def _count_moved(rt: Operator, settings: CampaignSettings, stored: Optional[StoredSettings],
                 parsed: Optional[CampaignSettings]) -> tuple[list[str], Optional[CountBackfill]]:
    """The referral counts go to another attribute than the stored settings named, or are turned on
    (off in the stored settings, or none stored) in a campaign the store already has people of: the
    counts kept reach Intercom only with each referrer's next lead (a write dropped while they were
    off is not made again; a lead applied meanwhile is not counted), or all at once by backfill
    (which counts those leads and asks for every count Intercom does not hold in the attribute).
    Stored settings that no longer parse cannot say where the counts went: said as such (a backfill
    is safe either way). Only this decision can know it (links do not record whether a lead had a
    referrer), so it is also kept with the settings, as the count backfill they owe (CountBackfill,
    dated now), until a `backfill --apply` completes: what `doctor` reports. A backfill owed already
    stays owed while the counts still go to its attribute; counts turned off owe none. `parsed`: the stored
    settings, parsed (None: none, or they no longer parse)."""
    attribute = count_attribute(settings)
    kept = stored.count_backfill if attribute and stored is not None and stored.count_backfill is not None and \
        stored.count_backfill.attribute == attribute else None
    before, unknown = count_attribute(parsed) if parsed is not None else None, stored is not None and parsed is None
    backfill = f"run `bridge backfill {settings.campaign_id} --apply` to write each referrer's count to it now"
    if not attribute or before == attribute:
        return [], kept
    if not rt.store.links.statuses_in(settings.campaign_id, 1):
        return [], kept             # nobody joined yet: every count begins with its first lead, and is written
    owed = CountBackfill(attribute, iso(rt.clock()))
    if before:
        return [f"referral counts now go to {attribute} (not {before}): {backfill} ({before} keeps its last "
                "value)"], owed
    if unknown:
        return [f"the stored settings no longer parse, so whether referral counts already went to {attribute} is "
                f"not known: if they were off or went elsewhere, {backfill} (it counts only leads not counted yet, "
                "and writes only the counts Intercom does not hold)"], owed
    return [f"referral counts are turned on, to {attribute}: {backfill} (until then it shows the count last "
            f"written, if any, and leads applied while counts were off are not counted)"], owed


def _marker(rt: Operator, workspace: str, attributes: dict, created: list[str]) -> list[str]:
    """The bridge's marker attribute (which RF person a contact was created for), created in the
    workspace when it is missing. Returns a warning when it could not be (the worker tries again)."""
    if MARKER_ATTRIBUTE in attributes:
        return []
    try:
        rt.intercom(workspace).create_data_attribute(MARKER_NAME, "string", MARKER_DESCRIPTION)
    except WorkError as exc:
        return [f"could not create the text attribute {MARKER_NAME} in workspace {workspace} ({exc.reason}): the "
                "bridge marks the contacts it creates with it — create it in Intercom (Settings > Data > People, "
                "type Text)"]
    created.append(MARKER_ATTRIBUTE)
    return []


PEOPLE_COUNTED = 100     # links counted before asking for confirmation ("100 or more")


class NeedsConfirmation(Exception):
    """The campaign already has people: deleting its settings waits for the operator's yes."""


def delete_settings(rt: Operator, campaign_id: str, confirmed: bool = False) -> Optional[dict]:
    """Remove a campaign's settings (applied by mistake, or a campaign retired): its joins are refused
    from then on (404 unknown_campaign), reconciliation stops checking its pending leads, contact sync
    stops; its links, history and sync ledger stay (`explain`, `forget` still find them). None: it had
    no settings. Raises NeedsConfirmation when people are linked or synced and not `confirmed`."""
    stored = rt.store.settings.get(campaign_id)
    if stored is None:
        return None
    statuses = rt.store.links.statuses_in(campaign_id, PEOPLE_COUNTED)
    people = [words[n == 1].format(n=n) for status, words in _PEOPLE.items() if (n := statuses.get(status, 0))]
    if sum(statuses.values()) >= PEOPLE_COUNTED:
        people = [f"{_and(people)} among its first {PEOPLE_COUNTED} people (it may have more)"]
    if rt.store.sync.run(campaign_id) is not None:
        people.append("runs of contact sync")      # (not "contact sync runs": read as a sync running now)
    said = _and(people)
    if said and not confirmed:
        raise NeedsConfirmation(said)
    before = valid_or_none(stored.document)
    _record_rule(rt, campaign_id, before, None)          # (settings applied again later are a new rule)
    rt.store.settings.delete(campaign_id)
    rt.forget()
    return {"campaign_id": campaign_id, "deleted_version": stored.version, "workspace": stored.workspace,
            "kept": said}


# A campaign's links by status, in words (several, one): a failed join linked nobody.
_PEOPLE = {LinkStatus.LINKED: ("{n} linked people", "{n} linked person"),
           LinkStatus.IGNORED: ("{n} people its settings ignore (action: nothing)",
                                "{n} person its settings ignore (action: nothing)"),
           LinkStatus.FAILED: ("{n} failed joins that linked nobody", "{n} failed join that linked nobody"),
           # (the link cannot say whether its work waits in the queue or was dead-lettered: an outage past its budget)
           LinkStatus.WAITING: ("{n} joins waiting (in the queue, or dead-lettered before their next try: "
                                "`bridge dlq list`)",
                                "{n} join waiting (in the queue, or dead-lettered before its next try: `bridge dlq list`)"),
           LinkStatus.IN_PROGRESS: ("{n} joins in progress", "{n} join in progress")}


def _and(parts: list[str]) -> str:
    return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)


def show_settings(rt: Operator, campaign_id: str) -> Optional[dict]:
    item = rt.store.settings.get(campaign_id)
    if item is None:
        return None
    return {"version": item.version, "updated_at": item.updated_at, "settings": item.document}


def person_history(rt: Operator, campaign_id: str, rf_user_id: str) -> dict:
    ref = PersonRef(campaign_id, rf_user_id)
    link = rt.store.links.get(ref)
    return {"campaign_id": campaign_id, "rf_user_id": rf_user_id, "link": link.view() if link else None,
            "history": [entry.view() for entry in rt.store.history.entries(ref)]}
