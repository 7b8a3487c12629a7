"""`dse.bounds`: the one check of an integer setting (and of a table's real-valued ones), and its message."""

from __future__ import annotations

import math

import pytest

from dse.bounds import Bound, check_int
from dse.errors import ConfigError, DataError


@pytest.mark.parametrize("minimum", [0, 1, 2])
def test_an_integer_at_least_the_minimum_passes_and_anything_else_is_named(minimum):
    for value in (minimum, minimum + 1, 10**12):
        check_int("a.b", value, minimum)
    for value in (minimum - 1, True, False, float(minimum), "3", None, math.nan, [minimum]):
        with pytest.raises(ConfigError) as err:
            check_int("a.b", value, minimum)
        assert str(err.value) == f"a.b must be an integer >= {minimum} (got {value!r})"


def test_null_passes_where_the_setting_is_optional_and_the_owner_chooses_the_error():
    check_int("a.b", None, 1, optional=True)
    with pytest.raises(DataError, match=r"^model\.test_samples must be an integer >= 1 \(got 0\)$"):
        check_int("model.test_samples", 0, 1, optional=True, error=DataError)


@pytest.mark.parametrize(("bound", "good", "bad"), [
    (Bound(0, False, True), [1e-9, 3.0, 7], [0, -1.0, math.nan, math.inf, True, "1"]),  # a rate: above 0
    (Bound(0, False), [0, 0.5, 2], [-1e-9, -math.inf, None]),  # a margin: 0 or more
    (Bound(0, False, high=1), [0, 0.99], [1, 1.5, -0.1]),  # a fraction in [0, 1)
    (Bound(1), [1, 5], [0, 1.5, True]),  # a count: an integer
    (Bound(0, strict=True, high=4), [1, 3], [0, 4, 2.0]),  # an integer above 0 and below 4
])
def test_a_bound_accepts_its_range_and_refuses_the_rest_with_the_value(bound, good, bad):
    for value in good:
        bound.check("tuning.x", value)
    for value in bad:
        with pytest.raises(ConfigError, match=r"^tuning\.x must be .*\(got .*\)$"):
            bound.check("tuning.x", value)
