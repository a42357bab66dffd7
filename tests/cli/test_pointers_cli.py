"""`bridge pointers`: one line per stale reference and a summary (dry run unless --apply), --json for machines,
progress on a terminal, and exit 1 when a worker's write meanwhile left some for a run again."""
from __future__ import annotations

import copy
import json
from types import SimpleNamespace

from chalicelib.adapters.memory import MemoryStore
from chalicelib.cli import main
from chalicelib.domain.history import Entry
from tests.cli.test_progress import terminal
from tests.contract.test_pointers import ANN, WS, forgotten, joined, left_by_earlier_version
from tests.fakes import FakeClock
from tests.support.meanwhile import after


def _stale() -> SimpleNamespace:
    """Ann erased with a contact pointer an earlier version left naming her, and Bob's link on c9 whose former
    address's pointer still names him."""
    store = MemoryStore(FakeClock())
    forgotten(store, joined(store))
    left_by_earlier_version(store, "contact", WS, "c_old", ANN)
    bob = joined(store, ANN._replace(rf_user_id="8"), contact="c9", email="bob@example.com")
    left_by_earlier_version(store, "email", WS, "bob@old.example", bob.ref)
    return SimpleNamespace(store=store)


def test_a_dry_run_prints_a_line_per_stale_reference_and_writes_nothing(capsys):
    rt = _stale()
    pointers = copy.deepcopy((rt.store.tables.contacts, rt.store.tables.emails))
    assert main(["pointers"], rt=rt) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "contact ws1/c_old -> campaign 42 RF user 7: erased (her link is gone: `bridge forget` erased her, the "
        "pointer still names her) — would drop",
        "email ws1/b***@old.example -> campaign 42 RF user 8: email_changed (her link has another email now) "
        "— would drop",
        "4 pointers read (4 references): 2 to clean (dry run: nothing was written; --apply cleans them)"]
    assert ANN in rt.store.tables.contacts[(WS, "c_old")]
    assert (rt.store.tables.contacts, rt.store.tables.emails) == pointers      # neither of the two dropped


def test_apply_cleans_them_and_says_so_as_json(capsys):
    rt = _stale()
    assert main(["pointers", "--apply", "--json"], rt=rt) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["dry_run"], done["found"], done["outcomes"]) == (False, {"erased": 1, "email_changed": 1},
                                                                  {"dropped": 2})
    assert [f["outcome"] for f in done["findings"]] == ["dropped", "dropped"]
    assert (WS, "c_old") not in rt.store.tables.contacts and (WS, "bob@old.example") not in rt.store.tables.emails
    assert main(["pointers"], rt=rt) == 0
    assert capsys.readouterr().out == "2 pointers read (2 references): none stale\n"


def test_progress_is_drawn_on_a_terminal_and_ended_before_the_answer(monkeypatch, capsys):
    stderr = terminal(monkeypatch)
    assert main(["pointers"], rt=_stale()) == 0
    assert "4 pointers read, 2 found stale" in stderr.getvalue() and stderr.getvalue().endswith("\n")
    quiet = terminal(monkeypatch)
    assert main(["pointers", "--json"], rt=_stale()) == 0
    assert quiet.getvalue() == ""                                  # never under --json


def test_a_reference_a_worker_made_hers_again_meanwhile_is_left_and_the_command_exits_1(capsys):
    rt = _stale()
    store = rt.store

    def merged_back():        # Bob's email changes back to his old address as the sweep reads
        bob = store.links.get(ANN._replace(rf_user_id="8"))
        store.links.set_contact(bob, [Entry("contact", "email_changed")], when=100.0, email="bob@old.example")
    with after(store.links, "pointers", merged_back):
        assert main(["pointers", "--apply"], rt=rt) == 1
    captured = capsys.readouterr()
    assert "email ws1/b***@old.example -> campaign 42 RF user 8: email_changed" in captured.out
    assert captured.err == "1 left: changed meanwhile (a worker's write), run again\n"
    assert ANN._replace(rf_user_id="8") in store.tables.emails[(WS, "bob@old.example")]


def test_an_unfinished_erasure_is_not_counted_as_cleanable_and_says_how_to_finish_it(capsys):
    """Ann, forgotten by her address of now, still named by the pointer of the address she had before (an earlier
    version kept it when her email changed): --apply leaves it (forget finds an interrupted erasure by it), so the
    count does not promise that --apply cleans it, and the line says what does (the address is masked:
    docs/operating.md)."""
    store = MemoryStore(FakeClock())
    forgotten(store, joined(store))
    left_by_earlier_version(store, "email", WS, "ann@old.example", ANN)
    rt = SimpleNamespace(store=store)
    for args in (["pointers"], ["pointers", "--apply"]):
        assert main(args, rt=rt) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == [
            "email ws1/a***@old.example -> campaign 42 RF user 7: erasure_unfinished (her link is gone: an "
            "interrupted `bridge forget`, or an address she had before that an earlier version kept: `bridge forget "
            "<this pointer's address>` finishes it; docs/operating.md, Erasure, says how to read the address) — left",
            "1 pointers read (1 references): none to clean; 1 erasure unfinished, left for `bridge forget`"]
    assert main(["pointers", "--json"], rt=rt) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["to_clean"], done["erasures_unfinished"]) == (0, 1)
