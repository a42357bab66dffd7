"""What `bridge doctor` is given over the worker's fakes, a campaign it finds healthy, and its report read
back (the view and the text) and by check."""
from __future__ import annotations

from typing import Any

from chalicelib.services.doctor import as_text, examine
from tests.unit import scenario


class Doctored:
    """What the doctor is given, over the worker's fakes."""

    def __init__(self) -> None:
        self.work = work = scenario.world()
        self.config, self.store, self.clock, self.queue = work.config, work.store, work.clock, work.queue
        work.store.connections.put_workspace(scenario.WS, ["token", "client-secret"])
        work.store.connections.put_rf(["token", "webhook-secret"])

    def intercom(self, workspace: str) -> Any:
        return self.work.apis.intercom_

    def rf(self) -> Any:
        return self.work.apis.rf_


def healthy() -> Doctored:
    """A campaign doctor finds nothing wrong with: its attributes exist, a join was heard."""
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}    # type: ignore[attr-defined]
    rt.work.apis.intercom_.attributes.update({"email": {"data_type": "string"}, "name": {"data_type": "string"}})
    rt.store.edge.heard("campaign:42", "join")
    return rt


def look(rt: Doctored) -> tuple[dict, str]:
    report = examine(rt, "42")
    return report.view(), as_text(report)


def checks(view: dict, check: str) -> list[dict]:
    return [f for f in view["findings"] if f["check"] == check]


def commands(text: str) -> list[str]:
    """The `bridge ...` commands a text advises (in backquotes), each checked to be one the CLI reads: an
    advice the CLI refuses (exit 2, a word too many) fails here with the command."""
    import re
    import shlex

    from chalicelib.cli import _parser

    advised = re.findall(r"`(bridge [^`]*)`", text)
    for command in advised:
        try:
            _parser().parse_args(shlex.split(command)[1:])
        except SystemExit as refused:
            raise AssertionError(f"the CLI refuses the advised `{command}` (exit {refused.code})") from None
    return advised
