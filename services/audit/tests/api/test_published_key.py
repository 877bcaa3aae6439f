"""The checkpoints verify with the published public key alone: a verifier (another process, a
fresh state directory, an auditor's machine) needs no signing secret, and what the API publishes
is the key whose id the checkpoints carry."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.adapters.keys import load_or_create_key, public_pem
from audit.bootstrap import create_app
from audit.handlers.integrity import write_checkpoint
from audit.settings import AuditSettings
from misp_platform.testing import seed_principal

PEPPER = secrets.token_hex(16)


async def client_for(settings: AuditSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://audit") as client:
        yield client


@pytest.fixture
async def admin_key(audit_engine: AsyncEngine) -> str:
    return await seed_principal(audit_engine, PEPPER, user_id=1, email="admin@admin.test",
                                role={"perm_site_admin": True, "perm_admin": True})


async def test_a_verifier_with_only_the_published_key_checks_every_checkpoint(
        audit_db: str, audit_engine: AsyncEngine, admin_key: str, tmp_path: Path) -> None:
    signer_dir, verifier_dir = tmp_path / "signer", tmp_path / "verifier"
    signer_dir.mkdir()
    verifier_dir.mkdir()
    key = load_or_create_key(signer_dir / "audit-signing.key")
    checkpoint = await write_checkpoint(audit_engine, key, force=True)
    assert checkpoint is not None
    published = verifier_dir / "audit-verify.pem"
    published.write_text(public_pem(key.public_key()))
    # A fresh state directory with no signing key in it: only the published key.
    verifier = AuditSettings(database_url=audit_db, pepper=PEPPER, state_dir=str(verifier_dir),
                             verify_key_path=str(published))
    headers = {"Authorization": admin_key, "Accept": "application/json"}
    async for client in client_for(verifier):
        report = (await client.get("/api/v1/audit/verify?db_only=1", headers=headers)).json()
        assert report["ok"] is True, report
        shown = (await client.get("/api/v1/audit/public-key", headers=headers)).json()
    assert shown["public_key_pem"] == published.read_text()
    assert shown["key_id"] == checkpoint.as_record()["key_id"]
    assert not (verifier_dir / "audit-signing.key").exists()


async def test_a_checkpoint_signed_by_another_key_fails_against_the_published_one(
        audit_db: str, audit_engine: AsyncEngine, admin_key: str, tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "audit-signing.key")
    await write_checkpoint(audit_engine, key, force=True)
    other = load_or_create_key(tmp_path / "someone-else.key")
    published = tmp_path / "published.pem"
    published.write_text(public_pem(other.public_key()))
    verifier = AuditSettings(database_url=audit_db, pepper=PEPPER, state_dir=str(tmp_path),
                             verify_key_path=str(published))
    async for client in client_for(verifier):
        report = (await client.get("/api/v1/audit/verify?db_only=1", headers={
            "Authorization": admin_key, "Accept": "application/json"})).json()
    assert report["ok"] is False, report
