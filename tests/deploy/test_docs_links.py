"""The README is the front door and docs/*.md hold the detail: every link between them reaches a file and a heading
that exist, every doc is in the README's index, and the README's test command is the one CI runs."""
from __future__ import annotations

import re

from tests.support.docs import README, ROOT, anchors, docs, section

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _without_code(text: str) -> str:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def test_every_relative_link_reaches_a_file_and_a_heading_that_exist():
    """A section moved to another file leaves `[Environment variables](#environment-variables)` pointing at
    nothing: GitHub shows the link, and the reader lands at the top of the page."""
    held = {name: anchors(text) for name, text in docs().items()}
    broken, checked = [], 0
    for name, text in docs().items():
        here = (ROOT / name).parent
        for target in LINK.findall(_without_code(text)):
            if re.match(r"[a-z]+:", target):
                continue
            checked += 1
            path, _, anchor = target.partition("#")
            file = (here / path).resolve() if path else ROOT / name
            if not file.exists():
                broken.append(f"{name}: {target} (no such file)")
                continue
            doc = file.relative_to(ROOT).as_posix()
            if anchor and anchor not in held.get(doc, set()):
                broken.append(f"{name}: {target} (no such heading in {doc})")
    assert checked > 20
    assert broken == [], "\n".join(broken)


def test_the_readmes_index_links_every_doc():
    index = section("Documentation")
    linked = set(re.findall(r"\]\((docs/[^)#]+)", index))
    assert sorted(set(docs()) - {"README.md"} - linked) == []


def test_every_doc_says_on_its_first_screen_that_the_readme_is_its_index():
    """A reader who lands on docs/chaos.md from a search finds the rest of the documentation from its top."""
    named = {name: text for name, text in docs().items() if name.startswith("docs/") and name.endswith(".md")}
    assert len(named) == 7
    first_screens = {name: "\n".join(text.splitlines()[:10]) for name, text in named.items()}
    lost = [name for name, top in first_screens.items() if "](../README.md#documentation)" not in top]
    assert lost == []


def test_the_readmes_test_command_is_the_one_ci_runs():
    """.ci/run runs `make test`: the command the README's Testing section (and its Quick start) gives."""
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"
    testing = section("Testing")
    assert re.search(r"^make test\s+#", testing, flags=re.M) and "`.ci/run`" in testing


def test_the_readme_stays_a_front_door():
    """2,770 lines met a new user before the detail moved to docs/: what a section explains at length goes
    there, with a line and a link in the README."""
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 350
