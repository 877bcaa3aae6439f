"""Benchmark: the cost of authentication through the gateway and on one identity API worker,
and revocation latency.

Prints, in the same run:
  1. through the gateway (issue 19: target >= 0.7), with wrk (an outside load generator,
     Debian's) at 32 connections, rounds alternating between the paths so that the machine's
     noise falls on each alike: authenticated `GET /users/view/me` (MISP's `Authorization`
     header, `Accept: application/json`) beside two baselines measured the same way:
       - `/health`: what the gateway answers by itself (no service behind it);
       - `/_svc/identity/health`: identity's own unauthenticated `/health` through the gateway
         (the same nginx, the same upstream connections, the same API processes: the ratio to it
         is what authentication and the view cost);
     wrk's output goes to bench/results/auth-wrk.log. Beside each rate, the CPU time the identity
     API processes and nginx's workers spent per request (from /proc): on a machine shared with
     other loads the rates follow the share of the CPU each process gets, the CPU per request
     does not, and their ratio is what the rates' ratio is when the API is the bottleneck;
  2. requests/s of authenticated `GET /users/view/me` on ONE dedicated identity api worker
     (uvicorn, this service's app, on a free port, against the live `misp_identity` database),
     beside the same worker's unauthenticated `/health` measured the same way (baseline);
     target ratio >= 0.7 (MISP pays ~100 ms of bcrypt per API call);
  3. the time from an authkey's deletion in identity (`auth_keys/delete` through the gateway)
     to its rejection by another service (jobs' `/api/v1/jobs/whoami` through the gateway),
     repeated N times: p50/p99, target p99 <= 500 ms.
The in-process load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams (C
connections, one process): on a small machine it costs the server less CPU than httpx would, and
both paths are measured with it alike. Needs the running stack (`make up`), `.local/env` and wrk.

    python bench/auth.py [--seconds 6] [--connections 8] [--revocations 50]
                         [--wrk-seconds 4] [--wrk-connections 32] [--wrk-rounds 2]
                         [--skip-in-process] [--skip-revocation]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from support import STATE_DIR, admin_key, free_port

RESULTS = Path(__file__).parent / "results"
GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")
OTHER_SERVICE_PROBE = "/api/v1/jobs/whoami"
WRK_LOG = RESULTS / "auth-wrk.log"
# What wrk measures through the gateway: (name, path, authenticated).
GATEWAY_PATHS = (
    ("gateway_health", "/health", False),
    ("identity_health", "/_svc/identity/health", False),
    ("view_me", "/users/view/me", True),
)


# ---- CPU per request, from /proc -------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cmdline(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def api_pids(service: str = "identity") -> list[int]:
    """The service's API processes: `python -m <service> api` (full profile) or `all`."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        args = _cmdline(pid)
        for n in range(len(args) - 2):
            if args[n] == "-m" and args[n + 1] == service and args[n + 2] in ("api", "all"):
                out.append(int(pid))
                break
    return out


def nginx_pids() -> list[int]:
    """The gateway's nginx master and workers (from its pid file), when it runs here."""
    try:
        master = int((STATE_DIR / "nginx" / "nginx.pid").read_text().strip())
    except (OSError, ValueError):
        return []
    out = [master]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            out.append(int(pid))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU these processes have used (those that ended count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


# ---- through the gateway, with wrk ------------------------------------------------------------

@dataclass
class WrkTotals:
    """One path's requests and seconds summed over the rounds, and its answers that were not
    2xx/3xx (wrk counts them; a 404 baseline says what it is in the table)."""

    requests: int = 0
    seconds: float = 0.0
    not_2xx: int = 0
    socket_errors: int = 0
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    api_cpu_s: float = 0.0
    gateway_cpu_s: float = 0.0

    def cpu_us(self, seconds: float) -> float:
        """CPU microseconds per request."""
        return seconds / self.requests * 1e6 if self.requests else 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def parse_wrk(output: str) -> tuple[int, float, int, int, float, float]:
    """(requests, seconds, non-2xx/3xx answers, socket errors (connect, read, write: not the
    timeouts, answers slower than wrk's --timeout), p50 ms, p99 ms) of wrk --latency."""
    done = re.search(r"([0-9]+) requests in ([0-9.]+)(us|ms|s|m),", output)
    if done is None:
        raise ValueError(f"no request count in wrk's output:\n{output}")
    not_2xx = re.search(r"Non-2xx or 3xx responses: ([0-9]+)", output)
    errors = re.search(r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), "
                       r"timeout ([0-9]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)\s*$", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)\s*$", output, re.MULTILINE)
    return (int(done[1]), _ms(done[2] + done[3]) / 1000, int(not_2xx[1]) if not_2xx else 0,
            sum(int(n) for n in errors.groups()[:3]) if errors else 0,
            _ms(p50[1]) if p50 else 0.0, _ms(p99[1]) if p99 else 0.0)


def run_wrk(url: str, headers: dict[str, str], *, seconds: float, connections: int,
            threads: int) -> str:
    """wrk's report; its output goes to the benchmark's log, never to the terminal."""
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is missing: apt-get install wrk (make install)")
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "10s", "--latency",
               *(a for k, v in headers.items() for a in ("-H", f"{k}: {v}")), url]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=seconds + 60, check=False)
    shown = [a if not a.startswith("Authorization:") else "Authorization: <authkey>"
             for a in command]
    with WRK_LOG.open("a") as log:
        log.write(f"$ {' '.join(shown)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:300]}")
    return done.stdout


async def gateway_rates(args: argparse.Namespace, key: str) -> dict[str, WrkTotals]:
    """Each of GATEWAY_PATHS through the gateway, in alternating rounds after a warm-up."""
    totals = {name: WrkTotals() for name, _, _ in GATEWAY_PATHS}
    threads = min(2, args.wrk_connections)

    def one(path: str, authenticated: bool, seconds: float) -> str:
        headers = {"Accept": "application/json"}
        if authenticated:
            headers["Authorization"] = key
        return run_wrk(GATEWAY + path, headers, seconds=seconds,
                       connections=args.wrk_connections, threads=threads)

    for _, path, authenticated in GATEWAY_PATHS:  # warm-up: connections, caches
        await asyncio.to_thread(one, path, authenticated, 1)
    apis, gateway = api_pids(), nginx_pids()
    for _ in range(args.wrk_rounds):
        for name, path, authenticated in GATEWAY_PATHS:
            api_before, gateway_before = cpu_seconds(apis), cpu_seconds(gateway)
            requests, seconds, not_2xx, errors, p50, p99 = parse_wrk(
                await asyncio.to_thread(one, path, authenticated, args.wrk_seconds))
            total = totals[name]
            total.api_cpu_s += cpu_seconds(apis) - api_before
            total.gateway_cpu_s += cpu_seconds(gateway) - gateway_before
            total.requests += requests
            total.seconds += seconds
            total.not_2xx += not_2xx
            total.socket_errors += errors
            total.p50_ms.append(p50)
            total.p99_ms.append(p99)
    return totals


async def gateway_statuses(key: str) -> dict[str, int]:
    """What the gateway answers on each of GATEWAY_PATHS (a baseline may be nginx's 404)."""
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10) as http:
        return {name: (await http.get(path, headers={
            "Accept": "application/json", **({"Authorization": key} if authenticated else {})
        })).status_code for name, path, authenticated in GATEWAY_PATHS}


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
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as http:
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

async def in_process(args: argparse.Namespace, bench_key: str) -> dict[str, float]:
    """Part 2: one dedicated identity api worker, the asyncio load generator."""
    port = free_port()
    worker = start_worker(port)
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
        return {"health_rps": health, "view_me_rps": view_me, "ratio": view_me / health,
                "whoami_rps": whoami, "whoami_ratio": whoami / health}
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()


def _ratio(measured: float, baseline: float) -> float:
    return measured / baseline if baseline else math.nan


async def through_gateway(args: argparse.Namespace, bench_key: str) -> dict[str, float]:
    """Part 1: wrk through the gateway; every rate beside both baselines."""
    statuses = await gateway_statuses(bench_key)
    if statuses["identity_health"] != 200 or statuses["view_me"] != 200:
        raise RuntimeError(f"the gateway's answers are not 200: {statuses}")
    totals = await gateway_rates(args, bench_key)
    for name in ("identity_health", "view_me"):
        if totals[name].not_2xx or totals[name].socket_errors:
            raise RuntimeError(f"{name}: {totals[name].not_2xx} answers not 2xx/3xx, "
                               f"{totals[name].socket_errors} socket errors (see {WRK_LOG})")
    out: dict[str, float] = {"wrk_connections": args.wrk_connections,
                             "wrk_seconds": args.wrk_seconds, "wrk_rounds": args.wrk_rounds}
    for name, total in totals.items():
        out[f"gw_{name}_rps"] = total.rate
        out[f"gw_{name}_status"] = statuses[name]
        out[f"gw_{name}_p50_ms"] = statistics.median(total.p50_ms)
        out[f"gw_{name}_p99_ms"] = max(total.p99_ms)
        out[f"gw_{name}_api_cpu_us"] = total.cpu_us(total.api_cpu_s)
        out[f"gw_{name}_gateway_cpu_us"] = total.cpu_us(total.gateway_cpu_s)
    out["gw_ratio_to_identity_health"] = _ratio(out["gw_view_me_rps"],
                                                out["gw_identity_health_rps"])
    out["gw_ratio_to_gateway_health"] = _ratio(out["gw_view_me_rps"],
                                               out["gw_gateway_health_rps"])
    out["identity_api_processes"] = len(api_pids())
    if out["gw_view_me_api_cpu_us"] and out["gw_identity_health_api_cpu_us"]:
        # What the rates' ratio is when identity's API is the bottleneck (a quiet machine).
        out["gw_api_cpu_ratio"] = (out["gw_identity_health_api_cpu_us"]
                                   / out["gw_view_me_api_cpu_us"])
        out["gw_cpu_ratio"] = (
            (out["gw_identity_health_api_cpu_us"] + out["gw_identity_health_gateway_cpu_us"])
            / (out["gw_view_me_api_cpu_us"] + out["gw_view_me_gateway_cpu_us"]))
    return out


async def measure(args: argparse.Namespace) -> dict[str, float]:
    admin = {"Authorization": admin_key(), "Accept": "application/json"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as http:
        added = await http.post("/auth_keys/add/me", headers=admin,
                                json={"comment": "bench/auth.py (deleted at the end)"})
        added.raise_for_status()
    bench_key, bench_key_id = added.json()["AuthKey"]["authkey_raw"], added.json()["AuthKey"]["id"]
    results: dict[str, float] = {"seconds": args.seconds, "connections": args.connections}
    try:
        results.update(await through_gateway(args, bench_key))
        if not args.skip_in_process:
            results.update(await in_process(args, bench_key))
    finally:
        async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as http:
            await http.post(f"/auth_keys/delete/{bench_key_id}", headers=admin)
    if args.skip_revocation:
        return results
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


def _status_note(status: float) -> str:
    return "" if status == 200 else f", answered {status:.0f} by nginx itself"


def report(results: dict[str, float]) -> None:
    table = Table(title="auth: through the gateway (wrk); one identity api worker (in process); "
                  "revocation across services")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("baseline / target", justify="right")
    r = results
    wrk = (f"wrk, {r['wrk_connections']:.0f} connections, {r['wrk_rounds']:.0f} x "
           f"{r['wrk_seconds']:.0f} s")
    table.add_row("gateway: GET /health, the gateway alone (baseline)"
                  f"{_status_note(r['gw_gateway_health_status'])}",
                  f"{r['gw_gateway_health_rps']:,.0f} req/s",
                  f"p50 {r['gw_gateway_health_p50_ms']:.1f} ms; {wrk}")
    table.add_row("gateway: GET /_svc/identity/health, identity's, no auth (baseline)",
                  f"{r['gw_identity_health_rps']:,.0f} req/s",
                  f"p50 {r['gw_identity_health_p50_ms']:.1f} ms")
    table.add_row("gateway: GET /users/view/me, authkey",
                  f"{r['gw_view_me_rps']:,.0f} req/s",
                  f"p50 {r['gw_view_me_p50_ms']:.1f} ms, p99 {r['gw_view_me_p99_ms']:.1f} ms")
    table.add_row("  ratio to identity's /health through the gateway",
                  f"{r['gw_ratio_to_identity_health']:.2f}", "target >= 0.70")
    table.add_row("  ratio to the gateway's own /health",
                  f"{r['gw_ratio_to_gateway_health']:.2f}", "(nginx alone: no Python behind)")
    for name, label in (("gateway_health", "/health"), ("identity_health", "identity's /health"),
                        ("view_me", "/users/view/me")):
        table.add_row(f"  CPU per request, {label}",
                      f"API {r[f'gw_{name}_api_cpu_us']:,.0f} us",
                      f"nginx {r[f'gw_{name}_gateway_cpu_us']:,.0f} us")
    if "gw_api_cpu_ratio" in r:
        table.add_row("  CPU ratio, identity's /health to /users/view/me",
                      f"API {r['gw_api_cpu_ratio']:.2f}",
                      f"API + nginx {r['gw_cpu_ratio']:.2f} "
                      f"({r['identity_api_processes']:.0f} API process(es))")
    if "health_rps" in r:
        table.add_row("in process: GET /health, no auth (baseline)",
                      f"{r['health_rps']:,.0f} req/s", f"{r['connections']:.0f} connections")
        table.add_row("in process: GET /users/view/me, authkey", f"{r['view_me_rps']:,.0f} req/s",
                      f"ratio {r['ratio']:.2f} (target >= 0.70)")
        table.add_row("in process: GET /api/v1/identity/whoami (auth only)",
                      f"{r['whoami_rps']:,.0f} req/s", f"ratio {r['whoami_ratio']:.2f} "
                      "(diagnostic)")
    if "revocations" in r:
        table.add_row(f"deletion -> refused by jobs, p50 (n={r['revocations']:.0f})",
                      f"{r['revocation_p50_ms']:.0f} ms", "")
        table.add_row("deletion -> refused by jobs, p99", f"{r['revocation_p99_ms']:.0f} ms",
                      "target <= 500 ms")
        table.add_row("deletion -> refused by jobs, max", f"{r['revocation_max_ms']:.0f} ms", "")
        table.add_row("deletion answered -> refused by jobs, p50",
                      f"{r['revocation_after_answer_p50_ms']:.0f} ms", "")
        table.add_row("deletion answered -> refused by jobs, p99",
                      f"{r['revocation_after_answer_p99_ms']:.0f} ms", "")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--revocations", type=int, default=50)
    parser.add_argument("--wrk-seconds", type=float, default=4)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--wrk-rounds", type=int, default=2)
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--skip-revocation", action="store_true")
    args, _unknown = parser.parse_known_args()
    RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(measure(args))
    (RESULTS / "auth.json").write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
