"""The end-to-end steps run last (they rebuild the bed's hosts) and in file order; once one
fails, the rest are skipped, naming it, since each builds on the cluster the one before left."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import offline

_failed: list[str] = []


def pytest_collection_modifyitems(items):
    e2e = [i for i in items if i.get_closest_marker("e2e")]
    items[:] = [i for i in items if not i.get_closest_marker("e2e")] + e2e


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if item.get_closest_marker("e2e") and report.when == "call" and report.failed:
        _failed.append(item.name)


def pytest_runtest_setup(item):
    if item.get_closest_marker("e2e") and _failed:
        pytest.skip(f"the step it builds on failed: {_failed[0]}")


@pytest.fixture(scope="module")
def offline_dir() -> Path:
    found = offline.folder()
    if not found:
        pytest.skip(
            f"no offline folder: set ${offline.ENV} or put one at {offline.DEFAULT} "
            "(tests/e2e/README.md says what it holds)"
        )
    return found
