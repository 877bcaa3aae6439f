"""The browser-test harness works before any console page exists: against a page server of the
test's own, with the strict Content-Security-Policy the console will have, a same-origin script
runs and an inline one is refused (and the refusal is seen in the console log); axe-core finds no
serious violation on an accessible page and does find them on one that is not; screenshots land
in the test output directory; the phone size is the viewport's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from .support import (
    DESKTOP,
    PHONE,
    Page,
    axe_violations,
    console_errors,
    format_violations,
    output_dir,
    reset,
    screenshot,
    serve,
    wait_for,
)


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height (its IHDR chunk)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:8]
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


CSP = "default-src 'self'; script-src 'self'"

GOOD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Harness: accessible page</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="/app.js" defer></script></head>
<body><main>
<h1>Organisations</h1>
<p id="status">loading</p>
<form><label for="name">Name</label> <input id="name" name="name" type="text">
<button type="submit">Search</button></form>
</main></body></html>
"""

APP_JS = """document.getElementById("status").textContent = "ready";
document.body.dataset.app = "started";
"""

BAD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Harness: inline script, no alt, no label</title></head>
<body><main>
<h1>Broken</h1>
<p id="status">untouched</p>
<img src="/logo.svg">
<input type="text" name="q">
<script>document.getElementById("status").textContent = "inline ran";</script>
</main></body></html>
"""

LOGO = ('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
        '<rect width="40" height="40" fill="#036"/></svg>')


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    pages = {
        "/good.html": Page(GOOD),
        "/app.js": Page(APP_JS, "text/javascript; charset=utf-8"),
        "/bad.html": Page(BAD),
        "/logo.svg": Page(LOGO, "image/svg+xml"),
    }
    with serve(pages, headers={"Content-Security-Policy": CSP}) as base:
        yield base


def test_a_same_origin_script_runs_under_the_strict_csp(browser: Chrome, site: str) -> None:
    browser.get(f"{site}/good.html")
    wait_for(browser, lambda d: d.find_element(By.ID, "status").text == "ready",
             message="app.js never changed #status")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-app") == "started"
    assert console_errors(browser) == []

    violations = axe_violations(browser)
    assert violations == [], format_violations(violations)
    # the injection left no console error either (WebDriver's scripts are not the page's)
    assert console_errors(browser) == []

    path = screenshot(browser, "harness/good page")
    assert path == output_dir() / "screenshots" / "harness_good_page.png"
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG\r\n\x1a\n")
    assert png_size(data) == DESKTOP


def test_the_csp_refuses_an_inline_script_and_axe_finds_the_faults(browser: Chrome,
                                                                   site: str) -> None:
    browser.get(f"{site}/bad.html")
    # the refusal is reported as the page loads; wait for it rather than for a change that must
    # not happen
    errors: list[dict] = []

    def reported(driver: Chrome) -> bool:
        errors.extend(console_errors(driver))
        return bool(errors)

    wait_for(browser, reported, message="no console error for the inline script")
    assert browser.find_element(By.ID, "status").text == "untouched"
    assert any("Content Security Policy" in e["message"] and "inline script" in e["message"]
               for e in errors), errors

    violations = axe_violations(browser)
    by_id = {v.id: v for v in violations}
    assert {"image-alt", "label"} <= set(by_id), format_violations(violations)
    assert all(v.impact in ("serious", "critical") for v in violations)
    assert by_id["image-alt"].targets == [["img"]]
    assert "input" in format_violations(violations)
    # minor and moderate ones are asked for explicitly
    assert len(axe_violations(browser, impacts=None)) >= len(violations)


def test_a_phone_sized_viewport(phone: Chrome, site: str) -> None:
    phone.get(f"{site}/good.html")
    assert phone.execute_script("return [window.innerWidth, window.innerHeight]") == list(PHONE)
    assert phone.execute_script("return matchMedia('(pointer: coarse)').matches") is True
    png = screenshot(phone, "harness/good page phone").read_bytes()
    assert png_size(png) == PHONE


def test_each_test_starts_clean(browser: Chrome, site: str) -> None:
    """A cookie and storage set by one test are gone for the next (the `browser` fixture)."""
    browser.get(f"{site}/good.html")
    browser.add_cookie({"name": "session", "value": "x"})
    browser.execute_script("localStorage.setItem('k', 'v'); sessionStorage.setItem('k', 'v')")
    reset(browser)
    assert browser.current_url == "about:blank"
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == list(DESKTOP)
    browser.get(f"{site}/good.html")
    assert browser.get_cookies() == []
    assert browser.execute_script(
        "return [localStorage.getItem('k'), sessionStorage.getItem('k')]") == [None, None]
