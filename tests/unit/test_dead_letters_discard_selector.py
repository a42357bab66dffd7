"""`bridge dlq discard`'s selector: a `--reason` that selects nothing in particular is refused, as an
empty one is (it would take out every dead letter for good)."""
from __future__ import annotations

from tests.unit.test_dead_letters_discard import cli, with_a_dead_join_rf_does_not_know
from tests.unit.test_dead_letters_scan import visible_now


def test_discard_refuses_a_blank_reason_as_it_refuses_an_empty_one(capsys):
    """`--reason ''` is refused ("an empty --reason would match every letter"), but `--reason ' '` (a stray
    quoted space, `--reason "$VAR"` with VAR a space) is taken as a selector: every reason holds a space, so
    both letters, the one a replay can fix included, are discarded for good."""
    work = with_a_dead_join_rf_does_not_know()
    code, out, err = cli(work, capsys, "discard", "--reason", " ", "--yes")
    assert code == 1 and "discard which dead letters?" in err, (out, err)
    assert work.queue.dead_count() == 2 == visible_now(work.queue)
