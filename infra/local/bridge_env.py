"""`./bridge` and `make bridge ARGS=...`: the operator CLI, pointed at the running local stack
(`make run` records it in .local/stack.json) unless the environment already names a stack
(BRIDGE_TABLE) or a deployed stage is asked for (--stage)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(__file__).resolve().parents[2] / ".local" / "stack.json"


def local_env(argv: list[str], environ=os.environ) -> dict:
    """The local stack's environment, when it applies to this command line."""
    if environ.get("BRIDGE_TABLE") or environ.get("BRIDGE_STAGE") or any(a == "--stage" or a.startswith("--stage=") for a in argv):
        return {}
    try:
        return json.loads(STATE.read_text())["env"]
    except (OSError, ValueError, KeyError):
        return {}


if __name__ == "__main__":
    args = sys.argv[1:]
    os.environ.update(local_env(args))
    from chalicelib.cli import command

    sys.exit(command(args))
