"""The suite's order: tests marked `slow` first. `make test` splits the suite between two processes
(pytest-xdist's worksteal: each takes half, and one that runs out takes half of what the other has
left); a long test that starts last leaves one process working alone until it ends, and started first,
the run ends on short tests with both processes busy. The marked tests keep their order among
themselves, and the others theirs."""
import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
