"""Benchmark: the web console's pages, server time per page (issue 16 item 6: p95 <= 100 ms).

A site admin made for the run logs in through the console (through the gateway, as a browser
does); then each page is fetched N times in a row, one at a time (a person clicking, not a load
test), and its time from request to last byte is taken: p50 and p95 per page. Beside them, in
the same run and the same way:
  - the API's own JSON answer that the page is built from (the floor: a page cannot be faster
    than the calls it makes), and
  - a bare ASGI app (starlette, one HTML page, uvicorn on a free port): the cost of HTTP itself.
Needs the running stack (`make up`) and `.local/env`.

    python bench/console.py [--requests 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from support import admin_key, free_port

RESULTS = Path(__file__).parent / "results"
GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")
TARGET_P95_MS = 100.0
# (page, the API call it is built from)
PAGES = [
    ("/", "/api/v1/identity/session"),
    ("/admin/users/index", "/admin/users/index/page:1/limit:50"),
    ("/organisations/index", "/organisations/index/scope:local/page:1/limit:50"),
    ("/roles/index", "/roles/index"),
    ("/servers/serverSettings", "/servers/serverSettings/MISP"),
    ("/servers/serverSettings/Security", "/servers/serverSettings/Security"),
    # the largest tabs of MISP's whole catalogue (issue 17): 147 and 122 rows
    ("/servers/serverSettings/MISP", "/servers/serverSettings/MISP"),
    ("/servers/serverSettings/Plugin", "/servers/serverSettings/Plugin"),
    ("/jobs/index", "/jobs/index/page:1/limit:50"),
    ("/tasks/index", "/tasks/index"),
    ("/admin/logs/index", "/admin/audit_logs/index?page=1&limit=50"),
    ("/eventBlocklists/index", "/eventBlocklists/index"),
    ("/admin/regexp/index", "/admin/regexp/index"),
    ("/auth_keys/index", "/auth_keys/index/page:1/limit:50"),
]

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

PAGE = "<!doctype html><html lang=en><title>x</title><main><h1>Bare</h1></main></html>"


async def page(request):
    return HTMLResponse(PAGE)

app = Starlette(routes=[Route("/", page)])
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(client: httpx.Client, path: str, count: int, **headers: str) -> tuple[list[float], int]:
    times: list[float] = []
    status = 0
    client.get(path, headers=headers)  # warm
    for _ in range(count):
        begin = time.perf_counter()
        answer = client.get(path, headers=headers)
        times.append((time.perf_counter() - begin) * 1000)
        status = answer.status_code
    return times, status


def site_admin_session(client: httpx.Client) -> tuple[str, str]:
    """A new site admin, logged in through the console: (its session cookie, its password)."""
    email = f"bench-console-{uuid.uuid4().hex[:8]}@bench.test"
    password = secrets.token_urlsafe(18) + "aA1!"
    added = httpx.post(f"{GATEWAY}/admin/users/add", timeout=30, json={
        "email": email, "org_id": 1, "role_id": 1, "password": password, "change_pw": False},
        headers={"Authorization": admin_key(), "Accept": "application/json"})
    added.raise_for_status()
    form = client.get("/users/login", headers={"Accept": "text/html"})
    token = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert token, "no login form"
    client.post("/users/login", headers={"Accept": "text/html"},
                data={"_csrf": token.group(1), "email": email, "password": password})
    session = client.cookies.get("MISP-session")
    if not session:
        sys.exit("bench/console.py: the login through the console failed")
    return session, password


def bare_app_times(count: int) -> list[float]:
    port = free_port()
    RESULTS.mkdir(exist_ok=True)
    app_dir = RESULTS / "console-bare-app"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "bare_console_app.py").write_text(BARE_APP)
    log = open(RESULTS / "console-bare-app.log", "ab")  # noqa: SIM115  (the child owns it)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_console_app:app", "--port",
                             str(port), "--log-level", "warning"], cwd=app_dir, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.get("/")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            times, _ = timed(client, "/", count)
            return times
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    rows = []
    with httpx.Client(base_url=GATEWAY, timeout=30) as client:
        session, _ = site_admin_session(client)
        for page, api_path in PAGES:
            page_times, page_status = timed(client, page, args.requests, Accept="text/html")
            api_times, api_status = timed(client, api_path, args.requests,
                                          Accept="application/json")
            rows.append({"page": page, "status": page_status,
                         "p50_ms": statistics.median(page_times),
                         "p95_ms": percentile(page_times, 0.95),
                         "api_status": api_status, "api_p50_ms": statistics.median(api_times),
                         "api_p95_ms": percentile(api_times, 0.95)})
        del session
    bare = bare_app_times(args.requests)
    bare_p50, bare_p95 = statistics.median(bare), percentile(bare, 0.95)

    table = Table(title=f"console: server time per page, {args.requests} requests each, "
                        f"one at a time (target p95 <= {TARGET_P95_MS:.0f} ms)")
    for column in ("page", "status", "p50 ms", "p95 ms", "API call p50", "API call p95",
                   "target"):
        table.add_column(column)
    for row in rows:
        ok = row["status"] == 200 and row["p95_ms"] <= TARGET_P95_MS
        table.add_row(row["page"], str(row["status"]), f"{row['p50_ms']:.1f}",
                      f"{row['p95_ms']:.1f}", f"{row['api_p50_ms']:.1f}",
                      f"{row['api_p95_ms']:.1f}", "met" if ok else "MISSED")
    table.add_row("bare ASGI app (baseline)", "200", f"{bare_p50:.1f}", f"{bare_p95:.1f}", "",
                  "", "")
    Console(width=140).print(table)
    served = [row for row in rows if row["status"] == 200]
    missing = [row["page"] for row in rows if row["status"] != 200]
    worst = max(row["p95_ms"] for row in served)
    met = worst <= TARGET_P95_MS and not missing
    print(f"console: worst page p95 {worst:.1f} ms ({worst / bare_p95:.1f}x the bare app's "
          f"p95 {bare_p95:.1f} ms); target p95 <= {TARGET_P95_MS:.0f} ms: "
          f"{'met' if met else 'MISSED'}"
          + (f"; pages not served: {', '.join(missing)}" if missing else ""))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "console.json").write_text(json.dumps(
        {"pages": rows, "bare_p50_ms": bare_p50, "bare_p95_ms": bare_p95}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
