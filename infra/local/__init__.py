"""Local, real-parts runtime for the bridge: moto server + CloudFormation,
an SQS event-source-mapping emulator, a real HTTP server for the Chalice app
and a tiny scheduler.  Used by ``make run`` and by the integration tests.

Dev/test only: nothing here is packaged by ``chalice deploy`` (it only ships
``app.py`` and ``chalicelib/``), and it imports moto, a dev dependency.

Public API::

    from infra.local.aws import (start_moto, stop_moto, reset_moto, deploy, destroy,
                                 unique_prefix, client, Resources, DeployError)
    from infra.local.esm import QueuePoller, PollerThread, BatchOutcome, build_sqs_event
    from infra.local.http import serve_app, RunningServer
    from infra.local.scheduler import Scheduler, scheduled_event, chalice_job
    from infra.local.context import FakeLambdaContext

Submodules are not imported eagerly so that e.g. ``infra.local.esm`` does not
pay for importing moto.
"""


def exit_quietly_on_interrupt() -> None:
    """For the tools run as `python -m infra.local.<tool>` (./bridge, make run, make demo), first thing:
    a Ctrl-C while the tool still loads ends it at once with 130, the shell's code for an interrupt,
    not with a traceback of whatever module was being imported. (Not when Ctrl-C is ignored, as in a
    background job.) `interrupts_raise` hands Ctrl-C back to KeyboardInterrupt once the tool runs."""
    import os

    import _signal   # `signal` without its enums: importing those takes ~15 ms, a window of its own

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, lambda *_: os._exit(130))


def interrupts_raise() -> None:
    import signal

    if signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler):
        signal.signal(signal.SIGINT, signal.default_int_handler)
