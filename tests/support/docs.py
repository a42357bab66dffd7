"""The documentation the guards read: the README (the front door) and docs/*.md (the detail), as one text or by
file, and a section by its title wherever it lives. A guard reads the docs, not "the README": a fact moved from one
file to another stays guarded, and one that is gone fails the guard (a section not found raises)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def paths() -> list[Path]:
    """The README, then every docs/*.md."""
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def docs() -> dict[str, str]:
    """Each doc's text by its path from the repository's root (`README.md`, `docs/operating.md`)."""
    return {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8") for path in paths()}


def docs_text() -> str:
    """Every doc's text, one after the other."""
    return "\n\n".join(docs().values())


def _headings(text: str) -> list[tuple[int, int, str]]:
    """(line index, level, title) of each Markdown heading, not counting a code block's `# comment` lines."""
    out, fence = [], False
    for n, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"(#{1,6}) (.*)", line)):
            out.append((n, len(m[1]), m[2].strip()))
    return out


def section(title: str) -> str:
    """The text under the one heading titled so, in whichever doc holds it, up to the next heading of its level
    or above (its subsections included), the heading line excluded."""
    found = []
    for name, text in docs().items():
        lines, heads = text.splitlines(), _headings(text)
        for i, (n, level, said) in enumerate(heads):
            if said == title:
                end = next((m for m, lv, _ in heads[i + 1:] if lv <= level), len(lines))
                found.append((name, "\n".join(lines[n + 1:end]) + "\n"))
    assert len(found) == 1, f"{len(found)} headings titled {title!r}: {[name for name, _ in found]}"
    return found[0][1]


def slug(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a doc's headings (a repeated title's get -1, -2, as GitHub numbers them)."""
    seen: dict[str, int] = {}
    out = set()
    for _, _, title in _headings(text):
        s = slug(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title))
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return out
