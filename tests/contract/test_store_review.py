"""Review: the sync ledger's `intend` on both stores (chalicelib/ports/store.py, SyncRepository)."""
from __future__ import annotations

from chalicelib.ports.store import LedgerEntry


def test_intending_to_create_a_contact_an_earlier_run_skipped_leaves_a_creating_entry_on_both_stores(store):
    """A contact run 1 skipped (no name) is created by run 2 once fixed: run 2's `creating` entry must replace the
    skip on both stores, so that a retry after a lost create answer looks the user up in RF (services/sync.py
    `_enrol`'s `earlier`). DynamoDB's `intend` writes it; the in-memory twin keeps the skip (the port's docstring
    says "except over a final one"), and so differs from the store the Lambdas use."""
    store.sync.record("42", [LedgerEntry("c1", "missing_field", email="a@x.io", reason="missing", run=1)])
    store.sync.intend("42", [LedgerEntry("c1", "creating", email="a@x.io", run=2, seen_run=2)])
    got = store.sync.entries("42", ["c1"])["c1"]
    assert (got.outcome, got.run, got.final) == ("creating", 2, False)
