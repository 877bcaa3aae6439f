"""`python -m audit prune|verify` on a real database: prune refuses without `--yes` when stdin is
not a terminal, `--dry-run` counts what would go and deletes nothing, verify exits 1 on a broken
chain and 3 without a signing key; progress goes to stderr as plain lines off a terminal."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.bootstrap import spec
from audit.handlers.integrity import write_checkpoint
from audit.projections.log import Options, Source, project
from audit.settings import AuditSettings
from audit.testing import count_entries, envelope_of
from misp_contracts.events.identity import UserState, UserUpdated
from misp_platform.cli import build_cli
from misp_platform.cli_support import CliContext


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit-signing.key"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def audit_cli(settings: AuditSettings, *args: str) -> Result:
    return CliRunner().invoke(build_cli(spec), list(args), obj=CliContext.of(settings, spec))


async def fill(engine: AsyncEngine, n: int, start: int = 0) -> None:
    events = [UserUpdated(user=UserState(id=i, uuid=str(uuid.uuid4()), email=f"u{i}@x.test",
                                         org_id=1, role_id=3),
                          changes={"email": (f"old{i}@x.test", f"u{i}@x.test")})
              for i in range(start, start + n)]
    async with engine.begin() as conn:
        await project(conn, [(envelope_of(e), Source("misp.identity.user.v1", i % 2, start + i))
                             for i, e in enumerate(events)], Options(publish=False))


async def test_prune_asks_first_a_dry_run_counts_and_yes_prunes(
        audit_engine: AsyncEngine, audit_db: str, key_file: Path) -> None:
    from audit.adapters.keys import load_key

    settings = AuditSettings(database_url=audit_db, signing_key_path=str(key_file))
    await fill(audit_engine, 6)
    await write_checkpoint(audit_engine, load_key(key_file))
    async with audit_engine.begin() as conn:
        await conn.execute(text(
            "UPDATE log_checkpoint SET created_at = now() - interval '40 days'"))
    await fill(audit_engine, 4, start=6)

    refused = await asyncio.to_thread(audit_cli, settings, "prune", "--days", "30")
    assert refused.exit_code == 1
    assert "refusing without confirmation" in refused.stderr and "--yes" in refused.stderr
    assert await count_entries(audit_engine) == 10

    dry = await asyncio.to_thread(audit_cli, settings, "prune", "--days", "30", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["would_prune_entries"] == 6
    assert "pruning chains: 2/2 done" in dry.stderr
    assert await count_entries(audit_engine) == 10
    async with audit_engine.connect() as conn:
        checkpoints = (await conn.execute(text("SELECT count(*) FROM log_checkpoint"))).scalar()
    assert checkpoints == 1

    done = await asyncio.to_thread(audit_cli, settings, "prune", "--days", "30", "--yes")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["pruned_entries"] == 6
    assert await count_entries(audit_engine) == 4

    verified = await asyncio.to_thread(audit_cli, settings, "verify", "--db-only")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["ok"] is True
    assert "verifying entries: 4/4 done" in verified.stderr


async def test_verify_exits_1_on_a_broken_chain_and_3_without_a_signing_key(
        audit_engine: AsyncEngine, audit_db: str, key_file: Path, tmp_path: Path) -> None:
    settings = AuditSettings(database_url=audit_db, signing_key_path=str(key_file))
    await fill(audit_engine, 4)
    assert (await asyncio.to_thread(audit_cli, settings, "verify", "--db-only")).exit_code == 0
    async with audit_engine.begin() as conn:
        await conn.execute(text(
            "UPDATE log_entry SET email = 'mallory@x.test' WHERE id = (SELECT min(id) "
            "FROM log_entry)"))
    broken = await asyncio.to_thread(audit_cli, settings, "verify", "--db-only")
    assert broken.exit_code == 1
    assert json.loads(broken.stdout)["first_broken"] is not None
    keyless = settings.model_copy(update={"signing_key_path": str(tmp_path / "none.key")})
    missing = await asyncio.to_thread(audit_cli, keyless, "verify", "--db-only")
    assert missing.exit_code == 3
    assert "no signing key" in json.loads(missing.stdout)["checkpoint_problem"]
