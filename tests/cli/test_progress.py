"""Long runs (`backfill`, `sync start --dry-run`, `dlq list|replay|discard`) redraw a progress line on stderr on a
terminal only, never under --json; and whatever ends the run (its answer, an error, Ctrl-C), the line is ended
first, so that the error's one line, or the shell's prompt, starts a line of its own."""
from __future__ import annotations

import io
import json
import re
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from chalicelib.cli import main
from chalicelib.errors import ApiError
from tests.unit.test_answers import SETTINGS, WS, Backfilling
from tests.unit.test_sync import world


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal(monkeypatch) -> Tty:
    """stderr is a terminal from now on (stdout is the test's capture: piped). Set in the test itself: the
    capture resets sys.stderr as the test starts."""
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    return tty


def backfilling(fails: BaseException | None = None) -> Backfilling:
    """A campaign of 6 people RF lists 2 a page; `fails` is raised by RF's third page."""
    rt = Backfilling([{"id": n, "email": f"p{n}@x.co", "type": "person_invited", "referrer_id": 1}
                      for n in range(1, 7)])
    rt.store.settings.put("42", SETTINGS, WS)
    listed = rt._rf.users_page

    def users_page(*args, **kw):
        if fails is not None and rt._rf.pages == 2:
            raise fails
        return listed(*args, **kw)
    rt._rf.users_page = users_page          # type: ignore[method-assign]
    return rt


def test_a_backfill_draws_its_progress_on_a_terminal_and_ends_the_line_before_its_answer(monkeypatch, capsys):
    stderr = terminal(monkeypatch)
    assert main(["backfill", "42"], rt=backfilling()) == 0
    assert "\r[" in stderr.getvalue() and "6/6 people read, 6 to send" in stderr.getvalue()
    assert stderr.getvalue().endswith("\n")
    assert capsys.readouterr().out.startswith("campaign 42: 6 people in Referral Factory")


@pytest.mark.parametrize("fails, code, said", [
    (ApiError("Referral Factory", 500, "Internal Server Error"), 1,
     "bridge: Referral Factory could not list the people of campaign 42 (page 3): "),
    (KeyboardInterrupt(), 130, ""),
])
def test_a_backfill_stopped_midway_ends_its_progress_line_before_the_error_or_the_prompt(monkeypatch, fails, code,
                                                                                         said):
    """Seen: `[####.....] 4/6 people read, 4 to sendbridge: Referral Factory could not list ...`, and after
    Ctrl-C the shell's prompt drawn at the end of the bar."""
    stderr = terminal(monkeypatch)
    assert main(["backfill", "42"], rt=backfilling(fails)) == code
    drawn, _, after = stderr.getvalue().rpartition("4/6 people read, 4 to send")
    assert drawn and after.startswith("\n") and after[1:].startswith(said) and after.endswith("\n"), after


def test_json_draws_no_progress_even_on_a_terminal(monkeypatch, capsys):
    stderr = terminal(monkeypatch)
    """`bridge backfill 42 --json | jq` and `bridge sync start 42 --dry-run --json | jq`: stderr is still the
    terminal, and the bar there would be the only thing not asked for."""
    assert main(["backfill", "42", "--json"], rt=backfilling()) == 0
    assert json.loads(capsys.readouterr().out)["people_in_rf"] == 6
    work = world(3)
    syncing: Any = SimpleNamespace(deps=work.deps)
    assert main(["sync", "start", "42", "--dry-run", "--json"], rt=syncing) == 0
    assert json.loads(capsys.readouterr().out)["would_enrol"] == 3
    assert stderr.getvalue() == ""


def test_ctrl_c_during_a_watch_on_a_terminal_ends_its_line(monkeypatch, capsys):
    """`bridge sync status 42 --watch` redraws the run's line in place on a terminal; Ctrl-C (exit 130, quietly)
    left the shell's prompt drawn at the end of it."""
    import chalicelib.cli as cli_module
    from chalicelib.services import sync

    work = world(3)
    sync.start(work.deps, "42")

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_module, "_pause", ctrl_c)
    screen = Tty()
    monkeypatch.setattr(sys, "stdout", screen)
    syncing: Any = SimpleNamespace(deps=work.deps)
    assert main(["sync", "status", "42", "--watch"], rt=syncing) == 130
    assert screen.getvalue().startswith("\rrun 1 (full, ") and screen.getvalue().endswith("\n"), screen.getvalue()


def test_a_watch_on_a_narrow_terminal_redraws_its_line_from_its_first_row(monkeypatch):
    """The watched line (`run 1 (full, users) running: [###...] 2/5 40% · enrolled 2, already 0, skipped 0`) is
    redrawn with \\r, which goes back to the start of the terminal's last row only: wider than the terminal, each
    refresh left a wrapped copy above it, a screen of stale lines in a few minutes. A line that wrapped is now
    cleared from its first row (ANSI: up, then to the end of the screen) before the next is drawn."""
    import chalicelib.cli as cli_module
    from chalicelib.services import sync
    from tests.unit.test_sync import drain

    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work = world(5)
    sync.start(work.deps, "42")

    def refresh(seconds: float) -> None:      # a page worked between two refreshes
        sent = work.queue.sent[1:]
        del work.queue.sent[1:]
        drain(work, limit=1)
        work.queue.sent.extend(sent)
    monkeypatch.setattr(cli_module, "_pause", refresh)
    screen = Tty()
    monkeypatch.setattr(sys, "stdout", screen)
    syncing: Any = SimpleNamespace(deps=work.deps)
    assert main(["sync", "status", "42", "--watch"], rt=syncing) == 0
    shown = re.sub(r'\{"(level|_aws)".*\n', "", screen.getvalue())     # the worker's log and metrics lines
    _, first, *redrawn = shown.split("\r")
    assert 60 < len(first) <= 120 and len(redrawn) >= 3, shown     # two rows: each redraw goes up one
    assert all(line.startswith("\x1b[1A\x1b[J") for line in redrawn), redrawn
    assert redrawn[-1] == "\x1b[1A\x1b[Jrun 1 (full, users) done: [##############################] 5/5 100% · enrolled 5, " \
                          "already 0, skipped 0\n"


def test_a_backfill_bar_wider_than_the_terminal_is_redrawn_from_its_first_row(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "40")
    stderr = terminal(monkeypatch)
    assert main(["backfill", "42"], rt=backfilling()) == 0
    _, first, *redrawn = stderr.getvalue().split("\r")
    assert first.endswith("2/6 people read, 2 to send") and redrawn == [
        "\x1b[1A\x1b[J[####################..........] 4/6 people read, 4 to send",
        "\x1b[1A\x1b[J[##############################] 6/6 people read, 6 to send\n"]


def backfill_on_a_pty(monkeypatch, columns: int) -> Tty:
    """`bridge backfill 42` drawing on a pty `columns` wide (COLUMNS unset): its stderr."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    monkeypatch.delenv("COLUMNS", raising=False)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24 if columns else 0, columns, 0, 0))

    class Pty(Tty):
        def fileno(self) -> int:
            return slave
    stderr = Pty()
    monkeypatch.setattr(sys, "stderr", stderr)
    try:
        assert main(["backfill", "42"], rt=backfilling()) == 0
    finally:
        os.close(master)
        os.close(slave)
    return stderr


def test_the_bar_is_measured_against_the_terminal_it_is_drawn_on_not_stdouts(monkeypatch, capsys):
    """`bridge backfill 42 > people.txt` in a terminal 40 columns wide: stdout is a file, so the width was taken
    for 80 (stdout's, unknown), the bar's wrapped copies were left above it. (COLUMNS is a shell variable,
    not exported.)"""
    stderr = backfill_on_a_pty(monkeypatch, 40)
    assert stderr.getvalue().split("\r")[2:] == [
        "\x1b[1A\x1b[J[####################..........] 4/6 people read, 4 to send",
        "\x1b[1A\x1b[J[##############################] 6/6 people read, 6 to send\n"]


def dead_letters(n: int) -> Any:
    from tests.unit.test_dead_letters_replay import dead_letters as letters
    rt = letters(n)
    rt.config = SimpleNamespace(dlq_url=rt.queue.dlq_url)       # type: ignore[attr-defined]
    return rt


@pytest.mark.parametrize("argv, last", [
    (["list"], "25 dead letter(s) read"),
    (["replay"], "25 dead letter(s) read, [##############################] 25/25 100% sent back"),
    (["discard", "--reason", "boom", "--yes"], "25 dead letter(s) read, [##############################] 25/25 100% "
                                               "discarded"),
])
def test_a_dlq_command_draws_the_letters_read_and_those_acted_on_on_a_terminal_never_under_json(monkeypatch, capsys,
                                                                                               argv, last):
    """`dlq list`, `replay` and `discard` read up to 10,000 letters, 10 a receive, before they answer: minutes
    on a slow link, with nothing on the terminal, as if hung."""
    monkeypatch.setenv("COLUMNS", "200")
    stderr = terminal(monkeypatch)
    assert main(["dlq", *argv], rt=dead_letters(25)) == 0
    drawn = stderr.getvalue()
    assert drawn.startswith("\r10 dead letter(s) read\r20 dead letter(s) read") and drawn.endswith(f"\r{last}\n"), drawn
    assert capsys.readouterr().out.startswith("25 ")
    stderr = terminal(monkeypatch)
    assert main(["dlq", *argv, "--json"], rt=dead_letters(25)) == 0
    assert json.loads(capsys.readouterr().out) and stderr.getvalue() == ""


def test_a_terminal_that_says_it_is_0_columns_wide_is_taken_for_80_not_1(monkeypatch, capsys):
    """A pty whose size was never set (`script`, `docker exec -t` before its resize, an expect script) says 0 columns:
    the bar's width was divided by 1, so each redraw moved the cursor up as many rows as the line had characters and
    cleared the screen from there. A width of 0 is unknown: COLUMNS, else 80, as shutil says."""
    import os
    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback=(80, 24): os.terminal_size(fallback))
    drawn = backfill_on_a_pty(monkeypatch, 0).getvalue()
    assert "\x1b[" not in drawn and drawn.split("\r")[-1] == "[##############################] 6/6 people read, 6 to send\n"
