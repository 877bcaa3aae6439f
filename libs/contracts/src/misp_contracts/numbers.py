"""Whole numbers as MISP clients send them (ids, pages, counts): an int, or decimal ASCII digits
in text, no larger than PostgreSQL's bigint. `str.isdigit()` is not the test: it accepts "²"
and other Unicode digits that `int()` refuses or reads in another script, which answered 500."""

from __future__ import annotations

import re
from typing import Any

BIGINT_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+")


def whole_number(value: Any, *, maximum: int = BIGINT_MAX) -> int | None:
    """A non-negative integer up to `maximum` from an int or from ASCII digits (spaces around
    them allowed); None for anything else (a bool, a sign, "²", an Arabic-Indic digit, "1e3",
    a larger number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(text := value.strip()):
        if len(text.lstrip("0")) > len(str(maximum)):
            return None
        number = int(text)
    else:
        return None
    return number if 0 <= number <= maximum else None
