"""Rows of figures beside their floors, the machine that ran them, and how they are printed."""
from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass
from typing import Optional


@dataclass
class Row:
    figure: str
    floor: Optional[float]
    project: Optional[float]
    unit: str = "ms"
    note: str = ""
    #: "cost": smaller is better, ratio = project / floor. "share": the floor is a ceiling,
    #: ratio = project / floor read as a share of it (e.g. RF budget use).
    kind: str = "cost"

    @property
    def ratio(self) -> Optional[float]:
        if self.floor is None or self.project is None:
            return None
        if self.floor == 0:
            return 1.0 if self.project == 0 else None
        return self.project / self.floor

    def cells(self) -> tuple[str, str, str, str, str]:
        ratio = self.ratio
        if ratio is None:
            shown = "—"
        elif self.kind == "share":
            shown = f"{ratio:.0%}"
        else:
            shown = f"{ratio:.2f}×"
        return self.figure, fmt(self.floor, self.unit), fmt(self.project, self.unit), shown, self.note


def fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit in ("/min", "calls/min"):
        return f"{value:,.0f}{' ' + unit if unit != '/min' else '/min'}"
    if value == int(value):
        return f"{int(value)}{' ' + unit if unit else ''}"
    return f"{value:.2f}{' ' + unit if unit else ''}"


def pct(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        model = platform.processor() or model
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def text_table(rows: list[Row]) -> str:
    head = ("figure", "floor", "project", "ratio", "")
    cells = [head] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for c in cells:
        lines.append("  ".join(c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i]) for i in range(4))
                     + (f"  {c[4]}" if c[4] else ""))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| figure | floor | project | ratio | notes |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)
