"""Pointers left by earlier versions (`bridge pointers`): which reference of a contact or email pointer is stale, and
what to do about it. Pure: the store reads the pointers and the links they name, and writes what is decided here.

A contact pointer `(workspace, contact id)` names the links on that contact; the link says which contact is its own
and in which workspace its pointer is (`contact_workspace`, or, unset, the link's workspace). Versions before the
pointers followed every move left references naming a person her link no longer holds (a retried join's earlier
try's contact, a join finished on another contact after a merge): `bridge forget` erases only the pointers her link
names, so such a reference would name her for good. Links written before `contact_workspace` existed, retried after
their campaign moved to another workspace, hold a contact whose pointer is in the old workspace, where nothing looks.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Optional

from .link import Link, PersonRef

CONTACT, EMAIL = "contact", "email"


@dataclass(frozen=True)
class Pointer:
    """One pointer item: a contact's (`value` its id) or an email's (`value` the address, normalised), in a
    workspace, and the links it names."""

    kind: str
    workspace: str
    value: str
    refs: frozenset[PersonRef]


@dataclass(frozen=True)
class Placed:
    """A link as stored, with the workspace its contact's pointer was recorded in (None: unset, a link written
    before `contact_workspace` existed: its own workspace is assumed)."""

    link: Link
    contact_workspace: Optional[str] = None

    @property
    def contact_in(self) -> str:
        return self.contact_workspace or self.link.workspace


class Stale(StrEnum):
    ERASED = "erased"                 # a contact's reference to a link that is gone (forget erased her)
    MOVED = "moved"                   # a contact's reference to a link on another contact, or on none
    ELSEWHERE = "elsewhere"           # the link is on this contact, but its pointer is another workspace's
    EMAIL_CHANGED = "email_changed"   # an email's reference to a link that has another address now
    UNPLACED = "unplaced"             # not stale: the link's pointer, in a workspace the link does not record
    UNFINISHED = "erasure_unfinished"  # an email's reference to a link that is gone: an interrupted `bridge forget`


DROP, PLACE, REPORT = "drop", "place", "report"

ACTION = {Stale.ERASED: DROP, Stale.MOVED: DROP, Stale.ELSEWHERE: DROP, Stale.EMAIL_CHANGED: DROP,
          Stale.UNPLACED: PLACE, Stale.UNFINISHED: REPORT}


@dataclass(frozen=True)
class Finding:
    pointer: Pointer
    ref: PersonRef
    stale: Stale
    read: Optional[Link]          # the link as read (None: gone): the write holds only while it still says so

    @property
    def action(self) -> str:
        return ACTION[self.stale]


def judge(pointer: Pointer, ref: PersonRef, placed: Optional[Placed], pointed_where_held: bool = False
          ) -> Optional[Finding]:
    """What to do with `pointer`'s reference to `ref`, whose link is `placed` (None: gone). None: it is the
    link's own. `pointed_where_held`: the pointer of the link's contact in the workspace the link assumes (its own,
    `contact_workspace` unset) names her too (asked only of an UNPLACED candidate: then this one is the stale one)."""
    link = placed.link if placed is not None else None
    if pointer.kind == EMAIL:
        if link is None:
            return Finding(pointer, ref, Stale.UNFINISHED, None)
        if (link.email or "").strip().lower() != pointer.value:
            return Finding(pointer, ref, Stale.EMAIL_CHANGED, link)
        return None     # (an earlier workspace's pointer of her address: forget looks in every workspace by it)
    if placed is None or link is None:
        return Finding(pointer, ref, Stale.ERASED, None)
    if link.contact_id != pointer.value:
        return Finding(pointer, ref, Stale.MOVED, link)
    if placed.contact_in == pointer.workspace:
        return None
    if placed.contact_workspace is None and not pointed_where_held:
        return Finding(pointer, ref, Stale.UNPLACED, link)
    return Finding(pointer, ref, Stale.ELSEWHERE, link)


def unplaced_candidate(pointer: Pointer, placed: Optional[Placed]) -> bool:
    """Would judge() need to know whether the pointer in the workspace the link assumes names her too?"""
    return (pointer.kind == CONTACT and placed is not None and placed.contact_workspace is None
            and placed.link.contact_id == pointer.value and placed.link.workspace != pointer.workspace)
