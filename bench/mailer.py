"""Benchmark: signed and encrypted mails/s (issue 8 §9), next to a baseline in the same run.

  - baseline: a raw loop of `gpg --encrypt --sign` (python-gnupg, one call per message, the
    same instance key, recipients and bodies) with nothing else around it;
  - mailer: the same messages as one bulk request through the mailer's own path: key checks,
    PGP/MIME rendering (sign+encrypt in one gpg call per mail), one transaction queueing them,
    then the delivery loop sending each to a local SMTP sink (aiosmtpd) and recording it with
    its event and outbox row. Measured from the request to the last mail accepted by the sink.
    Run twice: with 1 gpg process at a time (like the baseline), then 2 (the cores here).

Target: mailer / baseline >= 0.8. 400 mails by default: a run of 150 (about a second) is too
short for the fixed costs of a request (its transaction, the first SMTP connections, the
delivery tail after the last rendering) to stop dominating: 0.79 at 150, 0.86 at 400 on the
2-core machine (2026-11-27).

    python bench/mailer.py [--mails 400] [--recipients 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gnupg
from aiosmtpd.controller import Controller
from rich.console import Console
from rich.table import Table

# This file is bench/mailer.py: its folder must not shadow the `mailer` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from mailer.adapters import store  # noqa: E402
from mailer.adapters.gpg import Keyring  # noqa: E402
from mailer.adapters.mime import text_entity  # noqa: E402
from mailer.adapters.smtp import SmtpConfig  # noqa: E402
from mailer.domain.model import Recipient  # noqa: E402
from mailer.handlers.compose import Draft, Mailer, queue  # noqa: E402
from mailer.handlers.deliver import Deliverer  # noqa: E402
from misp_contracts.envelope import Actor  # noqa: E402
from misp_contracts.events.identity import UserState  # noqa: E402
from misp_platform.db import create_engine  # noqa: E402
from misp_platform.migrations import upgrade  # noqa: E402
from misp_platform.testing import create_test_database, drop_test_database  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MIGRATIONS = Path(__file__).resolve().parents[1] / "services/mailer/src/mailer/migrations"
BODY = ("Hello,\n\nthis is a benchmark message with a body of typical length. " * 12) + "\n"


class Sink:
    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached = threading.Event()

    def expect(self, more: int) -> None:
        self.reached.clear()
        self.target = self.count + more

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        if self.count >= self.target:
            self.reached.set()
        return "250 OK"


def drop_homes(*homes: Path) -> None:
    for h in homes:
        subprocess.run(["gpgconf", "--homedir", str(h), "--kill", "all"], check=False,
                       capture_output=True)
        shutil.rmtree(h, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_recipient_keys(home: Path, n: int) -> list[str]:
    gpg = gnupg.GPG(gnupghome=str(home))
    keys = []
    for i in range(n):
        r = gpg.gen_key(gpg.gen_key_input(
            name_real=f"Bench {i}", name_email=f"bench{i}@example.test", key_type="EDDSA",
            key_curve="ed25519", subkey_type="ECDH", subkey_curve="cv25519", expire_date=0,
            no_protection=True))
        keys.append(str(gpg.export_keys(str(r.fingerprint))))
    return keys


def raw_loop(keyring: Keyring, fingerprints: list[str], mails: int) -> float:
    """mails/s of bare sign+encrypt calls on the same messages."""
    started = time.perf_counter()
    for i in range(mails):
        entity = text_entity(BODY)
        keyring.encrypt(entity, fingerprints[i % len(fingerprints)], sign=True)
    return mails / (time.perf_counter() - started)


async def mailer_path(url: str, home: Path, keys: list[str], mails: int, port: int,
                      sink: Sink, parallelism: int) -> float:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for i, key in enumerate(keys):
                await store.save_user(conn, UserState(
                    id=10 + i, uuid=str(uuid.uuid4()), email=f"bench{i}@example.test",
                    org_id=1, role_id=3, gpgkey=key))
        mailer = Mailer(Keyring(home), parallelism=parallelism)
        deliverer = Deliverer(engine, SmtpConfig("127.0.0.1", port), batch=50,
                              poll_interval_s=0.05, connections=2)
        mailer.wake = deliverer.wake
        recipients = [Recipient(f"m{i}-bench{i % len(keys)}@example.test",
                                10 + i % len(keys), 1, keys[i % len(keys)])
                      for i in range(mails)]
        drafts = [Draft(r, "Benchmark", BODY) for r in recipients]
        sink.expect(mails)
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(deliverer.run(stop))
        async with engine.begin() as conn:
            await queue(conn, mailer, drafts, request_id=str(uuid.uuid4()), kind="custom",
                        action="admin_email", actor=Actor.system())
        deliverer.wake()
        queued = time.perf_counter() - started
        assert await asyncio.to_thread(sink.reached.wait, 120), "mails not delivered in time"
        elapsed = time.perf_counter() - started
        print(f"gpg parallelism {parallelism}: queued in {queued:.2f}s, "
              f"all sent in {elapsed:.2f}s")
        stop.set()
        await task
        return mails / elapsed
    finally:
        await engine.dispose()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    pg = os.environ.get("MISP_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:55432")
    url = await create_test_database(pg, prefix="bench_mailer")
    home = Path(tempfile.mkdtemp(prefix="bm", dir="/tmp"))
    keys_home = Path(tempfile.mkdtemp(prefix="bk", dir="/tmp"))
    port = free_port()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        keys = await asyncio.to_thread(make_recipient_keys, keys_home, args.recipients)
        keyring = Keyring(home)
        keyring.ensure_instance_key(name="Bench support", email="misp@bench.test")
        fingerprints = [c.fingerprint for c in (keyring.check_key(k) for k in keys)]
        assert all(fingerprints)
        raw = await asyncio.to_thread(raw_loop, keyring, [f for f in fingerprints if f],
                                      args.mails)
        serial = await mailer_path(url, home, keys, args.mails, port, sink, 1)
        parallel = await mailer_path(url, home, keys, args.mails, port, sink, 2)
    finally:
        controller.stop()
        await asyncio.to_thread(drop_homes, home, keys_home)
        await drop_test_database(url)
    return {"baseline_raw_gpg_mails_per_s": round(raw, 1),
            "mailer_mails_per_s": round(parallel, 1),
            "mailer_serial_gpg_mails_per_s": round(serial, 1),
            "ratio": round(parallel / raw, 2), "ratio_serial": round(serial / raw, 2),
            "target_ratio": 0.8, "cpus": os.cpu_count()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=400)
    parser.add_argument("--recipients", type=int, default=5)
    parsed = parser.parse_args()
    results = asyncio.run(main(parsed))
    table = Table(title="mailer: signed+encrypted mails/s to a local SMTP sink")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in results.items():
        table.add_row(k, str(v))
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mailer.json").write_text(json.dumps({"args": vars(parsed), **results},
                                                    indent=2) + "\n")
