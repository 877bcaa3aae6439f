"""Benchmark: the audit log (issue 5), on generated data, with baselines measured in the same run.

  1. ingestion: events/s from Kafka to searchable, chained Log rows (SIEM records queued in the
     outbox too), next to a raw COPY of the same rows into an identical table (target >= 0.2);
  2. latency: from an event's publication to its row being searchable, p50/p99 at a fixed
     rate (target p99 <= 500 ms at 500 actions/s); commit -> Kafka is bench/pipeline.py's part;
  3. search: p95 of `admin/logs/index` substring searches (email, title, change; selective
     patterns) through the ASGI app over N rows, next to the same SQL with index scans disabled
     (target p95 <= 50 ms at 2 million rows).

    python bench/audit.py [--events 20000] [--rate 500] [--seconds 10] [--search-rows 200000]
    python bench/audit.py --search-rows 2000000      # the issue's 2-million-row figure
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# This file is bench/audit.py: its folder must not shadow the `audit` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from audit.adapters.tables import ENTRY_COLUMNS, entry_index_ddl  # noqa: E402
from audit.bootstrap import create_app  # noqa: E402
from audit.consumer import AuditConsumer  # noqa: E402
from audit.domain.chain import GENESIS  # noqa: E402
from audit.domain.mapping import LogSettings, to_log_row  # noqa: E402
from audit.projections.log import Options  # noqa: E402
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
from misp_platform.kafka import create_producer, ensure_topics  # noqa: E402
from misp_platform.migrations import upgrade  # noqa: E402
from misp_platform.testing import create_test_database, drop_test_database, seed_principal  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MIGRATIONS = Path(__file__).resolve().parents[1] / "services/audit/src/audit/migrations"
PEPPER = "bench-pepper"


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


async def produce(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        futures = []
        for e in envelopes:
            headers, value = to_kafka(e)
            futures.append(await producer.send(topic, value=value, key=e.subject.encode()
                                               if e.subject else None, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM log_entry"))).scalar_one())


async def wait_rows(engine: AsyncEngine, n: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while await count(engine) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} rows after {timeout_s}s")
        await asyncio.sleep(0.05)


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


async def ingestion(url: str, engine: AsyncEngine, bootstrap: str, n: int) -> dict[str, float]:
    prefix = f"benchaudit.{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.identity.user.v1"
    await ensure_topics(bootstrap, [Topic(topic, owner="bench", partitions=3),
                                    Topic(f"{prefix}-siem", owner="bench", partitions=3)])
    envelopes = [setting_event(i) for i in range(n)]
    runner = AuditConsumer(service="audit", group=f"bench-{uuid.uuid4().hex}", engine=engine,
                           bootstrap_servers=bootstrap, handlers={},
                           pattern="^" + prefix.replace(".", r"\.") + r"\.",
                           options=Options(siem_topic=f"{prefix}-siem"), batch_max=1000)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 60)  # the group join is not part of the rate
    started = time.perf_counter()
    await produce(bootstrap, topic, envelopes)
    await wait_rows(engine, n)
    elapsed = time.perf_counter() - started
    rate = n / elapsed
    copy_rate = await copy_baseline(url, copy_rows(envelopes, 10**9))
    # Keep the runner for the latency run: it is subscribed to the same pattern.
    ingestion.runner = (runner, stop, task, topic)  # type: ignore[attr-defined]
    return {"events": n, "events_per_s": rate, "copy_rows_per_s": copy_rate,
            "ratio": rate / copy_rate}


async def latency(engine: AsyncEngine, bootstrap: str, rate: int, seconds: float
                  ) -> dict[str, float]:
    _runner, stop, task, topic = ingestion.runner  # type: ignore[attr-defined]
    last_id = 0
    async with engine.connect() as conn:
        last_id = int((await conn.execute(text("SELECT max(id) FROM log_entry"))).scalar_one())
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
        await conn.execute("VACUUM ANALYZE log_entry")

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
    all_ms = [t for ts in timings.values() for t in ts]
    # Baseline: the same SQL with index scans disabled (a sequential scan), a handful of times.
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
    p95 = statistics.quantiles(all_ms, n=20)[18]
    return {"rows": n, "queries": len(all_ms), "index_build_s": index_s, "p95_ms": p95,
            **{f"p95_{k}_ms": statistics.quantiles(v, n=20)[18] for k, v in timings.items()},
            "seqscan_median_ms": statistics.median(seq),
            "speedup": statistics.median(seq) / statistics.median(all_ms)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = os.environ.get("MISP_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    server = os.environ["MISP_PG_URL"]
    url = await create_test_database(server, prefix="benchaudit")
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        engine = create_engine(url)
        try:
            ingest = await ingestion(url, engine, bootstrap, args.events)
            lat = await latency(engine, bootstrap, args.rate, args.seconds)
            found = await search(url, engine, args.search_rows, args.queries)
        finally:
            await engine.dispose()
    finally:
        await drop_test_database(url)
    return {"ingestion": ingest, "latency": lat, "search": found}


def report(results: dict[str, Any]) -> None:
    i, lat, s = results["ingestion"], results["latency"], results["search"]
    table = Table(title="audit log (issue 5)")
    for col in ("measure", "value", "baseline (same run)", "ratio / target"):
        table.add_column(col)
    table.add_row("ingestion, Kafka -> chained rows", f"{i['events_per_s']:,.0f} events/s",
                  f"raw COPY {i['copy_rows_per_s']:,.0f} rows/s",
                  f"{i['ratio']:.2f} (target >= 0.2)")
    table.add_row(f"latency at {lat['rate']}/s, publish -> searchable",
                  f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms", "",
                  "target p99 <= 500 ms")
    table.add_row(f"search p95 over {s['rows']:,} rows ({s['queries']} queries)",
                  f"{s['p95_ms']:.1f} ms (email {s['p95_email_ms']:.1f}, title "
                  f"{s['p95_title_ms']:.1f}, change {s['p95_change_ms']:.1f})",
                  f"seq scan median {s['seqscan_median_ms']:.0f} ms",
                  f"x{s['speedup']:.0f} faster; target p95 <= 50 ms at 2M")
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--search-rows", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=30, help="per searched field")
    parsed = parser.parse_args()
    results = asyncio.run(main(parsed))
    report(results)
    RESULTS.mkdir(exist_ok=True)
    name = "audit.json" if parsed.search_rows < 2_000_000 else "audit-2m.json"
    (RESULTS / name).write_text(json.dumps({"args": vars(parsed), **results}, indent=2) + "\n")
    sys.exit(0)
