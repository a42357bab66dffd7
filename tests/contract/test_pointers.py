"""Pointers earlier versions left (`bridge pointers`): made here as those versions wrote them (the items written
directly), found and cleaned alike by both twins, never undoing a worker's write that came meanwhile."""
from __future__ import annotations

import pytest

from chalicelib.domain.history import Entry
from chalicelib.domain.link import FoundContact, JoinClaim, JoinResult, LinkStatus, PersonRef
from chalicelib.domain.pointers import Stale
from chalicelib.services import pointers as service
from chalicelib.services.pointers import REFUSED, sweep
from tests.contract.test_store import ANN, WS, joined
from tests.support.meanwhile import after

BOB = PersonRef("42", "8")


def left_by_earlier_version(store, kind: str, workspace: str, value: str, ref: PersonRef) -> None:
    """A pointer reference as an earlier version left it: written alone, no link write with it."""
    if hasattr(store, "tables"):
        index = store.tables.contacts if kind == "contact" else store.tables.emails
        index.setdefault((workspace, value), set()).add(ref)
        return
    from chalicelib.adapters.dynamo.keys import contact_key, email_key
    from chalicelib.adapters.dynamo.models import PointerItem
    key = (contact_key if kind == "contact" else email_key)(workspace, value)
    PointerItem(*key).update(actions=[PointerItem.links.add({str(ref)})])


def recorded_before_contact_workspace(store, ref: PersonRef) -> None:
    """The link as a version before `contact_workspace` existed wrote it: none recorded."""
    if hasattr(store, "tables"):
        store.tables.links[ref].contact_workspace = None
        return
    from chalicelib.adapters.dynamo.keys import link_key
    from chalicelib.adapters.dynamo.models import LinkItem
    LinkItem(*link_key(ref)).update(actions=[LinkItem.contact_workspace.remove()])


def forgotten(store, link):
    """What `bridge forget` writes: the link erased, then the pointers of the email it was given (every workspace's)."""
    erased = store.links.erase(link)
    for workspace in (WS, "ws2"):
        store.lookup.forget_email(workspace, link.email)
    return erased


def naming(store, ref=ANN, contacts=(), emails=()) -> list[tuple[str, str]]:
    found = store.lookup.look_up(contacts=contacts, emails=emails)
    return sorted(key for key, refs in {**found.by_contact, **found.by_email}.items() if ref in refs)


def _tried_in_ws1_then_claimed_in_ws2(store) -> JoinClaim:
    """Ann's first try, in WS, recorded c_old (its pointer in WS) and failed, in a version that kept no
    `contact_workspace`; the campaign moved to ws2, and her retry there claimed the join (still on c_old)."""
    claim = store.links.claim(ANN, WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", contact_id="c_old",
                                         reason="Intercom answered 500"), [Entry("join", "failed")])
    recorded_before_contact_workspace(store, ANN)
    return store.links.claim(ANN, "ws2")


def test_a_contact_pointer_an_earlier_version_left_outlives_forget_until_the_sweep_drops_it(store):
    """Ann's earlier try held c_old (Bob's contact too), and that version left its pointer naming her when her join
    finished on c1: erasing her link (what `bridge forget` does) leaves it naming her; the dry run says so and
    writes nothing; --apply takes her off it, and Bob keeps it."""
    joined(store, BOB, contact="c_old", email="bob@example.com")
    link = joined(store)
    left_by_earlier_version(store, "contact", WS, "c_old", ANN)
    assert forgotten(store, link).pointers == 1                       # c1's only
    assert naming(store, contacts=[(WS, "c1"), (WS, "c_old")]) == [(WS, "c_old")]     # survives forget today

    dry = sweep(store)
    assert (dry["dry_run"], dry["found"], dry["outcomes"]) == (True, {"erased": 1}, {"would drop": 1})
    assert [(f["contact_id"], f["rf_user_id"], f["stale"]) for f in dry["findings"]] == [("c_old", "7", "erased")]
    assert naming(store, contacts=[(WS, "c_old")]) == [(WS, "c_old")]            # nothing written

    done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"], done["changed_meanwhile"]) == ({"erased": 1}, {"dropped": 1}, 0)
    assert naming(store, contacts=[(WS, "c_old")]) == []
    assert naming(store, BOB, contacts=[(WS, "c_old")]) == [(WS, "c_old")]        # Bob's kept
    assert sweep(store, apply=True)["found"] == {}


def test_references_to_a_link_that_left_them_are_dropped_and_her_own_kept(store):
    """Her link is on c1 with ann@example.com; an earlier version left her on c_old's pointer and on her former
    address's, and on c1's pointer in another workspace (her link's is WS's): each goes, hers stay."""
    joined(store)
    left_by_earlier_version(store, "contact", WS, "c_old", ANN)
    left_by_earlier_version(store, "email", WS, "ann@old.example", ANN)
    left_by_earlier_version(store, "contact", "ws0", "c1", ANN)
    done = sweep(store, apply=True)
    assert done["found"] == {"moved": 1, "elsewhere": 1, "email_changed": 1}
    assert done["outcomes"] == {"dropped": 3} and done["references_read"] == 5
    everything = dict(contacts=[(WS, "c1"), (WS, "c_old"), ("ws0", "c1")],
                      emails=[(WS, "ann@example.com"), (WS, "ann@old.example")])
    assert naming(store, **everything) == [(WS, "ann@example.com"), (WS, "c1")]
    found = store.lookup.look_up(emails=[(WS, "ann@old.example")])
    assert found.by_email == {}                  # (the old address's pointer named her alone: it went, key and all)
    assert store.links.get(ANN).contact_id == "c1"


def test_an_email_pointer_naming_someone_whose_link_is_gone_is_left_for_forget_to_finish(store):
    """forget deletes the pointers of the address it is given last, and finds an interrupted erasure by them: the
    sweep says so, and leaves them."""
    left_by_earlier_version(store, "email", WS, "ann@example.com", ANN)
    done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"erasure_unfinished": 1}, {"left": 1})
    assert done["findings"][0]["email"] != "ann@example.com"           # masked
    assert naming(store, emails=[(WS, "ann@example.com")]) == [(WS, "ann@example.com")]


def test_a_link_recorded_before_contact_workspace_retried_after_its_campaign_moved(store):
    """Its contact's pointer is in WS, where the link (in ws2, recording none) does not say: erasing it today leaves
    that pointer naming her; the sweep records WS on the link first, and then erasing it takes the pointer."""
    _tried_in_ws1_then_claimed_in_ws2(store)
    dry = sweep(store)
    assert (dry["found"], dry["outcomes"]) == ({"unplaced": 1}, {"would record it on her link": 1})
    done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"unplaced": 1}, {"recorded on her link": 1})
    assert sweep(store)["found"] == {}
    erased = store.links.erase(store.links.get(ANN))
    assert (erased.pointers, erased.contact_workspace) == (1, WS)
    assert naming(store, contacts=[(WS, "c_old"), ("ws2", "c_old")]) == []


def test_the_same_link_erased_before_the_sweep_leaves_the_pointer_it_drops(store):
    _tried_in_ws1_then_claimed_in_ws2(store)
    forgotten(store, store.links.get(ANN))
    assert naming(store, contacts=[(WS, "c_old")]) == [(WS, "c_old")]        # survives forget today
    done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"erased": 1}, {"dropped": 1})
    assert naming(store, contacts=[(WS, "c_old")]) == []


def test_an_older_workspaces_pointer_of_a_link_recording_none_goes_when_its_own_workspaces_names_her(store):
    """Her link (in ws2, recording no contact workspace) is on c1, whose pointer in ws2 names her: WS's, an earlier
    version's, is not hers."""
    joined(store, workspace="ws2")
    recorded_before_contact_workspace(store, ANN)
    left_by_earlier_version(store, "contact", WS, "c1", ANN)
    done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"elsewhere": 1}, {"dropped": 1})
    assert naming(store, contacts=[(WS, "c1"), ("ws2", "c1")]) == [("ws2", "c1")]


@pytest.mark.parametrize("meanwhile", ["merged back", "email changed back", "erased"])
def test_a_workers_write_after_the_sweep_read_is_never_undone(store, meanwhile):
    """Between the sweep's read of the pointers and its write, a worker makes the reference hers again (her link
    follows a merge onto c_old, her email changes back), or forget erases her (the email's reference then is
    forget's): the write is refused, the reference stays, and the sweep says so (a run again judges it anew)."""
    joined(store)
    kind, value = ("email", "ann@old.example") if meanwhile == "email changed back" else ("contact", "c_old")
    left_by_earlier_version(store, kind, WS, value, ANN)

    def worker_meanwhile():
        link = store.links.get(ANN)
        if meanwhile == "merged back":
            store.links.move(link, "c_old", [Entry("contact", "merged")], role="lead")
        elif meanwhile == "email changed back":
            store.links.set_contact(link, [Entry("contact", "email_changed")], when=100.0, email="ann@old.example")
        else:
            forgotten(store, link)
    with after(store.links, "pointers", worker_meanwhile):
        done = sweep(store, apply=True)
    if meanwhile == "erased":           # (c_old's reference: her link went, it is stale still, and goes)
        assert (done["found"], done["outcomes"]) == ({"moved": 1}, {"dropped": 1})
        return
    assert done["outcomes"] == {REFUSED: 1} and done["changed_meanwhile"] == 1
    assert (WS, value) in naming(store, contacts=[(WS, value)] if kind == "contact" else [],
                                 emails=[(WS, value)] if kind == "email" else [])
    assert sweep(store, apply=True)["found"] == {}                     # hers now


def test_a_link_that_left_the_contact_after_the_sweep_read_it_is_not_given_that_contacts_workspace(store):
    """The retry in ws2 finishes on ws2's c_new after the sweep read the link on c_old: recording WS on it is
    refused (the link is not on c_old any more), and the next run drops c_old's reference as moved."""
    retry = _tried_in_ws1_then_claimed_in_ws2(store)
    [found] = _findings(store)
    assert found.stale is Stale.UNPLACED
    store.links.finish(retry, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c_new",
                                         contact_role="lead"), [Entry("join", "linked")])
    assert store.links.place_contact(found) is False
    assert store.links.get(ANN).contact_id == "c_new"
    done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"moved": 1}, {"dropped": 1})
    assert naming(store, contacts=[(WS, "c_old"), ("ws2", "c_new")]) == [("ws2", "c_new")]


def _findings(store):
    from chalicelib.domain.pointers import judge
    page = store.links.pointers(None, 100)
    return [f for p in page.pointers for r in sorted(p.refs) if (f := judge(p, r, page.placed.get(r))) is not None]


def test_the_sweep_reads_every_page(store, monkeypatch):
    """Pages of 2 items: the pointers of 5 people, and a stale reference on each (whatever page it is on)."""
    monkeypatch.setattr(service, "PAGE", 2)
    pages = []
    pointers = store.links.pointers
    monkeypatch.setattr(store.links, "pointers", lambda after, limit: pages.append(after) or pointers(after, limit))
    people = [PersonRef("42", str(n)) for n in range(1, 6)]
    for n, ref in enumerate(people, 1):
        joined(store, ref, contact=f"c{n}", email=f"p{n}@example.com")
        left_by_earlier_version(store, "contact", WS, f"gone{n}", ref)
    seen = []
    done = sweep(store, apply=True, progress=lambda read, found: seen.append((read, found)))
    assert done["found"] == {"moved": 5} and done["outcomes"] == {"dropped": 5}
    assert done["pointers_read"] == 15 and len(pages) > 3 and seen[-1] == (15, 5)
    assert sweep(store)["found"] == {}


def test_erasing_a_link_gone_already_takes_her_off_the_pointer_of_the_contact_it_was_read_on(store):
    """A repeated erasure (another `bridge forget` erased her link between this one's read and its write) finds a
    reference to her still on the contact's pointer she was read on (an earlier version's): both twins take it off,
    while her link is still gone, and count it; a repeat finds nothing more."""
    read = joined(store)
    store.links.erase(store.links.get(ANN))
    left_by_earlier_version(store, "contact", WS, "c1", ANN)
    done = store.links.erase(read)
    assert (done.pointers, done.entries, done.contact_id) == (1, 0, None)
    assert naming(store, contacts=[(WS, "c1")]) == []
    assert store.links.erase(read).pointers == 0


# --- a worker's write between the sweep's read and its write, each condition on its own (both twins) -------------
def _failed(store, ref=ANN, contact="c1", workspace=WS):
    """A join that failed holding `contact`: a retry claims it again."""
    claim = store.links.claim(ref, workspace)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", contact_id=contact,
                                         reason="Intercom answered 500"), [Entry("join", "failed")])


def _found(contact: str) -> FoundContact:
    return FoundContact(contact, "lead", "lead", "No", None)


@pytest.mark.parametrize("how_far", ["claimed", "held"])
def test_an_erased_persons_reference_is_kept_when_she_joins_again_meanwhile(store, how_far):
    """Read while her link was gone (erased): her join again (claimed, or holding that very contact) refuses the drop."""
    forgotten(store, joined(store))
    left_by_earlier_version(store, "contact", WS, "c_old", ANN)

    def join_again():
        claim = store.links.claim(ANN, WS)
        if how_far == "held":
            assert store.links.hold_found([(claim, _found("c_old"))]) == [None]
    with after(store.links, "pointers", join_again):
        done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"erased": 1}, {REFUSED: 1})
    assert naming(store, contacts=[(WS, "c_old")]) == [(WS, "c_old")]


def test_a_moved_reference_is_kept_when_a_retry_holds_that_contact_meanwhile(store):
    _failed(store)
    left_by_earlier_version(store, "contact", WS, "c_old", ANN)

    def retry_holds_c_old():
        assert store.links.hold_found([(store.links.claim(ANN, WS), _found("c_old"))]) == [None]
    with after(store.links, "pointers", retry_holds_c_old):
        done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"moved": 1}, {REFUSED: 1})
    assert naming(store, contacts=[(WS, "c_old"), (WS, "c1")]) == [(WS, "c_old")]
    assert sweep(store)["found"] == {}


def test_an_elsewhere_reference_is_kept_when_a_retry_is_claimed_in_its_workspace_meanwhile(store):
    """Her link (ws2, recording no contact workspace) is on c1, whose ws2 pointer names her: WS's is elsewhere. The
    campaign moves back and a retry is claimed in WS: the link now takes WS's for its own, and the drop is refused."""
    _failed(store, workspace="ws2")
    recorded_before_contact_workspace(store, ANN)
    left_by_earlier_version(store, "contact", WS, "c1", ANN)
    with after(store.links, "pointers", lambda: store.links.claim(ANN, WS)):
        done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"elsewhere": 1}, {REFUSED: 1})
    assert naming(store, contacts=[(WS, "c1"), ("ws2", "c1")]) == [(WS, "c1"), ("ws2", "c1")]


def test_an_unplaced_link_is_not_given_the_old_workspace_once_a_hold_meanwhile_recorded_its_own(store, monkeypatch):
    """The retry in ws2 holds the contact of the same id there meanwhile (recording ws2): recording WS is refused,
    and the next run drops WS's reference as elsewhere, keeping ws2's (the one her link now says)."""
    claim = _tried_in_ws1_then_claimed_in_ws2(store)
    place = store.links.place_contact

    def held_there_first(finding):        # (after the sweep's every read: its judgement is unplaced)
        assert store.links.hold_found([(claim, _found("c_old"))]) == [None]
        return place(finding)
    monkeypatch.setattr(store.links, "place_contact", held_there_first)
    done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"unplaced": 1}, {REFUSED: 1})
    monkeypatch.undo()
    again = sweep(store, apply=True)
    assert (again["found"], again["outcomes"]) == ({"elsewhere": 1}, {"dropped": 1})
    assert naming(store, contacts=[(WS, "c_old"), ("ws2", "c_old")]) == [("ws2", "c_old")]


def test_an_unplaced_link_is_not_given_a_workspace_whose_pointer_names_her_no_more(store, monkeypatch):
    """Her reference left WS's pointer of c_old after the sweep read it (another run dropped it): recording WS on the
    link is refused, as the pointer no longer says her contact's pointer is there."""
    _tried_in_ws1_then_claimed_in_ws2(store)
    place = store.links.place_contact

    def dropped_first(finding):           # (after the sweep's every read: its judgement is unplaced)
        if hasattr(store, "tables"):
            store.tables.contacts[(WS, "c_old")].discard(ANN)
        else:
            from chalicelib.adapters.dynamo.keys import contact_key
            from chalicelib.adapters.dynamo.models import PointerItem
            PointerItem(*contact_key(WS, "c_old")).update(actions=[PointerItem.links.delete({str(ANN)})])
        return place(finding)
    monkeypatch.setattr(store.links, "place_contact", dropped_first)
    done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"unplaced": 1}, {REFUSED: 1})
    monkeypatch.undo()
    assert store.links.pointers(None, 100).placed[ANN].contact_workspace is None


def test_an_unplaced_link_claimed_in_another_workspace_meanwhile_is_not_given_the_old_one(store, clock, monkeypatch):
    """The campaign moved again: a retry in ws3 claimed her link (still on c_old, recording none) after the sweep read
    it in ws2, whose pointer of c_old it found not naming her: ws3's was never asked, so recording WS is refused."""
    _tried_in_ws1_then_claimed_in_ws2(store)
    place = store.links.place_contact

    def claimed_in_ws3_first(finding):    # (after the sweep's every read: its judgement is unplaced)
        clock.now += 3600                 # (the ws2 claim's lease ran out)
        assert store.links.claim(ANN, "ws3") is not None
        return place(finding)
    monkeypatch.setattr(store.links, "place_contact", claimed_in_ws3_first)
    done = sweep(store, apply=True)
    assert (done["found"], done["outcomes"]) == ({"unplaced": 1}, {REFUSED: 1})
    monkeypatch.undo()
    held = store.links.pointers(None, 100).placed[ANN]
    assert (held.link.workspace, held.link.contact_id, held.contact_workspace) == ("ws3", "c_old", None)


def test_erasing_a_link_gone_already_keeps_the_reference_of_her_join_again(store, monkeypatch):
    """The DynamoDB store's second write (memory's erase is one call: nothing comes between): between finding her
    link gone and taking her off c1's pointer, she joins again on c1; the reference is hers again, and stays."""
    if not hasattr(store.links, "_left_gone"):
        pytest.skip("the memory twin erases in one call")
    read = joined(store)
    store.links.erase(store.links.get(ANN))
    left_by_earlier_version(store, "contact", WS, "c1", ANN)
    left_gone = store.links._left_gone

    def joined_again_first(link, held_in):
        assert store.links.hold_found([(store.links.claim(ANN, WS), _found("c1"))]) == [None]
        return left_gone(link, held_in)
    monkeypatch.setattr(store.links, "_left_gone", joined_again_first)
    assert store.links.erase(read).pointers == 0
    assert naming(store, contacts=[(WS, "c1")]) == [(WS, "c1")]
