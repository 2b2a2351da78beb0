"""The checks of numbers a user gives: what they accept is exactly what they promise, for any input."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ghostmixnet.checks import count, number

ANYTHING = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                     st.booleans(), st.none())


@given(ANYTHING, st.integers(-3, 3))
def test_a_count_is_an_integer_of_at_least_its_minimum_or_refused_by_name(value, minimum):
    try:
        result = count(value, "--batch-size", minimum)
    except ValueError as e:
        assert str(e).startswith(f"--batch-size must be an integer of at least {minimum}, got ")
        return
    assert isinstance(result, int) and result >= minimum and not isinstance(value, (bool, float))
    assert result == int(value)


@given(ANYTHING, st.one_of(st.none(), st.floats(-5, 5)), st.one_of(st.none(), st.floats(-5, 5)))
def test_a_number_is_finite_and_within_its_bounds_or_refused_by_name(value, minimum, above):
    try:
        result = number(value, "--time-limit", minimum=minimum, above=above)
    except ValueError as e:
        assert str(e).startswith("--time-limit must be a ") and "finite number" in str(e)
        return
    assert math.isfinite(result) and not isinstance(value, bool)
    assert (minimum is None or result >= minimum) and (above is None or result > above)


@pytest.mark.parametrize("text, minimum, maximum", [("-1", 1, None), ("0", 1, None), ("65536", 0, 65535)])
def test_the_examples(text, minimum, maximum):
    with pytest.raises(ValueError, match="must be an integer of at least"):
        count(text, "", minimum, maximum)
