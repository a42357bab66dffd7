"""`make bench [QUICK=1]`: each figure beside its floor, in one run, interleaved, with ratios.

    python -m bench [--quick] [--only ack,e2e,counts,throughput,budget,sync,cold] [--markdown]

Runs on the local stack (moto in server mode, the simulators), in this process; the cold starts
in fresh processes. Floors, and what each figure measures: bench/figures.py, bench/floors.py.
The app's own output (logs, metrics) goes to /dev/null while it runs, as it costs what it costs."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from .report import loadavg, machine, markdown_table, text_table


@contextlib.contextmanager
def app_output_discarded():
    """fd 1 to /dev/null (the app's logger holds sys.stdout's stream); yields our own stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    out = os.fdopen(os.dup(saved), "w", buffering=1)
    os.dup2(devnull, 1)
    try:
        yield out
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        out.close()


def main(argv: list[str] | None = None) -> int:
    from .figures import FIGURES, FULL, QUICK

    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few samples of each: a smoke check")
    parser.add_argument("--only", default="", help=f"comma-separated, of: {','.join(FIGURES)}")
    parser.add_argument("--markdown", action="store_true", help="also print docs/performance.md's table")
    args = parser.parse_args(argv)
    chosen = [f for f in args.only.split(",") if f] or list(FIGURES)
    unknown = set(chosen) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    mode = QUICK if args.quick else FULL

    m = machine()
    started, load_before = time.perf_counter(), loadavg()
    rows = []
    with app_output_discarded() as out:
        print(f"make bench{' (quick)' if args.quick else ''}: {m['cpus']} CPUs, {m['cpu']}, Python {m['python']}, "
              f"{m['system']}; load average {load_before}", file=out)
        from .stack import BenchStack

        stack = BenchStack()
        try:
            for name in chosen:
                t = time.perf_counter()
                got = FIGURES[name](stack, mode)
                rows += got
                print(f"  {name}: {time.perf_counter() - t:.0f} s, load average after {loadavg()}", file=out)
        finally:
            stack.close()
        print(file=out)
        print(text_table(rows), file=out)
        print(f"\n{time.perf_counter() - started:.0f} s; load average before {load_before}, after {loadavg()}",
              file=out)
        if args.markdown:
            print(f"\nRan on {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, {m['system']}; "
                  f"load average {load_before} before, {loadavg()} after.\n", file=out)
            print(markdown_table(rows), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
