"""The README and docs/ say what the code does, checked mechanically: a user configures, deploys and operates the
bridge from the docs alone (the README and docs/*.md, read through tests/support/docs.py). Each test guards one
class of drift: an environment variable, a `bridge` command or option, a `make` target or knob, a cited file or name
that the code no longer has (or never had), or one the code has and the docs do not name."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import shlex
import subprocess

from tests.support.docs import docs, docs_text, section

from .conftest import ROOT

DOCS = docs()
ALL = docs_text()         # the README and docs/*.md: a fact moved between them stays guarded
FILES = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def _code(*roots: str) -> str:
    return "\n".join((ROOT / f).read_text(encoding="utf-8") for f in FILES
                     if f.endswith(".py") and f.startswith(roots))


def _spans(text: str) -> list[tuple[int, str]]:
    """Each inline code span (a span broken over a code block's comment lines joined again) and each line of a
    fenced block (continued lines joined), with its line number."""
    out, fence, held = [], False, ""
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            held = f"{held} {line.strip()}" if held else line.strip()
            if held.endswith("\\"):
                held = held[:-1]
                continue
            out.append((n, held))
            held = ""
    prose = re.sub(r"```.*?```", lambda b: "\n" * b[0].count("\n"), text, flags=re.S)
    for m in re.finditer(r"``(.+?)``|`([^`]+)`", prose, flags=re.S):      # ``a `quoted` answer``, `a span`
        out.append((prose.count("\n", 0, m.start()) + 1, re.sub(r"\n\s*#?\s*", " ", m[1] or m[2])))
    # a code block's comment may quote a command in backticks over several lines (`... \n # ...`)
    for m in re.finditer(r"```.*?```", text, flags=re.S):
        block = re.sub(r"\n\s*#\s*", " ", m[0])
        for s in re.finditer(r"`([^`\n]+)`", block.strip("`")):
            out.append((text.count("\n", 0, m.start()) + 1, s[1]))
    return out


# ---------------------------------------------------------------------------------------------------------------
# environment variables
# ---------------------------------------------------------------------------------------------------------------

def _rows() -> dict[str, tuple[str, str]]:
    """The docs' table of environment variables: each name, its default as written and its meaning."""
    return {name: (cells[2].strip().strip("`"), "|".join(cells[3:]))
            for line in section("Environment variables").splitlines()
            if line.startswith("| `") for cells in [line.split("|")]
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1])}


def _table() -> dict[str, str]:
    return {name: default for name, (default, _) in _rows().items()}


class _Reading(dict):
    """An empty environment that notes each name asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return default

    def __getitem__(self, key):
        self.asked.add(key)
        raise KeyError(key)


#: Read by a library, not by our code: Powertools (its log level), requests (the proxies and the CA bundle).
READ_BY_LIBRARIES = {"POWERTOOLS_LOG_LEVEL", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE"}


def test_every_variable_the_configuration_reads_has_a_row_in_the_readmes_table():
    from chalicelib.config import Config
    env = _Reading()
    Config.from_env(env)
    assert len(env.asked) > 20
    assert sorted(env.asked - set(_table())) == []


def test_each_default_the_readmes_table_states_is_the_codes():
    """Set to what the table says is its default, a variable changes nothing (a default changed in the code and
    not in the README, or the other way round, would); a default written beside its variable in the code
    (`os.environ.get("RECONCILE_EVERY_MINUTES", "15")`, app.py's schedule) is the table's too."""
    from chalicelib.config import Config
    env, table = _Reading(), _table()
    Config.from_env(env)
    local = {name for name, (_, meaning) in _rows().items() if "`make run` only" in meaning}
    stated = {name: said for name, said in table.items() if said and said != "per stage"}
    checked = {name: Config.from_env({name: said}) == Config.from_env({})
               for name, said in stated.items() if name in env.asked and name not in local}
    assert len(checked) > 15 and [name for name, same in checked.items() if not same] == []
    beside = re.findall(r'environ\.get\("([A-Z][A-Z0-9_]+)", "([^"]*)"\)', _code("chalicelib/", "app.py", "infra/"))
    assert {"RECONCILE_EVERY_MINUTES", "RECONCILE_EVERY_SECONDS"} <= {name for name, _ in beside}
    assert [(name, default, stated[name]) for name, default in beside
            if name in stated and default != stated[name]] == []


def test_every_bridge_variable_the_code_reads_has_a_row_and_every_row_is_read():
    """BRIDGE_* are the bridge's own settings, read by the functions, the CLI and `make deploy`: each has a row
    (`BRIDGE_DEBUG` had none). And each row names a variable something reads: a renamed one leaves its row
    describing a setting nothing reads."""
    code = _code("chalicelib/", "app.py", "infra/", "bench/")
    read = set(re.findall(r'"(BRIDGE_[A-Z0-9_]+)"', _code("chalicelib/", "app.py", "infra/deploy.py")))
    assert len(read) > 15
    assert sorted(read - set(_table())) == []
    assert sorted(name for name in _table() if f'"{name}"' not in code and name not in READ_BY_LIBRARIES) == []


def test_every_bridge_variable_the_docs_name_is_one_the_code_reads():
    from infra.local.chaos.harness import ChaosConfig
    code = _code("chalicelib/", "app.py", "infra/", "bench/")
    code += " ".join(f'"{f.name.upper()}"' for f in dataclasses.fields(ChaosConfig))     # `make chaos` knobs
    named = {(doc, name) for doc, text in DOCS.items() for name in re.findall(r"\b(BRIDGE_[A-Z0-9_]+)\b", text)}
    assert len(named) > 15
    assert sorted((doc, name) for doc, name in named if f'"{name}"' not in code) == []


# ---------------------------------------------------------------------------------------------------------------
# the `bridge` CLI
# ---------------------------------------------------------------------------------------------------------------

def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for name, command in (subs[0].choices.items() if subs else ()):
        yield from _commands(command, path + (name,))


BRIDGE_LINE = re.compile(r'^(?:\$ )?(?:[A-Z_]+=\S* )*(?:(?:\./bridge|bridge)(?=\s)|make bridge ARGS=")(.*)')


def _shown() -> list[tuple[str, int, str]]:
    """Each `bridge ...` command line the docs show (./bridge, bridge, make bridge ARGS="..."): the words after
    `bridge`, a <placeholder> as one word, without a trailing comment, pipe or redirect."""
    found = []
    for doc, text in DOCS.items():
        for n, span in _spans(text):
            for m in BRIDGE_LINE.finditer(span):
                words = re.split(r"\s+#\s|\s+\|\s|\s+>\s|\s+&&\s|\s+2>", m[1])[0]
                if "ARGS=" in m[0]:
                    words = words.split('"')[0]
                words = re.sub(r"<[^>]*>", "X", words).strip().rstrip(")").replace("...", "")
                found.append((doc, n, words))
    return found


def test_every_bridge_command_the_docs_show_parses_with_the_cli():
    """An option renamed or dropped, a command moved: the docs' example exits 2 ("unrecognized arguments",
    "invalid choice"). A command named without its arguments in prose (`bridge doctor`) is not a usage."""
    from chalicelib.cli import _parser
    parser, shown, refused = _parser(), _shown(), []
    assert len(shown) > 150
    for doc, n, words in shown:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(shlex.split(words))
        except SystemExit as exit:
            said = err.getvalue()
            if exit.code and "the following arguments are required" not in said and "give a command" not in said:
                refused.append(f"{doc}:{n}: bridge {words} -> {said.strip()}")
    assert refused == [], "\n".join(refused)


def test_every_make_fault_the_docs_show_parses():
    """The incident rehearsals (`make fault ARGS="rf 429 --retry-after 30 --for 60 --path qualification"`) as
    infra/local/fault.py parses them."""
    from infra.local import fault
    shown = [(doc, n, m[1] or m[2]) for doc, text in DOCS.items() for n, span in _spans(text)
             for m in re.finditer(r'^make fault ARGS=(?:"([^"]*)"|(\S+))', span)]
    assert len(shown) > 8
    refused = []
    for doc, n, words in shown:
        if words != "...":
            try:
                with contextlib.redirect_stderr(io.StringIO()) as err:
                    fault.parse(shlex.split(words))
            except SystemExit:
                said = err.getvalue().strip().splitlines()[-1]
                refused.append(f"{doc}:{n}: make fault ARGS=\"{words}\" -> {said}")
    assert refused == [], "\n".join(refused)


def test_every_cli_command_and_option_is_in_the_readme():
    """A command or an option added to the CLI and not to the docs is one an operator never learns of."""
    from chalicelib.cli import _parser
    flat = " ".join(ALL.split())
    missing = []
    for path, command in _commands(_parser()):
        if not re.search(r"bridge (?:--stage \S+ )?" + re.escape(" ".join(path)) + r"\b", flat):
            missing.append(" ".join(path))
        missing += [f"{' '.join(path)} {option}" for a in command._actions for option in a.option_strings
                    if option.startswith("--") and option != "--help" and not re.search(re.escape(option) + r"\b",
                                                                                         flat)]
    assert missing == [], "\n".join(missing)


# ---------------------------------------------------------------------------------------------------------------
# make
# ---------------------------------------------------------------------------------------------------------------

MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def test_every_make_target_and_knob_the_docs_show_is_the_makefiles():
    """`make <target> KNOB=value` as the docs show it: the target exists, and the Makefile passes the knob on (a
    knob it does not pass is silently ignored: the run is not the one the docs describe). An option after the
    target is make's own (`make bench --only throughput`: "make: unrecognized option"): it goes in ARGS or
    BENCH_ARGS."""
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, flags=re.M))
    knobs = set(re.findall(r"\$\(([A-Z_]+)\)", MAKEFILE)) | _chaos_knobs()
    # make hands a command line's variables to the recipe's environment: `make run LOGS=json`
    knobs |= set(re.findall(r'(?:environ|env)(?:\.get\(|\[)"([A-Z_]+)"', _code("infra/local/")))
    shown = [(doc, n, m[1], m[2], m[3]) for doc, text in DOCS.items() for n, span in _spans(text)
             for m in re.finditer(r"^(?:\$ )?(?:[A-Z_]+=\S* )*make ([a-z]+)((?: [A-Z_]+=\S*)*)( -\S+)?", span)]
    assert len(shown) > 40
    unknown = [f"{doc}:{n}: make {target}" for doc, n, target, *_ in shown if target not in targets]
    unknown += [f"{doc}:{n}: make {target}{option}" for doc, n, target, _, option in shown if option]
    unknown += [f"{doc}:{n}: make {target} {knob}" for doc, n, target, given, _ in shown
                for knob in re.findall(r"([A-Z_]+)=", given) if knob not in knobs and knob != "KNOB"]
    assert unknown == [], "\n".join(unknown)


def test_every_make_target_is_in_the_readme():
    """What `make` offers, the docs show (install and clean go without saying: every target installs)."""
    phony = set(re.search(r"^\.PHONY: (.*)$", MAKEFILE, flags=re.M)[1].split()) - {"install", "clean"}
    assert len(phony) > 8
    assert sorted(t for t in phony if not re.search(rf"`make {t}\b|^make {t}\b", ALL, flags=re.M)) == []


def _chaos_knobs() -> set[str]:
    return set(re.search(r"CHAOS_KNOBS := (.*?)\nchaos:", MAKEFILE, flags=re.S)[1].replace("\\", " ").split())


def test_make_chaos_passes_on_every_knob_of_the_chaos_config_and_docs_chaos_lists_each():
    """The Makefile says "Any knob of ChaosConfig, upper-case", but passes on only those it lists: `make chaos
    LOST=0.3 SIGNUPS=0.5` (docs/chaos.md's lost-notification runs) ran with neither. docs/chaos.md's table of
    knobs lists them all, each with its default."""
    from infra.local.chaos.harness import ChaosConfig
    fields = {f.name.upper(): f.default for f in dataclasses.fields(ChaosConfig)}
    assert sorted(set(fields) ^ _chaos_knobs()) == []
    table = DOCS["docs/chaos.md"].split("## Knobs")[1].split("\n## ")[0]
    rows, malformed = {}, []
    for line in table.splitlines():
        if line.startswith("| `"):
            names, defaults = re.findall(r"`([A-Z][A-Z_]*)`", line.split("|")[1]), line.split("|")[2].split(",")
            if len(defaults) == len(names):
                rows.update(zip(names, [d.strip() for d in defaults]))
            elif len(names) > 1:          # (one knob may say its default in words, commas and all)
                malformed.append(line)
            else:
                rows[names[0]] = ""
    assert malformed == [], "a row naming several knobs gives one default each, in their order"
    assert sorted(set(fields) ^ set(rows)) == []
    numbers = {name: float(said) for name, said in rows.items() if re.fullmatch(r"[0-9.]+", said)}
    assert len(numbers) > 20
    assert {name: float(fields[name]) for name in numbers} == numbers


# ---------------------------------------------------------------------------------------------------------------
# files and names cited
# ---------------------------------------------------------------------------------------------------------------

TOP = ("chalicelib", "infra", "tests", "docs", "bench")
UNDER = ("services", "domain", "adapters", "ports")     # cited relative to chalicelib/
CITED = re.compile(r"(?<![\w/$.-])((?:(?:" + "|".join(TOP + UNDER) + r")/(?:[\w-]+/)*[\w-]*"
                   r"(?:\.(?:py|md|yaml|yml|json|ini|txt|sh))?)|[\w-]+\.py)(?:(::|:|\.)(\w+))?(?![\w/])")


def _exists(path: str) -> bool:
    path = path.rstrip("/")
    return any(f == path or f.startswith(path + "/") for f in FILES)


def _defines(path: str, name: str) -> bool:
    text = (ROOT / path).read_text(encoding="utf-8")
    return bool(re.search(rf"^\s*(?:async )?(?:def|class) {name}\b|^\s*{name}\s*[:=]", text, flags=re.M))


def _candidates(cited: str) -> list[str]:
    """The checked-in files or folders a citation can mean: as written, under chalicelib/ (`services/join.py`), a
    module named with one of its members (`services/join.process_joins`), a bare file name anywhere
    (`test_store.py`)."""
    if "/" not in cited:
        return [f for f in FILES if f == cited or f.endswith("/" + cited)]
    root = "chalicelib/" if cited.startswith(UNDER) else ""
    return [root + c for c in (cited, cited + ".py") if _exists(root + c)]


def test_every_file_test_and_name_the_docs_cite_exists():
    """`chalicelib/x.py`, `services/join.process_joins`, `tests/a/test_b.py::test_c`, `harness.py:ChaosConfig`: a
    file moved or a function renamed leaves the docs pointing at nothing (the README named
    `services/join.process_join`, which became `process_joins`)."""
    missing, checked = [], 0
    for doc, text in DOCS.items():
        for n, span in _spans(text):
            for m in CITED.finditer(span):
                cited, name = m[1], m[3]
                if m[2] == "." and name == "py":
                    cited, name = cited + ".py", None
                checked += 1
                found = _candidates(cited)
                if not found:
                    missing.append(f"{doc}:{n}: {m[0]}")
                elif name and not any(f.endswith(".py") and _defines(f, name) for f in found):
                    missing.append(f"{doc}:{n}: {m[0]} (no {name} there)")
    assert checked > 80
    assert missing == [], "\n".join(missing)


# ---------------------------------------------------------------------------------------------------------------
# alarms and metrics
# ---------------------------------------------------------------------------------------------------------------

def test_the_alarms_the_readme_names_are_the_templates_and_its_metrics_are_emitted():
    """The operator reads which alarm fired, and which metric to look at, in the docs: each alarm of
    infra/template.yaml is named there (and no other), each metric the docs list is one the code counts."""
    template = (ROOT / "infra" / "template.yaml").read_text(encoding="utf-8")
    alarms = set(re.findall(r'AlarmName: !Sub "\$\{Prefix\}-([a-z-]+)"', template))
    topics = set(re.findall(r'TopicName: !Sub "\$\{Prefix\}-([a-z-]+)"', template))
    named = set(re.findall(r"`rf-intercom-bridge-<stage>-([a-z-]+)`", ALL))
    assert len(alarms) >= 6 and sorted(named ^ (alarms | topics)) == []
    listed = " ".join(ALL.split("- Metrics are Powertools EMF")[1].split("\n\n")[0].split("\n- ")[0].split())
    metrics = set(re.findall(r"`([A-Z][A-Za-z]+)`", listed))
    from .test_template import emitted_metrics        # (a name the code builds, as contact sync's, too)
    assert len(metrics) > 15 and sorted(metrics - emitted_metrics() - {"RFIntercomBridge"}) == []   # (its namespace)


def test_every_make_fault_option_is_in_the_docs():
    """Walkthrough: `make fault ARGS=--help` offers `--token` (with revoke-token: the token the simulator accepts
    then), which no doc named. An option of the rehearsals' tool the docs do not name is one a user never learns of."""
    from infra.local import fault
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        fault.parse(["--help"])
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", out.getvalue().split("\n\n", 2)[-1])) - {"--help"}
    # where `make fault` is told, in prose (its examples' `./bridge ... --token` is the CLI's option, not this one)
    said = re.sub(r"```.*?```", "", section("Rehearse an incident locally"), flags=re.S)
    assert len(options) > 8
    assert sorted(o for o in options if not re.search(re.escape(o) + r"\b", said)) == []
