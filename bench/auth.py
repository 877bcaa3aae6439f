"""Benchmark: the cost of authentication on one identity API worker, and revocation latency.

Prints, in the same run:
  1. requests/s of authenticated `GET /users/view/me` on ONE dedicated identity api worker
     (uvicorn, this service's app, on a free port, against the live `misp_identity` database),
     beside the same worker's unauthenticated `/health` measured the same way (baseline);
     target ratio >= 0.7 (MISP pays ~100 ms of bcrypt per API call);
  2. the time from an authkey's deletion in identity (`auth_keys/delete` through the gateway)
     to its rejection by another service (jobs' `/api/v1/jobs/whoami` through the gateway),
     repeated N times: p50/p99, target p99 <= 500 ms.
The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams (C connections,
one process): on a small machine it costs the server less CPU than httpx would, and both paths
are measured with it alike. Needs the running stack (`make up`) and `.local/env`.

    python bench/auth.py [--seconds 6] [--connections 8] [--revocations 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from support import admin_key, free_port

RESULTS = Path(__file__).parent / "results"
GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")
OTHER_SERVICE_PROBE = "/api/v1/jobs/whoami"


# ---- a small keep-alive HTTP/1.1 load generator ------------------------------------------------

async def _connection(port: int, request: bytes, stop_at: float, counts: list[int],
                      statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
            counts[0] += 1
    finally:
        writer.close()


async def load(port: int, path: str, headers: dict[str, str], *, seconds: float,
               connections: int) -> tuple[float, dict[int, int]]:
    """Requests/s over `seconds` with `connections` concurrent keep-alive connections."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: application/json",
             *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    counts, statuses = [0], {}  # type: ignore[var-annotated]
    warm_until = time.perf_counter() + 1.0  # warm up: connections, caches, the JIT-less path
    await asyncio.gather(*(_connection(port, request, warm_until, [0], {})
                           for _ in range(connections)))
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, started + seconds, counts, statuses)
                           for _ in range(connections)))
    return counts[0] / (time.perf_counter() - started), statuses


# ---- the dedicated worker ---------------------------------------------------------------------

def start_worker(port: int) -> subprocess.Popen[bytes]:
    RESULTS.mkdir(exist_ok=True)
    log = open(RESULTS / "auth-api.log", "ab")  # noqa: SIM115  (the child owns it)
    env = {**os.environ, "IDENTITY_HTTP_PORT": str(port), "MISP_LOG_FORMAT": "json",
           "MISP_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "identity", "api"], env=env, stdout=log,
                            stderr=log, start_new_session=True)


def wait_http(url: str, headers: dict[str, str] | None = None, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, headers=headers or {}, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s}s")
        time.sleep(0.1)


# ---- revocation -------------------------------------------------------------------------------

async def revocation_latencies(count: int, after_answer: list[float]) -> list[float]:
    """ms from the delete request (identity, through the gateway) to jobs' first 403; the ms
    from the delete's answer to that 403 go to `after_answer` (the answer waits until the
    deletion is in Kafka: what a client that waits for it can still see)."""
    admin = {"Authorization": admin_key(), "Accept": "application/json"}
    out: list[float] = []
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10) as http:
        for n in range(count):
            added = await http.post("/auth_keys/add/me", headers=admin,
                                    json={"comment": f"bench revocation {n}"})
            added.raise_for_status()
            raw, key_id = added.json()["AuthKey"]["authkey_raw"], added.json()["AuthKey"]["id"]
            probe = {"Authorization": raw, "Accept": "application/json"}
            deadline = time.monotonic() + 10
            while (await http.get(OTHER_SERVICE_PROBE, headers=probe)).status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError("a new key never reached jobs")
                await asyncio.sleep(0.005)
            started = time.perf_counter()
            deleted = await http.post(f"/auth_keys/delete/{key_id}", headers=admin)
            deleted.raise_for_status()
            answered = time.perf_counter()
            while (await http.get(OTHER_SERVICE_PROBE, headers=probe)).status_code != 403:
                if time.perf_counter() - started > 10:
                    raise TimeoutError("a deleted key kept working on jobs for 10 s")
                await asyncio.sleep(0.005)
            out.append((time.perf_counter() - started) * 1000)
            after_answer.append((time.perf_counter() - answered) * 1000)
    return out


# ---- the run ----------------------------------------------------------------------------------

async def measure(args: argparse.Namespace) -> dict[str, float]:
    admin = {"Authorization": admin_key(), "Accept": "application/json"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10) as http:
        added = await http.post("/auth_keys/add/me", headers=admin,
                                json={"comment": "bench/auth.py (deleted at the end)"})
        added.raise_for_status()
    bench_key, bench_key_id = added.json()["AuthKey"]["authkey_raw"], added.json()["AuthKey"]["id"]
    port = free_port()
    worker = start_worker(port)
    results: dict[str, float] = {"seconds": args.seconds, "connections": args.connections}
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        wait_http(f"http://127.0.0.1:{port}/users/view/me", {"Authorization": bench_key})
        health, health_codes = await load(port, "/health", {}, seconds=args.seconds,
                                          connections=args.connections)
        view_me, view_codes = await load(port, "/users/view/me", {"Authorization": bench_key},
                                         seconds=args.seconds, connections=args.connections)
        # Where the time goes: the platform's auth dependency alone (one lookup, no view).
        whoami, whoami_codes = await load(port, "/api/v1/identity/whoami",
                                          {"Authorization": bench_key},
                                          seconds=args.seconds, connections=args.connections)
        if {200} != set(health_codes) | set(view_codes) | set(whoami_codes):
            raise RuntimeError(f"non-200 answers: health {health_codes}, view/me {view_codes}, "
                               f"whoami {whoami_codes}")
        results.update(health_rps=health, view_me_rps=view_me, ratio=view_me / health,
                       whoami_rps=whoami, whoami_ratio=whoami / health)
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
        async with httpx.AsyncClient(base_url=GATEWAY, timeout=10) as http:
            await http.post(f"/auth_keys/delete/{bench_key_id}", headers=admin)
    after_answer: list[float] = []
    latencies = sorted(await revocation_latencies(args.revocations, after_answer))
    after_answer.sort()
    results.update(
        revocations=len(latencies), revocation_p50_ms=statistics.median(latencies),
        revocation_p99_ms=latencies[max(0, int(len(latencies) * 0.99) - 1)]
        if len(latencies) >= 100 else latencies[-1],
        revocation_max_ms=latencies[-1],
        revocation_after_answer_p50_ms=statistics.median(after_answer),
        revocation_after_answer_p99_ms=after_answer[max(0, int(len(after_answer) * 0.99) - 1)]
        if len(after_answer) >= 100 else after_answer[-1])
    return results


def report(results: dict[str, float]) -> None:
    table = Table(title="auth: one identity api worker; revocation across services")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("baseline / target", justify="right")
    table.add_row("GET /health, no auth (baseline)", f"{results['health_rps']:,.0f} req/s",
                  f"{results['connections']:.0f} connections")
    table.add_row("GET /users/view/me, authkey", f"{results['view_me_rps']:,.0f} req/s",
                  f"ratio {results['ratio']:.2f} (target >= 0.70)")
    table.add_row("GET /api/v1/identity/whoami (auth only)", f"{results['whoami_rps']:,.0f} req/s",
                  f"ratio {results['whoami_ratio']:.2f} (diagnostic)")
    table.add_row(f"deletion -> refused by jobs, p50 (n={results['revocations']:.0f})",
                  f"{results['revocation_p50_ms']:.0f} ms", "")
    table.add_row("deletion -> refused by jobs, p99", f"{results['revocation_p99_ms']:.0f} ms",
                  "target <= 500 ms")
    table.add_row("deletion -> refused by jobs, max", f"{results['revocation_max_ms']:.0f} ms", "")
    table.add_row("deletion answered -> refused by jobs, p50",
                  f"{results['revocation_after_answer_p50_ms']:.0f} ms", "")
    table.add_row("deletion answered -> refused by jobs, p99",
                  f"{results['revocation_after_answer_p99_ms']:.0f} ms", "")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--revocations", type=int, default=50)
    args, _unknown = parser.parse_known_args()
    RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(measure(args))
    (RESULTS / "auth.json").write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
