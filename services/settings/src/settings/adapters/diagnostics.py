"""The diagnostics report: every service's own `/_svc/<service>/diagnostics` (the one HTTP call
between services that ARCHITECTURE §1 allows, an operator's read), Kafka topics and consumer lag,
writable directories and the gpg binary."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from misp_contracts.topics import CATALOGUE, SERVICES
from misp_platform.kafka import client_options


async def _one(client: httpx.AsyncClient, name: str, url: str) -> tuple[str, dict[str, Any]]:
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return name, {"reachable": False, "url": url, "error": f"{type(exc).__name__}: {exc}"}
    if response.status_code != 200:
        return name, {"reachable": False, "url": url,
                      "error": f"HTTP {response.status_code}"}
    try:
        body = response.json()
    except ValueError:
        return name, {"reachable": False, "url": url, "error": "not JSON"}
    return name, {"reachable": True, "url": url, **(body if isinstance(body, dict) else {})}


async def gather_services(urls: dict[str, str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Each service's diagnostics, asked concurrently; an unreachable one says so."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        results = await asyncio.gather(*(_one(client, n, u) for n, u in sorted(urls.items())))
    return dict(results)


async def kafka_status(bootstrap_servers: str, timeout_s: float) -> dict[str, Any]:
    """Topics of the catalogue present or missing, and the lag of each service's group."""
    admin = AIOKafkaAdminClient(**client_options(bootstrap_servers),
                                request_timeout_ms=int(timeout_s * 1000))
    consumer = AIOKafkaConsumer(**client_options(bootstrap_servers), enable_auto_commit=False,
                                request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(consumer.start(), timeout_s)
        existing = set(await admin.list_topics())
        wanted = [t.name for t in CATALOGUE]
        lag: dict[str, Any] = {}
        for service in SERVICES:
            group = f"misp.{service}"
            offsets = await admin.list_consumer_group_offsets(group)
            if not offsets:
                lag[group] = {"committed_partitions": 0, "lag": None}
                continue
            ends = await consumer.end_offsets(list(offsets))
            total = sum(max(0, ends[tp] - meta.offset) for tp, meta in offsets.items()
                        if meta.offset >= 0)
            lag[group] = {"committed_partitions": len(offsets), "lag": total}
        return {"reachable": True, "topics_present": [t for t in wanted if t in existing],
                "topics_missing": [t for t in wanted if t not in existing],
                "consumer_lag": lag}
    except Exception as exc:  # the report shows the failure instead of failing itself
        return {"reachable": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        with contextlib.suppress(Exception):  # a half-open client has nothing left to close
            await consumer.stop()
        with contextlib.suppress(Exception):
            await admin.close()


def writable_dirs(paths: list[str]) -> dict[str, dict[str, Any]]:
    """MISP's writeableDirs: each directory and whether a file can be created in it."""
    out: dict[str, dict[str, Any]] = {}
    for raw in paths:
        path = Path(raw)
        entry: dict[str, Any] = {"exists": path.is_dir(), "writeable": False}
        if entry["exists"]:
            try:
                with tempfile.NamedTemporaryFile(dir=path, prefix=".misp-diag-"):
                    entry["writeable"] = True
            except OSError as exc:
                entry["error"] = str(exc)
        out[raw] = entry
    return out


def gpg_binary(path: str) -> dict[str, Any]:
    """Whether the configured gpg is there and executable (signing is the mailer's check)."""
    found = shutil.which(path) if path else None
    return {"binary": path, "present": bool(found and os.access(found, os.X_OK))}
