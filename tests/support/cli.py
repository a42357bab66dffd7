"""`bridge` run in-process, as the tests run it: its exit code and what it printed."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
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


def replays_advised(*advice: Any) -> list[str]:
    """The `--reason` of every `bridge dlq replay --reason ...` that advice (fixes, views, messages) names."""
    return [reason for reason, _ in replay_selectors(*advice) if reason is not None]


def replay_selectors(*advice: Any) -> list[tuple[Optional[str], Optional[str]]]:
    """The `--reason` and `--campaign` (None: not given) of every `bridge dlq replay ...` that advice names."""
    said = json.dumps(advice)
    selectors = []
    for command in re.findall(r"dlq replay((?: --[a-z]+(?: [^`-][^`]*?)?)*)`", said):
        words = shlex.split(json.loads(f'"{command}"'))
        selectors.append(tuple(words[words.index(o) + 1] if o in words else None for o in ("--reason", "--campaign")))
    return selectors  # type: ignore[return-value]


class Terminal:
    """stdin is a terminal, and `getpass.getpass` answers from `answers` (a BaseException is raised:
    KeyboardInterrupt is Ctrl-C, EOFError Ctrl-D) without reading anything; `prompts` records what was asked.
    As getpass, it writes each prompt on the terminal itself (/dev/tty: here the file `screen`, else nowhere),
    or on stderr when that cannot be opened, and ends its line once answered."""

    def __init__(self, monkeypatch, *answers: object, screen: Optional[Path] = None):
        import io
        import os
        import sys

        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True
        self.answers, self.prompts = list(answers), []
        monkeypatch.setattr(sys, "stdin", Tty())
        monkeypatch.setattr("getpass.getpass", self.getpass)
        monkeypatch.setattr("chalicelib.cli.TTY", str(screen) if screen else os.devnull)

    def getpass(self, prompt: str = "Password: ", stream: Any = None) -> str:
        self.prompts.append(prompt)
        self._show(prompt)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, str)
        self._show("\n")
        return answer

    @staticmethod
    def _show(text: str) -> None:
        import sys

        from chalicelib import cli
        try:
            with open(cli.TTY, "a", encoding="utf-8") as tty:
                tty.write(text)
        except OSError:
            print(text, end="", file=sys.stderr)
