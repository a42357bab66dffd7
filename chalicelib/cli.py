"""`bridge` — the operator's command line (./bridge: it finds a running `make run`; python -m chalicelib.cli: --stage or BRIDGE_* only).

Reads the same environment as the Lambdas (BRIDGE_TABLE, BRIDGE_QUEUE_URL, BRIDGE_DLQ_URL,
BRIDGE_SECRETS_PATH, INTERCOM_BASE_URL, RF_BASE_URL, AWS credentials/region). Secrets are asked for
(not echoed) in a terminal, else read from environment variables (or options, which land in the shell's
history), written to SSM Parameter Store, and never printed.
Every error is one line on stderr and a non-zero exit (BRIDGE_DEBUG=1 adds the traceback)."""
from __future__ import annotations

if __name__ == "__main__":    # `python -m chalicelib.cli`: a Ctrl-C while the CLI loads exits 130 quietly, as later
    from chalicelib.interrupts import exit_quietly_on_interrupt
    exit_quietly_on_interrupt()

import argparse
import ast
import contextlib
import dataclasses
import functools
import getpass
import io
import json
import os
import re
import shlex
import shutil
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from .adapters.aws_clock import AwsClock
from .adapters.dynamo import watch_clients
from .config import Config
from .domain import apps
from .domain.ids import is_id, not_an_id
from .domain.judge import DEAD_LETTER_DAYS
from .domain.oauth import TICKET_SECONDS
from .domain.settings import SettingsError
from .errors import WorkError, beside_fix, replay_parked
from .observability import uncounted
from .ports import Connection, RFConnection
from .ports.secrets import OAUTH_CLIENT_SECRET
from .ports.store import PAST_RUN_DAYS
from .runtime import Runtime
from .services import admin
from .services.connections import (NOT_REPEATED, OAUTH_NOTHING_GIVEN, RF_NOTHING_GIVEN, ConnectError,
                                   check_workspace_id, configure_oauth, connect_rf, connect_workspace,
                                   disconnect_workspace, list_workspaces, oauth_app, remove_app, spaces_refused)

if TYPE_CHECKING:
    from .services.dead_letters import Listing
    from .services.doctor import Report


class CliError(Exception):
    """A clear, one-line refusal."""


# Without a stage, the BRIDGE_* variables name the stack (./bridge sets them from a running `make run`).
# (`python -m chalicelib.cli` does not look for `make run`'s stack: only ./bridge finds it, so it is not said absent)
NO_STACK = ("no stack to talk to: ./bridge finds no local stack running (start one with `make run`), and no deployed "
            "one is named (--stage <stage>, or BRIDGE_STAGE; or BRIDGE_TABLE and the other BRIDGE_* variables)")


class _Parser(argparse.ArgumentParser):
    help_of: Optional[str] = None    # the command whose --help an error points to (else this parser's)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Options are taken only as spelt in full: an abbreviation a script relies on (`--reas` for `--reason`)
        # would become ambiguous, or another option, the day a command gains an option that begins the same.
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def parse_args(self, args=None, namespace=None):
        """argparse's own, but words left over point to the help of the command they were given to
        (`bridge rf connect --bogus` -> `bridge rf connect --help`): its name is of chosen words only."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.help_of = " ".join([self.prog] + [w for w in (getattr(parsed, "cmd", None),
                                                               getattr(parsed, "action", None)) if w])
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str):   # one line, not the usage block
        commands = next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)
        if commands is not None and message == f"the following arguments are required: {commands.dest}":
            message = f"give a command: {', '.join(commands.choices)}"     # `bridge`, `bridge sync`...
        elif message.startswith("unrecognized arguments: "):       # `bridge rf connect <token>`: never repeated
            words = message.split(": ", 1)[1].split(" ")
            named = [shown for w in words if (shown := _option_shown(w))]
            others = len(words) - len(named)
            message = "unrecognized arguments: " + ", ".join(named + [f"{others} word(s) not repeated here (a secret "
                                                                      "is given at the prompt, in its variable or "
                                                                      "with its option)"] * bool(others))
        elif message.startswith("ambiguous option: "):            # `--client=<secret>`: its name only
            typed, matches = message.split(": ", 1)[1].rsplit(" could match ", 1)
            message = f"ambiguous option: {_option_shown(typed) or '(not repeated)'} could match {matches}"
        else:                                                      # `bridge rf <token>`, `--json=<token>`: the same
            message = _TYPED.sub(lambda m: f"{m[1]} " + (m[2] if _WORD.fullmatch(v := ast.literal_eval(m[2]))
                                                         or v.isdigit() else "(not repeated)"), message)
        self.exit(2, f"bridge: {message} (see `{self.help_of or self.prog} --help`)\n")


# What a usage error may repeat of what was typed: a command's or an option's shape (a secret is neither).
_WORD = re.compile(r"[a-z][a-z-]{0,24}")
_OPTION = re.compile(r"--?[a-z][a-z-]{0,24}")
# argparse's messages that repeat a typed value, as its repr (in "" when it holds a ').
_TYPED = re.compile(r"(invalid choice:|invalid \w+ value:|ignored explicit argument) "
                    r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def _option_shown(typed: str) -> Optional[str]:
    """A typed word as a usage error may repeat it: an option's name, a value attached to it said as
    `=...`; None when it has no option's shape."""
    name = typed.split("=", 1)[0]
    return name + "=..." * ("=" in typed) if _OPTION.fullmatch(name) else None


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        hint = " (an example: docs/examples/campaign.yaml)" if path.endswith((".yaml", ".yml", ".json")) else ""
        raise CliError(f"{path}: no such file{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def _redact(text: str, secrets: list) -> str:
    for secret in secrets:
        if secret and secret.strip():      # a blank one is refused by name: its spaces are no secret
            text = text.replace(secret.strip(), "***")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bridge", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stage", default=os.environ.get("BRIDGE_STAGE"), help=STAGE_HELP)
    sub = parser.add_subparsers(dest="cmd", required=True)

    settings = sub.add_parser("settings", help="campaign settings").add_subparsers(dest="action", required=True)
    p = settings.add_parser("apply", help="validate a settings YAML/JSON file and store it")
    p.add_argument("file")
    p.add_argument("--offline", action="store_true", help="skip the check against the live Intercom workspace")
    p.add_argument("--move-workspace", action="store_true",
                   help="apply settings naming another workspace although people are linked in the stored one "
                        "(they no longer qualify)")
    _json_already(p)
    p.set_defaults(func=_settings_apply)
    p = settings.add_parser("check", help="validate a settings file without storing it")
    p.add_argument("file")
    _json(p)
    p.set_defaults(func=_settings_check)
    p = settings.add_parser("show", help="print a campaign's stored settings")
    p.add_argument("campaign_id")
    _json_already(p)
    p.set_defaults(func=_settings_show)
    p = settings.add_parser("delete", help="remove a campaign's settings (applied by mistake): its joins are then "
                                           "refused; its links and history are kept")
    p.add_argument("campaign_id")
    p.add_argument("--yes", action="store_true", help="confirm, when people of the campaign are already linked")
    _json(p)
    p.set_defaults(func=_settings_delete)

    ws = sub.add_parser("workspace", help="Intercom workspaces").add_subparsers(dest="action", required=True)
    p = ws.add_parser("connect", help="store a workspace's access token and client secret in SSM (what is not "
                                      "given is kept)",
                      description="Store a workspace's access token and its private app's client secret in SSM, "
                                  "the token checked with Intercom first. Given neither (option or variable), both "
                                  "are asked for in a terminal (Enter keeps a stored one). Giving one keeps the "
                                  "other as stored, without asking; one none is stored of is still asked for.")
    p.add_argument("workspace", help="the workspace's Intercom app id (its workspace id, e.g. vne310wv)")
    _secret_option(p, "--token", "INTERCOM_TOKEN", "the workspace's access token")
    _secret_option(p, "--client-secret", "INTERCOM_CLIENT_SECRET", "the private app's client secret (it signs "
                   "the workspace's webhooks; a public app's goes to `workspace oauth-app`)")
    p.add_argument("--api-base", default=None, help="regional API base, e.g. https://api.eu.intercom.io")
    _json(p)
    p.set_defaults(func=_workspace_connect)
    p = ws.add_parser("disconnect", help="delete a workspace's token and pause its work (settings, links and "
                                         "history are kept; its work waits in the dead-letter queue)")
    p.add_argument("workspace")
    _json(p)
    p.set_defaults(func=_workspace_disconnect)
    p = ws.add_parser("remove-app", help="stop verifying the webhooks of one app a workspace is connected through "
                                         "(a private app retired, or the public app uninstalled)",
                      description="A workspace connected through its private app and by OAuth through the public "
                                  "app takes the webhooks of both. Remove the one retired: its webhooks are "
                                  "refused from then on (the private app's client secret is deleted). Refused for "
                                  "the workspace's only app, and for the app whose token the worker uses.")
    p.add_argument("workspace")
    p.add_argument("app", choices=list(apps.MARKS), help="private: its own app (`workspace connect`); oauth: the "
                                                         "public app")
    _json(p)
    p.set_defaults(func=_workspace_remove_app)
    p = ws.add_parser("oauth-app", help="store the public Intercom app's client id and secret, so that admins "
                                        "can connect their workspace by OAuth (from a `workspace oauth-link`)",
                      description="Store the public Intercom app's client id and secret, for OAuth. Its secret "
                                  "is read from INTERCOM_OAUTH_CLIENT_SECRET; INTERCOM_CLIENT_SECRET (a private "
                                  "app's, for `workspace connect`) only when that is not set.")
    p.add_argument("--client-id", default=os.environ.get("INTERCOM_CLIENT_ID"),
                   help="the public app's client id; left out, it is read from INTERCOM_CLIENT_ID, else the stored "
                        "one is kept (needed the first time)")
    _secret_option(p, "--client-secret", "INTERCOM_OAUTH_CLIENT_SECRET (else INTERCOM_CLIENT_SECRET)",
                   "the public app's client secret")
    p.add_argument("--rotate-state-key", action="store_true",
                   help="replace the key that signs OAuth's `state` (after it may have leaked): sign-ins under way "
                        "are refused, with a page asking for a new link")
    _api_url_option(p)
    _json(p)
    p.set_defaults(func=_workspace_oauth_app)
    p = ws.add_parser("oauth-link", help="print a one-time link an admin opens to connect a workspace by OAuth "
                                         f"(it works once, for {TICKET_SECONDS // 60} minutes)",
                      description="Print a one-time OAuth start link, <api>/oauth/intercom/start?ticket=...: the "
                                  "start refuses any browser without one. It works once, for "
                                  f"{TICKET_SECONDS // 60} minutes; with --workspace, only that workspace can be "
                                  "connected with it.")
    p.add_argument("--workspace", default=None, help="the only workspace (its Intercom app id) the link may connect")
    _api_url_option(p)
    _json(p)
    p.set_defaults(func=_workspace_oauth_link)
    p = ws.add_parser("list", help="every workspace the bridge knows: its status, which secrets are set (never "
                                   "their values), the apps whose webhooks it takes and its campaigns")
    _json(p)
    p.set_defaults(func=_workspace_list)

    rf = sub.add_parser("rf", help="Referral Factory").add_subparsers(dest="action", required=True)
    p = rf.add_parser("connect", help="store the RF API token and the webhook secret in SSM (what is not given "
                                      "is kept)",
                      description="Store Referral Factory's API token (checked with RF first) and the webhook "
                                  "secret in SSM. Given neither (option or variable), both are asked for in a "
                                  "terminal (Enter keeps a stored one). Giving one keeps the other as stored, "
                                  "without asking; one none is stored of is still asked for.")
    _secret_option(p, "--token", "RF_TOKEN", "RF's API token")
    _secret_option(p, "--webhook-secret", "RF_WEBHOOK_SECRET", "the webhook's X-Bridge-Secret value")
    _json(p)
    p.set_defaults(func=_rf_connect)

    dlq = sub.add_parser("dlq", help="dead-letter queue").add_subparsers(dest="action", required=True)
    p = dlq.add_parser("list", help="every dead letter (or those --reason, --campaign, --workspace select, as a "
                                    "replay or discard by them takes): why it failed, whom it is about, counts by "
                                    "reason and campaign")
    p.add_argument("--show-payload", action="store_true", help="also print each message's payload (emails masked)")
    p.add_argument("--raw", action="store_true", help="with --show-payload: the payload as queued, emails included")
    p.add_argument("--reason", help="only dead letters whose reason contains this text")
    p.add_argument("--campaign", help="only dead letters of this campaign")
    _workspace_selector(p)
    _json(p)
    p.set_defaults(func=_dlq_list)
    p = dlq.add_parser("replay", help="send failed work back to the queue (all, or by reason or campaign)")
    p.add_argument("--reason", help="only dead letters whose reason contains this text")
    p.add_argument("--campaign", help="only dead letters of this campaign")
    _workspace_selector(p)
    p.add_argument("--all", action="store_true", help="every dead letter (the default without --reason/--campaign/"
                   "--workspace)")
    _json(p)
    p.set_defaults(func=_dlq_replay)
    p = dlq.add_parser("discard", help="take out for good dead letters that can never succeed (by reason or "
                                       "campaign), or searches a later one covered (--superseded), each person's "
                                       "history saying so")
    p.add_argument("--reason", help="only dead letters whose reason contains this text")
    p.add_argument("--campaign", help="only dead letters of this campaign")
    _workspace_selector(p)
    p.add_argument("--superseded", action="store_true", help="only failed searches of changed contacts a later "
                   "search covered (`bridge dlq list` says which)")
    p.add_argument("--yes", action="store_true", help="confirm: without it, only says how many would be discarded")
    _json(p)
    p.set_defaults(func=_dlq_discard)

    p = sub.add_parser("explain", help="everything the bridge knows of a person, across campaigns, in time order")
    p.add_argument("who", help="an email, a Referral Factory user id, or an Intercom contact id")
    _json(p)
    p.set_defaults(func=_explain)

    p = sub.add_parser("doctor", help="check a campaign against Intercom, Referral Factory and the bridge's records")
    p.add_argument("campaign_id")
    _json(p)
    p.set_defaults(func=_doctor)

    p = sub.add_parser("backfill", help="send the campaign's people in RF the bridge never applied (who joined "
                                        "before its settings, or while webhooks were refused; dry run unless --apply)")
    p.add_argument("campaign_id")
    p.add_argument("--apply", action="store_true", help="queue their joins (the same pipeline as the webhook), and "
                   "those ignored under `action: nothing` once the action creates; count the leads applied before the "
                   "campaign kept referral counts; take the value now of leads linked before the qualification rule "
                   "as their baseline; and check again the qualifications RF refused whose dead letter SQS deleted "
                   f"({DEAD_LETTER_DAYS} days; one whose lead was deleted in RF is marked: never checked again)")
    _json(p)
    p.set_defaults(func=_backfill)

    p = sub.add_parser("pointers", help="one-off maintenance: find the contact and email pointers earlier versions "
                                        "left naming someone their link no longer holds (a scan of the table's "
                                        "pointers; dry run unless --apply)")
    p.add_argument("--apply", action="store_true", help="take each stale reference off its pointer (only while the "
                   "link still does not hold it: a worker's write meanwhile is left) and record on links written "
                   "before `contact_workspace` existed the workspace of their contact's pointer")
    _json(p)
    p.set_defaults(func=_pointers)

    p = sub.add_parser("history", help="a person's link and history in one campaign (see also `explain`)")
    p.add_argument("campaign_id")
    p.add_argument("rf_user_id")
    _json_already(p)
    p.set_defaults(func=_history)

    sy = sub.add_parser("sync", help="contact sync: Intercom contacts enrolled as referrers").add_subparsers(
        dest="action", required=True)
    p = sy.add_parser("start", help="check, then start a sync run of a campaign (--dry-run: say what it would do)")
    p.add_argument("campaign_id")
    p.add_argument("--dry-run", action="store_true", help="create nothing: count who would be enrolled or skipped")
    p.add_argument("--json", action="store_true", help="JSON for machines (the dry run's answer is JSON anyway)")
    p.set_defaults(func=_sync_start)
    p = sy.add_parser("status", help="the latest run (and the latest full run, if a catch-up followed it): done / "
                                     "total, rate, ETA")
    p.add_argument("campaign_id")
    p.add_argument("--run", type=int, metavar="N", help="run N instead (its number as `sync start` said it)")
    p.add_argument("--json", action="store_true", help="JSON (the default when stdout is not a terminal)")
    p.add_argument("--watch", action="store_true", help="refresh every 2 s until the run ends (exit 1 when it "
                   "stopped without completing, or its page fails and waits in the dead-letter queue): on a terminal, "
                   "its line in place; as JSON (piped, or --json), one object a line each refresh")
    p.set_defaults(func=_sync_status)
    p = sy.add_parser("report", help="skips by reason with examples, and who left the source")
    p.add_argument("campaign_id")
    p.add_argument("--json", action="store_true", help="JSON (the default when stdout is not a terminal)")
    p.set_defaults(func=_sync_report)

    p = sub.add_parser("forget", help="erase a person (links, pointers, history, dead letters) by email")
    p.add_argument("email")
    _json_already(p)
    p.set_defaults(func=_forget)
    _stage_after_the_command(parser)
    return parser


STAGE_HELP = "a deployed stage (dev, prod): its resources are read from its CloudFormation stack"


def _stage_after_the_command(parser: argparse.ArgumentParser) -> None:
    """Each command takes --stage among its own options too (`bridge doctor 42 --stage prod`); unless given
    there, the one before the command (or BRIDGE_STAGE) stands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                if not any(isinstance(a, argparse._SubParsersAction) for a in command._actions):
                    command.add_argument("--stage", default=argparse.SUPPRESS, help=STAGE_HELP)
                _stage_after_the_command(command)


def _api_url_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-url", default=os.environ.get("BRIDGE_API_URL"),
                   help="the API's URL, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com/api (the webhook "
                        "URLs `make deploy` printed begin with it); left out: BRIDGE_API_URL (set by ./bridge on "
                        "`make run`), else the stage's deployed state (.chalice/deployed/<stage>.json, else the "
                        "one `make deploy` keeps in the stage's bucket)")


def _secret_option(p: argparse.ArgumentParser, option: str, env: str, what: str) -> None:
    p.add_argument(option, help=f"{what}; left out, it is read from {env}, else asked for (not echoed) in a "
                   "terminal. Given here, it lands in the shell's history: prefer the prompt, or a variable set "
                   "without typing its value on a command line")


ENTER_KEEPS = "Enter keeps the stored one"      # a prompt's empty answer, when one is stored
# The public app's client secret: its own variable first; INTERCOM_CLIENT_SECRET, which `workspace connect`
# reads for a private app's, as before.
OAUTH_SECRET_VARIABLES = ("INTERCOM_OAUTH_CLIENT_SECRET", "INTERCOM_CLIENT_SECRET")
# Each connect's secrets (and the public app's client id): its option, then the variables read in its place when the
# option is not given (the first one set). The connect reads them by this table (`_secrets`, `_secret`) and
# `_connect_unusable` checks them by it too, before the stage is read: a rename here reaches both.
RF_SECRETS = (("--token", "RF_TOKEN"), ("--webhook-secret", "RF_WEBHOOK_SECRET"))
WORKSPACE_SECRETS = (("--token", "INTERCOM_TOKEN"), ("--client-secret", "INTERCOM_CLIENT_SECRET"))
# (--client-id's default is INTERCOM_CLIENT_ID's value)
OAUTH_APP_SECRETS = (("--client-id",), ("--client-secret", *OAUTH_SECRET_VARIABLES))


def _secrets(args: argparse.Namespace, warnings: list[str], read: Callable[[], Optional[Connection | RFConnection]],
             table: tuple[tuple[str, str], ...], *described: tuple[str, Optional[str]]
             ) -> list[tuple[Optional[str], Optional[str]]]:
    """A connect's secrets, each (option, variable) of its `table` with (what it is, what Enter does when none is
    stored) of `described`, by `_secret`. Given none of them (option or variable), all are asked for. One given (a
    script run from a terminal, replacing a token) keeps the others as they are stored, without a prompt; one that
    none is stored of (a first connect, a disconnected workspace) is still asked for, in a terminal only. `read()`
    (the stored connection, whose secrets say which are kept) is called in a terminal only."""
    secrets = [(option, env, what, unkept) for (option, env), (what, unkept) in zip(table, described, strict=True)]

    @functools.cache
    def stored() -> frozenset[str]:
        connection = read()
        return connection.secrets if connection is not None else frozenset()
    none_given = not any(getattr(args, option.lstrip("-").replace("-", "_")) or os.environ.get(env)
                         for option, env, _, _ in secrets)
    return [_secret(args, option, env, what, warnings,      # `kept` is called, if at all, within `_secret`
                    kept=lambda: ENTER_KEEPS if option.lstrip("-") in stored() else unkept,
                    ask=none_given or (_terminal() and option.lstrip("-") not in stored()))
            for option, env, what, unkept in secrets]


def _secret(args: argparse.Namespace, option: str, env: str, what: str, warnings: list[str], *,
            kept: Callable[[], Optional[str]], ask: bool = True) -> tuple[Optional[str], Optional[str]]:
    """The secret of `option` (`args` gets it, so that no error can print it) and where it came from
    (`option`, `env`, "typed"; None: not given): the option's value, else `env`'s, else (`ask`) typed at
    a prompt without echo when stdin is a terminal; not a terminal: None (the service then names the
    variable to set). `kept()`, asked only to prompt: what an empty answer does, said in the prompt
    (None: it is refused). One that is not printable ASCII is refused, however it came, before anything
    is called or stored. An option given in a terminal warns that it is in the shell's history now;
    scripts that pass one are not nagged."""
    name = option.lstrip("-").replace("-", "_")
    value: Optional[str] = getattr(args, name)
    source: Optional[str] = option
    if value:
        if _terminal():
            warnings.append(f"{option} on the command line lands in the shell's history (and shows in `ps`): "
                            f"leave it out to be asked for it, or set {env}")
    elif os.environ.get(env):     # (one blank or with spaces around is refused before: _connect_unusable)
        value, source = os.environ[env], env
    else:
        value = _typed(what, kept) if ask else None
        source = "typed" if value else None
    setattr(args, name, value)
    if value and not (value.strip().isascii() and value.strip().isprintable()):  # spaces around: refused as such
        raise CliError(f"the {what} holds a character that is not plain ASCII (a pasted € or curly quote?): nothing "
                       "was stored")     # tokens and secrets are ASCII: an HTTP header could not carry it
    return value, source


NONE_GIVEN = "none given"     # where a secret came from that was not given: the text's word, and --json's `from`


def _said(state: str, source: Optional[str], checked: str = "") -> str:
    """A secret's state and where it came from, as the answers say it: `set (from INTERCOM_TOKEN,
    checked with Intercom)`, `set (typed)`, `kept (none given)`: a variable left over from an earlier
    shell shows, as it is what was stored."""
    came = "typed" if source == "typed" else f"from {source}" if source else NONE_GIVEN
    return f"{state} ({came}{checked if state == 'set' else ''})"


def _terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):     # no stdin, or a closed one
        return False


#: Where getpass writes its prompt when it can open it (else on stderr).
TTY = "/dev/tty"


def _end_prompt() -> None:
    """End the line of a prompt left unanswered, where getpass wrote it (it ends it only once answered). The
    terminal is opened as getpass opens it: never created, and never made the controlling one."""
    try:
        with open(os.open(TTY, os.O_WRONLY | os.O_NOCTTY | os.O_APPEND), "w", encoding="utf-8") as tty:
            tty.write("\n")
    except OSError:
        print(file=sys.stderr)


def _typed(what: str, keeping: Callable[[], Optional[str]]) -> Optional[str]:
    if not _terminal():
        return None
    kept = keeping()
    try:
        typed = getpass.getpass(f"{what[0].upper()}{what[1:]}" + (f" ({kept})" if kept else "") + ": ")
    except (EOFError, KeyboardInterrupt) as exc:     # Ctrl-D, Ctrl-C: what follows starts a line of its own
        _end_prompt()
        if isinstance(exc, KeyboardInterrupt):
            raise
        typed = ""
    if not typed and kept:
        return None
    if not typed.strip():
        raise CliError(f"the {what} cannot be empty: nothing was stored")
    refusal = spaces_refused(f"the {what}", what, typed)
    if refusal:
        raise CliError(refusal)
    return typed


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON for machines")


def _answer(args: argparse.Namespace, view: dict, text: str, warnings: Optional[list[str]] = None) -> None:
    """The answer on stdout: `view` as one JSON object with --json, else `text` for people. Given
    `warnings` (even none), the JSON answer holds them as `warnings` (stderr then carries errors only, as
    docs/operating.md says); people read them on stderr."""
    if args.json:
        _print(view if warnings is None else {**view, "warnings": warnings})
    else:
        print(text)
        for warning in warnings or []:
            print(f"warning: {warning}", file=sys.stderr)


def _json_already(p: argparse.ArgumentParser) -> None:
    """A command whose answer is JSON anyway takes --json too, as every answering command does."""
    p.add_argument("--json", action="store_true", help="its answer is JSON already (taken for scripts that pass it)")


def main(argv: list[str] | None = None, rt: Runtime | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):   # a terminal not in UTF-8: a dash shown as \u2014, not an error
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    file_only = args.func is _settings_check      # reads a file only: no stage, no runtime, no AWS
    unusable = _unusable(args)
    if unusable:                  # a command line it cannot take: exit 2, before any stack is looked for, as argparse's
        print(f"bridge: {unusable}", file=sys.stderr)
        return 2
    if args.stage and rt is None and not file_only:  # the stage's table, queues and secrets path, from its stack
        from .stage import use_stage_or_exit
        args.stack_outputs = use_stage_or_exit(args.stage)   # read once: the API's URL lookup takes them too
    if rt is None and not file_only and not os.environ.get("BRIDGE_TABLE"):
        print(f"bridge: {NO_STACK}", file=sys.stderr)
        return 1
    try:
        if file_only:
            return _settings_check(args, None)
        rt = rt or _runtime(Config.from_env())
        # No queue tries a command's calls again: a failure says no next retry, and a deferral by the shared
        # limiter says this command waits, not a worker (Runtime.waiter follows).
        rt.retried_later = False
        with uncounted():                # no metrics: Powertools would print them into the answer
            return args.func(args, rt)
    except SettingsError as exc:
        return _refused(args, "settings are invalid", {"valid": False}, exc.problems, 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except Exception as exc:  # one line, never a traceback (nor a secret)
        if os.environ.get("BRIDGE_DEBUG"):
            import traceback
            traceback.print_exc()
        if isinstance(exc, (CliError, ConnectError, admin.NotChecked)):
            message = str(exc)
        elif isinstance(exc, WorkError):
            message = exc.reason
        else:
            from .stage import aws_problem
            message = aws_problem(exc) or f"unexpected error: {type(exc).__name__}: {exc}"
        secrets = [getattr(args, k, None) for k in ("token", "client_secret", "webhook_secret")]  # typed ones too
        print(f"bridge: {_redact(message, secrets)}", file=sys.stderr)
        return 1


def _unusable(args: argparse.Namespace) -> Optional[str]:
    """Why the command line cannot be taken, as argparse refuses a word misspelt or an argument missing (exit 2,
    before any stack is looked for, nothing read): a campaign id no webhook can carry, refused as `settings check`
    refuses it (no settings name it), by every command taking one (doctor, backfill, history, settings show/delete,
    sync start/status/report; dlq replay/discard's --campaign); an argument given empty or blank (`explain ""`, a
    `"$VAR"` unset); a selector missing or blank (`dlq discard` without one; a blank `--reason` matches every
    letter); an option without the one it needs or beside one it excludes; `forget`'s email without an @; a workspace
    id or a URL a connect would refuse (`--api-base`, `--api-url`/BRIDGE_API_URL not https), a connect's secret (or
    client id) blank or with spaces around it, in its option or its variable; `rf connect` and
    `workspace oauth-app` given nothing to store outside a terminal (nothing is asked there); a stage (--stage or
    BRIDGE_STAGE) no stack can be named by (`"pr od"`, `Prod`). None when it can be taken."""
    for name, said in (("campaign_id", "campaign_id"), ("campaign", "--campaign")):
        campaign_id = getattr(args, name, None)
        if campaign_id is not None and not is_id(campaign_id):
            return f"{said}: {not_an_id(campaign_id)}"
    func = args.func
    if args.stage and func is not _settings_check:     # (a file's check reads no stage)
        from .stage import StageError, check_stage
        try:
            check_stage(args.stage)
        except StageError as exc:
            return str(exc)
    if func is _explain and _blank(args.who):
        return "explain whom? Give an email, a Referral Factory user id or an Intercom contact id"
    if func is _dlq_list and args.raw and not args.show_payload:
        return "--raw shows the payloads as queued: give it with --show-payload"
    if func is _dlq_replay and args.all and (args.reason is not None or args.campaign is not None
                                             or args.workspace is not None):
        return "--all replays every dead letter: give it alone, or filter with --reason / --campaign / --workspace"
    if func is _dlq_list and _blank(args.reason):     # (as a replay's: it would list every letter as matching)
        return ("list which dead letters? A blank --reason matches every letter: give --reason TEXT (a part of their "
                "reason), or leave it out to list every dead letter")
    if func is _dlq_replay and _blank(args.reason):   # (`--reason "$VAR"` with VAR unset: it would match every letter)
        return ("replay which dead letters? A blank --reason matches every letter: give --reason TEXT (a part of their "
                "reason), --campaign ID, or --all; nothing was sent back")
    if func is _dlq_discard and (_blank(args.reason) or not (args.reason or args.campaign or args.superseded
                                                              or args.workspace)):
        return ("discard which dead letters? Give --reason TEXT (a part of their reason, not blank: a blank one "
                "would match every letter), --campaign ID, --workspace ID and/or --superseded (`bridge dlq list` shows "
                "them); nothing was discarded")
    for name, said, wanted in _GIVEN_BLANK:
        if _blank(getattr(args, name, None)):
            return f"{said} is empty: give {wanted}"
    refused = _connect_unusable(args)
    if refused:
        return refused
    if func is _forget and "@" not in args.email:     # (never repeated: it may be a token pasted in its place)
        return f"`bridge forget` takes the person's email, e.g. ann@example.com: the value given has no @ ({NOT_REPEATED})"
    return None


def _connect_unusable(args: argparse.Namespace) -> Optional[str]:
    """Why a connect's command line cannot be taken (see _unusable), as the connect itself would refuse it."""
    func = args.func
    try:
        if func is _workspace_connect or func is _workspace_oauth_link and args.workspace is not None:
            check_workspace_id(args.workspace, getattr(args, "api_base", None))
        if func in (_workspace_oauth_app, _workspace_oauth_link) and args.api_url:
            from .services.oauth import check_api_url
            check_api_url(args.api_url)
    except ConnectError as exc:
        return str(exc)
    given = [(name, *_given(args, name, *variables)) for name, *variables in _connect_secrets(func)]
    for name, named, value in given:    # blank, or with spaces around: nothing could match it (refuse_blank's words)
        refusal = spaces_refused(named, name.replace("_", " "), value) if named else None
        if refusal:
            return refusal
    if _terminal():
        return None
    if func is _rf_connect and not any(named for _, named, _ in given):
        return RF_NOTHING_GIVEN
    if func is _workspace_oauth_app and not (args.rotate_state_key or any(named for _, named, _ in given)):
        return OAUTH_NOTHING_GIVEN
    return None


def _connect_secrets(func: Callable[..., int]) -> tuple[tuple[str, ...], ...]:
    """The secrets a connect takes (and the public app's client id), from its table (RF_SECRETS...): each its
    option's name in the arguments, then the variables read in its place when the option is not given."""
    table = {_rf_connect: RF_SECRETS, _workspace_connect: WORKSPACE_SECRETS,
             _workspace_oauth_app: OAUTH_APP_SECRETS}.get(func, ())
    return tuple((option.lstrip("-").replace("-", "_"), *variables) for option, *variables in table)


def _given(args: argparse.Namespace, name: str, *variables: str) -> tuple[Optional[str], Optional[str]]:
    """Where a secret is given (its option, else the first of its variables set) and its value; (None, None): not
    given (an option given empty is not: as a variable exported empty)."""
    if getattr(args, name):
        return "--" + name.replace("_", "-"), getattr(args, name)
    return next(((v, os.environ[v]) for v in variables if os.environ.get(v)), (None, None))


# The other arguments a command cannot take empty or blank (the option or argument, what it wants instead).
_GIVEN_BLANK = (("file", "the settings file's path",
                 "the path of a YAML or JSON file (an example: docs/examples/campaign.yaml)"),
                ("workspace", "the workspace", "its Intercom app id (its workspace id, e.g. vne310wv)"),
                ("rf_user_id", "the RF user id", "the person's Referral Factory user id"),
                ("email", "the email", "the person's email, e.g. ann@example.com"))


def _runtime(config: Config, local: Callable[[], float] = time.time) -> Runtime:
    """The command's runtime; refused before anything is asked when a URL it may send a token to is not https.
    It runs on AWS's time, as the workers do, whatever this computer's clock (`local`) says: it shares their
    rate budgets, whose slices are seconds of the callers' clocks (adapters/aws_clock.py)."""
    insecure = config.insecure()
    if insecure:
        raise CliError(f"{insecure} — fix this shell's environment or, with --stage, the stage's section of "
                       "infra/chalice-config.json, then `make deploy` (a variable set nowhere takes its default)")
    clock = AwsClock(local)
    rt = Runtime(config, clock=clock)
    watch_clients(clock.watch)                           # the table's answers say AWS's time
    return rt


def _reader_gone() -> int:
    """stdout's reader left (`bridge dlq list | head -1`): stop quietly, as Unix tools do when SIGPIPE
    ends them (exit 128 + 13). What Python still holds for stdout goes to /dev/null at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):                # not a real file (a test's capture)
        pass
    return 141


# --- the commands: each gets the parsed arguments and the runtime, and answers an exit code ------------
def _settings_check(args: argparse.Namespace, rt: Optional[Runtime]) -> int:
    checked, warnings = admin.check_settings(_read(args.file))
    _answer(args, {"valid": True, "campaign_id": checked.campaign_id, "workspace": checked.workspace,
                   "workspace_checked": False},
            "settings are valid" + (" (the live workspace was not asked: `settings apply` checks the attributes)"
                                    if warnings else ""), warnings)
    return 0


def _settings_apply(args: argparse.Namespace, rt: Runtime) -> int:
    try:
        result = admin.apply_settings(rt, _read(args.file), check_workspace=not args.offline,
                                      move_workspace=args.move_workspace)
    except admin.MovesWorkspace as exc:      # one line (--json: the refused check's answer, as docs/operating.md says)
        if args.json:
            return _refused(args, "", {"valid": False}, exc.problems, 1)
        raise CliError(exc.problems[0]) from None
    warnings = result.pop("warnings")
    _answer(args, result, json.dumps(result, indent=2, default=str), warnings)    # scripts read them in the JSON
    return 0


def _settings_show(args: argparse.Namespace, rt: Runtime) -> int:
    shown = admin.show_settings(rt, args.campaign_id)
    if shown is None:
        raise CliError(f"campaign {args.campaign_id} has no settings — apply them with `bridge settings apply <file>` "
                       "(an example: docs/examples/campaign.yaml; `bridge workspace list` names the campaigns that "
                       "have settings)")
    _print(shown)
    return 0


def _settings_delete(args: argparse.Namespace, rt: Runtime) -> int:
    try:
        done = admin.delete_settings(rt, args.campaign_id, confirmed=args.yes)
    except admin.NeedsConfirmation as exc:
        asked = (f"campaign {args.campaign_id} has {exc}: once its settings are deleted, its joins are refused and its "
                 "pending leads no longer checked — add --yes to delete them anyway (links and history are kept)")
        if args.json:          # the answer on stdout, as every refusal of a check under --json (exit 1 still)
            return _refused(args, "", {"campaign_id": args.campaign_id, "deleted": False}, [asked], 1)
        raise CliError(asked) from None
    if done is None:
        raise CliError(f"campaign {args.campaign_id} has no settings, nothing was deleted (the id must be exactly "
                       "the stored one: `bridge settings show <campaign_id>`)")
    _answer(args, {"campaign_id": done["campaign_id"], "deleted": True, **done},   # (`.deleted` either way)
            f"settings of campaign {args.campaign_id} deleted (version {done['deleted_version']}, "
            f"workspace {done['workspace']}): its joins are now refused (404 unknown_campaign)"
            + (f"; kept, with their history: {done['kept']}" if done["kept"] else ""))
    return 0


def _workspace_connect(args: argparse.Namespace, rt: Runtime) -> int:
    ws = args.workspace             # (its id and --api-base checked before the stage was read: _connect_unusable)
    warnings: list[str] = []
    (token, token_from), (client_secret, secret_from) = _secrets(
        args, warnings, lambda: rt.store.connections.workspace(ws), WORKSPACE_SECRETS,
        (f"Intercom access token for workspace {ws}", None),
        (f"Intercom app's client secret for workspace {ws}", "Enter skips it"))
    if not token and not client_secret and not args.api_base and _terminal():     # Enter at each prompt
        raise CliError(f"nothing was typed: workspace {ws}'s token and client secret are kept as they were")
    done = connect_workspace(rt, ws, token, client_secret, args.api_base)
    done["from"] = {"token": token_from or NONE_GIVEN, "client_secret": secret_from or NONE_GIVEN}
    named = f" ({done['name']})" if done["name"] else ""
    if done["client_secret"] == "missing":
        refused = ("the private app's webhooks" if done["apps"] else "Intercom's webhooks for this workspace")
        warnings.append(f"no client secret: {refused} will be refused (401) until it is set (`bridge workspace connect "
                        f"{ws}` asks for it)")
    also = " (the public app's webhooks verify too)" if apps.PUBLIC in done["apps"] else ""
    _answer(args, done, f"workspace {args.workspace}{named} connected: token "
            f"{_said(done['token'], token_from, ', checked with Intercom')}, client secret "
            f"{_said(done['client_secret'], secret_from)}{also}, api base {done['api_base']}", warnings)
    return 0


def _workspace_disconnect(args: argparse.Namespace, rt: Runtime) -> int:
    done = disconnect_workspace(rt, args.workspace)
    _answer(args, done, f"workspace {args.workspace} disconnected: its token is deleted; settings, links and "
            "history are kept. Its work now waits in the dead-letter queue (reason: workspace disconnected); after "
            f"{apps.reconnects(args.workspace, done['apps'])}, run `{replay_parked(args.workspace)}`. "
            "Running workers notice within 5 minutes. Uninstall the app in Intercom too, to revoke the token there.")
    return 0


def _workspace_remove_app(args: argparse.Namespace, rt: Runtime) -> int:
    done = remove_app(rt, args.workspace, args.app)
    left = ", ".join(apps.NAMES[a] for a in done["apps"])
    retire = ("delete the app in Intercom's Developer Hub" if args.app == apps.PRIVATE else
              "uninstall the public app from the workspace in Intercom (Settings > Apps)")
    _answer(args, done, f"workspace {args.workspace}: its {apps.NAMES[args.app]} is removed, its webhooks are refused "
            f"from now on (within a minute on running API containers); it is connected through its {left}"
            f"{', whose token the worker uses' if done['token_app'] else ''}. To stop Intercom sending them, {retire}.")
    return 0


def _workspace_oauth_app(args: argparse.Namespace, rt: Runtime) -> int:
    from .services.oauth import check_api_url, redirect_url
    api_url, unknown = (args.api_url, "") if args.api_url else _known_api_url(args.stage, _outputs(args))
    if api_url:
        check_api_url(api_url)               # before anything is stored
    warnings: list[str] = []
    option, *variables = OAUTH_APP_SECRETS[1]
    variable = next((name for name in variables if os.environ.get(name)), variables[0])
    stored: dict[str, Optional[str]] = {}     # what is stored, read once: by the prompt, else by configure_oauth

    def kept() -> Optional[str]:
        stored.update(oauth_app(rt, args.client_id))
        return ENTER_KEEPS if stored[OAUTH_CLIENT_SECRET] is not None else None
    client_secret, secret_from = _secret(args, option, variable, "public Intercom app's client secret",
                                         warnings, kept=kept, ask=not args.rotate_state_key)
    # (a missing client id is refused by oauth_app, before the secret is typed)
    if not args.client_id and not client_secret and not args.rotate_state_key and _terminal():   # Enter at the prompt
        raise CliError("nothing was typed: the public Intercom app's client id and secret are kept as they were")
    done = configure_oauth(rt, args.client_id, client_secret, stored, rotate_state_key=args.rotate_state_key)
    done["from"] = {"client_secret": secret_from or NONE_GIVEN}
    if secret_from == OAUTH_SECRET_VARIABLES[1]:
        warnings.append(f"the client secret came from {secret_from}, which `workspace connect` reads for a private "
                        f"app's: set {OAUTH_SECRET_VARIABLES[0]} for the public app's")
    done["redirect_url"] = redirect_url(api_url) if api_url else None
    register = (f"Register {done['redirect_url']} as the app's redirect URL" if api_url else
                f"Register <api>/oauth/intercom/callback as the app's redirect URL "
                f"({API_URL_UNKNOWN.format(unknown=unknown)})")
    relabelled = (f" Workspace(s) {', '.join(done['relabelled'])}, connected by OAuth with a copy of the public app's "
                  "client secret as their own, are now connected through the public app (the copies deleted)."
                  if done["relabelled"] else "")
    _answer(args, done, f"OAuth app stored: client id {done['client_id']}, client secret "
            f"{_said(done['client_secret'], secret_from)}, "
            f"state key {done['state_key']}.{ROTATED * (done['state_key'] == 'rotated')}{relabelled} {register}; "
            "`bridge workspace oauth-link` prints a one-time link for each admin who connects.", warnings)
    return 0


def _workspace_oauth_link(args: argparse.Namespace, rt: Runtime) -> int:
    from .services.oauth import mint_link
    done = mint_link(rt, args.api_url or _deployed_api_url(args.stage, _outputs(args)), args.workspace)
    which = f"workspace {done['workspace']} only" if done["workspace"] else "any workspace whose admin opens it"
    _answer(args, done, f"{done['url']}\nA one-time OAuth start link for {which}: it works once, until "
            f"{done['expires_at']} ({TICKET_SECONDS // 60} minutes). Whoever holds it can use it: send it to the "
            "admin only. Opening it spends nothing (mail scanners and chat previews cannot use it up): the "
            "admin's click on Continue to Intercom does.")
    return 0


ROTATED = (" Sign-ins under way (continued to Intercom with the old key, or within the minute running API containers "
           "keep it) are refused on their return from Intercom, with a page asking for a new link; links not yet "
           "continued still work (the key does not sign them).")
# Not known here: no stage is named, or neither this checkout (only the one that last ran `make deploy` of it) nor the
# stack's bucket holds its deployed state, which `chalice url` reads too. The URLs `make deploy` printed begin with the
# API's. {unknown}: why, when a stage was looked for.
API_URL_UNKNOWN = ("<api> is the API's URL, not known here{unknown}: the webhook URLs `make deploy` printed begin "
                   "with it, up to /api; with --api-url or BRIDGE_API_URL this command prints the whole redirect URL")


def _outputs(args: argparse.Namespace) -> Optional[dict[str, str]]:
    """The stage's stack outputs `--stage` read (main), if it did."""
    return getattr(args, "stack_outputs", None)


def _deployed_api_url(stage: Optional[str], outputs: Optional[dict[str, str]] = None) -> str:
    """The stage's API URL from Chalice's deployed state (`make deploy` keeps it in .chalice/deployed/ and in the
    stack's bucket)."""
    url, unknown = _known_api_url(stage, outputs)
    if not url:
        raise CliError(f"the API's URL is not known here{unknown}: give --api-url https://<id>.execute-api.<region>."
                       "amazonaws.com/api (the webhook URLs `make deploy` printed begin with it) or set BRIDGE_API_URL")
    return url


def _known_api_url(stage: Optional[str], outputs: Optional[dict[str, str]] = None) -> tuple[Optional[str], str]:
    """The stage's API URL: from Chalice's deployed state in this checkout (the one that last ran `make deploy` of
    the stage), else from the one `make deploy` keeps in the stack's bucket; and, when not known, why (" (...)").
    `outputs`: the stack's, when `--stage` read them (not asked again)."""
    from .stage import StageError, deployed_api_url, local_api_url
    if not stage:
        return None, ""
    url = local_api_url(stage)
    if url:
        return url, ""
    try:
        url, where = deployed_api_url(stage, outputs=outputs)
    except StageError as exc:
        return None, f" ({exc})"
    return url, "" if url else (f" (neither this checkout nor {where} holds stage {stage}'s deployed state naming its "
                                f"API: `make deploy STAGE={stage}` stores it there)")


def _workspace_list(args: argparse.Namespace, rt: Runtime) -> int:
    listed = list_workspaces(rt)
    lines = [f"{len(listed)} workspace(s)" + (": connect one with `bridge workspace connect <app_id>` (it asks for "
                                               "the token)"
                                               if not listed else "")]
    for w in listed:
        token = f" (token: {w['token_app']}'s)" if w["token_app"] else ""
        lines.append(f"- {w['workspace']}  {w['status']}  secrets set: {', '.join(w['secrets_set']) or 'none'}  "
                     f"apps: {', '.join(w['apps']) or 'none'}{token}  "
                     f"api base {w['api_base'] or 'default'}  campaigns: {', '.join(w['campaigns']) or 'none'}")
    _answer(args, {"workspaces": listed}, "\n".join(lines))
    return 0


def _rf_connect(args: argparse.Namespace, rt: Runtime) -> int:
    warnings: list[str] = []
    (token, token_from), (webhook_secret, secret_from) = _secrets(
        args, warnings, rt.store.connections.rf, RF_SECRETS,
        ("Referral Factory API token", None),
        ("Referral Factory webhook secret (the X-Bridge-Secret header's value)", None))
    if not token and not webhook_secret and _terminal():     # Enter at each prompt
        raise CliError("nothing was typed: Referral Factory's token and webhook secret are kept as they were")
    done = connect_rf(rt, token, webhook_secret, check=True)
    done["from"] = {"token": token_from or NONE_GIVEN, "webhook_secret": secret_from or NONE_GIVEN}
    warnings += [f"no {what} yet: {why} (`bridge rf connect` asks for it)" for name, what, why in (
        ("token", "token", "joins cannot be read from RF or qualified"),
        ("webhook_secret", "webhook secret", "RF's webhooks will be refused (503)")) if done[name] == "missing"]
    checked = ", checked with Referral Factory"
    _answer(args, done, f"Referral Factory connected: token {_said(done['token'], token_from, checked)}, webhook "
            f"secret {_said(done['webhook_secret'], secret_from)}", warnings)
    return 0


def _needs_dlq(rt: Runtime) -> None:
    if not rt.config.dlq_url:
        raise CliError("BRIDGE_DLQ_URL is not set: point the CLI at a stack (the stage's environment, or `make run`)")


def _workspace_selector(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", help="only dead letters of this Intercom workspace (its notifications', and its "
                   "campaigns' by their settings)")


def _dlq_list(args: argparse.Namespace, rt: Runtime) -> int:
    from .services import dead_letters

    _needs_dlq(rt)
    found = _look(args, rt)
    selected = _selectors(args)
    read = len(found.letters)
    if selected:                   # those a replay or discard by the same selectors takes
        taken = dead_letters.selection(rt, args.reason, args.campaign, workspace=args.workspace)
        found = dataclasses.replace(found, letters=[d for d in found.letters if taken(d)])
    listed = dead_letters.summary(found.letters, show_payload=args.show_payload, not_seen=found.not_seen,
                                  raw=args.raw, token_apps=dead_letters.token_apps(rt, found.letters))
    if selected:
        listed = {"total": listed.pop("total"), "read": read, **listed}
    if args.json:
        _print(listed)
        return 0
    print(f"{listed['total']} dead letter(s)" + (f" match {selected} (of {read} read)" if selected else ""))
    if found.cut:
        print(f"about {found.not_seen} more were not read ({dead_letters.CUT}): list again")
    elif found.not_seen:
        print(f"about {found.not_seen} more are hidden by another command ({dead_letters.HOLDERS}): list again "
              "when it ends")
    for title, key in (("by reason", "by_reason"), ("by campaign", "by_campaign")):
        if listed[key]:
            print(f"{title}:")
            for name, n in listed[key].items():
                print(f"  {n:>5}  {name}")
    for d in listed["dead_letters"]:
        who = " ".join(f"{k}={d[k]}" for k in ("campaign_id", "rf_user_id", "workspace", "contact_id", "email")
                       if d.get(k))
        print(f"- {d['message_id']}  {d.get('kind') or '?'}  {who}  tries={d.get('attempts', '?')}  "
              f"failed_at={d.get('failed_at', '?')}\n    {beside_fix(d['reason'], d.get('fix'))}"
              + (f"\n    fix: {d['fix']}" if d.get("fix") else ""))
        if args.show_payload:
            print("    payload: " + json.dumps(d.get("payload"), default=str))
    return 0


def _dlq_replay(args: argparse.Namespace, rt: Runtime) -> int:
    from .services import dead_letters

    _needs_dlq(rt)
    with progress_line(args) as draw:
        done = dead_letters.replay(rt, args.reason, args.campaign, progress=_letters(draw, "sent back"),
                                   workspace=args.workspace)
    _answer(args, done, f"{done['replayed']} message(s) sent back to the work queue"
            + (("; they" if done["delayed"] >= done["replayed"] else f"; {done['delayed']} of them")
               + f" run from about {_utc(done['runs_from'], rt.clock())}, when every worker has read the RF token "
               f"stored at {_utc(done['rf_token_stored_at'], rt.clock())}"
               + ("" if done["delayed"] >= done["replayed"] else " (the others, refused for the old RF token, at once)")
               if done.get("runs_from") else "")
            + (f"; {done['left']} left in the dead-letter queue (not matching)" if done["left"] else "")
            + (f"; up to {done['sent_late']} of them came back during a stall before they were taken out, and "
               "another command held them when the replay looked again: they may still be dead letters, and be "
               "sent again (harmless: a message that comes twice is worked once)" if done.get("sent_late") else ""))
    problems = []                  # one line, however many there are
    if done.get("refused"):
        problems.append(f"SQS refused {done['refused']} message(s) sent back to the work queue "
                        f"({'; '.join(done['refused_because'])}): they are still dead letters (`bridge dlq list` "
                        "shows them); fix the cause, then run `bridge dlq replay` again")
    _not_reached(done, "sent back", "replay", problems, "`bridge dlq replay` sends them again (harmless: a message "
                 "that comes twice is worked once)")
    return 0


def _utc(iso_text: str, now: float) -> str:
    """An ISO-8601 time of a few minutes from `now` as a clock reads it: HH:MM:SS UTC, with its date when not `now`'s
    day."""
    from .domain.history import iso
    return f"{'' if iso_text[:10] == iso(now)[:10] else iso_text[:10] + ' '}{iso_text[11:19]} UTC"


def _blank(value: Optional[str]) -> bool:
    """An argument given empty or as spaces (a `"$VAR"` unset): a `--reason` that selects nothing in particular (every
    reason holds it), a name or path that names nothing."""
    return value is not None and not value.strip()


def _not_reached(done: dict, undone: str, command: str, problems: list[str], again: str) -> None:
    """A replay's or a discard's letters SQS would not take out (`again`: what running it again does), and
    those it could not read (cut, or held by another command), after its other `problems`: one line for
    them all (exit 1), if any."""
    from .services import dead_letters

    if done.get("not_taken_out"):
        problems.append(f"SQS would not take {done['not_taken_out']} message(s) {undone} out of the dead-letter "
                        f"queue ({'; '.join(done['not_taken_out_because'])}): they are still dead letters, and "
                        f"{again}")
    if done.get("cut"):
        problems.append(f"about {done['not_seen']} more dead letter(s) were not read ({dead_letters.CUT}) and not "
                        f"{undone}: run `bridge dlq {command}` again")
    elif done["not_seen"]:
        problems.append(f"about {done['not_seen']} more dead letter(s) were hidden by another command "
                        f"({dead_letters.HOLDERS}) and not {undone}: run `bridge dlq {command}` again when it ends ({dead_letters.APPROXIMATE})")
    if problems:
        raise CliError("; ".join(problems))


def _dlq_discard(args: argparse.Namespace, rt: Runtime) -> int:
    from .services import dead_letters

    _needs_dlq(rt)
    if not args.yes:               # as `settings delete`: say what it would do, and ask for --yes
        found = _look(args, rt)
        taken = dead_letters.selection(rt, args.reason, args.campaign, args.superseded, args.workspace)
        n = sum(taken(d) for d in found.letters)
        if not n:                  # nothing to do (exit 0, as a replay matching nothing): say what there is
            _nothing_matches(args, found)
            return 0
        asked = (f"{n} dead letter(s) match: discarding takes them out for good (a replay can no longer bring them "
                 "back) — add --yes to discard them; nothing was discarded")
        if args.json:              # the answer on stdout, as every refusal of a check under --json (exit 1 still)
            return _refused(args, "", _letters_read(found, n), [asked], 1)
        raise CliError(asked)
    with progress_line(args) as draw:
        done = dead_letters.discard(rt, args.reason, args.campaign, args.superseded,
                                    progress=_letters(draw, "discarded"), workspace=args.workspace)
    if not (done["discarded"] or done.get("cut")):   # none of the letters read matched: said as without --yes
        _nothing_matches(args, _look(args, rt))
        return 0
    # Said of the people the letters named only (not a key of the answer): a search of changed contacts, an unreadable
    # message, names none, and "each person's history says so" would promise a note nobody gets.
    named = done.pop("named_people", 0)
    noted = ("each person's history says so" if named else
             "searches of changed contacts: they named no person" if args.superseded else "they named no person")
    _answer(args, done, f"{done['discarded']} dead letter(s) discarded ({noted})"
            + (f"; {done['left']} left in the dead-letter queue (not matching)" if done["left"] else "")
            + "".join(f"; sync run {r['run']} of campaign {r['campaign_id']} stopped at the discarded page "
                      f"(`bridge sync start {r['campaign_id']}` starts a new run)"
                      for r in done.get("stopped_sync_runs", [])))
    problems = []
    if done.get("discarded_late"):
        problems.append(f"up to {done['discarded_late']} of them came back during a stall before they were taken "
                        "out, and another command held them: they may still be dead letters; run `bridge dlq "
                        "discard` again")
    _not_reached(done, "discarded", "discard", problems, "`bridge dlq discard` run again takes them out")
    return 0


def _look(args: argparse.Namespace, rt: Runtime) -> "Listing":
    from .services import dead_letters

    with progress_line(args) as draw:
        return dead_letters.look(rt, progress=_letters(draw))


def _letters(draw: Callable[[str], None], acted: str = "") -> Callable[[int, int, Optional[int]], None]:
    """A dlq command's progress (services/dead_letters.Progress) drawn as its line: the letters read so far, then
    those `acted` on (sent back, discarded) of those matching."""
    def drawn(read: int, done: int, matching: Optional[int]) -> None:
        draw(f"{read:,} dead letter(s) read" + (f", {progress_bar(done, matching)} {acted}" if matching else ""))
    return drawn


def _nothing_matches(args: argparse.Namespace, found: "Listing") -> None:
    """No dead letter read matches the discard's selectors: said, with the `--reason` of each reason there
    is (as `dlq list` counts them); letters not read (hidden, or past the scan) may match: one line, exit 1."""
    from .services import dead_letters

    selected = _selectors(args)
    reasons = Counter(dead_letters.reason_part(d.reason) for d in found.letters).most_common()
    there = (f"the {len(found.letters)} there are: " + ", ".join(f"--reason {shlex.quote(r)} ({n})" for r, n in reasons)
             + " (`bridge dlq list` shows them)") if reasons else "the dead-letter queue is empty"
    _answer(args, _letters_read(found, 0), f"no dead letter matches {selected}: nothing to discard; {there}")
    _not_reached({"not_seen": found.not_seen, "cut": found.cut}, "discarded", "discard", [], "")


def _selectors(args: argparse.Namespace) -> str:
    """The selectors a `dlq` command was given, as typed again (empty: none)."""
    return " ".join(part for part in (args.reason is not None and f"--reason {shlex.quote(args.reason)}",
                                      args.campaign is not None and f"--campaign {args.campaign}",
                                      args.workspace is not None and f"--workspace {args.workspace}",
                                      getattr(args, "superseded", False) and "--superseded") if part)


def _letters_read(found: "Listing", matching: int) -> dict:
    """A discard's answer when it discards nothing (none matches, or --yes is not given): the letters read, those
    `matching`, and the count of each reason."""
    return {"discarded": 0, "left": len(found.letters), "matching": matching, "total": len(found.letters),
            "not_seen": found.not_seen, "by_reason": dict(Counter(d.shown_reason for d in found.letters).most_common())}


def _explain(args: argparse.Namespace, rt: Runtime) -> int:
    from .services import explain
    from .services.doctor import quick

    # (Intercom is asked about a contact id no link names: a duplicate's email; a store-only runtime asks nobody.
    # It answers the operator now, as doctor does: an outage is said at once, not waited out with the worker's retries)
    intercom = getattr(rt, "intercom", None)
    if intercom is not None:
        rt.config = quick(rt.config)
    found = explain.explain(rt, args.who, intercom=intercom)
    if args.json:
        _print(found.view())
    else:
        print(explain.as_text(found))
    return 0 if found.found else 1


def _doctor(args: argparse.Namespace, rt: Runtime) -> int:
    from .services import doctor

    rt.config = doctor.quick(rt.config)      # (before its clients are made: they read it then)
    report = doctor.examine(rt, args.campaign_id, dlq=bool(rt.config.dlq_url))
    if isinstance(rt.clock, AwsClock):
        _clock_finding(report, rt.clock)
    if args.json:
        _print(report.view())
    else:
        print(doctor.as_text(report))
    return 0 if report.ok else 1


CLOCK_TOLERATED = 1.0   # seconds off AWS's clock said as a warning (RF's budget allows 1 s for a call's way and clocks)


def _clock_finding(report: "Report", clock: AwsClock) -> None:
    """This computer's clock against AWS's: a warning when surely off by more than RF's budget tolerates."""
    if not clock.known:
        what = "AWS's answers said no time: the bridge ran on this computer's clock as it is"
    elif not clock.surely_off(0):
        what = f"this computer's clock agrees with AWS's (to ±{clock.error:.1f} s)"
    else:
        what = (f"this computer's clock is {abs(clock.offset):.1f} s {'ahead of' if clock.offset < 0 else 'behind'} "
                f"AWS's (±{clock.error:.1f} s): the bridge runs on AWS's time")
    if clock.known and not clock.surely_off(CLOCK_TOLERATED):
        return report.add("clock", True, what)
    report.add("clock", True, what, "the budgets shared with the workers count calls by the seconds of AWS's clock: "
               "the bridge corrects this computer's when AWS's answers say its time; other tools may not",
               "sync this computer's clock (e.g. `sudo hwclock -s` in WSL2, `w32tm /resync` on Windows)", warn=True)


def _backfill(args: argparse.Namespace, rt: Runtime) -> int:
    from .services.backfill import EXAMPLES, UNREADABLE, BackfillError, backfill

    def bar(read: int, total: Optional[int], queued: int) -> str:
        width = 30
        done = int(width * read / total) if total else 0
        shown = f"{read}/{total}" if total else str(read)
        return f"[{'#' * done}{'.' * (width - done)}] {shown} people read, {queued} " \
               f"{'queued' if args.apply else 'to send'}"

    try:
        with progress_line(args) as draw:
            result = backfill(rt, args.campaign_id, apply=args.apply, progress=lambda *read: draw(bar(*read)))
    except BackfillError as exc:
        raise CliError(str(exc)) from None
    view = result.view()
    if args.json:
        _print(view)
        return 0
    print(f"campaign {view['campaign_id']}: {view['people_in_rf']} people in Referral Factory"
          + (f"; it also listed {view['other_campaigns_ignored']} of other campaigns: ignored"
             if view["other_campaigns_ignored"] else "")
          + (" (dry run: nothing was sent; --apply sends them)" if view["dry_run"] else f", {view['queued']} queued")
          + (f", {view['counted']} counted for their referrer ({view['count_writes_queued']} count writes queued)"
             if view["counted"] else f", {view['count_writes_queued']} count writes queued"     # (an attribute changed)
             if view["count_writes_queued"] else ""))
    for outcome, n in view["outcomes"].items():
        print(f"  {n:>6}  {outcome}")
        # whom it names: those RF lists unreadably (the first EXAMPLES, and why), or whom it sends or counts
        named = view["unreadable"] if outcome == UNREADABLE else view["people"].get(outcome, [])[:EXAMPLES]
        for p in named:
            who = (f"RF user {p['rf_user_id']}" + (f" ({p['email']})" if p["email"] else "")
                   if p["rf_user_id"] else f"no RF id ({p['email'] or 'no email'})")
            why = f": {p['reason']}" if "reason" in p else \
                f", for referrer {p['referrer_id']}" if "referrer_id" in p else ""
            print(f"          - {who}{why}")
        if named and n > len(named):
            print(f"          … and {n - len(named)} more")
    return 0


def _pointers(args: argparse.Namespace, rt: Runtime) -> int:
    from .services.pointers import REFUSED, sweep

    with progress_line(args) as draw:
        result = sweep(rt.store, apply=args.apply,
                       progress=lambda read, found: draw(f"{read} pointers read, {found} found stale"))
    if args.json:
        _print(result)
    else:
        for finding in result["findings"]:
            what = finding.get("contact_id") or finding.get("email")
            print(f"{finding['pointer']} {finding['workspace']}/{what} -> campaign {finding['campaign_id']} RF user "
                  f"{finding['rf_user_id']}: {finding['stale']} ({finding['why']}) — {finding['outcome']}")
        cleaned, unfinished = result["to_clean"], result["erasures_unfinished"]
        print(f"{result['pointers_read']} pointers read ({result['references_read']} references): "
              + (f"{cleaned} to clean" if cleaned else "none to clean" if unfinished else "none stale")
              + (" (dry run: nothing was written; --apply cleans them)" if result["dry_run"] and cleaned else "")
              + (f"; {unfinished} erasure{'s' if unfinished != 1 else ''} unfinished, left for `bridge forget`"
                 if unfinished else ""))
        if result["changed_meanwhile"]:
            print(f"{result['changed_meanwhile']} {REFUSED}", file=sys.stderr)
    return 1 if result["changed_meanwhile"] else 0


def _history(args: argparse.Namespace, rt: Runtime) -> int:
    from .observability import mask_emails

    found = admin.person_history(rt, args.campaign_id, args.rf_user_id)
    if found["link"] is None and not found["history"]:
        if rt.store.settings.get(args.campaign_id) is None:
            raise CliError(f"campaign {args.campaign_id} has no settings here (and no history)")
        raise CliError(f"nothing is known about RF user {args.rf_user_id} in campaign "
                       f"{args.campaign_id}: no join of theirs was applied (`bridge explain {args.rf_user_id}` "
                       "shows a webhook of theirs the edge refused, if any), or they were forgotten")
    # as `explain` shows them (the table holds them: see docs/operating.md); their own email whatever its form
    _print(mask_emails(found, (found["link"] or {}).get("email")))
    return 0


def _forget(args: argparse.Namespace, rt: Runtime) -> int:
    from .services.privacy import QUEUED, forget
    done = forget(rt, args.email)
    queued = done["queued_work"]
    # Exit 0 all the same: the erasure happened; the warning says when to run it again.
    _answer(args, done, json.dumps(done, indent=2, default=str),
            [QUEUED.format(n=queued)] if isinstance(queued, int) and queued else [])
    return 1 if "dead_letters_not_seen" in done else 0      # some of their dead letters may remain


def _refused(args: argparse.Namespace, head: str, view: dict, problems: list[str], code: int) -> int:
    """Checks that failed: with --json, the answer on stdout (`view` and its `problems`), stderr empty; else
    `head:` on stderr, then one line per problem (as docs/operating.md shows them)."""
    if getattr(args, "json", False):
        _print({**view, "problems": problems})
        return code
    print(f"{head}:", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    return code


def _sync_stopped(args: argparse.Namespace, exc: Exception) -> int:
    view = {"campaign_id": args.campaign_id, "dry_run": bool(args.dry_run), "can_start": False}
    return _refused(args, "sync cannot start", view, getattr(exc, "problems", [str(exc)]), 1)


@contextlib.contextmanager
def progress_line(args: argparse.Namespace) -> Iterator[Callable[[str], None]]:
    """A long run's progress line, redrawn on stderr: on a terminal only, never under --json. Whatever ends
    the run (its answer, an error, Ctrl-C), the line is ended first: what follows starts a line of its own.
    Public: `make orders` draws its line with it and progress_bar too."""
    drawn = 0                 # the length of the line drawn, if any

    def draw(line: str) -> None:
        nonlocal drawn
        if not getattr(args, "json", False) and sys.stderr.isatty():
            print(_over(drawn, line, sys.stderr), end="", file=sys.stderr, flush=True)
            drawn = len(line)
    try:
        yield draw
    finally:
        if drawn:
            print(file=sys.stderr)


def _text(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and sys.stdout.isatty()


def _sync_start(args: argparse.Namespace, rt: Runtime) -> int:
    from .services import sync
    try:
        if args.dry_run:
            with progress_line(args) as draw:
                result = sync.dry_run(rt.deps, args.campaign_id, progress=lambda done, total: draw(
                    f"{progress_bar(done, total)} read"))
            _print(result)
            return 0
        run = sync.start(rt.deps, args.campaign_id)
    except sync.SyncStopped as exc:
        return _sync_stopped(args, exc)
    if args.json:
        _print({"campaign_id": args.campaign_id, "run": run.number, "source": run.source, "status": "started"})
        return 0
    print(f"sync run {run.number} of campaign {args.campaign_id} started ({run.source}); follow it with "
          f"`bridge sync status {args.campaign_id} --watch`")
    return 0


def progress_bar(done: int, total: Optional[int], width: int = 30) -> str:
    """`done` of `total` as a bar, the counts and the share (no total: the contacts done so far)."""
    if not total:
        return f"{done:,} contacts"
    share = min(1.0, done / total)
    return f"[{'#' * round(share * width)}{'.' * (width - round(share * width))}] {done:,}/{total:,} {share:.0%}"


def _synced(shown: Callable[[], dict]) -> dict:
    """The runs found as services/sync says them (shown_runs, report); none found is an error naming why."""
    from .services.sync import SyncStopped
    try:
        return shown()
    except SyncStopped as exc:
        raise CliError(str(exc)) from None


def _no_sync(found: dict) -> str:
    return f"{found['no_contact_sync']}. Its past runs:\n" if found.get("no_contact_sync") else ""


def _pause(seconds: float) -> None:
    """The wait between two refreshes of a watch (tests replace it)."""
    time.sleep(seconds)


def _sync_status(args: argparse.Namespace, rt: Runtime) -> int:
    from .domain.sync import FAILED
    from .services import sync
    shown = 0           # the length of the watched line drawn on the terminal, if any
    try:
        while True:
            found = sync.status(rt.deps, args.campaign_id, args.run)
            latest = rt.deps.sync.run(args.campaign_id) if found is None and args.run is not None else None
            if latest is not None:
                said = (f"'s sync run {args.run} is no longer kept (a past catch-up run, or a full run a newer one "
                        f"replaced, expires {PAST_RUN_DAYS} days after)") if 0 < args.run < latest.number \
                    else f" has no sync run {args.run}"
                raise CliError(f"campaign {args.campaign_id}{said} — `bridge sync status {args.campaign_id}` shows "
                               "its latest")
            found = _synced(functools.partial(sync.shown_runs, rt.deps, args.campaign_id, found))
            # A watch ends when the run does: exit 1 when it did not complete (its checks or RF's user limit stopped
            # it: `stopped: <why>`), or when its page failed and waits in the dead-letter queue (it goes on once
            # replayed)
            stalled = (found.get("page_error") or {}).get("state") == FAILED
            failed = stalled or found["status"] == "stopped"
            if not _text(args) and args.watch:        # JSON lines: one object a refresh, until the run ends
                print(json.dumps(found, default=str), flush=True)
                if found["status"] != "running" or stalled:
                    return 1 if failed else 0
                _pause(2)
                continue
            if not _text(args):
                _print(found)
                return 0
            if not args.watch or found["status"] != "running" or stalled:
                wipe = _over(shown) if args.watch else ""      # the watched line, wiped
                print(wipe + _no_sync(found) + _status_line(found) + _full_run(found))
                return 1 if failed and args.watch else 0
            line = _status_line(found, " · ")           # one line, redrawn: as long as the one before at least
            print(_over(shown, line), end="", flush=True)
            shown = len(line)
            _pause(2)
    except KeyboardInterrupt:
        if shown:      # Ctrl-C: the shell's prompt starts a line of its own
            print()
        raise


def _over(before: int, line: str = "", on: Any = None) -> str:
    """`line` drawn over the watched line before it (`before` characters long; 0: none), the cursor at its end: \r
    returns to the start of the terminal's row only, so one wider than the terminal, which wrapped, is cleared
    from its first row on (up, then to the end of the screen), not left above as a copy. `on`: the terminal's
    stream (stdout when None)."""
    if not before:
        return f"\r{line}"
    rows = -(-before // max(_columns(on or sys.stdout), 1))       # the rows it took
    if rows > 1:
        return f"\r\x1b[{rows - 1}A\x1b[J{line}"
    return f"\r{line:<{before}}" if line else f"\r{' ' * before}\r"


def _columns(stream: Any) -> int:
    """The width of the terminal `stream` is; else (none, or one that says 0) COLUMNS, or stdout's terminal, or 80
    (shutil's): stdout may be a file while stderr, which draws progress, is the terminal."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):      # (io.UnsupportedOperation is both)
        columns = 0
    # (0: a pty whose size was never set, e.g. under `script`: unknown, not 1 column wide)
    return columns or shutil.get_terminal_size().columns


def _status_line(found: dict, sep: str = "\n  ") -> str:
    """The run's line; its page's failure, while the queue retries it, after `sep` (a watch's: on the line)."""
    from .domain.sync import describe_counts, describe_page_error
    eta, rate, paused = found["eta_seconds"], found["rate_per_minute"], found.get("paused_seconds")
    per_minute = f"{rate:,.0f}" if rate is not None else ""
    line = (f"run {found['run']} ({found['kind']}, {found['source']}) {found['status']}: "
            f"{progress_bar(found['done'], found['total'])}"
            + (f" · {per_minute} contact{'' if per_minute == '1' else 's'}/min" if rate is not None else "")
            + (f" · ETA {eta // 60}m{eta % 60:02d}s" if eta is not None else "")
            + (f" · paused {paused // 60}m{paused % 60:02d}s in the dead-letter queue" if paused else "")
            + f" · {describe_counts(found)}" + _by_webhook(found))
    return line + (f"\n  stopped: {found['message']}" if found["message"] else "") + \
        (sep + describe_page_error(found["page_error"], found["campaign_id"]) if found.get("page_error") else "")


def _full_run(found: dict) -> str:
    """The latest full run (the one `sync start` began), when a scheduled catch-up followed it."""
    full = found.get("full_run")
    return f"\nlatest full run: {_status_line(full)}" if full else ""


def _by_webhook(found: dict) -> str:
    """Ongoing mode's contacts by webhook while the run was the latest: apart from the run's own."""
    from .domain.sync import apart, run_counts
    if not found.get("by_webhook"):
        return ""
    hooks = run_counts(found["by_webhook"])
    already, linked, skipped = hooks["already_enrolled"], hooks["linked"], hooks["skipped"]
    parts = [f"+{hooks['enrolled']:,} enrolled" + apart(hooks, "enrolled")] + \
        ([f"{already:,} already" + apart(hooks, "already_enrolled")] if already else []) + \
        ([f"{linked:,} link written later"] if linked else []) + ([f"{skipped:,} skipped"] if skipped else [])
    return f" · by webhook since: {', '.join(parts)}"


def _sync_report(args: argparse.Namespace, rt: Runtime) -> int:
    from .domain.sync import describe_counts, describe_page_error
    from .services import sync
    found = _synced(functools.partial(sync.report, rt.deps, args.campaign_id))
    if not _text(args):
        _print(found)
        return 0
    run = found["run"]
    print(f"{_no_sync(found)}run {run['run']} ({run['kind']}, {run['source']}) {run['status']}: "
          f"{describe_counts(run, 'already enrolled')}" + _by_webhook(run))
    if run["message"]:
        print(f"  stopped: {run['message']}")
    if run.get("page_error"):
        print(f"  {describe_page_error(run['page_error'], run['campaign_id'])}")
    if run.get("full_run"):
        print(_full_run(run).lstrip("\n"))
    if found.get("writes"):
        print(f"sync {found['writes']}")
    print("skipped contacts (all runs), by reason:" if found["skipped"] else "no contact was skipped")
    for group in found["skipped"].values():
        print(f"  {group['reason']}: {group['count']:,}")
        for ex in group["examples"]:
            print(f"    - contact {ex['contact_id']} {ex['email']}: {ex['detail']}")
    for group, words in ((found["without_link"], "enrolled without a referral link yet (all runs; each run asks "
                                                 "Referral Factory again)"),
                         (found["link_not_written"], "enrolled, their referral link not written to Intercom (all "
                                                     "runs; the next run writes it again)")):
        if group["count"]:
            print(f"{words}: {group['count']:,}")
            for ex in group["examples"]:
                print(f"    - contact {ex['contact_id']} {ex['email']}: {ex['detail']}")
    left = found["left"]
    if left["count"]:
        print(f"left the source since full run {left['since_run']}: {left['count']:,} ({left['note']})")
        for ex in left["examples"]:
            print(f"    - contact {ex['contact_id']} {ex['email']} (RF user {ex['rf_user_id']})")
    moved = found["moved"]
    if moved["count"]:
        print(f"enrolled from workspace{'s' if len(moved['workspaces']) > 1 else ''} {', '.join(moved['workspaces'])} "
              f"(the campaign moved to {moved['moved_to']}): {moved['count']:,} ({moved['note']})")
    return 0


def command(argv: list[str] | None = None) -> int:
    """The `bridge` command: stdout carries only the answer, so `| jq` works; stderr only its errors,
    one line each (the services' log lines are for the Lambdas, their errors too: what fails the command
    is its one line. BRIDGE_DEBUG shows them all)."""
    import logging

    from .observability import logger
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)
    logger.setLevel(logging.DEBUG if os.environ.get("BRIDGE_DEBUG") else logging.CRITICAL)    # (none is logged)
    try:
        try:
            code = main(argv)
        finally:
            sys.stdout.flush()                   # here, where a reader that left is caught, not at exit
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt:   # Ctrl-C while arguments are read or a stage is looked up
        return 130
    return code


if __name__ == "__main__":
    from chalicelib.interrupts import interrupts_raise
    interrupts_raise()
    sys.exit(command())
