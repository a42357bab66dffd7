"""The suite's order for `make test`'s two processes (pytest-xdist's worksteal, `-n 2`: each takes one
contiguous half of the tests, and one that runs out takes half of what the other has left): the tests
marked `slow` start first, every other one at the head of each half, so that neither process runs them all
one after another and the run ends on short tests with both processes busy. The marked tests keep their
order among themselves, and the others theirs."""
import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    rest = [item for item in items if item.get_closest_marker("slow") is None]
    first, second = slow[::2], slow[1::2]
    half = max(0, len(items) // 2 - len(first))
    items[:] = first + rest[:half] + second + rest[half:]
