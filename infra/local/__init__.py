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


# For the tools run as `python -m infra.local.<tool>` (./bridge, make run, make demo); `python -m
# chalicelib.cli` uses them too, so they live beside the CLI.
from chalicelib.interrupts import exit_quietly_on_interrupt, interrupts_raise  # noqa: F401
