"""Benchmark: signed and encrypted mails/s (issue 8 §9, issue 19 item 5), next to a baseline
measured in the same run.

  - baseline: a raw loop of `gpg --encrypt --sign` (python-gnupg, one call per message, the
    same instance key, recipients and bodies, gpg's defaults) with nothing else around it;
  - beside it, for information: the same raw loop with `--no-random-seed-file`, the one gpg
    option the mailer adds (mailer.adapters.gpg.NO_SEED_FILE: it lets gpg runs proceed in
    parallel; one at a time it gains little), with the mailer's ratio to it;
  - mailer: the same messages as one bulk request through the mailer's own path: key checks,
    PGP/MIME rendering (sign+encrypt in one gpg call per mail), one transaction queueing them,
    then the delivery loop sending each to a local SMTP sink (aiosmtpd, in a process of its
    own like a relay) and recording them with their events and outbox rows (each SMTP session
    every MAILER_RECORD_BATCH mails, 1 by default). Measured from the request to the
    last mail accepted by the sink. Run with 2 gpg processes at a time (the cores here;
    `--gpg N`), and with 1 (like the baseline).

The four run in `--rounds` alternating rounds (their order rotating), so that a disturbance of
the shared machine falls on all of them: each rate printed is the median over the rounds, and the
ratio the median of the rounds' ratios (each round's figures are in the JSON). The mailer's
stages (median seconds, `--gpg` processes at a time): `keys` (checking the recipients' keys),
`render` (until the last mail is signed and encrypted), `queue_tx` (the rest of the request: its
rows and commit), `delivery_tail` (from the commit to the last mail accepted by the sink).

Target: mailer / baseline >= 0.8. 400 mails a round by default: a run of 150 (about a second) is
too short for the fixed costs of a request (its transaction, the first SMTP connections, the
delivery tail after the last rendering) to stop dominating: 0.79 at 150, 0.86 at 400 on the
2-core machine (2026-11-27).

    python bench/mailer.py [--mails 400] [--recipients 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
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
from sqlalchemy.ext.asyncio import AsyncEngine

# This file is bench/mailer.py: its folder must not shadow the `mailer` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from mailer.adapters import store  # noqa: E402
from mailer.adapters.gpg import NO_SEED_FILE, Keyring  # noqa: E402
from mailer.adapters.mime import text_entity  # noqa: E402
from mailer.adapters.smtp import SmtpConfig  # noqa: E402
from mailer.domain.model import Recipient  # noqa: E402
from mailer.handlers.compose import Draft, Mailer, prepare, queue  # noqa: E402
from mailer.handlers.deliver import Deliverer  # noqa: E402
from mailer.settings import MailerSettings  # noqa: E402
from misp_contracts.envelope import Actor  # noqa: E402
from misp_contracts.events.identity import UserState  # noqa: E402
from misp_platform.db import create_engine  # noqa: E402
from misp_platform.migrations import upgrade  # noqa: E402
from misp_platform.testing import create_test_database, drop_test_database  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MIGRATIONS = Path(__file__).resolve().parents[1] / "services/mailer/src/mailer/migrations"
BODY = ("Hello,\n\nthis is a benchmark message with a body of typical length. " * 12) + "\n"


class Sink:
    """A local SMTP sink (aiosmtpd) in a process of its own, as a relay would be: in the bench's
    process it would take the GIL from the mailer's event loop on every mail it parses. It
    counts the mails it accepts; `expect` then `wait` waits for that many more."""

    def __init__(self, port: int) -> None:
        self.port = port
        context = multiprocessing.get_context("spawn")
        self.count = context.Value("l", 0)
        self.target = context.Value("l", 0)
        self.reached = context.Event()
        ready = context.Event()
        self.process = context.Process(target=serve_sink, daemon=True, args=(
            port, self.count, self.target, self.reached, ready))
        self.process.start()
        if not ready.wait(60):
            raise RuntimeError("the SMTP sink did not start")

    def expect(self, more: int) -> None:
        self.reached.clear()
        with self.count.get_lock():
            self.target.value = self.count.value + more

    def wait(self, timeout_s: float) -> bool:
        return bool(self.reached.wait(timeout_s))

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


class CountingHandler:
    def __init__(self, count: Any, target: Any, reached: Any) -> None:
        self.count, self.target, self.reached = count, target, reached

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.count.get_lock():
            self.count.value += 1
            if self.count.value >= self.target.value:
                self.reached.set()
        return "250 OK"


def serve_sink(port: int, count: Any, target: Any, reached: Any, ready: Any) -> None:
    """The sink process: accept mail on `port` until terminated."""
    controller = Controller(CountingHandler(count, target, reached), hostname="127.0.0.1",
                            port=port)
    controller.start()
    ready.set()
    threading.Event().wait()


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


def raw_loop(keyring: Keyring, fingerprints: list[str], mails: int, *,
             extra: tuple[str, ...] = ()) -> float:
    """mails/s of bare sign+encrypt calls on the same messages: python-gnupg's `encrypt` with
    the instance key signing, as the mailer called it before any tuning of its own (gpg's
    defaults, so its `random_seed` file too), plus `extra` options."""
    started = time.perf_counter()
    for i in range(mails):
        entity = text_entity(BODY)
        encrypted = keyring.gpg.encrypt(entity, [fingerprints[i % len(fingerprints)]],
                                        sign=keyring.fingerprint, always_trust=True, armor=True,
                                        extra_args=["--digest-algo", "SHA256", *extra])
        assert encrypted.ok, encrypted.status
    return mails / (time.perf_counter() - started)


class StampedMailer(Mailer):
    """The mailer as the service runs it, noting when its last rendering ended (a stage's
    end)."""

    rendered_at = 0.0

    async def render(self, *args: Any, **kwargs: Any) -> tuple[bytes, bool, bool, str]:
        rendered = await super().render(*args, **kwargs)
        self.rendered_at = time.perf_counter()
        return rendered


async def mailer_path(engine: AsyncEngine, home: Path, keys: list[str], mails: int, port: int,
                      sink: Sink, parallelism: int,
                      connections: int) -> tuple[float, dict[str, float]]:
    """mails/s from the request to the last mail accepted, and the seconds of each stage."""
    mailer = StampedMailer(Keyring(home), parallelism=parallelism)
    deliverer = Deliverer(engine, SmtpConfig("127.0.0.1", port), batch=50,
                          poll_interval_s=0.05, connections=connections)
    mailer.wake = deliverer.wake
    recipients = [Recipient(f"m{i}-bench{i % len(keys)}@example.test",
                            10 + i % len(keys), 1, keys[i % len(keys)])
                  for i in range(mails)]
    drafts = [Draft(r, "Benchmark", BODY) for r in recipients]
    request_id = str(uuid.uuid4())
    sink.expect(mails)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(deliverer.run(stop))
    async with engine.begin() as conn:
        settings = await store.load_settings(conn)
        prepared = await prepare(mailer, drafts, settings, request_id=request_id)
        keys_checked = time.perf_counter()
        await queue(conn, mailer, drafts, request_id=request_id, kind="custom",
                    action="admin_email", actor=Actor.system(), settings=settings,
                    prepared=prepared)
    deliverer.wake()
    committed = time.perf_counter()
    assert await asyncio.to_thread(sink.wait, 120), "mails not delivered in time"
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    stages = {"keys": keys_checked - started, "render": mailer.rendered_at - keys_checked,
              "queue_tx": committed - mailer.rendered_at,
              "delivery_tail": started + elapsed - committed}
    print(f"gpg parallelism {parallelism}: queued in {committed - started:.2f}s, "
          f"all sent in {elapsed:.2f}s")
    return mails / elapsed, stages


async def main(args: argparse.Namespace) -> dict[str, Any]:
    pg = os.environ.get("MISP_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:55432")
    port = free_port()
    sink = Sink(port)  # first: a sink that fails to start leaves no database or home behind
    url = await create_test_database(pg, prefix="bench_mailer")
    home = Path(tempfile.mkdtemp(prefix="bm", dir="/tmp"))
    keys_home = Path(tempfile.mkdtemp(prefix="bk", dir="/tmp"))
    engine = create_engine(url)
    rounds: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        keys = await asyncio.to_thread(make_recipient_keys, keys_home, args.recipients)
        keyring = Keyring(home)
        keyring.ensure_instance_key(name="Bench support", email="misp@bench.test")
        fingerprints = [c.fingerprint for c in (keyring.check_key(k) for k in keys)]
        assert all(fingerprints)
        async with engine.begin() as conn:
            for i, key in enumerate(keys):
                await store.save_user(conn, UserState(
                    id=10 + i, uuid=str(uuid.uuid4()), email=f"bench{i}@example.test",
                    org_id=1, role_id=3, gpgkey=key))

        async def raw(*extra: str) -> float:
            return await asyncio.to_thread(raw_loop, keyring, [f for f in fingerprints if f],
                                           args.mails, extra=extra)

        measures = ["raw", "parallel", "serial", "raw_no_seed_file"]
        for n in range(args.rounds):
            figures: dict[str, Any] = {}
            for measure in measures[n % 4:] + measures[:n % 4]:
                if measure == "raw":
                    figures["raw"] = await raw()
                elif measure == "raw_no_seed_file":
                    figures[measure] = await raw(NO_SEED_FILE)
                else:
                    rate, stages = await mailer_path(engine, home, keys, args.mails, port, sink,
                                                     args.gpg if measure == "parallel" else 1,
                                                     args.connections)
                    figures[measure] = rate
                    if measure == "parallel":
                        figures["stages_s"] = {k: round(v, 3) for k, v in stages.items()}
            figures["ratio"] = figures["parallel"] / figures["raw"]
            figures["ratio_serial"] = figures["serial"] / figures["raw"]
            figures["ratio_vs_raw_no_seed_file"] = (figures["parallel"]
                                                    / figures["raw_no_seed_file"])
            print(f"round {n + 1}: raw {figures['raw']:.1f}/s, mailer {figures['parallel']:.1f}/s "
                  f"(ratio {figures['ratio']:.2f}), raw without the seed file "
                  f"{figures['raw_no_seed_file']:.1f}/s, 1 gpg {figures['serial']:.1f}/s "
                  f"(ratio {figures['ratio_serial']:.2f}), stages {figures['stages_s']}")
            rounds.append(figures)
    finally:
        sink.stop()
        await engine.dispose()
        await asyncio.to_thread(drop_homes, home, keys_home)
        await drop_test_database(url)

    def median_of(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    return {"baseline_raw_gpg_mails_per_s": round(median_of("raw"), 1),
            "mailer_mails_per_s": round(median_of("parallel"), 1),
            "mailer_serial_gpg_mails_per_s": round(median_of("serial"), 1),
            "ratio": round(median_of("ratio"), 2),
            "ratio_serial": round(median_of("ratio_serial"), 2),
            "raw_gpg_no_seed_file_mails_per_s": round(median_of("raw_no_seed_file"), 1),
            "ratio_vs_raw_no_seed_file": round(median_of("ratio_vs_raw_no_seed_file"), 2),
            "target_ratio": 0.8,
            "stages_s": {k: round(statistics.median(r["stages_s"][k] for r in rounds), 3)
                         for k in rounds[0]["stages_s"]},
            "rounds": [{k: v if isinstance(v, dict) else round(v, 2) for k, v in r.items()}
                       for r in rounds],
            "cpus": os.cpu_count()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=400, help="mails per measure and round")
    parser.add_argument("--recipients", type=int, default=5, help="distinct recipients' keys")
    parser.add_argument("--connections", type=int,
                        default=MailerSettings.model_fields["smtp_connections"].default,
                        help="the delivery loop's SMTP sessions (the service's default)")
    parser.add_argument("--gpg", type=int, default=2,
                        help="gpg processes at a time in the mailer's main measure (2: the cores "
                             "here; the service's MAILER_GPG_PARALLELISM defaults to 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of the three measures (medians reported)")
    parsed = parser.parse_args()
    results = asyncio.run(main(parsed))
    table = Table(title="mailer: signed+encrypted mails/s to a local SMTP sink")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in results.items():
        if k != "rounds":
            table.add_row(k, str(v))
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mailer.json").write_text(json.dumps({"args": vars(parsed), **results},
                                                    indent=2) + "\n")
