"""Ctrl-C in the command-line tools (`bridge`, and make run / make demo): at any moment, exit 130,
the shell's code for an interrupt, quietly — never a traceback of whatever was being imported.
Nothing here is used by the Lambdas."""
from __future__ import annotations


def exit_quietly_on_interrupt() -> None:
    """First thing a tool does: a Ctrl-C while it still loads ends it at once with 130, not with a
    traceback of whatever module was being imported. (Not when Ctrl-C is ignored, as in a background
    job.) `interrupts_raise` hands Ctrl-C back to KeyboardInterrupt once the tool runs."""
    import os

    import _signal   # `signal` without its enums: importing those takes ~15 ms, a window of its own

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, lambda *_: os._exit(130))


def interrupts_raise() -> None:
    import signal

    if signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler):
        signal.signal(signal.SIGINT, signal.default_int_handler)
