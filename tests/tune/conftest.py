"""Shared by the tuning tests: mlp_digits prepared once (small and fast; compiling never changes it)."""

from __future__ import annotations

import pytest

from dse.compile import Prepared, load_model, prepare


@pytest.fixture(scope="session")
def prepared() -> Prepared:
    graph, data = load_model("mlp_digits", "digits")
    return prepare(graph, data, name="mlp_digits")
