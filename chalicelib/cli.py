"""`bridge` — the operator's command line (python -m chalicelib.cli ...).

Reads the same environment as the Lambdas (BRIDGE_TABLE, BRIDGE_QUEUE_URL, BRIDGE_DLQ_URL,
INTERCOM_BASE_URL, RF_BASE_URL, AWS credentials/region). Secrets are read from options or
environment variables and never printed."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .domain.settings import SettingsError
from .services import admin
from .services.runtime import Runtime
from .config import Config


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def main(argv: list[str] | None = None, rt: Runtime | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default=os.environ.get("BRIDGE_STAGE"),
                        help="a deployed stage (dev, prod): its resources are read from its CloudFormation stack")
    sub = parser.add_subparsers(dest="cmd", required=True)

    settings = sub.add_parser("settings", help="campaign settings").add_subparsers(dest="action", required=True)
    p = settings.add_parser("apply", help="validate a settings YAML/JSON file and store it")
    p.add_argument("file")
    p.add_argument("--offline", action="store_true", help="skip the check against the live Intercom workspace")
    p = settings.add_parser("check", help="validate a settings file without storing it")
    p.add_argument("file")
    p = settings.add_parser("show", help="print a campaign's stored settings")
    p.add_argument("campaign_id")

    ws = sub.add_parser("workspace", help="Intercom workspaces").add_subparsers(dest="action", required=True)
    p = ws.add_parser("connect", help="store a workspace's access token (private app) and client secret")
    p.add_argument("workspace")
    p.add_argument("--token", default=os.environ.get("INTERCOM_TOKEN"))
    p.add_argument("--client-secret", default=os.environ.get("INTERCOM_CLIENT_SECRET"))
    p.add_argument("--api-base", default=None, help="regional API base, e.g. https://api.eu.intercom.io")

    rf = sub.add_parser("rf", help="Referral Factory").add_subparsers(dest="action", required=True)
    p = rf.add_parser("connect", help="store the RF API token and the webhook secret")
    p.add_argument("--token", default=os.environ.get("RF_TOKEN"))
    p.add_argument("--webhook-secret", default=os.environ.get("RF_WEBHOOK_SECRET"))

    dlq = sub.add_parser("dlq", help="dead-letter queue").add_subparsers(dest="action", required=True)
    dlq.add_parser("list", help="show failed work and why it failed")
    dlq.add_parser("replay", help="send failed work back to the queue")

    p = sub.add_parser("history", help="a person's link and history")
    p.add_argument("campaign_id")
    p.add_argument("rf_user_id")

    args = parser.parse_args(argv)
    if args.stage and rt is None:  # the stage's table, queues and secrets path, from its stack's outputs
        from .stage import use_stage_or_exit
        use_stage_or_exit(args.stage)
    rt = rt or Runtime(Config.from_env())
    try:
        if args.cmd == "settings" and args.action in ("apply", "check"):
            with open(args.file, encoding="utf-8") as fh:
                text = fh.read()
            if args.action == "check":
                from .domain.settings import parse_settings
                parse_settings(admin.load_document(text))
                print("settings are valid")
                return 0
            result = admin.apply_settings(rt, text, check_workspace=not args.offline)
            for warning in result.pop("warnings"):
                print(f"warning: {warning}", file=sys.stderr)
            _print(result)
        elif args.cmd == "settings":
            shown = admin.show_settings(rt, args.campaign_id)
            if shown is None:
                print(f"campaign {args.campaign_id} has no settings", file=sys.stderr)
                return 1
            _print(shown)
        elif args.cmd == "workspace":
            if not args.token:
                parser.error("--token (or INTERCOM_TOKEN) is required")
            rt.store.put_connection(args.workspace, args.token, args.client_secret, args.api_base)
            print(f"workspace {args.workspace} connected")
            if not args.client_secret:
                print("warning: no --client-secret (or INTERCOM_CLIENT_SECRET): Intercom's webhooks for this "
                      "workspace will be refused (401) until it is set", file=sys.stderr)
        elif args.cmd == "rf":
            if not args.token or not args.webhook_secret:
                parser.error("--token and --webhook-secret (or RF_TOKEN, RF_WEBHOOK_SECRET) are required")
            rt.store.put_rf_config(args.token, args.webhook_secret)
            print("Referral Factory connected")
        elif args.cmd == "dlq" and args.action == "list":
            _print(admin.dead_letters(rt))
        elif args.cmd == "dlq":
            print(f"{admin.replay_dead_letters(rt)} message(s) sent back to the work queue")
        elif args.cmd == "history":
            _print(admin.person_history(rt, args.campaign_id, args.rf_user_id))
    except SettingsError as exc:
        print("settings are invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
