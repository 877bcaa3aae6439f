"""Benchmark: the audit log (issue 5), on generated data, with baselines measured in the same run.

  1. ingestion: events/s from Kafka to searchable, chained Log rows (SIEM records queued in the
     outbox too) by one consumer process (bench/audit_consumer.py; the records are encoded
     before the clock starts), next to a raw COPY of the same rows into an identical table
     (target >= 0.2);
  2. latency: from an event's publication to its row being searchable, p50/p99 at a fixed
     rate (target p99 <= 500 ms at 500 actions/s); commit -> Kafka is bench/pipeline.py's part;
  3. search: p95 of `admin/logs/index` substring searches (email, title, change; selective
     patterns) through the ASGI app over N rows, next to the same SQL with index scans disabled
     (target p95 <= 50 ms at 2 million rows);
  4. scale: ingestion with 1, 2 and 3 consumer processes (bench/audit_consumer.py) in one group
     over a 3-partition topic, next to the same COPY (issue 18): where the curve flattens, and why;
  5. verify: the whole-log walk of `audit verify` and the `audit_verify` job (entries/s and CPU
     per entry) over the log the parts before left (topped up to --verify-entries), next to a
     raw read of the same rows by the same kind of cursor; and what the API's bounded default
     range and its most (audit.handlers.integrity.VerifyLimits) cost a request at that rate,
     beside a client's 10 s timeout (issue 19).

    python bench/audit.py [--events 20000] [--rate 500] [--seconds 10] [--search-rows 200000]
    python bench/audit.py --search-rows 2000000      # the issue's 2-million-row figure
    python bench/audit.py --parts scale [--scale-events 20000]   # the scale-out part alone
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# This file is bench/audit.py: its folder must not shadow the `audit` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from audit.adapters.tables import ENTRY_COLUMNS, entry_index_ddl  # noqa: E402
from audit.bootstrap import create_app  # noqa: E402
from audit.consumer import AuditConsumer  # noqa: E402
from audit.domain.chain import GENESIS  # noqa: E402
from audit.domain.checkpoint import public_raw  # noqa: E402
from audit.domain.mapping import LogSettings, to_log_row  # noqa: E402
from audit.handlers.integrity import VerifyLimits, verify, write_checkpoint  # noqa: E402
from audit.projections.log import Options, Source, project  # noqa: E402
from audit.settings import AuditSettings  # noqa: E402
from misp_contracts.envelope import Actor, Envelope, to_kafka  # noqa: E402
from misp_contracts.events.identity import (  # noqa: E402
    UserSettingSet,
    UserSettingState,
    UserState,
    UserUpdated,
)
from misp_contracts.topics import Topic  # noqa: E402
from misp_platform.db import create_engine, libpq_url  # noqa: E402
from misp_platform.kafka import client_options, create_producer, ensure_topics  # noqa: E402
from misp_platform.migrations import upgrade  # noqa: E402
from misp_platform.testing import create_test_database, drop_test_database, seed_principal  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MIGRATIONS = Path(__file__).resolve().parents[1] / "services/audit/src/audit/migrations"
PEPPER = "bench-pepper"
CONSUMER = Path(__file__).parent / "audit_consumer.py"
PARTS = ("ingestion", "latency", "scale", "verify", "search")
CLIENT_TIMEOUT_S = 10  # the e2e test's client, PyMISP's default is none: a usual HTTP client's
SCALE_PARTITIONS = 3


def setting_event(i: int) -> Envelope:
    """A user-setting change: logged like any admin action, but not a principals event (those
    also upsert the principals projection, one statement each: measured apart, see README)."""
    uid = 1000 + i
    state = UserSettingState(id=i + 1, user_id=uid, setting="dashboard", value={"n": i})
    event = UserSettingSet(user_setting=state, changes={"value": ({"n": i - 1}, {"n": i})})
    actor = Actor(user_id=1 + i % 200, email=f"admin{i % 200}@org{i % 50}.test",
                  org_id=1 + i % 50, org_name=f"Org {i % 50}", authkey_id=1 + i % 200,
                  client_ip=f"10.0.{i % 250}.{i % 200}")
    return Envelope(source="/identity", type=UserSettingSet.type, subject=str(uid),
                    actor=actor, data=event.model_dump(mode="json"))


def user_event(i: int, when: datetime | None = None) -> Envelope:
    uid = 1000 + i
    event = UserUpdated(user=UserState(id=uid, uuid=str(uuid.uuid4()),
                                       email=f"user{uid}@org{i % 50}.test", org_id=1 + i % 50,
                                       role_id=3),
                        changes={"email": (f"old{uid}@org{i % 50}.test",
                                           f"user{uid}@org{i % 50}.test")})
    actor = Actor(user_id=1 + i % 200, email=f"admin{i % 200}@org{i % 50}.test",
                  org_id=1 + i % 50, org_name=f"Org {i % 50}", authkey_id=1 + i % 200,
                  client_ip=f"10.0.{i % 250}.{i % 200}")
    return Envelope(source="/identity", type=UserUpdated.type, subject=str(uid), actor=actor,
                    time=when or datetime.now(UTC), data=event.model_dump(mode="json"))


Encoded = tuple[bytes | None, list[tuple[str, bytes]], bytes]


def encoded(envelopes: list[Envelope]) -> list[Encoded]:
    """Each event's Kafka record (key, headers, value), made before a measurement starts: the
    producer's CPU is not the consumer's rate."""
    return [(e.subject.encode() if e.subject else None, *to_kafka(e)) for e in envelopes]


async def produce(bootstrap: str, topic: str, records: list[Encoded]) -> None:
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        futures = []
        for key, headers, value in records:
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM log_entry"))).scalar_one())


def copy_rows(envelopes: list[Envelope], first_id: int) -> list[tuple[Any, ...]]:
    """The same Log rows the projection writes (hash columns filled with a constant)."""
    out = []
    for i, e in enumerate(envelopes):
        row = to_log_row(e, LogSettings())
        assert row is not None
        out.append((first_id + i, e.id, e.type, "c:0", i + 1, i, GENESIS, GENESIS, e.time,
                    row.model, row.model_id, row.action, row.user_id, row.title, row.change,
                    row.email, row.org, row.description, row.ip, row.org_id, row.authkey_id,
                    row.request_id, row.request_type, json.dumps(row.change_json)))
    return out


async def copy_baseline(url: str, rows: list[tuple[Any, ...]]) -> float:
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as conn:
        await conn.execute("CREATE TABLE log_entry_copy (LIKE log_entry INCLUDING ALL)")
        await conn.commit()
        started = time.perf_counter()
        async with conn.cursor() as cur, cur.copy(
                f"COPY log_entry_copy ({', '.join(ENTRY_COLUMNS)}) FROM STDIN") as copy:
            for r in rows:
                await copy.write_row(r)
        await conn.commit()
        elapsed = time.perf_counter() - started
        await conn.execute("DROP TABLE log_entry_copy")
        await conn.commit()
    return len(rows) / elapsed


async def ingestion(url: str, engine: AsyncEngine, bootstrap: str, n: int) -> dict[str, Any]:
    """One consumer process (bench/audit_consumer.py) over a 3-partition topic, as the scale
    part runs it, next to the raw COPY of the same rows."""
    run = await scale_one(url, engine, bootstrap, 1, n)
    copy_rate = await copy_baseline(url, copy_rows(
        [setting_event(i) for i in range(n)], 10**9))
    cores = run["consumer_cores"][0]
    return {"events": n, "events_per_s": run["events_per_s"], "copy_rows_per_s": copy_rate,
            "ratio": run["events_per_s"] / copy_rate, "consumer_cores": cores,
            # the consumer's CPU per event: what a busy machine (a small CPU share) leaves alone
            "consumer_cpu_us_per_event": (cores * run["seconds"] / n * 1e6
                                          if cores is not None else None),
            "produce_s": run["produce_s"], "machine_cpu_busy": run["machine_cpu_busy"]}


async def latency_runner(engine: AsyncEngine, bootstrap: str
                         ) -> tuple[asyncio.Event, asyncio.Task[None], str]:
    """An in-process consumer on a fresh topic, joined: its stop event, task and topic."""
    prefix = f"benchaudit.{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.identity.user.v1"
    await ensure_topics(bootstrap, [Topic(topic, owner="bench", partitions=3),
                                    Topic(f"{prefix}-siem", owner="bench", partitions=3)])
    runner = AuditConsumer(service="audit", group=f"bench-{uuid.uuid4().hex}", engine=engine,
                           bootstrap_servers=bootstrap, handlers={},
                           pattern="^" + prefix.replace(".", r"\.") + r"\.",
                           options=Options(siem_topic=f"{prefix}-siem"), batch_max=1000)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 60)
    return stop, task, topic


async def latency(engine: AsyncEngine, bootstrap: str, rate: int, seconds: float
                  ) -> dict[str, float]:
    stop, task, topic = await latency_runner(engine, bootstrap)
    last_id = 0
    async with engine.connect() as conn:
        last_id = int((await conn.execute(text(
            "SELECT coalesce(max(id), 0) FROM log_entry"))).scalar_one())
    total = int(rate * seconds)
    producer = create_producer(bootstrap, linger_ms=0)
    await producer.start()
    seen: list[float] = []

    async def send() -> None:
        began = time.perf_counter()
        for i in range(total):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            e = setting_event(10**6 + i)
            headers, value = to_kafka(e)
            await producer.send(topic, value=value, key=e.subject.encode() if e.subject
                                else None, headers=headers)

    async def watch() -> None:
        nonlocal last_id
        read = create_engine(str(engine.url.render_as_string(hide_password=False)))
        try:
            while len(seen) < total:
                async with read.connect() as conn:
                    rows = (await conn.execute(text(
                        "SELECT id, created FROM log_entry WHERE id > :i ORDER BY id"),
                        {"i": last_id})).all()
                now = datetime.now(UTC)
                for r in rows:
                    seen.append((now - r.created).total_seconds() * 1000)
                    last_id = max(last_id, r.id)
                await asyncio.sleep(0.01)
        finally:
            await read.dispose()

    await asyncio.wait_for(asyncio.gather(send(), watch()), seconds + 120)
    await producer.stop()
    stop.set()
    await task
    q = statistics.quantiles(seen, n=100)
    return {"rate": rate, "events": total, "p50_ms": statistics.median(seen), "p99_ms": q[98]}


# --- scale-out: N consumer processes in one group ------------------------------------------

def machine_cpu() -> tuple[int, int] | None:
    """All cores' (busy, total) clock ticks since boot, from /proc/stat (None elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, from /proc/<pid>/stat."""
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def spawn_consumer(url: str, pattern: str, group: str, siem_topic: str
                         ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(CONSUMER), "--pattern", pattern, "--group", group,
        "--siem-topic", siem_topic, "--batch-max", "1000",
        # stdin stays open for its lifetime: if this process dies, the consumer sees EOF, stops.
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "BENCH_AUDIT_DATABASE_URL": url})


async def read_lines(proc: asyncio.subprocess.Process, index: int, ready: asyncio.Event) -> None:
    """Drain a consumer's stdout (a full pipe would stall it): its "ready", anything else passed
    on to stderr."""
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        if line == "ready":
            ready.set()
        elif line:
            print(f"consumer {index}: {line}", file=sys.stderr)


async def stop_consumers(procs: list[asyncio.subprocess.Process], grace_s: float = 20) -> None:
    """SIGTERM every consumer, wait for each, SIGKILL one that does not stop in time."""
    for p in procs:
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            await asyncio.wait_for(p.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()
        if p.stdin is not None:
            p.stdin.close()


def check_alive(procs: list[asyncio.subprocess.Process]) -> None:
    for i, p in enumerate(procs):
        if p.returncode is not None:
            raise RuntimeError(f"consumer process {i} exited with {p.returncode}")


async def group_members(admin: AIOKafkaAdminClient, group: str
                        ) -> tuple[str, list[list[tuple[str, int]]]]:
    """The group's state and each member's assigned partitions, as the coordinator sees them."""
    for response in await admin.describe_consumer_groups([group]):
        for g in response.groups:
            # (error_code, group, state, protocol_type, protocol, members, ...) in every
            # version; a member's assignment is its last field.
            if g[0]:
                return f"error {g[0]}", []
            members = []
            for m in g[5]:
                decoded = ConsumerProtocolMemberAssignment.decode(m[-1]) if m[-1] else None
                members.append(sorted((t, p) for t, ps in decoded.assignment for p in ps)
                               if decoded else [])
            return str(g[2]), members
    return "unknown", []


async def wait_assigned(bootstrap: str, group: str, topic: str,
                        procs: list[asyncio.subprocess.Process], timeout_s: float = 120
                        ) -> list[list[tuple[str, int]]]:
    """Until the group is stable with one member per process, each holding partitions and all
    of the topic's partitions held once."""
    wanted = [(topic, p) for p in range(SCALE_PARTITIONS)]
    admin = AIOKafkaAdminClient(**client_options(bootstrap), request_timeout_ms=15000)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        state, members = "", list[list[tuple[str, int]]]()
        while time.monotonic() < deadline:
            check_alive(procs)
            state, members = await group_members(admin, group)
            held = sorted(tp for m in members for tp in m)
            if (state == "Stable" and len(members) == len(procs) and all(members)
                    and held == wanted):
                return members
            await asyncio.sleep(0.2)
        raise TimeoutError(f"group {group} not balanced over {len(procs)} consumers after "
                           f"{timeout_s}s: state {state}, assignment {members}")
    finally:
        await admin.close()


async def wait_rows_while_alive(engine: AsyncEngine, n: int,
                                procs: list[asyncio.subprocess.Process],
                                timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while await count(engine) < n:
        check_alive(procs)
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} rows after {timeout_s}s")
        await asyncio.sleep(0.05)


async def scale_one(url: str, engine: AsyncEngine, bootstrap: str, consumers: int, n: int
                    ) -> dict[str, Any]:
    """Ingestion of `n` events by `consumers` processes in one group over a fresh topic."""
    prefix = f"benchaudit.{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.identity.user.v1"
    await ensure_topics(bootstrap, [Topic(topic, owner="bench", partitions=SCALE_PARTITIONS),
                                    Topic(f"{prefix}-siem", owner="bench", partitions=3)])
    records = encoded([setting_event(i) for i in range(n)])  # fresh ids: each logged once
    group = f"bench-{uuid.uuid4().hex}"
    pattern = "^" + prefix.replace(".", r"\.") + r"\."
    procs: list[asyncio.subprocess.Process] = []
    readers: list[asyncio.Task[None]] = []
    try:
        readies = []
        for i in range(consumers):
            procs.append(await spawn_consumer(url, pattern, group, f"{prefix}-siem"))
            readies.append(asyncio.Event())
            readers.append(asyncio.create_task(read_lines(procs[-1], i, readies[-1])))
        deadline = time.monotonic() + 120
        while not all(r.is_set() for r in readies):  # the group joins are not part of the rate
            check_alive(procs)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(not r.is_set() for r in readies)} of {consumers} "
                                   "consumers not ready after 120s")
            await asyncio.sleep(0.1)
        assignment = await wait_assigned(bootstrap, group, topic, procs)
        before = await count(engine)
        cpu_before = machine_cpu()
        proc_before = [process_cpu_s(p.pid) for p in procs]
        started = time.perf_counter()
        await produce(bootstrap, topic, records)
        produced = time.perf_counter() - started
        await wait_rows_while_alive(engine, before + n, procs)
        elapsed = time.perf_counter() - started
        cpu_after = machine_cpu()
        proc_after = [process_cpu_s(p.pid) for p in procs]
    finally:
        try:
            await stop_consumers(procs)
        finally:
            for r in readers:
                r.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    busy = None
    if cpu_before and cpu_after and cpu_after[1] > cpu_before[1]:
        busy = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    cores = [(b - a) / elapsed if a is not None and b is not None else None
             for a, b in zip(proc_before, proc_after, strict=True)]
    return {"consumers": consumers, "events": n, "seconds": elapsed, "events_per_s": n / elapsed,
            "produce_s": produced,
            "assignment": [[p for _, p in m] for m in assignment],
            # the share of all the machine's cores busy while measured (everything on it)
            "machine_cpu_busy": busy,
            # per consumer process: CPU seconds per second measured (1.0 = one core)
            "consumer_cores": cores}


def flattening(rates: dict[int, float]) -> int | None:
    """The first consumer count whose extra process adds less than half of what one process
    does alone (None: every step added at least that)."""
    for n in sorted(rates):
        if n > 1 and n - 1 in rates and rates[n] - rates[n - 1] < 0.5 * rates[1]:
            return n
    return None


def reading(scale: dict[str, Any]) -> str:
    """What the figures say: where the curve flattens, on how many cores, and what follows."""
    runs = {r["consumers"]: r for r in scale["runs"]}
    rates = {n: r["events_per_s"] for n, r in runs.items()}
    cpus = scale["cpu_count"]
    ups = ", ".join(f"{n}: x{rates[n] / rates[1]:.2f}" for n in sorted(rates))
    out = [f"Speed-up over one consumer process ({ups}) on a machine with {cpus} CPUs."]
    flat = flattening(rates)
    top = max(rates)
    busiest = max((c for r in runs.values() for c in r["consumer_cores"] if c is not None),
                   default=None)
    gil = ("Each consumer process runs its Python on one core at most (the GIL)"
           + (f"; the busiest used {busiest:.2f} of a core" if busiest is not None else "")
           + ", and PostgreSQL, Kafka and the producing benchmark share the same cores here.")
    if flat is None:
        out.append(f"The curve does not flatten up to {top} consumers: each process added at "
                   "least half of one process's rate.")
        out.append(gil)
        out.append(f"The topic has {SCALE_PARTITIONS} partitions, so a consumer beyond "
                   f"{SCALE_PARTITIONS} in the group would hold none and add nothing.")
        return " ".join(out)
    busy = runs[flat]["machine_cpu_busy"]
    added = rates[flat] - rates[flat - 1]
    out.append(f"It flattens at {flat} consumers: going from {flat - 1} to {flat} processes "
               f"added {added:,.0f} events/s ({added / rates[1]:.0%} of one process alone).")
    out.append(gil)
    if busy is None:
        out.append("The machine's CPU use was not measured (no /proc/stat), so whether the "
                   "cores ran out is not shown by these figures.")
    elif busy >= 0.85:
        out.append(f"With {flat} consumers the machine's cores were {busy:.0%} busy: the cores "
                   "ran out, not the partitions. On a machine with more cores than one per "
                   "consumer plus what the database and the broker need, this predicts "
                   f"near-linear scaling up to the partition count ({SCALE_PARTITIONS}), and no "
                   f"gain beyond {SCALE_PARTITIONS} consumers (not measured here).")
    else:
        out.append(f"With {flat} consumers the machine's cores were only {busy:.0%} busy: the "
                   "limit is not CPU alone (these figures do not say what it is), so they do "
                   "not predict that more cores alone would straighten the curve.")
    return " ".join(out)


async def scale(url: str, engine: AsyncEngine, bootstrap: str, n: int,
                copy_rate: float | None) -> dict[str, Any]:
    runs = [await scale_one(url, engine, bootstrap, consumers, n)
            for consumers in range(1, SCALE_PARTITIONS + 1)]
    if copy_rate is None:  # the ingestion part did not run: the same COPY, measured here
        copy_rate = await copy_baseline(url, copy_rows(
            [setting_event(i) for i in range(n)], 10**9))
    first = runs[0]["events_per_s"]
    for r in runs:
        r["speedup"] = r["events_per_s"] / first
        r["ratio"] = r["events_per_s"] / copy_rate
    result: dict[str, Any] = {"events": n, "partitions": SCALE_PARTITIONS,
                              "cpu_count": os.cpu_count(), "copy_rows_per_s": copy_rate,
                              "runs": runs}
    flat = flattening({r["consumers"]: r["events_per_s"] for r in runs})
    result["flattens_at"] = flat
    result["reading"] = reading(result)
    return result


async def raw_read(url: str) -> float:
    """Rows/s of a plain read of the log chain by chain in seq order, as the walk reads it (a
    psycopg server-side cursor per chain, tuples), without hashing or checking anything."""
    columns = ", ".join(c for c in ENTRY_COLUMNS if c != "source_offset")
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as conn:
        started, rows = time.perf_counter(), 0
        chains = [r[0] for r in await (await conn.execute(
            "SELECT DISTINCT chain FROM log_entry ORDER BY chain")).fetchall()]
        started = time.perf_counter()
        for chain in chains:
            async with conn.cursor(name="bench_read") as cur:
                await cur.execute(f"SELECT {columns} FROM log_entry WHERE chain = %s "
                                  "ORDER BY seq", (chain,))
                while batch := await cur.fetchmany(5000):
                    rows += len(batch)
        return rows / (time.perf_counter() - started)


async def verification(url: str, engine: AsyncEngine, n: int) -> dict[str, Any]:
    """The whole-log walk over at least `n` entries, beside a raw read of the same rows."""
    have = await count(engine)
    if have < n:  # written straight by the projection: what is measured is the walk
        events = [setting_event(10**8 + i) for i in range(n - have)]
        for start in range(0, len(events), 5000):
            async with engine.begin() as conn:
                await project(conn, [(e, Source("bench.verify", i % SCALE_PARTITIONS, i))
                                     for i, e in enumerate(events[start:start + 5000], start)],
                              Options(publish=False, principals=False))
    key = Ed25519PrivateKey.generate()
    await write_checkpoint(engine, key, force=True)
    before = await raw_read(url)  # before and after the walk: neither reads a colder cache
    cpu, started = time.process_time(), time.perf_counter()
    report = await verify(engine, public_raw(key))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    raw = max(before, await raw_read(url))
    assert report.ok, report.as_dict()
    rate = report.entries / seconds
    limits = VerifyLimits()  # the API's
    default, most = limits.default, limits.most
    return {"entries": report.entries, "chains": report.chains, "seconds": seconds,
            "entries_per_s": rate, "cpu_us_per_entry": cpu / report.entries * 1e6,
            "raw_read_rows_per_s": raw, "ratio_to_raw_read": rate / raw,
            "request_default_entries": default, "request_default_s": default / rate,
            "request_max_entries": most, "request_max_s": most / rate}


def search_rows(n: int, start_id: int) -> Any:
    base = datetime.now(UTC) - timedelta(days=30)
    for i in range(n):
        uid = 10_000 + i
        yield (start_id + i, f"s{i}", UserUpdated.type, "s:0", i + 1, i, GENESIS, GENESIS,
               base + timedelta(seconds=i), "User", uid, ("edit", "add", "auth_fail")[i % 3],
               1 + i % 500, f"User ({uid}): user{uid}@org{i % 97}.test",
               f"email (old{uid}@org{i % 97}.test) => (user{uid}@org{i % 97}.test)",
               f"admin{i % 500}@org{i % 97}.test", f"Org {i % 97}", "",
               f"10.{i % 200}.{i % 250}.{i % 199}", 1 + i % 97, None, None, 1, "{}")


async def timed_searches(app: Any, key: str, patterns: list[dict[str, str]]
                         ) -> dict[str, list[float]]:
    """Each pattern's search through the ASGI app (after a warm-up), in ms by field."""
    timings: dict[str, list[float]] = {"email": [], "title": [], "change": []}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://audit") as client:
        for body in patterns[:6]:  # warm-up
            await client.post("/admin/logs/index", json=body, headers={"Authorization": key})
        for body in patterns:
            t0 = time.perf_counter()
            r = await client.post("/admin/logs/index", json={**body, "limit": 100},
                                  headers={"Authorization": key})
            timings[next(iter(body))].append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    return timings


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


async def search(url: str, engine: AsyncEngine, n: int, queries: int) -> dict[str, float]:
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as conn:
        await conn.execute("TRUNCATE log_entry")
        for ddl in entry_index_ddl("log_entry"):
            if "trgm" in ddl:
                await conn.execute(f"DROP INDEX IF EXISTS {ddl.split()[5]}")
        await conn.commit()
        async with conn.cursor() as cur, cur.copy(
                f"COPY log_entry ({', '.join(ENTRY_COLUMNS)}) FROM STDIN") as copy:
            for r in search_rows(n, 1):
                await copy.write_row(r)
        await conn.commit()
        started = time.perf_counter()
        for ddl in entry_index_ddl("log_entry"):
            await conn.execute(ddl)
        await conn.commit()
        index_s = time.perf_counter() - started
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        # log_email: the log's emails, filled by log_entry's trigger (migration 0009).
        await conn.execute("VACUUM ANALYZE log_entry, log_email")

    key = await seed_principal(engine, PEPPER, user_id=1, role={"perm_site_admin": True})
    # The search itself, over rows written here: no consumer group feeds this database, so the
    # catch-up a live search makes first (bench/consistency.py measures it) is left out.
    app = create_app(AuditSettings(database_url=url, pepper=PEPPER, log_level="warning",
                                   read_your_writes=False))
    rnd = random.Random(5)
    patterns = []
    for _ in range(queries):
        uid = 10_000 + rnd.randrange(n)
        patterns += [{"email": f"%admin{rnd.randrange(500)}@org{rnd.randrange(97)}.%"},
                     {"title": f"%({uid})%"}, {"change": f"%old{uid}@%"}]
    timings = await timed_searches(app, key, patterns)
    all_ms = [t for ts in timings.values() for t in ts]
    # The baseline: the same SQL with index scans disabled (a sequential scan), a handful of times.
    seq: list[float] = []
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        await conn.execute("SET enable_bitmapscan = off")
        await conn.execute("SET enable_indexscan = off")
        for body in patterns[:6]:
            column, value = next(iter(body.items()))
            t0 = time.perf_counter()
            await conn.execute(f"SELECT id, title FROM log_entry WHERE {column} ILIKE %s "
                               "ORDER BY id LIMIT 100", (value,))
            seq.append((time.perf_counter() - t0) * 1000)
    return {"rows": n, "queries": len(all_ms), "index_build_s": index_s, "p95_ms": p95(all_ms),
            **{f"p95_{k}_ms": p95(v) for k, v in timings.items()},
            "seqscan_median_ms": statistics.median(seq),
            "speedup": statistics.median(seq) / statistics.median(all_ms)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = os.environ.get("MISP_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    server = os.environ["MISP_PG_URL"]
    url = await create_test_database(server, prefix="benchaudit")
    results: dict[str, Any] = {}
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        engine = create_engine(url)
        try:
            if "ingestion" in args.parts:
                results["ingestion"] = await ingestion(url, engine, bootstrap, args.events)
            if "latency" in args.parts:
                results["latency"] = await latency(engine, bootstrap, args.rate, args.seconds)
            if "scale" in args.parts:
                copy_rate = results.get("ingestion", {}).get("copy_rows_per_s")
                results["scale"] = await scale(url, engine, bootstrap,
                                               args.scale_events or args.events, copy_rate)
            if "verify" in args.parts:
                results["verify"] = await verification(url, engine, args.verify_entries)
            # Last: it empties the log table and fills it with rows of its own.
            if "search" in args.parts:
                results["search"] = await search(url, engine, args.search_rows, args.queries)
        finally:
            await engine.dispose()
    finally:
        await drop_test_database(url)
    return results


def report(results: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="audit log (issue 5)")
    for col in ("measure", "value", "baseline (same run)", "ratio / target"):
        table.add_column(col)
    if i := results.get("ingestion"):
        cores, cpu = i.get("consumer_cores"), i.get("consumer_cpu_us_per_event")
        table.add_row("ingestion, Kafka -> chained rows, one consumer process",
                      f"{i['events_per_s']:,.0f} events/s"
                      + (f" ({cores:.2f} of a core, {cpu:.0f} us CPU per event)"
                         if cores is not None and cpu is not None else ""),
                      f"raw COPY {i['copy_rows_per_s']:,.0f} rows/s",
                      f"{i['ratio']:.2f} (target >= 0.2)")
    if lat := results.get("latency"):
        table.add_row(f"latency at {lat['rate']}/s, publish -> searchable",
                      f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms", "",
                      "target p99 <= 500 ms")
    if v := results.get("verify"):
        table.add_row(f"verify, the whole log ({v['entries']:,} entries, {v['chains']} chains)",
                      f"{v['entries_per_s']:,.0f} entries/s ({v['cpu_us_per_entry']:.0f} us CPU "
                      "per entry)",
                      f"raw read {v['raw_read_rows_per_s']:,.0f} rows/s",
                      f"{v['ratio_to_raw_read']:.2f} of the raw read")
        table.add_row("verify, a request at that rate (API default range / most)",
                      f"{v['request_default_s']:.1f} s for {v['request_default_entries']:,} / "
                      f"{v['request_max_s']:.1f} s for {v['request_max_entries']:,} entries",
                      f"client timeout {CLIENT_TIMEOUT_S} s", "bounded whatever the log's size")
    if s := results.get("search"):
        table.add_row(f"search p95 over {s['rows']:,} rows ({s['queries']} queries)",
                      f"{s['p95_ms']:.1f} ms (email {s['p95_email_ms']:.1f}, title "
                      f"{s['p95_title_ms']:.1f}, change {s['p95_change_ms']:.1f})",
                      f"seq scan median {s['seqscan_median_ms']:.0f} ms",
                      f"x{s['speedup']:.0f} faster; target p95 <= 50 ms at 2M")
    if table.rows:
        console.print(table)
    if sc := results.get("scale"):
        curve = Table(title=f"audit ingestion scale-out (issue 18): {sc['events']:,} events, "
                            f"{sc['partitions']} partitions, one consumer group, "
                            f"{sc['cpu_count']} CPUs")
        for col in ("consumers", "events/s", "speed-up vs 1",
                    f"ratio to COPY ({sc['copy_rows_per_s']:,.0f} rows/s)", "machine CPU busy"):
            curve.add_column(col)
        for r in sc["runs"]:
            busy = r["machine_cpu_busy"]
            curve.add_row(str(r["consumers"]), f"{r['events_per_s']:,.0f}",
                          f"x{r['speedup']:.2f}", f"{r['ratio']:.2f}",
                          "-" if busy is None else f"{busy:.0%}")
        console.print(curve)
        console.print(sc["reading"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--search-rows", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=30, help="per searched field")
    parser.add_argument("--scale-events", type=int, default=None,
                        help="events for each consumer count of the scale part (default: "
                             "--events)")
    parser.add_argument("--verify-entries", type=int, default=100_000,
                        help="entries the verify part walks at least (topped up if fewer)")
    parser.add_argument("--parts", type=lambda v: [p for p in v.split(",") if p],
                        default=list(PARTS),
                        help=f"comma-separated, of {','.join(PARTS)} (default: all)")
    parsed = parser.parse_args()
    if unknown := set(parsed.parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    results = asyncio.run(main(parsed))
    report(results)
    RESULTS.mkdir(exist_ok=True)
    name = "audit.json" if parsed.search_rows < 2_000_000 else "audit-2m.json"
    if set(parsed.parts) != set(PARTS):  # a partial run leaves the full run's figures alone
        name = name.replace(".json", "-" + "-".join(p for p in PARTS if p in parsed.parts)
                            + ".json")
    (RESULTS / name).write_text(json.dumps({"args": vars(parsed), **results}, indent=2) + "\n")
    sys.exit(0)
