"""What the browser tests share: Debian's headless Chromium driven by Selenium through Debian's
ChromeDriver (both installed by `make install`, same version, never downloaded by Selenium), and
the checks a page test makes: a screenshot, axe-core's accessibility violations, the browser's
console errors (a script error, a Content-Security-Policy violation), and waiting without sleeps.

A page test asks conftest.py's `browser` fixture for a clean browser (or `phone` for a small
viewport); a test needing a page server of its own can use `serve`.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE_JS = ROOT / ".local" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = (1280, 900)
PHONE = (390, 844)
INSTALL_HINT = "run `make install` (deploy/local/install.sh)"

# This machine's network is closed: without these Chromium keeps trying Google's hosts (updates,
# sync, field trials, QUIC); a fresh --user-data-dir per run is added by start_chromium.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-proxy-server",
    "--hide-scrollbars",
    "--lang=en-US",
)

T = TypeVar("T")


def output_dir() -> Path:
    """Where tests write what a person may look at afterwards (`MISP_TEST_OUTPUT`, by default
    `.local/test-output`)."""
    return Path(os.environ.get("MISP_TEST_OUTPUT") or ROOT / ".local" / "test-output")


def require_browser() -> None:
    """Fail with what to do when Chromium or its ChromeDriver is missing."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"{path} is missing: {INSTALL_HINT} installs Debian's chromium "
                               "and chromium-driver")


def chromium_options(user_data_dir: str, size: tuple[int, int] = DESKTOP) -> Options:
    options = Options()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    options.add_argument(f"--user-data-dir={user_data_dir}")
    # every console message, so that console_errors sees a script error or a CSP violation
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@contextmanager
def start_chromium(size: tuple[int, int] = DESKTOP) -> Iterator[Chrome]:
    """A headless Chromium with an empty profile, quit (and the profile removed) on exit."""
    require_browser()
    # The driver's path is given, so Selenium Manager is never asked; and were it asked, offline.
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    profile = tempfile.mkdtemp(prefix="misp-chromium-")
    try:
        driver = Chrome(options=chromium_options(profile, size),
                                  service=Service(executable_path=CHROMEDRIVER))
        try:
            driver.set_page_load_timeout(30)
            driver.set_script_timeout(30)
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def set_viewport(driver: Chrome, size: tuple[int, int], mobile: bool = False) -> None:
    """Make the page's viewport exactly `size` (`window.innerWidth`, `innerHeight`: headless
    Chromium's window keeps room for a frame, so its size is not the viewport's). `mobile`: a
    phone's, with touch and the page's `<meta name="viewport">` followed."""
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
    driver.execute_cdp_cmd(
        "Emulation.setTouchEmulationEnabled", {"enabled": mobile, "maxTouchPoints": 5})


def reset(driver: Chrome, size: tuple[int, int] = DESKTOP, mobile: bool = False) -> None:
    """A clean state between tests: the last page's origin's storage cleared (local and session
    storage, IndexedDB, caches, service workers), every cookie deleted, about:blank with the given
    viewport, and the console log read (and so emptied)."""
    # session storage lives with the tab, not the origin's data: clear it from the page
    origin = driver.execute_script(
        "try { window.sessionStorage.clear(); } catch (e) {} return window.location.origin")
    if isinstance(origin, str) and origin.startswith(("http://", "https://")):
        driver.execute_cdp_cmd("Storage.clearDataForOrigin",
                               {"origin": origin, "storageTypes": "all"})
    driver.get("about:blank")
    # WebDriver's delete_all_cookies deletes only the current page's (none on about:blank)
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    set_viewport(driver, size, mobile)
    driver.get_log("browser")


def wait_for(driver: Chrome, condition: Callable[[Chrome], T], timeout: float = 5.0,
             message: str = "") -> T:
    """Poll `condition(driver)` until it returns something truthy (returned), else a
    TimeoutException naming `message`. For a page's element: `expected_conditions`. An element
    missing, or gone stale as the next page replaces it, or a dialog not open yet, is polled
    again."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(NoSuchElementException, NoAlertPresentException,
                                             StaleElementReferenceException),
                         ).until(condition, message)


def screenshot(driver: Chrome, name: str) -> Path:
    """Save the viewport as `<output_dir>/screenshots/<name>.png`; returns the path."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "screenshot"
    path = output_dir() / "screenshots" / f"{safe}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"the browser gave no screenshot for {name}")
    return path


# -- console -------------------------------------------------------------------------------------


def console_errors(driver: Chrome) -> list[dict[str, Any]]:
    """The console entries of level SEVERE since the last call (reading empties the log): script
    errors, CSP violations, failed loads. Each: level, message, source, timestamp."""
    entries = driver.get_log("browser")
    return [e for e in entries if e.get("level") == "SEVERE"]


# -- accessibility (axe-core) --------------------------------------------------------------------


@functools.cache
def axe_source() -> str:
    """axe-core's axe.min.js as `make install` put it in .local/npm (deploy/browser pins it)."""
    if not AXE_JS.is_file():
        raise RuntimeError(f"{AXE_JS} is missing: {INSTALL_HINT} installs axe-core "
                           "(deploy/browser/package-lock.json) with npm")
    return AXE_JS.read_text(encoding="utf-8")


_AXE_RUN = """
const [context, options, done] = arguments;
axe.run(context || document, options || {}).then(
  (results) => done({violations: results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({target: n.target, impact: n.impact, html: n.html})),
  }))}),
  (error) => done({error: String(error && error.stack || error)}),
);
"""


@dataclass(frozen=True)
class Violation:
    id: str
    impact: str
    help: str
    help_url: str
    targets: list[list[str]] = field(default_factory=list)
    html: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = ", ".join(" >> ".join(t) for t in self.targets)
        return f"[{self.impact}] {self.id}: {self.help} ({self.help_url}) at {where}"


def axe_violations(driver: Chrome, impacts: Sequence[str] | None = ("serious", "critical"),
                   context: Any = None, options: Mapping[str, Any] | None = None,
                   ) -> list[Violation]:
    """Run axe-core on the current page and return its violations of the given impacts (all of
    them with `impacts=None`). axe is injected by WebDriver, which the page's CSP does not govern.
    `context`/`options` go to `axe.run` (e.g. `options={"runOnly": ["wcag2a", "wcag2aa"]}`)."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(axe_source())
    result = driver.execute_async_script(_AXE_RUN, context, dict(options or {}))
    if "error" in result:
        raise RuntimeError(f"axe.run failed: {result['error']}")
    found = [Violation(id=v["id"], impact=v["impact"] or "", help=v["help"],
                       help_url=v["helpUrl"], targets=[n["target"] for n in v["nodes"]],
                       html=[n["html"] for n in v["nodes"]])
             for v in result["violations"]]
    return [v for v in found if impacts is None or v.impact in impacts]


def format_violations(violations: Sequence[Violation]) -> str:
    """For an assert's message: one line per violation, with where it is."""
    if not violations:
        return "no accessibility violation"
    return f"{len(violations)} accessibility violation(s):\n" + "\n".join(
        f"  {v}" for v in violations)


# -- a page server of a test's own ---------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    body: bytes | str
    content_type: str = "text/html; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


@contextmanager
def serve(pages: Mapping[str, Page], headers: Mapping[str, str] | None = None) -> Iterator[str]:
    """Serve `pages` (path -> Page) on 127.0.0.1, a free port; yields the base URL
    (`http://127.0.0.1:<port>`). `headers` go on every answer (a page's own override them); an
    unknown path gets 404, `/favicon.ico` an empty 204 unless given (no console error for it)."""
    common = dict(headers or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = pages.get(self.path.split("?", 1)[0])
            if page is None and self.path == "/favicon.ico":
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if page is None:
                self.send_error(404)
                return
            body = page.body.encode() if isinstance(page.body, str) else page.body
            self.send_response(200)
            for name, value in {**common, "Content-Type": page.content_type,
                                "Cache-Control": "no-store", **page.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-pages", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
