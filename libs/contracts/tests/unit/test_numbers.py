"""Whole numbers from clients: ASCII digits or ints within bigint, nothing else."""

from __future__ import annotations

import pytest

from misp_contracts.numbers import BIGINT_MAX, whole_number


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (42, 42), ("42", 42), (" 7 ", 7), ("007", 7), (str(BIGINT_MAX), BIGINT_MAX),
    ("0" * 40 + "5", 5),
])
def test_digits_and_ints_are_read(value: object, expected: int) -> None:
    assert whole_number(value) == expected


@pytest.mark.parametrize("value", [
    "²", "\u0661\u0662", "\uff11\uff12", "-1", -1, "+1", "1e3", "1.0", "", " ", "0x10",
    True, False, None, 1.0,
    str(BIGINT_MAX + 1), "9" * 400, BIGINT_MAX + 1, [1],
])
def test_anything_else_is_none(value: object) -> None:
    assert whole_number(value) is None


def test_a_lower_maximum_bounds_the_number() -> None:
    assert whole_number("999", maximum=999) == 999
    assert whole_number("1000", maximum=999) is None
