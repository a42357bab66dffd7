"""`make chaos [SEED=..] [N=..] [KILLS=..] [KNOB=value ...]`: one chaos run, its figures and checks.

Exit status 0 when every check holds or fails only by a known break of issue 7 (KNOWN_BREAKS,
LOAD_BREAKS in harness.py); 1 when a check fails for another reason."""
from __future__ import annotations

import sys

from infra.local.chaos.harness import ChaosConfig, run


def main(argv: list[str]) -> int:
    pairs = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            print(f"chaos: arguments are KNOB=value (got {arg!r})", file=sys.stderr)
            return 2
        if value != "":
            pairs[key] = value
    try:
        config = ChaosConfig.from_pairs(pairs)
    except ValueError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    report = run(config, out=lambda line: print(line, flush=True))
    print(report.render(), flush=True)
    unexpected = report.unexpected()
    if unexpected:
        print(f"chaos: FAILED beyond the known breaks: {', '.join(unexpected)} (seed {config.seed})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
