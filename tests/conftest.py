"""Shared test configuration. Its folder (tests/) is on sys.path, so test modules import `compiler_helpers`.

Hypothesis draws the same examples on every run (`derandomize`): a property test that fails, fails again on the
same input, on any runner, and CI does not pass or fail by chance.

`make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`). Each test module is one group,
so its module-scoped fixtures (a compile many tests read) are computed once, in one worker; the modules whose
tests share the session's Ray instance (`ray_session`, tests/explore/conftest.py) form one group, so that only
one worker starts Ray."""

from __future__ import annotations

import pytest
from hypothesis import settings

settings.register_profile("dse", derandomize=True)
settings.load_profile("dse")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ray = {item.path for item in items if "ray_session" in getattr(item, "fixturenames", ())}
    for item in items:
        item.add_marker(pytest.mark.xdist_group("ray" if item.path in ray else str(item.path)))
