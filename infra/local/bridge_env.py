"""`make bridge ARGS=...`: the operator CLI, pointed at the running local stack when there is one."""
from __future__ import annotations

import json
import os
import sys

from infra.local.run import STATE

if __name__ == "__main__":
    wants_stage = os.environ.get("BRIDGE_STAGE") or any(a == "--stage" or a.startswith("--stage=") for a in sys.argv[1:])
    if STATE.exists() and not os.environ.get("BRIDGE_TABLE") and not wants_stage:
        os.environ.update(json.loads(STATE.read_text())["env"])
    from chalicelib.cli import main

    sys.exit(main(sys.argv[1:]))
