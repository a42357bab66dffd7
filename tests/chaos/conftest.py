"""The chaos run's report goes to the end of pytest's output, with its seed, pass or fail."""
from __future__ import annotations

REPORTS: list = []


def pytest_terminal_summary(terminalreporter):
    for report in REPORTS:
        terminalreporter.section(f"chaos run, seed {report.config.seed}")
        terminalreporter.write_line(report.render())
