"""Thin edges, pure core: what each layer of chalicelib may import (every import, also one inside a
function). The domain decides and does no I/O; services reach I/O only through the interfaces of
chalicelib/ports, so each runs against its in-memory twin; ports name no implementation."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = {"boto3", "botocore", "requests", "urllib3", "pynamodb", "chalice"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                if node.module:
                    found.append((node.lineno, ".".join(base + [node.module])))
                else:       # `from .. import adapters`: the modules it names
                    found += [(node.lineno, ".".join(base + [alias.name])) for alias in node.names]
            else:
                found.append((node.lineno, node.module or ""))
    return found


def _offenders(layer: str, refused: set[str], allowed_inside: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in sorted((ROOT / "chalicelib" / layer).rglob("*.py")):
        for line, module in _imports(path):
            if any(module.startswith(a) for a in allowed_inside):
                continue
            if module.split(".")[0] in refused or any(module == r or module.startswith(r + ".") for r in refused):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


@pytest.mark.parametrize("layer, refused, allowed_inside", [
    # Decisions: their own package, the standard library's pure parts, pydantic. No clock, no environment.
    ("domain", IO_LIBRARIES | {"os", "time", "chalicelib"}, ("chalicelib.domain",)),
    # Use cases: typed against ports, never against the adapters or the composition root; the clock is
    # given (the composition root's), never the wall's, and the environment is read into Config.
    ("services", IO_LIBRARIES | {"os", "time", "chalicelib.adapters", "chalicelib.runtime", "chalicelib.handlers",
                                 "chalicelib.cli"}, ()),
    # Interfaces: name no implementation and no use case.
    ("ports", IO_LIBRARIES | {"chalicelib.adapters", "chalicelib.services", "chalicelib.runtime"}, ()),
    # I/O behind the ports: never a use case (services are typed against the adapters' ports, not the reverse).
    ("adapters", {"chalicelib.services", "chalicelib.runtime", "chalicelib.handlers", "chalicelib.cli"}, ()),
])
def test_each_layer_imports_only_what_the_standard_allows(layer, refused, allowed_inside):
    assert _offenders(layer, refused, allowed_inside) == []


def test_the_domain_imports_its_own_modules_at_the_top_and_in_no_circle():
    """settings is the model; rules and sync read it, and what checks the settings against the live workspace
    reads all three (domain/workspace_check.py). An import inside a function hid a circle (settings imported
    rules and sync in two of its checks, each of which imports settings): whichever module loads first decides
    what the other finds half-made."""
    graph: dict[str, set[str]] = {}
    inside = []
    for path in sorted((ROOT / "chalicelib" / "domain").glob("*.py")):
        tree = ast.parse(path.read_text())
        top = {node.lineno for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))}
        own = [(line, module) for line, module in _imports(path) if module.startswith("chalicelib.domain.")]
        inside += [f"{path.relative_to(ROOT)}:{line} imports {module} inside a function" for line, module in own
                   if line not in top]
        graph[path.stem] = {module.split(".")[2] for _, module in own}
    assert inside == []
    ordered: list[str] = []          # each module after every one it imports (none left over: no circle)
    while len(ordered) < len(graph):
        ready = sorted(m for m, needs in graph.items() if m not in ordered and needs <= set(ordered))
        if not ready:
            break
        ordered += ready
    assert sorted(set(graph) - set(ordered)) == []
    place = {module: n for n, module in enumerate(ordered)}
    assert place["settings"] < min(place["rules"], place["sync"])
    assert max(place["rules"], place["sync"]) < place["workspace_check"]
