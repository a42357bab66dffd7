"""moto's threaded server in a process of its own: prints its endpoint, serves until stdin closes.
With CHAOS_MOTO_PATCH=0 moto runs as released (see moto_patch.py for what the patch fixes)."""
from __future__ import annotations

import os
import sys

from infra.local.aws import start_moto, stop_moto


def main() -> None:
    server, endpoint = start_moto(patched=os.environ.get("CHAOS_MOTO_PATCH", "1") != "0")
    print(endpoint, flush=True)
    sys.stdin.read()          # the parent closes it (or dies): stop
    stop_moto(server)


if __name__ == "__main__":
    main()
