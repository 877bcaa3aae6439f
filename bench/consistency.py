"""Benchmark: what read-your-writes costs (docs/consistency.md).

Four dedicated API workers on free ports, against the live databases of the running stack:
orgs and identity, each once with read-your-writes off (the baseline: the answer goes out at
commit, as before) and once with it on (the answer waits until the relay has put the events in
Kafka). Sequential clients, as MISP's scripts are; prints p50/p99 of, in the same run:
  1. `admin/organisations/add` (on vs off);
  2. `admin/users/add` into an organisation identity already knows (on vs off);
  3. `admin/users/add` into an organisation created just before, on the other service: a miss
     that waits for identity's projection (with read-your-writes off this is refused most of
     the time: the count of refusals is printed);
  4. an unknown authkey: a miss whose projection holds everything already (one end-offsets
     request and one query: the floor of a miss);
  5. `servers/serverSettingsEdit` of `Security.hide_organisation_index_from_users` (on: the
     answer waits until identity, orgs, the audit and the mailer have applied it), each
     followed at once by a plain user's `organisations/index` on orgs: how often orgs still
     decided by the old value is printed.

    python bench/consistency.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from support import admin_key, free_port

RESULTS = Path(__file__).parent / "results"
UNKNOWN_KEY = "x" * 40
HIDE_ORG_INDEX = "Security.hide_organisation_index_from_users"


class Worker:
    """`python -m <service> api` on a free port, read-your-writes on or off."""

    def __init__(self, service: str, read_your_writes: bool) -> None:
        self.port = free_port()
        RESULTS.mkdir(exist_ok=True)
        log = open(RESULTS / f"consistency-{service}.log", "ab")  # noqa: SIM115
        env = {**os.environ, f"{service.upper()}_HTTP_PORT": str(self.port),
               "MISP_READ_YOUR_WRITES": "1" if read_your_writes else "0",
               "MISP_LOG_FORMAT": "json", "MISP_LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen([sys.executable, "-m", service, "api"], env=env,
                                        stdout=log, stderr=log, start_new_session=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30,
                                   headers={"Authorization": admin_key(),
                                            "Accept": "application/json"})

    def wait(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker on {self.port} did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    begin = time.perf_counter()
    answer = call()
    return (time.perf_counter() - begin) * 1000, answer


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": statistics.median(ordered),
            "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)], "n": len(ordered)}


def new_org(worker: Worker) -> tuple[float, int]:
    ms, answer = timed(lambda: worker.client.post("/admin/organisations/add", json={
        "name": f"bench-ryw-{uuid.uuid4().hex[:12]}"}))
    assert answer.status_code == 200, answer.text
    return ms, int(answer.json()["Organisation"]["id"])


def add_user(worker: Worker, org_id: int) -> tuple[float, httpx.Response]:
    return timed(lambda: worker.client.post("/admin/users/add", json={
        "email": f"bench-ryw-{uuid.uuid4().hex[:12]}@example.test", "org_id": org_id,
        "role_id": 3}))


def setting_changes(settings: Worker, orgs: Worker, user_key: str,
                    rounds: int) -> dict[str, float]:
    """The setting flipped `rounds` times, each change followed by the index it governs."""
    samples: list[float] = []
    stale = 0
    for number in range(rounds):
        hidden = number % 2 == 0
        ms, answer = timed(lambda v=hidden: settings.client.post(  # type: ignore[misc]
            f"/servers/serverSettingsEdit/{HIDE_ORG_INDEX}", json={"value": v}))
        assert answer.status_code == 200, answer.text
        samples.append(ms)
        index = orgs.client.get("/organisations/index", headers={"Authorization": user_key})
        stale += index.status_code != (403 if hidden else 200)
    settings.client.post(f"/servers/serverSettingsEdit/{HIDE_ORG_INDEX}", json={"value": False})
    return {**percentiles(samples), "stale": stale}


def measure(rounds: int) -> dict[str, dict[str, float]]:
    workers = {(s, on): Worker(s, on) for s in ("orgs", "identity", "settings")
               for on in (False, True)}
    try:
        for worker in workers.values():
            worker.wait()
        results: dict[str, dict[str, float]] = {}
        plain = add_user(workers["identity", False], 1)[1]
        assert plain.status_code == 200, plain.text
        for on in (False, True):
            mode = "on" if on else "off"
            orgs, identity = workers["orgs", on], workers["identity", on]
            org_add = [new_org(orgs)[0] for _ in range(rounds)]
            results[f"org_add_{mode}"] = percentiles(org_add)

            known = [add_user(identity, 1) for _ in range(rounds)]
            assert all(a.status_code == 200 for _, a in known), "users/add into org 1 failed"
            results[f"user_add_{mode}"] = percentiles([ms for ms, _ in known])

            after_org: list[float] = []
            refused = 0
            for _ in range(rounds):
                _ms, org_id = new_org(orgs)
                ms, answer = add_user(identity, org_id)
                after_org.append(ms)
                refused += answer.status_code != 200
            results[f"user_add_after_org_{mode}"] = {**percentiles(after_org),
                                                     "refused": refused}

            unknown = [timed(lambda w=identity: w.client.get(  # type: ignore[misc]
                "/api/v1/identity/whoami", headers={"Authorization": UNKNOWN_KEY}))[0]
                for _ in range(rounds)]
            results[f"unknown_key_{mode}"] = percentiles(unknown)

            results[f"setting_edit_{mode}"] = setting_changes(
                workers["settings", on], orgs, plain.json()["User"]["authkey"], rounds)
        return results
    finally:
        for worker in workers.values():
            worker.stop()


def report(results: dict[str, dict[str, float]]) -> None:
    table = Table(title="read-your-writes: sequential clients, one worker each (ms)")
    table.add_column("call")
    for column in ("off p50", "off p99", "on p50", "on p99", "on/off p50"):
        table.add_column(column, justify="right")
    rows = [("organisations/add", "org_add"), ("users/add, known org", "user_add"),
            ("users/add, org created just before", "user_add_after_org"),
            ("unknown authkey (a miss with nothing to wait for)", "unknown_key"),
            ("servers/serverSettingsEdit (waits for 4 services)", "setting_edit")]
    for label, key in rows:
        off, on = results[f"{key}_off"], results[f"{key}_on"]
        table.add_row(label, f"{off['p50']:.1f}", f"{off['p99']:.1f}", f"{on['p50']:.1f}",
                      f"{on['p99']:.1f}", f"{on['p50'] / off['p50']:.2f}")
    Console().print(table)
    print(f"users/add right after organisations/add refused: "
          f"{results['user_add_after_org_off']['refused']:.0f} of "
          f"{results['user_add_after_org_off']['n']:.0f} with read-your-writes off, "
          f"{results['user_add_after_org_on']['refused']:.0f} of "
          f"{results['user_add_after_org_on']['n']:.0f} with it on")
    print(f"organisations/index right after the setting changed, decided by the old value: "
          f"{results['setting_edit_off']['stale']:.0f} of {results['setting_edit_off']['n']:.0f}"
          f" with read-your-writes off, {results['setting_edit_on']['stale']:.0f} of "
          f"{results['setting_edit_on']['n']:.0f} with it on")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args, _unknown = parser.parse_known_args()
    RESULTS.mkdir(exist_ok=True)
    results = measure(args.rounds)
    (RESULTS / "consistency.json").write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
