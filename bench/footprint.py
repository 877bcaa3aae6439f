"""Benchmark: the stack's memory at rest in each profile (issue 18, item 2).

The services' processes (every child of supervisord: the full profile's process per role, or
the small profile's process per service) are measured by their proportional set size (PSS,
/proc/<pid>/smaps_rollup: shared pages split between the processes that share them), at rest:
ready, then idle for --settle seconds. The full profile is the baseline, measured in the same
run; the infrastructure (PostgreSQL, the Kafka broker, nginx) is reported beside it, the same in
both. The stack is switched with `MISP_PROFILE=small deploy/local/up.sh` and put back with
`deploy/local/up.sh` (full) at the end, whatever happens.

    python bench/footprint.py [--settle 20]     # with the stack up (make up)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("MISP_STATE_DIR", ROOT / ".local"))
RESULTS = ROOT / "bench" / "results"
TARGET_MIB = 1024  # the small profile's services at rest


def pss_kib(pid: int) -> int:
    """The process's PSS in KiB (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """Every descendant of `pid`."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    direct = [int(p) for p in out.split()]
    return direct + [d for c in direct for d in children(c)]


def pids_of(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


def services() -> list[int]:
    supervisord = int((STATE / "supervisor" / "supervisord.pid").read_text().strip())
    return children(supervisord)


def infrastructure() -> dict[str, list[int]]:
    return {"postgresql": pids_of(f"postgres -D {STATE}") + [
                c for p in pids_of(f"postgres -D {STATE}") for c in children(p)],
            "kafka": pids_of("kafka.Kafka"),
            "nginx": pids_of(f"nginx: master process.*{STATE}") + [
                c for p in pids_of(f"nginx: master process.*{STATE}") for c in children(p)]}


def measure(settle_s: float) -> dict[str, float]:
    time.sleep(settle_s)
    procs = services()
    infra = {name: sum(pss_kib(p) for p in set(pids)) / 1024
             for name, pids in infrastructure().items()}
    return {"processes": len(procs), "services_mib": sum(pss_kib(p) for p in procs) / 1024,
            **{f"{name}_mib": mib for name, mib in infra.items()}}


def up(profile: str) -> None:
    """Switch the running stack to `profile` (deploy/local/up.sh), waiting until it is ready."""
    log = STATE / "logs" / "bench-footprint-up.log"
    with log.open("ab") as out:
        done = subprocess.run(["bash", str(ROOT / "deploy/local/up.sh")], cwd=ROOT,
                              env={**os.environ, "MISP_PROFILE": profile}, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        sys.exit(f"up.sh ({profile}) failed: see {log}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds idle after ready before measuring")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    try:
        up("full")
        results["full"] = measure(args.settle)
        up("small")
        results["small"] = measure(args.settle)
    finally:
        up("full")
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "footprint.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(results: dict[str, dict[str, float]]) -> None:
    full = results["full"]["services_mib"]
    table = Table(title="Memory at rest (PSS, MiB)")
    for column in ("profile", "service processes", "services' PSS", "vs full", "PostgreSQL",
                   "Kafka", "nginx", "all"):
        table.add_column(column, justify="right")
    for profile, r in results.items():
        everything = r["services_mib"] + r["postgresql_mib"] + r["kafka_mib"] + r["nginx_mib"]
        table.add_row(profile, str(int(r["processes"])), f"{r['services_mib']:.0f}",
                      f"{r['services_mib'] / full:.2f}", f"{r['postgresql_mib']:.0f}",
                      f"{r['kafka_mib']:.0f}", f"{r['nginx_mib']:.0f}", f"{everything:.0f}")
    console = Console()
    console.print(table)
    small = results["small"]["services_mib"]
    console.print(f"small profile's services at rest: {small:.0f} MiB PSS, target < {TARGET_MIB} "
                  f"MiB: {'met' if small < TARGET_MIB else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
