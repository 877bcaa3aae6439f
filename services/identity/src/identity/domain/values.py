"""How MISP reads loosely typed JSON values (PyMISP sends ints as strings)."""

from __future__ import annotations

from typing import Any

from misp_contracts.numbers import whole_number

_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no", ""}
MAX_INT = 2**63 - 1


def to_bool(value: Any) -> bool | None:
    """A boolean from true/false, 0/1 or their strings; None when it is none of them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return None


def to_int(value: Any) -> int | None:
    """A non-negative integer from an int or a digit string; None otherwise (or too large)."""
    return whole_number(value, maximum=MAX_INT)
