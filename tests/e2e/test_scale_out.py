"""Scale-out (issue 18, item 1): the local stack runs orgs with two replicas of each role
(deploy/replicas.tsv): two APIs behind the gateway, two relays (one holds the outbox, one waits
as a hot standby), two consumers sharing each group's partitions.

Under a steady load of organisation adds and reads through the gateway, one replica of each role
is SIGKILLed in turn and kept down (the API, then the relay that holds the outbox, then a
consumer) while the load goes on; then each is started again. Shown:
- the gateway keeps answering: once the killed replica is down, every call is answered 200 (only
  a call sent while it died may fail, and at most one per client);
- the standby relay takes the outbox over: what the API acknowledged after the active relay died
  reaches Kafka (the audit logs it), and the survivor consumer takes over the dead one's
  partitions (its group records progress on every partition after the kill);
- nothing acknowledged is lost or doubled: every organisation answered 200 is in orgs once, in
  orgs' principals projection (its consumers' effect), and in the audit log with exactly one
  `add` entry (its event, relayed once as far as any reader can tell).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from misp_platform.relay import RELAY_LOCK_ID

from .support import (
    GATEWAY,
    PG_URL,
    SUPERVISORCTL,
    admin_headers,
    delete_organisation,
    needs_a_process_per_role,
    program_replicas,
    until,
)

SERVICE = "orgs"
TOPIC = "misp.orgs.organisation.v1"
PRINCIPALS_GROUP = "misp.orgs.principals"
CLIENTS = 2
PAUSE_S = 0.3  # between a client's rounds: a steady load, not a flood (each add is deleted after)
# How long the load runs with a replica down, and how long a call may take.
DOWN_S = 12
CALL_TIMEOUT_S = 30


def supervisorctl(*args: str) -> str:
    done = subprocess.run([*SUPERVISORCTL, *args], capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def pid_of(program: str) -> int:
    out = supervisorctl("pid", f"misp:{program}").strip()
    assert out.isdigit() and int(out) > 0, f"{program} is not running: {out!r}"
    return int(out)


def replicas(role: str) -> list[str]:
    """The supervisor programs of orgs' `role` (replica 1, then 2, ...)."""
    return program_replicas(SERVICE, role)


def kill_and_keep_down(program: str) -> float:
    """SIGKILL the program's process (no goodbye: no lock released by it, no group left), then
    keep it down (supervisor would restart it at once); the moment it is known to be down.
    A call sent between the kill and that moment is in flight, not after: the killed process
    may still take a connection while it dies, and supervisor's quick restart of it answers
    MISP's 503 until it is stopped again (a CI run saw one such POST: nginx passes a POST
    already sent to no other replica)."""
    pid = pid_of(program)
    os.kill(pid, signal.SIGKILL)
    supervisorctl("stop", f"misp:{program}")  # the restarted one, if supervisor was quicker
    until(lambda: "RUNNING" not in supervisorctl("status", f"misp:{program}"),
          f"{program} down")
    return time.monotonic()


# The relay's advisory lock (misp_platform.relay.RELAY_LOCK_ID) as pg_locks shows a bigint key.
RELAY_LOCK = """
    SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()
      AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
"""


def active_relay(programs: list[str]) -> str:
    """The relay replica that holds the outbox's advisory lock: the process whose connection
    (its client port, pg_stat_activity) holds it in pg_locks, among the programs' pids."""
    pids = {pid_of(program): program for program in programs}

    def pick() -> str | None:
        with psycopg.connect(f"{PG_URL}/misp_{SERVICE}", autocommit=True) as conn:
            holder = conn.execute(RELAY_LOCK, (RELAY_LOCK_ID,)).fetchone()
        if holder is None:
            return None
        sockets = subprocess.run(["ss", "-tnpH", f"sport = :{holder[0]}"], check=True,
                                 capture_output=True, text=True).stdout
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", sockets)}
        return next((pids[pid] for pid in owners if pid in pids), None)

    return until(pick, "the relay replica holding the outbox lock", timeout_s=30)


@dataclass
class Call:
    at: float  # when it was sent (monotonic)
    done: float
    what: str  # "add" or "view"
    status: int  # 0: no answer (a transport error)
    org_id: str | None = None
    name: str | None = None


@dataclass
class Load:
    """CLIENTS threads adding an organisation and reading it back, in a loop, through the
    gateway, each call recorded."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    calls: list[Call] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, client: int) -> None:
        headers = admin_headers()
        with httpx.Client(base_url=GATEWAY, timeout=CALL_TIMEOUT_S) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                name = f"scale-out {self.token} {client}-{i}"
                add = self._call(http, "add", "POST", "/admin/organisations/add", headers,
                                 {"name": name})
                add.name = name
                if add.status == 200:
                    self._call(http, "view", "GET", f"/organisations/view/{add.org_id}",
                               headers, None)
                self.stop.wait(PAUSE_S)

    def _call(self, http: httpx.Client, what: str, method: str, path: str,
              headers: dict[str, str], body: dict[str, str] | None) -> Call:
        sent = time.monotonic()
        try:
            answer = http.request(method, path, headers=headers, json=body)
            status = answer.status_code
            org_id = (str(answer.json()["Organisation"]["id"])
                      if status == 200 and what == "add" else None)
        except httpx.TransportError:
            status, org_id = 0, None
        call = Call(at=sent, done=time.monotonic(), what=what, status=status, org_id=org_id)
        with self.lock:
            self.calls.append(call)
        return call

    def acknowledged(self) -> dict[str, str]:
        """Organisation id -> name, of every add answered 200."""
        return {c.org_id: c.name for c in self.calls
                if c.what == "add" and c.status == 200 and c.org_id and c.name}


@pytest.fixture
def load() -> Iterator[Load]:
    """The load, running; afterwards every organisation it made is deleted and every replica
    of orgs is running again."""
    assert len(replicas("api")) >= 2 and len(replicas("relay")) >= 2 \
        and len(replicas("consume")) >= 2, "deploy/replicas.tsv: orgs runs two of each role"
    state = Load()
    threads = [threading.Thread(target=state.run, args=(n,), daemon=True)
               for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        for thread in threads:
            thread.join(timeout=CALL_TIMEOUT_S + 5)
        supervisorctl("start", *(f"misp:{p}" for role in ("api", "relay", "consume")
                                 for p in replicas(role)))
        headers = admin_headers()

        def delete(org_id: str) -> None:
            with httpx.Client(base_url=GATEWAY, timeout=30) as http:
                delete_organisation(http, headers, org_id)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(delete, state.acknowledged()))


def assert_answered_while_down(load: Load, killed: float, role: str) -> None:
    """Every call sent once the killed process was down was answered 200; of those sent while
    it died, at most one per client failed."""
    with load.lock:
        after = [c for c in load.calls if c.done > killed]
    failed = [c for c in after if c.status != 200]
    in_flight = [c for c in failed if c.at <= killed]
    assert [c for c in failed if c.at > killed] == [], (role, failed)
    assert len(in_flight) <= CLIENTS, (role, in_flight)
    assert len([c for c in after if c.at > killed and c.status == 200]) >= 2, (
        f"the load made no progress with one {role} replica down")


def progress_since(when: datetime) -> set[int]:
    """The partitions of the organisation topic on which orgs' principals group recorded
    progress since `when`."""
    with psycopg.connect(f"{PG_URL}/misp_{SERVICE}", autocommit=True) as conn:
        rows = conn.execute("SELECT partition FROM consumer_position WHERE consumer = %s "
                            "AND topic = %s AND updated_at > %s",
                            (PRINCIPALS_GROUP, TOPIC, when)).fetchall()
    return {r[0] for r in rows}


def partitions() -> set[int]:
    with psycopg.connect(f"{PG_URL}/misp_{SERVICE}", autocommit=True) as conn:
        rows = conn.execute("SELECT partition FROM consumer_position WHERE consumer = %s "
                            "AND topic = %s", (PRINCIPALS_GROUP, TOPIC)).fetchall()
    return {r[0] for r in rows}


@needs_a_process_per_role
def test_one_replica_of_each_role_killed_under_load_loses_and_doubles_nothing(
        load: Load) -> None:
    until(lambda: len(load.acknowledged()) >= 4, "the load running", timeout_s=60)

    # The API: the gateway sends everything to the other one.
    api = replicas("api")[-1]
    killed = kill_and_keep_down(api)
    time.sleep(DOWN_S)
    assert_answered_while_down(load, killed, "api")
    supervisorctl("start", f"misp:{api}")

    # The relay holding the outbox: the standby takes the lock and publishes what follows.
    relay = active_relay(replicas("relay"))
    before = set(load.acknowledged())
    killed = kill_and_keep_down(relay)
    time.sleep(DOWN_S)
    assert_answered_while_down(load, killed, "relay")
    made_after = set(load.acknowledged()) - before
    assert made_after, "no organisation acknowledged with the active relay down"
    supervisorctl("start", f"misp:{relay}")

    # A consumer: the survivor takes the dead one's partitions over.
    consumer = replicas("consume")[-1]
    every_partition = partitions()
    assert len(every_partition) >= 2, every_partition
    killed_at = datetime.now(UTC)
    killed = kill_and_keep_down(consumer)
    time.sleep(DOWN_S)
    assert_answered_while_down(load, killed, "consume")
    until(lambda: progress_since(killed_at) >= every_partition,
          "the surviving consumer applying every partition", timeout_s=60)
    supervisorctl("start", f"misp:{consumer}")

    load.stop.set()
    time.sleep(1)
    made = load.acknowledged()
    assert len(made) >= 10, made
    ids = sorted(int(i) for i in made)

    def everywhere() -> bool:
        with psycopg.connect(f"{PG_URL}/misp_orgs", autocommit=True) as orgs, \
                psycopg.connect(f"{PG_URL}/misp_audit", autocommit=True) as audit:
            projected = orgs.execute("SELECT count(*) FROM principal_org WHERE org_id = ANY(%s)",
                                     (ids,)).fetchone()
            logged = audit.execute(
                "SELECT count(DISTINCT model_id) FROM log_entry WHERE model = 'Organisation' "
                "AND action = 'add' AND model_id = ANY(%s)", (ids,)).fetchone()
        return bool(projected and logged and projected[0] == len(ids) == logged[0])

    until(everywhere, "every acknowledged organisation projected and logged", timeout_s=60)
    with psycopg.connect(f"{PG_URL}/misp_orgs", autocommit=True) as orgs, \
            psycopg.connect(f"{PG_URL}/misp_audit", autocommit=True) as audit:
        names = orgs.execute("SELECT name, count(*) FROM organisation WHERE name LIKE %s "
                             "GROUP BY name", (f"scale-out {load.token} %",)).fetchall()
        entries = audit.execute(
            "SELECT model_id, count(*) FROM log_entry WHERE model = 'Organisation' "
            "AND action = 'add' AND model_id = ANY(%s) GROUP BY model_id", (ids,)).fetchall()
    counts = {n: c for n, c in names}
    # Each acknowledged organisation once; none twice (an add whose answer was lost with the
    # killed API may have been made: once at most, never retried into a second).
    assert {n: counts.get(n) for n in made.values()} == {n: 1 for n in made.values()}
    assert max(counts.values()) == 1, counts
    assert {str(i): c for i, c in entries} == {i: 1 for i in made}
