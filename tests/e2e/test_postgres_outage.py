"""PostgreSQL stopped for a few seconds under load, then started again, with the real script
(deploy/local/postgres.sh stop / start), issue 15 item 6. Client threads keep calling cheap
authenticated reads and writes through the gateway: while the server is away every answer is
2xx or MISP's 503 with Retry-After (never a 500, never the gateway's own 502/503 for a dropped
connection, never a reset), every write that was acknowledged is there afterwards, the
services answer 2xx again soon after the start, and the pipeline between them works again (an
organisation, then a user in it at once). PostgreSQL is started again whatever happens."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .support import GATEWAY, admin_headers, until

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "postgres.sh"
CLIENTS = 3
DOWN_S = 5.0
RECOVERY_S = 20.0
PIPELINE_S = 60.0  # relays and consumers reconnect on their own schedules
PAUSE_S = 0.05  # between two calls of one client: enough answers without a flood of them

READS = (("GET", "/users/view/me"), ("GET", "/organisations/index"))


@dataclass
class Answer:
    phase: str
    method: str
    path: str
    status: int | None = None
    retry_after: str | None = None
    body: Any = None
    error: str | None = None
    org_name: str | None = None

    def acceptable(self) -> bool:
        """2xx, or the services' own 503: Retry-After and MISP's `{name, message, url}`."""
        if self.status is not None and 200 <= self.status < 300:
            return True
        return (self.status == 503 and self.retry_after is not None
                and isinstance(self.body, dict) and {"name", "message", "url"} <= set(self.body))

    def __str__(self) -> str:
        return (f"[{self.phase}] {self.method} {self.path} -> "
                f"{self.error or self.status} retry-after={self.retry_after} {self.body!r:.200}")


def postgres(action: str) -> float:
    """Run the real script; how long it took."""
    begin = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT), action], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"postgres.sh {action}: {done.stdout}{done.stderr}"
    return time.monotonic() - begin


class Load:
    """CLIENTS threads calling the reads and an organisation add in turn, each answer kept with
    the phase it was sent in."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.phase = "before"
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(n,), daemon=True)
                        for n in range(CLIENTS)]

    def client(self, n: int) -> None:
        with httpx.Client(base_url=GATEWAY, headers=self.headers, timeout=30) as http:
            turn = n
            while not self.stopping.is_set():
                turn += 1
                if turn % 3 == 2:
                    name = f"outage-{uuid.uuid4().hex[:12]}"
                    answer = self.call(http, "POST", "/admin/organisations/add", {"name": name})
                    answer.org_name = name
                else:
                    method, path = READS[turn % 3]
                    answer = self.call(http, method, path)
                with self.lock:
                    self.answers.append(answer)
                time.sleep(PAUSE_S)

    def call(self, http: httpx.Client, method: str, path: str, body: Any = None) -> Answer:
        answer = Answer(self.phase, method, path)
        try:
            response = http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            answer.error = f"{type(exc).__name__}: {exc}"
            return answer
        answer.status = response.status_code
        answer.retry_after = response.headers.get("Retry-After")
        try:
            answer.body = response.json()
        except ValueError:
            answer.body = response.text[:300]
        return answer

    def answered_2xx_in(self, phase: str) -> bool:
        with self.lock:
            return any(a.phase == phase and a.status is not None and 200 <= a.status < 300
                       for a in self.answers)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)


def org_then_user(headers: dict[str, str]) -> bool:
    """Whether an organisation added now takes a user at once (both removed again)."""
    tag = uuid.uuid4().hex[:12]
    with httpx.Client(base_url=GATEWAY, headers=headers, timeout=30) as http:
        org = http.post("/admin/organisations/add", json={"name": f"outage-after-{tag}"})
        if org.status_code != 200:
            return False
        org_id = org.json()["Organisation"]["id"]
        user = http.post("/admin/users/add", json={
            "email": f"outage-{tag}@example.test", "org_id": org_id, "role_id": 3})
        if user.status_code == 200:
            http.post(f"/admin/users/delete/{user.json()['User']['id']}")
        http.post(f"/admin/organisations/delete/{org_id}")
        return user.status_code == 200


def answers_2xx(headers: dict[str, str]) -> bool:
    with httpx.Client(base_url=GATEWAY, headers=headers, timeout=10) as http:
        for method, path in READS:
            try:
                if not 200 <= http.request(method, path).status_code < 300:
                    return False
            except httpx.HTTPError:
                return False
    return True


def test_postgres_stopped_and_started_under_load() -> None:
    headers = admin_headers()
    until(lambda: answers_2xx(headers), "the services answer before the outage", 30)
    stopped = started = False
    timings: dict[str, float] = {}
    try:
        with Load(headers) as load:
            time.sleep(1.0)
            load.phase = "down"
            stopped = True
            timings["stop"] = postgres("stop")
            time.sleep(DOWN_S)
            load.phase = "restarting"
            timings["start"] = postgres("start")
            started = True
            load.phase = "after"
            begin = time.monotonic()
            until(lambda: answers_2xx(headers), "2xx again after the restart", RECOVERY_S)
            timings["recovery"] = time.monotonic() - begin
            until(lambda: load.answered_2xx_in("after"), "the load's calls answer 2xx again",
                  RECOVERY_S)
    finally:
        if stopped and not started:
            postgres("start")

    answers = load.answers
    bad = [a for a in answers if not a.acceptable()]
    assert not bad, f"{len(bad)} of {len(answers)} answers were neither 2xx nor MISP's 503 " \
                    "with Retry-After:\n" + "\n".join(str(a) for a in bad[:15])
    unavailable = [a for a in answers if a.status == 503 and a.phase in ("down", "restarting")]
    assert unavailable, "no 503 while PostgreSQL was down: the outage was not seen"

    # The pipeline too (relays and consumers reconnected): an organisation, then a user in it
    # at once, which identity accepts only once orgs' event reached it (read-your-writes).
    begin = time.monotonic()
    until(lambda: org_then_user(headers), "an organisation and a user in it", PIPELINE_S)
    timings["pipeline"] = time.monotonic() - begin

    acknowledged = [a for a in answers if a.org_name and a.status == 200]
    not_deleted: list[str] = []
    with httpx.Client(base_url=GATEWAY, headers=headers, timeout=30) as http:
        try:
            for answer in acknowledged:
                org = answer.body["Organisation"]
                seen = http.get(f"/organisations/view/{org['id']}")
                assert seen.status_code == 200, (
                    f"{answer}: view -> {seen.status_code} {seen.text}")
                assert seen.json()["Organisation"]["name"] == answer.org_name
        finally:
            # Checked, then deleted (they have no users), whatever the check found.
            for answer in acknowledged:
                org_id = answer.body["Organisation"]["id"]
                gone = http.post(f"/admin/organisations/delete/{org_id}")
                if gone.status_code != 200:
                    not_deleted.append(f"{org_id}: {gone.status_code} {gone.text[:200]}")
    assert not not_deleted, not_deleted
    print(f"{len(answers)} answers, {len(unavailable)} 503s while down, "
          f"{len(acknowledged)} organisations acknowledged and kept, then deleted; "
          f"timings {timings}")
