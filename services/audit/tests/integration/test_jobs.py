"""The audit's jobs run by its worker on the real database: `audit_verify` reports the figures
or the first broken link, `audit_prune` prunes with the retention setting; the effect and the
`job_run` mark commit together with the finish report, and a failure leaves neither."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.adapters.keys import load_or_create_key
from audit.handlers.integrity import verify, write_checkpoint
from audit.handlers.jobs import job_handlers
from audit.projections.log import Options, Source, project
from audit.settings import AuditSettings
from audit.testing import count_entries, envelope_of
from misp_contracts.events.identity import UserState, UserUpdated
from misp_platform.testing import run_job


def settings(db: str, key_path: Path, **kw: Any) -> AuditSettings:
    return AuditSettings(database_url=db, signing_key_path=str(key_path), **kw)


async def fill(engine: AsyncEngine, n: int, *, start: int = 0) -> None:
    events = [UserUpdated(user=UserState(id=i, uuid=str(uuid.uuid4()), email=f"u{i}@x.test",
                                         org_id=1, role_id=3), changes={})
              for i in range(start, start + n)]
    async with engine.begin() as conn:
        await project(conn, [(envelope_of(e), Source("misp.identity.user.v1", i % 2, start + i))
                             for i, e in enumerate(events)], Options(publish=False))


async def marks(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text("SELECT job_id, outcome, message FROM job_run")))


async def test_a_verify_job_reports_the_figures_of_an_untouched_log(
        audit_db: str, audit_engine: AsyncEngine, tmp_path: Path) -> None:
    key_path = tmp_path / "audit.key"
    await fill(audit_engine, 6)
    await write_checkpoint(audit_engine, load_or_create_key(key_path))
    done = await run_job(audit_engine, service="audit", queue="default",
                         job_type="audit_verify", job_input="db-only",
                         handlers=job_handlers(settings(audit_db, key_path)))
    assert done["outcome"] == "succeeded", done
    assert done["message"] == ("Audit log verified: 6 entries in 2 chains, 1 checkpoints "
                               "(epoch 1).")
    [mark] = await marks(audit_engine)
    assert (mark.job_id, mark.outcome, mark.message) == (done["job_id"], "succeeded",
                                                         done["message"])


async def test_a_verify_job_names_the_first_broken_link(
        audit_db: str, audit_engine: AsyncEngine, tmp_path: Path) -> None:
    key_path = tmp_path / "audit.key"
    await fill(audit_engine, 6)
    await write_checkpoint(audit_engine, load_or_create_key(key_path))
    async with audit_engine.begin() as conn:
        await conn.execute(text("UPDATE log_entry SET email = 'someone@else' WHERE id = 4"))
    done = await run_job(audit_engine, service="audit", queue="prio", job_type="audit_verify",
                         data={"db_only": True},
                         handlers=job_handlers(settings(audit_db, key_path)))
    assert done["outcome"] == "succeeded", done
    assert done["message"].startswith("Audit log BROKEN: first broken link: chain ")
    assert " id 4 (" in done["message"]


async def test_a_prune_job_prunes_with_the_retention_setting_and_the_log_still_verifies(
        audit_db: str, audit_engine: AsyncEngine, tmp_path: Path) -> None:
    key_path = tmp_path / "audit.key"
    key = load_or_create_key(key_path)
    await fill(audit_engine, 6)
    await write_checkpoint(audit_engine, key)
    async with audit_engine.begin() as conn:
        await conn.execute(text(
            "UPDATE log_checkpoint SET created_at = now() - interval '40 days'"))
    await fill(audit_engine, 4, start=6)
    await write_checkpoint(audit_engine, key)

    off = await run_job(audit_engine, service="audit", queue="default", job_type="audit_prune",
                        handlers=job_handlers(settings(audit_db, key_path)))
    assert off["message"] == "Nothing pruned: retention is off (AUDIT_RETENTION_DAYS is 0)."
    assert await count_entries(audit_engine) == 10

    done = await run_job(audit_engine, service="audit", queue="default", job_type="audit_prune",
                         handlers=job_handlers(settings(audit_db, key_path,
                                                        retention_days=30)))
    assert done["outcome"] == "succeeded", done
    assert done["message"] == ("Pruned 6 entries from 2 chains (retention 30 days); "
                               "pruned checkpoint 3.")
    assert await count_entries(audit_engine) == 4
    from audit.domain.checkpoint import public_raw

    assert (await verify(audit_engine, public_raw(key))).ok


async def test_a_job_that_fails_leaves_no_mark_and_reports_the_error(
        audit_db: str, audit_engine: AsyncEngine, tmp_path: Path) -> None:
    done = await run_job(audit_engine, service="audit", queue="default",
                         job_type="audit_verify", job_input="db-only",
                         handlers=job_handlers(settings(audit_db, tmp_path / "missing.key")))
    assert done["outcome"] == "failed"
    assert "SigningKeyError: no signing key at" in done["message"]
    assert await marks(audit_engine) == []


async def test_the_same_job_run_twice_is_reported_again_not_redone(
        audit_db: str, audit_engine: AsyncEngine, tmp_path: Path) -> None:
    key_path = tmp_path / "audit.key"
    await fill(audit_engine, 2)
    await write_checkpoint(audit_engine, load_or_create_key(key_path))
    handlers = job_handlers(settings(audit_db, key_path))
    first = await run_job(audit_engine, service="audit", queue="default",
                          job_type="audit_verify", job_input="db-only", handlers=handlers)
    await fill(audit_engine, 2, start=2)
    again = await run_job(audit_engine, service="audit", queue="default",
                          job_type="audit_verify", job_input="db-only", handlers=handlers,
                          job_id=first["job_id"], attempt=2)
    assert again["replayed"] is True and again["message"] == first["message"]
