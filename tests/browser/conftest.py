"""Real-browser fixtures: one headless Chromium for the whole run (`chromium`, started on first use,
quit at the end), and per test a clean state of it (`browser`, desktop size 1280x900; `phone`,
390x844). Helpers are in support.py: screenshot, axe_violations, console_errors, wait_for.

Without Chromium, its ChromeDriver or axe-core the tests fail (never skip) and say to run
`make install`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver import Chrome

from .support import DESKTOP, PHONE, reset, start_chromium


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chrome]:
    """The run's one browser. A test should take `browser` (or `phone`) instead: a clean state."""
    try:
        with start_chromium(DESKTOP) as driver:
            yield driver
    except RuntimeError as missing:
        pytest.fail(str(missing))


@pytest.fixture
def browser(chromium: Chrome) -> Chrome:
    """The browser on about:blank at 1280x900, with no cookie, storage, nor console entry left
    by an earlier test."""
    reset(chromium, DESKTOP)
    return chromium


@pytest.fixture
def phone(chromium: Chrome) -> Chrome:
    """The same clean browser with a phone's viewport, 390x844 (touch, and the page's
    `<meta name="viewport">` followed, as on a phone)."""
    reset(chromium, PHONE, mobile=True)
    return chromium
