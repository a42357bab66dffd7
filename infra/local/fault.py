"""`make fault ARGS="..."`: break the running `make run`'s simulated Intercom or Referral Factory, to
rehearse an incident (README "Rehearse an incident locally"). Drives the simulators' HTTP controls
(`/_sim/faults`, `/_sim/token`, `/_sim/log`: infra/local/sims/base.py); one line says what now happens.

    intercom 503 --for 120           every Intercom call answers 503 for two minutes
    rf 429 --retry-after 30 --for 60 RF throttles every call for a minute (Retry-After: 30)
    rf 500 --times 3                 RF's next 3 calls answer 500 (never applied)
    rf 500 --applied --path qualification   RF applies the next qualification, then answers 500
    rf drop                          RF applies the next call, then drops the connection (no answer)
    rf revoke-token                  RF refuses the bridge's token (401) and accepts a new one
    clear  |  rf clear               the outage is over (and the simulator accepts its usual token again)
    show                             what is pending on each simulator (and a token other than its usual one)
    rf log --user 1002 --method PUT --path qualification   the qualifications of RF user 1002 RF received,
                                     with its answers (`--last N`: the last N calls shown, default 50; without
                                     --user: everyone's; `log`: both simulators)
"""
from __future__ import annotations

if __name__ == "__main__":
    from infra.local import exit_quietly_on_interrupt
    exit_quietly_on_interrupt()

import argparse
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from infra.local.bridge_env import START, STATE, simulated_stack

SIMS = {"intercom": ("Intercom", "intercom_url"), "rf": ("Referral Factory", "rf_url")}
USUAL = {"intercom": "sim-token", "rf": "rf-token"}     # the token `make run` connects the bridge with
CLEAR = "clear with: make fault ARGS=clear"
BOTH = ("clear", "show", "log")      # commands of both simulators at once
USAGE = ('make fault ARGS="{intercom,rf} WHAT [options]"  |  make fault ARGS="clear|show|log [options]"\n'
         "       (or: .venv/bin/python -m infra.local.fault ... with the same arguments)")


class Refused(Exception):
    """What the simulator (or the stack) said no with: one line."""


def control_url(state: dict, sim: str) -> str:
    """The simulator's /_sim/ root: its host, outside the API it serves."""
    parts = urlsplit(str(state[SIMS[sim][1]]))
    return f"{parts.scheme}://{parts.netloc}/_sim"


def _call(state: dict, sim: str, method: str, path: str, body: Optional[dict] = None,
          query: Optional[dict] = None) -> Any:
    import requests

    try:
        answer = requests.request(method, control_url(state, sim) + path, json=body, params=query, timeout=5)
    except requests.ConnectionError:
        raise Refused(f"the {SIMS[sim][0]} simulator does not answer: {START}") from None
    except requests.RequestException as exc:        # a timeout: it runs, but answers nothing
        raise Refused(f"the {SIMS[sim][0]} simulator did not answer ({type(exc).__name__}): restart the stack "
                      "(make run)") from None
    try:
        found = answer.json()
    except ValueError:          # not the simulator that answers there
        raise Refused(f"{SIMS[sim][0]} simulator: answered {answer.status_code} without JSON at "
                      f"{control_url(state, sim)}{path}: is the stack's simulator what runs there? (make run)") from None
    if answer.status_code >= 400:
        error = found.get("error") if isinstance(found, dict) else None
        raise Refused(f"{SIMS[sim][0]} simulator: {error or answer.status_code}")
    return found


def connect(state: dict, sim: str, token: str) -> str:
    """The command that connects the bridge with `token`."""
    return (f"./bridge rf connect --token {token}" if sim == "rf" else
            f"./bridge workspace connect {state.get('workspace', '<workspace>')} --token {token}")


def other_tokens(state: dict, sim: str) -> list[str]:
    """The tokens the simulator accepts instead of its usual one (after `revoke-token`), or none."""
    tokens = _call(state, sim, "GET", "/token")["tokens"]
    return [] if USUAL[sim] in tokens else tokens


def accepted_token(state: dict, sim: str) -> str:
    """The token the simulator accepts now: its usual one until `revoke-token` replaced it (or when the
    simulator does not say: the caller's own call then meets what is wrong)."""
    try:
        others = other_tokens(state, sim)
    except (Refused, KeyError, TypeError):
        return USUAL[sim]
    return others[0] if others else USUAL[sim]


def restore_token(state: dict, sim: str) -> str:
    """The usual token accepted again (clear: back to normal): what the line adds, or "" when it always was."""
    others = other_tokens(state, sim)
    if not others:
        return ""
    _call(state, sim, "POST", "/token", {"token": USUAL[sim]})
    return (f", with its usual token {USUAL[sim]} again instead of {' and '.join(others)} (if you connected the "
            f"bridge with that one: {connect(state, sim, USUAL[sim])})")


def describe(fault: dict) -> str:
    """A pending fault, in words: which calls, what they get, for how long."""
    n, one = fault["times"], fault["times"] in (None, 1)
    calls = " ".join(filter(None, ["" if one else str(n), "" if fault["method"] == "*" else fault["method"],
                                   "call" if one else "calls",
                                   f"to a path matching {fault['path']!r}" if fault["path"] else ""]))
    subject = f"every {calls}" if n is None else f"the next {calls}"
    lasting = f" for {fault['seconds_left']:.0f} s" if n is None else ""
    if fault["kind"] == "lose":
        lost = "the connection dropped (no answer)" if fault["how"] == "drop" else f"answered {fault['how']}"
        return f"{subject}{lasting} is applied, then {lost}" if one else f"{subject} are applied, then {lost}"
    after = f" (Retry-After: {fault['retry_after']})" if "retry_after" in fault else ""
    return f"{subject} answer{'s' if one else ''} {fault['status']}{after}{lasting}"


def log(state: dict, sim: str, args: argparse.Namespace) -> str:
    """The calls the simulator received (those of --method and --path), the last --last of them, a line each."""
    if args.user is not None and sim != "rf":
        raise Refused("--user goes with rf log (Referral Factory's calls name its users)")
    found = _call(state, sim, "GET", "/log", query={"method": args.method.upper(), "path": args.path,
                                                    "last": str(args.last), "user": args.user})
    calls = " ".join(filter(None, ["" if args.method == "*" else args.method.upper(), "call(s)",
                                   f"to a path matching {args.path!r}" if args.path else "",
                                   f"about user {args.user}" if args.user is not None else ""]))
    shown = f" (the last {len(found['calls'])} shown)" if found["received"] > len(found["calls"]) else ""
    return "\n".join([f"{SIMS[sim][0]} simulator: received {found['received']} {calls}{shown}"]
                     + [f"  {datetime.fromtimestamp(c['time'], timezone.utc):%H:%M:%S} {c['method']} {c['path']} "
                        f"{c['status']}" + (f" (answer lost: {c['lost']})" if c.get("lost") else "")
                        + (f" (user {c['user']})" if c.get("user") and not c["path"].endswith(f"/{c['user']}") else "")
                        for c in found["calls"]])


def regex(text: str) -> str:
    """`--path`: a regular expression, or argparse's line naming the option."""
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular expression ({exc})") from None
    return text


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make fault", usage=USAGE, allow_abbrev=False, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n")[1])
    p.add_argument("sim", nargs="?", choices=[*SIMS, *BOTH], help="which simulator (or clear/show/log both)")
    p.add_argument("what", nargs="?", help="an error status (400-599), drop, revoke-token, clear, show or log")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--times", type=int, help="the next N calls (default 1)")
    group.add_argument("--for", dest="seconds", type=float, help="every call for S seconds")
    p.add_argument("--retry-after", type=int, help="with 429 (or 503): the Retry-After header, in seconds")
    p.add_argument("--applied", action="store_true", help="with 500: the call is applied, then answered 500")
    p.add_argument("--path", default="", type=regex, help="only calls whose API path matches this regex (e.g. qualification)")
    p.add_argument("--method", default="*", help="only calls of this method (GET, POST, PUT...)")
    p.add_argument("--user", metavar="ID", help="with rf log: only the calls about this RF user (e.g. her "
                   "qualifications)")
    p.add_argument("--last", type=int, default=50, metavar="N", help="with log: the last N calls shown (default 50)")
    p.add_argument("--token", help="with revoke-token: the token the simulator accepts from now on (default: a new one)")
    args = p.parse_args(argv)
    if args.sim in (*BOTH, None):
        if args.what is not None:
            p.error(f"{args.sim} takes no more arguments")
        args.sim, args.what = None, args.sim or "show"
    elif args.what is None:
        p.error(f"what should {args.sim} do? e.g. make fault ARGS=\"{args.sim} 503 --for 60\"")
    return args


def run(state: dict, args: argparse.Namespace) -> str:
    """Do what the command line asks; the line to print."""
    sims = [args.sim] if args.sim else list(SIMS)
    if args.what == "show":
        return "; ".join(f"{SIMS[s][0]} simulator: " + (", ".join(map(describe, found)) if found else "no faults")
                         + (f", refuses the usual token {USUAL[s]} (401) and accepts {' and '.join(others)}"
                            if others else "")
                         for s in sims for found in [_call(state, s, "GET", "/faults")["faults"]]
                         for others in [other_tokens(state, s)])
    if args.what == "log":
        return "\n".join(log(state, s, args) for s in sims)
    if args.what == "clear":
        cleared = {s: _call(state, s, "DELETE", "/faults")["cleared"] for s in sims}
        return "; ".join(f"{SIMS[s][0]} simulator: " + ("no faults" if n == 0 else f"{n} fault{'s' * (n > 1)} cleared")
                         + " — it answers normally" + restore_token(state, s) for s, n in cleared.items())
    name = SIMS[args.sim][0]
    if args.what == "revoke-token":
        found = _call(state, args.sim, "POST", "/token", {"token": args.token} if args.token else {})
        refused, token = " and ".join(found["refused"]) or "no other token", found["token"]
        # (Intercom's refusal of a connected workspace's token: its work waits for the reconnect, then goes on)
        then = (", then ./bridge dlq replay" if args.sim == "rf" else
                " (the work waiting for it then goes on by itself, no replay)")
        return f"{name} simulator: refuses {refused} now (401) and accepts {token}: {connect(state, args.sim, token)}{then}"
    spec: dict = {"method": args.method.upper(), "path": args.path}
    if args.seconds is not None:
        spec["seconds"] = args.seconds
    elif args.times is not None:
        spec["times"] = args.times
    if args.what == "drop":
        spec["lose"] = "drop"
    elif args.what.isdigit():
        if args.applied:
            if args.what != "500":
                raise Refused("--applied goes with 500 (the call applied, then answered 500), or use drop")
            spec["lose"] = "500"
        else:
            spec["status"] = int(args.what)
        if args.retry_after is not None:
            spec["retry_after"] = args.retry_after
    else:
        raise Refused(f"{args.what!r}: give an error status (e.g. 503, 429, 401), drop, revoke-token, clear or show")
    fault = _call(state, args.sim, "POST", "/faults", spec)
    return f"{name} simulator: {describe(fault)} — {CLEAR}"


def main(argv: list[str], state_file: Path = STATE) -> int:
    args = parse(argv)
    state = simulated_stack(state_file, "make fault breaks the simulators")
    if state is None:
        return 1
    try:
        print(run(state, args))
    except Refused as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
