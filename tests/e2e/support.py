"""What the end-to-end tests share: the gateway's URL, the site admin's authkey that identity
writes on its first run, and polling with a deadline."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")
T = TypeVar("T")


def admin_key(wait_s: float = 30) -> str:
    """The site admin's authkey (`.local/admin.authkey`); a failed test when it never shows."""
    path = Path(os.environ.get("MISP_STATE_DIR", ".local")) / "admin.authkey"
    deadline = time.monotonic() + wait_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if not path.exists():
        pytest.fail(f"{path} is missing: identity writes it on its first run", pytrace=False)
    return path.read_text().strip()


def admin_headers() -> dict[str, str]:
    return {"Authorization": admin_key(), "Accept": "application/json"}


def until(check: Callable[[], T | None], what: str, timeout_s: float = 30,
          interval_s: float = 0.2) -> T:
    """The first truthy value of `check()`, or a failed assertion naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s (last: {value!r})")
        time.sleep(interval_s)
