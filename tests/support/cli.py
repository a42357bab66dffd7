"""`bridge` run in-process, as the tests run it: its exit code and what it printed."""
from __future__ import annotations

from typing import Any, Optional

from chalicelib.cli import main


def run_cli(rt: Optional[Any], capsys, *argv: str) -> tuple[int, str, str]:
    """`bridge <argv>` against the runtime `rt` (None: the one the environment names, as the command
    builds it): its exit code, stdout and stderr. What was printed before (e.g. the stack's log
    lines) is dropped."""
    capsys.readouterr()
    code = main(list(argv), rt=rt)
    out, err = capsys.readouterr()
    return code, out, err
