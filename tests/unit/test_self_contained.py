"""A user's bare clone has nothing beside it: no test, make target or CI step may read outside the repo."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"\.\./shared|parents\[\d\]\.parent|[\"']shared/contracts")


def test_nothing_reads_a_folder_beside_the_repository():
    offenders = []
    for top in ("tests", "chalicelib", "infra", "bench", ".ci", "Makefile", "app.py"):
        for path in ([ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*")):
            if path.is_file() and path.suffix in ("", ".py", ".sh", ".mk", ".cfg", ".ini", ".toml") \
                    and path != Path(__file__).resolve():
                if OUTSIDE.search(path.read_text(errors="ignore")):
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_contracts_ship_with_their_license():
    contracts = ROOT / "tests" / "contracts" / "intercom"
    assert (contracts / "api.intercom.io-2.16.yaml").is_file()
    assert "MIT License" in (contracts / "LICENSE.md").read_text()
    assert (contracts / "webhooks" / "contact.user.updated.json").is_file()
