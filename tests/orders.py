"""`make orders` (`python -m tests.orders`): every delivery order of families of Intercom webhooks, played
through the worker's real registry on the store's in-memory twin (or the DynamoDB store on a moto server), each
judged against in-order delivery. Qualification is a reward in Referral Factory (money): it must not depend on the
order in which Intercom's webhooks arrive. Run it before landing any change to how qualification is judged.

A family (FAMILIES) is a generator of cases: a set of events (contact changes with their values and seconds, a
merge, a reconciliation check or search, a backfill's take of the baseline, the join's duplicate check) and the
orders of them to try. Each
order's outcome — qualified or not, and how many qualification PUTs reached Referral Factory — is compared with the
outcome of delivery in order of the events' seconds (the `take` family: with what the values say, computed apart)
and counted as one of

  false   qualified where in-order delivery would not be (money paid wrongly)
  miss    not qualified where in-order delivery would be
  double  more qualification PUTs than in-order delivery
  other   another difference (fewer PUTs while qualified alike; never seen so far)

split into "distinct" (all the case's events in distinct seconds) and "tie" (two in the same second: which came
first is policy, Intercom's timestamps are seconds). The exit status is 1 when a false qualification or a double PUT
occurs among distinct-second orders, or (`--baseline FILE`, a previous `--json`) when a family misses more than it
did then; misses alone are reported beside the known totals (KNOWN), not failed.

The fakes of Intercom and Referral Factory the unit tests use (tests/fakes.py, tests/unit/scenario.py) are the
twins played on: a clone of the repository has them, and what they model is what the tests hold them to."""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from collections import Counter
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from chalicelib.domain.qualification import QState
from chalicelib.messages import ContactMessage, JoinMessage
from tests.fakes import FakeClock, FakeWork
from tests.unit.scenario import RULE, WS, changes, check, event, joined, link_of, run, set_value, settings, world

Outcome = tuple[bool, int]                 # qualified (or unconfirmed), qualification PUTs sent to RF
Order = tuple[int, ...]
KINDS = ("false", "miss", "double", "other")
SPLITS = ("distinct", "tie")
Worlds = Callable[[], FakeWork]            # a fresh world (the worker, its store and fake APIs) for each play


@dataclass(frozen=True)
class Case:
    """One set of events of a family. `play(world, order)` delivers the items (`items[i]` says what item i is) in
    `order` and answers the outcome; `in_order` is delivery in order of the events' seconds; `expected`, when
    given, is the outcome the values call for (else in-order delivery's is); `orders` the orders to try."""
    family: str
    setting: str
    items: tuple[str, ...]
    in_order: Order
    distinct: bool
    play: Callable[[FakeWork, Order], Outcome]
    orders: tuple[Order, ...]
    expected: Optional[Outcome] = None


@dataclass
class Tally:
    """A family's counts: orders tried, and each kind × split; up to `show` examples of each."""
    family: str
    tried: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def count(self, kind: str, split: str) -> int:
        return int(self.counts[f"{kind} {split}"])

    def view(self) -> dict:
        return {"family": self.family, "tried": self.tried,
                **{f"{kind}_{split}": self.count(kind, split) for kind in KINDS for split in SPLITS}}


# ---- the families ---------------------------------------------------------------------------------------------

def _outcome(work: FakeWork) -> Outcome:
    qualified = link_of(work).qualification in (QState.QUALIFIED, QState.UNCONFIRMED)
    return qualified, sum(1 for c in work.apis.rf_.calls if c.startswith("qualify"))


def _thin(body: dict) -> dict:
    """The notification as the edge queues it when it is too large to queue whole (its contact read when worked)."""
    return ContactMessage.model_validate(body).thin(300_000, 260_096).wire()


def _others(in_order: Order, keep: Callable[[Order], bool] = lambda order: True) -> tuple[Order, ...]:
    return tuple(p for p in itertools.permutations(in_order) if p != in_order and keep(p))


def _seconds(n: int) -> list[tuple[int, ...]]:
    """The seconds (after the join) of n events: all distinct, then each neighbouring pair in one second."""
    apart = tuple(10 * (k + 1) for k in range(n))
    return [apart, *(tuple(10 * (j + 1) if j <= k else 10 * j for j in range(n)) for k in range(n - 1))]


_FINALS = {None: "", "check": "; then a reconciliation check of her", "changes": "; then a search of the changes"}


def merges(mode: str, max_events: int) -> Iterator[Case]:
    """merge-kept / merge-taken: the lead she joined on (A) changes, is merged into a user with her email (B:
    "kept": B was made after she joined, the link keeps her baseline; "taken": B is older, its value is judged),
    then B changes; everything happens before any delivery; then a reconciliation check, a search of the changes,
    or nothing. 2..max_events contact events, the merge after each of them."""
    for base, n, final in itertools.product(("Yes", "No"), range(2, max_events + 1), _FINALS):
        for values, times, b_value in itertools.product(itertools.product(("Yes", "No"), repeat=n), _seconds(n),
                                                        ("Yes", "No")):
            for at in range(1, n + 1):
                later = times[at] if at < n else times[at - 1] + 10
                merged = (times[at - 1] + later) // 2
                merged = merged if merged != times[at - 1] else times[at - 1] + 1
                evs = tuple(("A" if k < at else "B", v, s) for k, (v, s) in enumerate(zip(values, times)))
                in_order = tuple(sorted(range(n + 1), key=lambda i: (evs[i][2] if i < n else merged, i)))
                items = tuple(f"e{k} {c}={v} @+{s}s" for k, (c, v, s) in enumerate(evs)) + (
                    f"m merge A into B @+{merged}s (B={b_value} then)",)
                setting = (f"baseline {base}; B made {'after' if mode == 'kept' else 'before'} she joined"
                           f"{_FINALS[final]}")
                yield Case(f"merge-{mode}", setting, items, in_order, len(set(times) | {merged}) == n + 1,
                           merge_play(base, evs, mode, merged, b_value, final), _others(in_order))


def merge_play(base: str, evs: Sequence[tuple[str, str, int]], mode: str, merged: int, b_value: str,
               final: Optional[str]) -> Callable[[FakeWork, Order], Outcome]:
    """A merge family's play: `evs` (contact "A" her lead or "B" the user, value, seconds after the join) and the
    merge at `merged` (B's value then `b_value`; its notification the last item), then `final`."""
    def play(work: FakeWork, order: Order) -> Outcome:
        _, a = joined(work, signed_up=base)
        t = int(work.clock())
        b = work.apis.intercom_.add("ann@example.com", role="user", signed_up=b_value)
        made = t + 1 if mode == "kept" else 1
        b.update(created_at=made, updated_at=made)
        contacts = {"A": a, "B": b}
        msgs = [event(dict(contacts[c], custom_attributes={"signed_up": v}, updated_at=t + s),
                      "contact.user.updated" if c == "B" else "contact.lead.updated", f"e{n}", created_at=t + s)
                for n, (c, v, s) in enumerate(evs)]
        survivor = dict(b, custom_attributes={"signed_up": b_value}, updated_at=made)
        msgs.append(event(survivor, "contact.merged", "m", created_at=t + merged,
                          merged_from={"type": "contact", "id": a["id"]}))
        for name, contact in contacts.items():
            mine = [(s, v) for c, v, s in evs if c == name]
            if mine:
                s = max(s for s, _ in mine)
                contact["custom_attributes"]["signed_up"] = [v for s2, v in mine if s2 == s][-1]
                contact["updated_at"] = t + s
        return _merged_then_delivered(work, a, b, t, msgs, order, final)
    return play


def _merged_then_delivered(work: FakeWork, a: dict, b: dict, t: int, msgs: list[dict], order: Order,
                           final: Optional[str]) -> Outcome:
    """Her lead `a` merged into `b` in Intercom, then (at +1000 s) `msgs` delivered in `order`, then `final`."""
    work.apis.intercom_.merge(a["id"], b["id"])
    work.clock.now = t + 1000
    for i in order:
        run(work, msgs[i])
    if final == "check":
        run(work, check())
    elif final == "changes":
        run(work, changes(work, at=t))
    return _outcome(work)


def survivor(max_events: int) -> Iterator[Case]:
    """survivor: a user with her email (B, made after she joined: the link keeps her baseline, B's first value
    `b0`) changes before and after her lead is merged into it; the merge's notification shows B as of the merge;
    then a reconciliation check or nothing. 1..max_events events of B, at least one before the merge."""
    for base, b0, n, final in itertools.product(("Yes", "No"), ("Yes", "No"), range(1, max_events + 1),
                                                (None, "check")):
        times = [10 * (k + 1) for k in range(n)]
        for values in itertools.product(("Yes", "No"), repeat=n):
            evs = tuple(zip(values, times))
            for before in range(1, n + 1):
                merged = times[before - 1] + 5
                in_order = tuple(sorted(range(n + 1), key=lambda i: evs[i][1] if i < n else merged))
                items = tuple(f"e{k} B={v} @+{s}s" for k, (v, s) in enumerate(evs)) + (f"m merge A into B @+{merged}s",)
                setting = f"baseline {base}; B made after she joined, {b0} then{_FINALS[final]}"
                yield Case("survivor", setting, items, in_order, True, _survivor_play(base, b0, evs, merged, final),
                           _others(in_order))


def _survivor_play(base: str, b0: str, evs: Sequence[tuple[str, int]], merged: int, final: Optional[str]
                   ) -> Callable[[FakeWork, Order], Outcome]:
    def play(work: FakeWork, order: Order) -> Outcome:
        _, a = joined(work, signed_up=base)
        t = int(work.clock())
        b = work.apis.intercom_.add("ann@example.com", role="user", signed_up=b0)
        b.update(created_at=t + 1, updated_at=t + 1)
        msgs = [event(dict(b, custom_attributes={"signed_up": v}, updated_at=t + s), "contact.user.updated", f"e{n}",
                      created_at=t + s) for n, (v, s) in enumerate(evs)]
        pre = [(s, v) for v, s in evs if s < merged]
        then, then_at = (max(pre)[1], t + max(pre)[0]) if pre else (b0, t + 1)
        msgs.append(event(dict(b, custom_attributes={"signed_up": then}, updated_at=then_at), "contact.merged", "m",
                          created_at=t + merged, merged_from={"type": "contact", "id": a["id"]}))
        v, s = max(evs, key=lambda e: e[1])
        b["custom_attributes"]["signed_up"], b["updated_at"] = v, t + s
        return _merged_then_delivered(work, a, b, t, msgs, order, final)
    return play


_TAKE_TIMES = (13.0, 15.1, 15.5, 16.1, 16.5, 18.0)      # the read at 15.3; the take at 15.4 or 16.3
_READ = 15.3


def takes(max_events: int) -> Iterator[Case]:
    """take: `bridge backfill --apply` reads her lead at +15.3 s and takes its value as her baseline at +15.4 or
    +16.3 s; 2..max_events changes of the lead around the read and the take, all delivered after the take. The
    expected outcome is computed from the values (the value read, then the changes from the read's second on:
    qualified when a "Yes" follows a "No"), not from delivery in order; "tie": two changes in one second."""
    for take_at, k in itertools.product((15.4, 16.3), range(2, max_events + 1)):
        for chosen, values, v0 in itertools.product(itertools.combinations(_TAKE_TIMES, k),
                                                     itertools.product(("No", "Yes"), repeat=k), ("No", "Yes")):
            evs = tuple(zip(values, chosen))
            before = [v for v, s in evs if s < _READ]
            seq = [before[-1] if before else v0] + [v for v, s in evs if s >= _READ]
            want = any(seq[j] == "Yes" and "No" in seq[:j] for j in range(1, len(seq)))
            in_order = tuple(range(k))
            items = tuple(f"e{i} A={v} @+{s}s" for i, (v, s) in enumerate(evs))
            yield Case("take", f"baseline {v0}; read at +{_READ}s, taken at +{take_at}s", items, in_order,
                       len({int(s) for s in chosen}) == k, _take_play(v0, evs, take_at),
                       tuple(itertools.permutations(in_order)), (want, int(want)))


def _take_play(v0: str, evs: Sequence[tuple[str, float]], take_at: float) -> Callable[[FakeWork, Order], Outcome]:
    def play(work: FakeWork, order: Order) -> Outcome:
        _, lead = joined(work, signed_up=v0, baseline_of="custom_attributes.plan")
        t = work.clock()
        at_read = [v for v, s in evs if s < _READ]
        set_value(work, lead, at_read[-1] if at_read else v0)
        work.clock.now = t + take_at
        taken = work.store.links.take_baselines([(link_of(work), lead["custom_attributes"]["signed_up"],
                                                  "custom_attributes.signed_up", [])], read_at=t + _READ)
        if taken != [True]:
            raise AssertionError(f"the take was refused: {taken}")
        bodies = [event(dict(lead, custom_attributes={"signed_up": v}, updated_at=int(t + s)), notification=f"n{i}",
                        created_at=int(t + s)) for i, (v, s) in enumerate(evs)]
        set_value(work, lead, evs[-1][0])
        lead["updated_at"] = int(t + max(s for _, s in evs))
        work.clock.now = t + 40
        for i in order:
            run(work, bodies[i])
        return _outcome(work)
    return play


def reconciliations(kind: str, max_events: int) -> Iterator[Case]:
    """check / search / thin: her lead changes 2..max_events times (10 s apart) and reconciliation runs 5 s after
    one of them ("C": a check of her, or a search of the changes); an item is delivered only after it happened, and
    the contact shows the value of the latest change delivered so far, as Intercom would by then. "search": the
    search may be stale, showing her as she was at an earlier second (a read after it shows her as she is).
    "thin": one of the notifications is too large to queue whole (its contact read when worked), with a check
    or a search."""
    for base, n in itertools.product(("Yes", "No"), range(2, max_events + 1)):
        times = [10 * (k + 1) for k in range(n)]
        for values, at in itertools.product(itertools.product(("Yes", "No"), repeat=n), [s + 5 for s in times]):
            evs = tuple(zip(values, times))
            stales: list[Optional[int]] = [None]
            if kind == "search":
                stales += [s for s in [0] + [s + 5 for s in times] if s < at]
            what = ("check", "changes") if kind == "thin" else ("check",) if kind == "check" else ("changes",)
            thins: list[Optional[int]] = list(range(n)) if kind == "thin" else [None]
            for stale, search, thin_one in itertools.product(stales, what, thins):
                in_order = tuple(sorted(range(n + 1), key=lambda i: at if i == n else evs[i][1]))
                items = tuple(f"e{i} A={v} @+{s}s" + (" (thin)" if i == thin_one else "")
                              for i, (v, s) in enumerate(evs)) + (
                    f"C {'check' if search == 'check' else 'search'} @+{at}s"
                    + (f" (stale: as at +{stale}s)" if stale is not None else ""),)

                def happened(order: Order, at: int = at, evs: tuple = evs) -> bool:
                    return not any(evs[i][1] > at for i in order[:order.index(n)])
                yield Case(kind, f"baseline {base}", items, in_order, True,
                           reconcile_play(base, evs, at, search, stale, thin_one), _others(in_order, happened))


def _state_at(base: str, evs: Sequence[tuple[str, int]], second: int) -> tuple[str, Optional[int]]:
    happened = [(s, v) for v, s in evs if s <= second]
    s, v = max(happened) if happened else (None, base)
    return v, s


def reconcile_play(base: str, evs: Sequence[tuple[str, int]], at: int, kind: str, stale: Optional[int],
                   thin_one: Optional[int]) -> Callable[[FakeWork, Order], Outcome]:
    """A check / search / thin play: `evs` (value, seconds after the join) and reconciliation `kind` ("check" or
    "changes", the last item) at `at`, its search stale as at `stale`, notification `thin_one` thin."""
    def play(work: FakeWork, order: Order) -> Outcome:
        _, a = joined(work, signed_up=base)
        t = int(work.clock())
        msgs = [event(dict(a, custom_attributes={"signed_up": v}, updated_at=t + s), "contact.lead.updated", f"e{n}",
                      created_at=t + s) for n, (v, s) in enumerate(evs)]
        fake = work.apis.intercom_
        now = 0
        for i in order:
            now = max(now, at if i == len(evs) else evs[i][1])
            v, s = _state_at(base, evs, now)
            a["custom_attributes"]["signed_up"], a["updated_at"] = v, (t + s if s is not None else a["created_at"])
            work.clock.now = t + now + 1
            if i < len(evs):
                run(work, _thin(msgs[i]) if i == thin_one else msgs[i])
            elif kind == "check":
                run(work, check())
            elif stale is None:
                run(work, changes(work, at=t))
            else:
                with _stale_search(fake, a, *_state_at(base, evs, stale), t):
                    run(work, changes(work, at=t))
        return _outcome(work)
    return play


@contextmanager
def _stale_search(fake: Any, contact: dict, value: str, second: Optional[int], t: int) -> Iterator[None]:
    """The fake's search shows `contact` as it was at `second` (a stale index); a read after it shows her as she is."""
    real = dict(contact, custom_attributes=dict(contact["custom_attributes"]))
    contact["custom_attributes"]["signed_up"] = value
    contact["updated_at"] = t + second if second is not None else contact.get("created_at")
    search = fake.search_contacts

    def stale(query: dict, starting_after: Optional[str] = None, per_page: int = 150) -> Any:
        out = search(query, starting_after, per_page)
        fake.contacts[contact["id"]] = real
        return out
    fake.search_contacts = stale
    try:
        yield
    finally:
        del fake.search_contacts
        fake.contacts[contact["id"]] = contact
        contact.update(real)


# ---- the duplicate check (the verification the join queues) ------------------------------------------------

_RULES = tuple(itertools.product(("email", "contact"), (True, False)))     # the rule's `match`, `require_change`
_BEFORE, _AFTER = (10, 20, 30), (190, 200, 210)      # seconds after the join: the check is worked at +180 s


def _check_times(n: int, k: int) -> list[tuple[int, ...]]:
    """The seconds of n events, k before the check and n - k after it: all distinct, then (when two are on one side
    of the check) the first such neighbouring pair in one second."""
    apart = _BEFORE[:k] + _AFTER[:n - k]
    pairs = [j for j in range(n - 1) if (j < k) == (j + 1 < k)]
    return [apart] + [apart[:j + 1] + (apart[j],) + apart[j + 2:] for j in pairs[:1]]


def duplicate_checks(mode: str, max_events: int) -> Iterator[Case]:
    """check-merge / check-move: under `match: email` or `contact`, `require_change` true or false, she joins with
    v0 (her lead L, made by the join: the join's search did not show her older user U, u0); the join's duplicate
    check (its verification, worked at +180 s) finds U and "merge" (leads.duplicates: update) merges L into U,
    "move" (duplicates: skip) moves her link to U and L stays. 1..max_events changes of L and U before the check
    (delivered before or after it) and after it (delivered after it; in "merge" only U's: L is gone). A delivery
    before the check sees the contacts as they are then, the check reads U then, a delivery after it sees them as
    they end."""
    for (match, require), v0, u0, n in itertools.product(_RULES, ("Yes", "No"), ("Yes", "No"),
                                                         range(1, max_events + 1)):
        for who, values, k in itertools.product(itertools.product("LU", repeat=n),
                                                 itertools.product(("Yes", "No"), repeat=n), range(n + 1)):
            if mode == "merge" and "L" in who[k:]:
                continue
            for times in _check_times(n, k):
                evs = tuple(zip(who, values, times))
                in_order = tuple(range(k)) + (n,) + tuple(range(k, n))
                items = tuple(f"e{i} {c}={v} @+{s}s" for i, (c, v, s) in enumerate(evs)) + (
                    f"V the duplicate check @+180s ({'merges L into U' if mode == 'merge' else 'moves her to U'})",)
                setting = (f"match: {match}, require_change: {str(require).lower()}; she joined with {v0} (lead L), "
                           f"her older user U {u0}")

                def after_check(order: Order, n: int = n, k: int = k) -> bool:
                    return all(order.index(i) > order.index(n) for i in range(k, n))
                yield Case(f"check-{mode}", setting, items, in_order, len(set(times)) == n,
                           check_play(match, require, mode, v0, u0, evs, -5), _others(in_order, after_check))


def prejoin(max_events: int) -> Iterator[Case]:
    """prejoin: as check-merge (`match: email`), and a change of her older user U from BEFORE she joined (30 s
    before) is delivered late, anywhere after the join (before or after the check); in order it arrives before her
    link exists and nothing judges it: in-order delivery is the other events, in order, without it. 1..max_events-1
    changes of L and U after the join, all before the check."""
    for require, v0, u0, early, n in itertools.product((True, False), ("Yes", "No"), ("Yes", "No"), ("Yes", "No"),
                                                       range(1, max_events)):
        for who, values in itertools.product(itertools.product("LU", repeat=n),
                                             itertools.product(("Yes", "No"), repeat=n)):
            for times in _check_times(n, n):
                evs = (("U", early, -30),) + tuple(zip(who, values, times))
                in_order = tuple(range(1, n + 2))
                items = (f"e0 U={early} @-30s (before she joined)",) + tuple(
                    f"e{i + 1} {c}={v} @+{s}s" for i, (c, v, s) in enumerate(evs[1:])) + (
                    "V the duplicate check @+180s (merges L into U)",)
                setting = (f"match: email, require_change: {str(require).lower()}; she joined with {v0} (lead L), "
                           f"her older user U {u0}; in order e0 is not delivered after she joined")
                orders_ = tuple(in_order[:p] + (0,) + in_order[p:] for p in range(1, n + 2))
                yield Case("prejoin", setting, items, in_order, len(set(times)) == n,
                           check_play("email", require, "merge", v0, u0, evs, -50), orders_)


_ANN = {"id": "7", "campaign_id": "42", "email": "Ann@Example.com", "first_name": "Ann", "type": "lead",
        "referrer_id": "3"}                  # her join (RF's user 7), referred by Rita (3)
_RITA = {"id": 3, "first_name": "Rita", "email": "rita@example.com"}


def check_play(match: str, require: bool, mode: str, v0: str, u0: str, evs: Sequence[tuple[str, str, int]],
               user_at: int) -> Callable[[FakeWork, Order], Outcome]:
    """A duplicate check's play: `evs` (contact "L" her lead or "U" her older user, value, seconds after the join)
    and the check (the last item), U last changed `user_at` seconds before the join. Items absent from the order
    are not delivered."""
    rule = {**RULE, "initial_value": v0, "match": match, "require_change": require}

    def play(work: FakeWork, order: Order) -> Outcome:
        doc = settings(rule, duplicates="update" if mode == "merge" else "skip", tag="Referred")
        work.store.settings.put("42", {**doc, "referrers": {"action": "nothing"}}, WS)
        work.apis.rf_.users.update({"7": {**_ANN, "code": "c7"}, "3": dict(_RITA)})
        intercom = work.apis.intercom_
        user = intercom.add("ann@example.com", role="user", searchable=False, signed_up=u0)
        user.update(updated_at=int(work.clock.now) + user_at)
        run(work, JoinMessage(campaign_id="42", rf_user_id="7", person=_ANN).wire())
        lead = intercom.contacts[str(link_of(work).contact_id)]
        t = int(work.clock.now)
        checks = [m for m in work.queue.sent if isinstance(m, dict) and m.get("kind") == "join.verify"]
        work.queue.sent.clear()
        at = max(c["not_before"] for c in checks)
        if not all(t + s < at or t + s > at + 1 for _, _, s in evs):
            raise AssertionError(f"an event in the check's second: {evs}, the check at {at - t}")
        contacts = {"L": lead, "U": user}
        msgs = [event(dict(contacts[c], custom_attributes={**contacts[c]["custom_attributes"], "signed_up": v},
                           updated_at=t + s), "contact.user.updated" if c == "U" else "contact.lead.updated",
                      f"e{i}", created_at=t + s) for i, (c, v, s) in enumerate(evs)]

        def as_at(second: float) -> None:
            for name, contact in contacts.items():
                mine = [(s, i) for i, (c, _, s) in enumerate(evs) if c == name and t + s < second]
                if mine:
                    s, i = max(mine)
                    contact["custom_attributes"]["signed_up"], contact["updated_at"] = evs[i][1], t + s
        as_at(at)
        work.clock.now = at - 1
        pos = order.index(len(evs))
        for i in order[:pos]:
            run(work, msgs[i])
        work.clock.now = at
        intercom.unsearchable.clear()
        run(work, *checks)
        if link_of(work).contact_id != user["id"]:
            raise AssertionError("the duplicate check did not move her link to her older user")
        as_at(t + 10_000)
        work.clock.now = t + 1000
        for i in order[pos + 1:]:
            run(work, msgs[i])
        return _outcome(work)
    return play


@dataclass(frozen=True)
class Family:
    doc: str
    cases: Callable[[int], Iterator[Case]]


FAMILIES: dict[str, Family] = {
    "merge-kept": Family(merges.__doc__ or "", lambda n: merges("kept", n)),
    "merge-taken": Family(merges.__doc__ or "", lambda n: merges("taken", n)),
    "survivor": Family(survivor.__doc__ or "", survivor),
    "take": Family(takes.__doc__ or "", takes),
    "check": Family(reconciliations.__doc__ or "", lambda n: reconciliations("check", n)),
    "search": Family(reconciliations.__doc__ or "", lambda n: reconciliations("search", n)),
    "thin": Family(reconciliations.__doc__ or "", lambda n: reconciliations("thin", n)),
    "check-merge": Family(duplicate_checks.__doc__ or "", lambda n: duplicate_checks("merge", n)),
    "check-move": Family(duplicate_checks.__doc__ or "", lambda n: duplicate_checks("move", n)),
    "prejoin": Family(prejoin.__doc__ or "", prejoin),
}

# Misses known at --max-events 3 on the in-memory twin (the full run of 2026-11-28 on d740ad7: 57,984 orders, no
# false qualification or double PUT of distinct seconds in the first seven families; ties: 163, 306 and 102 false in
# merge-kept, merge-taken and take): printed beside each family's misses, so a change that adds some shows
# (--baseline compares and fails). The tool does not say why an order misses (--show lists examples); those seen so
# far: a survivor's change away delivered before the merge (Link.duplicates_seen records target values only), a
# change of her lead delivered after the merge, thin notifications read after she went back. Ties are policy.
# check-merge, check-move and prejoin: the full run of 2026-11-28 on the fixes of the false qualifications they found
# (332, 482 and 52 of distinct seconds on f3f3511, all under match: email with require_change: true; check-merge's
# misses were 2,636, check-move's 4,148; 165,760 orders, 11 min on a shared machine). Ties: 224 and 318 false.
KNOWN: dict[str, dict[str, int]] = {
    "merge-kept": {"miss distinct": 144, "miss tie": 285},
    "merge-taken": {"miss distinct": 348, "miss tie": 654},
    "survivor": {"miss distinct": 48, "miss tie": 0},
    "take": {"miss distinct": 0, "miss tie": 8},
    "check": {"miss distinct": 0, "miss tie": 0},
    "search": {"miss distinct": 0, "miss tie": 0},
    "thin": {"miss distinct": 328, "miss tie": 0},
    "check-merge": {"miss distinct": 892, "miss tie": 886},
    "check-move": {"miss distinct": 522, "miss tie": 681},
    "prejoin": {"miss distinct": 0, "miss tie": 0},
}


# ---- judging ----------------------------------------------------------------------------------------------------

def kind_of(got: Outcome, want: Outcome) -> Optional[str]:
    if got == want:
        return None
    if got[0] and not want[0]:
        return "false"
    if want[0] and not got[0]:
        return "miss"
    return "double" if got[1] > want[1] else "other"


def _said(outcome: Outcome) -> str:
    return f"{'qualified' if outcome[0] else 'not qualified'}, {outcome[1]} PUT{'s' * (outcome[1] != 1)}"


def example(case: Case, order: Order, got: Outcome, want: Outcome) -> str:
    def listed(o: Order) -> str:
        return " · ".join(case.items[i] for i in o)
    oracle = "expected" if case.expected is not None else "in order"
    return (f"{case.setting}\n      {oracle + ':':<10} {listed(case.in_order)}  -> {_said(want)}\n"
            f"      {'delivered:':<10} {listed(order)}  -> {_said(got)}")


def tally(family: str, max_events: int, worlds: Worlds, show: int = 0, limit: Optional[int] = None,
          progress: Callable[[int], None] = lambda n: None, cases: Optional[Iterable[Case]] = None) -> Tally:
    """Every case of `family` (or `cases`, some of them; up to `limit` cases) played in each of its orders on fresh
    `worlds`: the counts."""
    result = Tally(family)
    for case in itertools.islice(FAMILIES[family].cases(max_events) if cases is None else cases, limit):
        want = case.expected if case.expected is not None else case.play(worlds(), case.in_order)
        split = "distinct" if case.distinct else "tie"
        for order in case.orders:
            got = case.play(worlds(), order)
            result.tried += 1
            kind = kind_of(got, want)
            if kind:
                result.counts[f"{kind} {split}"] += 1
                if len(result.examples.get(f"{kind} {split}", [])) < show:
                    result.examples.setdefault(f"{kind} {split}", []).append(example(case, order, got, want))
        progress(len(case.orders))
    return result


def size(family: str, max_events: int, limit: Optional[int] = None) -> int:
    return sum(len(c.orders) for c in itertools.islice(FAMILIES[family].cases(max_events), limit))


def failures(tallies: Sequence[Tally], baseline: Optional[dict] = None) -> list[str]:
    """What fails the run: a false qualification or a double PUT among distinct-second orders; with `baseline` (a
    previous --json of the same --max-events and --limit), a family missing more (distinct or tie) than then."""
    said = [f"{t.family}: {t.count(kind, 'distinct')} {kind} (distinct seconds)"
            for t in tallies for kind in ("false", "double") if t.count(kind, "distinct")]
    before = {f["family"]: f for f in (baseline or {}).get("families", [])}
    for t in tallies:
        for split in SPLITS:
            was = before.get(t.family, {}).get(f"miss_{split}")
            if was is not None and t.count("miss", split) > was:
                said.append(f"{t.family}: {t.count('miss', split)} misses ({split}) beside {was} in the baseline")
    return said


# ---- the stores -------------------------------------------------------------------------------------------------

@contextmanager
def memory_worlds() -> Iterator[Worlds]:
    yield lambda: world()


@contextmanager
def dynamodb_worlds() -> Iterator[Worlds]:
    """Worlds on the DynamoDB store over one stack's table on a moto server started here, emptied before each."""
    from chalicelib.adapters.dynamo import DynamoStore, bind
    from infra.local.aws import client, deploy, start_moto, stop_moto, unique_prefix

    server, endpoint = start_moto()
    saved = dict(os.environ)
    try:
        resources = deploy(endpoint, unique_prefix("orders"))
        os.environ.update(resources.env())
        bind(resources.table)
        dynamo = client("dynamodb", endpoint)
        keys = [k["AttributeName"] for k in dynamo.describe_table(TableName=resources.table)["Table"]["KeySchema"]]

        def fresh() -> FakeWork:
            scanned = dynamo.scan(TableName=resources.table, ProjectionExpression=", ".join(f"#{k}" for k in keys),
                                  ExpressionAttributeNames={f"#{k}": k for k in keys})
            for item in scanned["Items"]:
                dynamo.delete_item(TableName=resources.table, Key=item)
            clock = FakeClock()
            return world(clock=clock, store=DynamoStore(clock))
        yield fresh
    finally:
        os.environ.clear()
        os.environ.update(saved)
        stop_moto(server)


STORES: dict[str, Callable[[], Any]] = {"memory": memory_worlds, "dynamodb": dynamodb_worlds}


# ---- the command ------------------------------------------------------------------------------------------------

def _table(tallies: Sequence[Tally], max_events: int, store: str, limit: Optional[int]) -> str:
    head = f"{'family':<12} {'orders':>8}  " + "  ".join(f"{k + ' ' + s[:4]:>11}" for k in KINDS for s in SPLITS)
    lines = [head]
    for t in tallies:
        known = KNOWN.get(t.family) if (max_events, store, limit) == (3, "memory", None) else None
        cells = []
        for kind in KINDS:
            for split in SPLITS:
                cell = f"{t.count(kind, split):,}"
                if known is not None and kind == "miss":
                    cell += f" ({known.get(f'{kind} {split}', 0):,})"
                cells.append(f"{cell:>11}")
        lines.append(f"{t.family:<12} {t.tried:>8,}  " + "  ".join(cells))
    if (max_events, store, limit) == (3, "memory", None):
        lines.append("(in brackets: the known totals, KNOWN in tests/orders.py)")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    from chalicelib.cli import progress_bar, progress_line

    parser = argparse.ArgumentParser(prog="python -m tests.orders", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="families:\n" + "\n".join(f"  {n}" for n in FAMILIES))
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES),
                        help="a family to run (repeatable; default: all)")
    parser.add_argument("--max-events", type=int, default=3, help="the most contact events in a case (default 3)")
    parser.add_argument("--store", choices=sorted(STORES), default="memory")
    parser.add_argument("--limit", type=int, help="the first N cases of each family only (a quick slice)")
    parser.add_argument("--show", type=int, default=0, metavar="N", help="N examples of each kind found")
    parser.add_argument("--json", action="store_true", help="the counts as JSON on stdout")
    parser.add_argument("--baseline", metavar="FILE", help="a previous --json: fail when a family misses more")
    args = parser.parse_args(argv)
    families = args.family or list(FAMILIES)
    baseline = None
    if args.baseline:
        with open(args.baseline) as f:
            baseline = json.load(f)
        if (baseline.get("max_events"), baseline.get("limit")) != (args.max_events, args.limit):
            print(f"orders: the baseline was run with --max-events {baseline.get('max_events')} --limit "
                  f"{baseline.get('limit')}, not {args.max_events} {args.limit}: misses not compared", file=sys.stderr)
            baseline = None
    started = time.monotonic()
    total = sum(size(f, args.max_events, args.limit) for f in families)
    done = 0
    tallies = []
    silenced = logging.root.manager.disable
    logging.disable(logging.CRITICAL)            # the worker logs each record; the counts are what is read here
    try:
        with ExitStack() as stack:
            worlds = stack.enter_context(STORES[args.store]())
            draw = stack.enter_context(progress_line(args))
            stack.enter_context(redirect_stdout(stack.enter_context(open(os.devnull, "w"))))  # the metrics' EMF
            for name in families:
                def step(n: int, name: str = name) -> None:
                    nonlocal done
                    done += n
                    draw(f"{progress_bar(done, total)} orders ({name})")
                tallies.append(tally(name, args.max_events, worlds, args.show, args.limit, step))
    finally:
        logging.disable(silenced)
    seconds = time.monotonic() - started
    failed = failures(tallies, baseline)
    if args.json:
        print(json.dumps({"max_events": args.max_events, "store": args.store, "limit": args.limit,
                          "seconds": round(seconds, 1),
                          "families": [{**t.view(), "max_events": args.max_events,
                                        **({"examples": t.examples} if args.show else {})} for t in tallies],
                          "failures": failed}, indent=2))
    else:
        print(_table(tallies, args.max_events, args.store, args.limit))
        print(f"{sum(t.tried for t in tallies):,} orders in {seconds:.0f} s on the {args.store} store "
              f"(--max-events {args.max_events}{f', --limit {args.limit}' if args.limit else ''})")
        for t in tallies:
            for key, shown in t.examples.items():
                print(f"\n{t.family}: {key} ({t.counts[key]:,})")
                for text in shown:
                    print(f"  - {text}")
        for line in failed:
            print(f"orders: FAILED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
