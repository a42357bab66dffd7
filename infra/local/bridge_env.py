"""`./bridge` and `make bridge ARGS=...`: the operator CLI, pointed at the running local stack
(`make run` records it in .local/stack.json) unless the environment already names a stack
(BRIDGE_TABLE) or a deployed stage is asked for (--stage). A .local/stack.json left by a `make run`
that did not stop cleanly is not used: its stack does not answer."""
from __future__ import annotations

if __name__ == "__main__":
    from infra.local import exit_quietly_on_interrupt
    exit_quietly_on_interrupt()

import json
import os
import socket
import sys
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

STATE = Path(__file__).resolve().parents[2] / ".local" / "stack.json"


def answers(url: object, timeout: float = 0.5) -> bool:
    """Whether something listens at the URL's host and port (a refused connect is immediate)."""
    try:
        parts = urlsplit(str(url))
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


START = "start the stack first: make run"


def simulated_stack(state_file: Path, refusal: str) -> Optional[dict]:
    """The running `make run`'s state (.local/stack.json), for a tool that plays on its simulators; None
    once one line on stderr said why not: no stack runs (`START`), or it runs on the real APIs (`refusal`)."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict) or not answers(state.get("api_url")):   # none, or left by a stopped stack
        print(START, file=sys.stderr)
        return None
    if state.get("mode") == "real":
        print(f"{refusal}; this stack runs against the real APIs", file=sys.stderr)
        return None
    return state


def local_env(argv: list[str], environ=os.environ) -> dict:
    """The local stack's environment, when it applies to this command line and the stack runs."""
    if environ.get("BRIDGE_TABLE") or environ.get("BRIDGE_STAGE") or any(a == "--stage" or a.startswith("--stage=") for a in argv):
        return {}
    try:
        state = json.loads(STATE.read_text())
        env = state["env"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return env if answers(state.get("aws_endpoint_url")) else {}


def main(args: list[str]) -> int:
    os.environ.update(local_env(args))
    from chalicelib.cli import command

    from infra.local import interrupts_raise
    interrupts_raise()
    return command(args)


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:     # Ctrl-C while the CLI is still loading: as quiet as later (130)
        code = 130
    sys.exit(code)
