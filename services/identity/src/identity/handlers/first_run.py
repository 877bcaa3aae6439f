"""First run (ARCHITECTURE §6): once organisation 1 is known, the six roles, the site admin
`admin@admin.test` and its first authkey, through events like any other change, exactly once.

Exactly once, whatever the number of consumer processes: every seeded stream has a fixed id
(role 1..6, the admin, the default-role setting), so a second seeder's append conflicts and it
finds the work done. The raw key goes to `<state_dir>/admin.authkey` (mode 0600): written to a
pending file inside the transaction, renamed once it committed; a pending file left by a crash is
kept only if its key is in the database.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries
from identity.adapters.store import next_id, record, write
from identity.domain.roles import seeded_roles
from identity.domain.users import SYSTEM_EMAIL, random_nids_sid
from identity.handlers.authkeys import created as key_created
from identity.handlers.authkeys import deleted as key_deleted
from identity.handlers.authkeys import new_key
from identity.handlers.roles import DEFAULT_ROLE_STREAM, ROLE_NAMESPACE, role_stream
from misp_contracts.envelope import Actor
from misp_contracts.events.identity import (
    DefaultRoleChanged,
    RoleCreated,
    UserCreated,
    UserState,
)
from misp_platform.auth import authkey_hmac
from misp_platform.eventstore import Append
from misp_platform.misp.errors import Conflict

log = structlog.get_logger(__name__)

ADMIN_ID = 1
ADMIN_STREAM = str(uuid.uuid5(ROLE_NAMESPACE, "user:1"))
ADMIN_KEY_COMMENT = "Site admin key of the first run (admin.authkey; rotate: make admin-key)"
KEY_FILE = "admin.authkey"
HOST_ORG_ID = 1


def key_path(state_dir: str) -> Path:
    return Path(state_dir) / KEY_FILE


def write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content + "\n")
    os.chmod(path, 0o600)


def _pending(state_dir: str) -> Path:
    return key_path(state_dir).with_name(f"{KEY_FILE}.pending-{os.getpid()}")


async def seeded(conn: AsyncConnection) -> bool:
    return await queries.stream_started(conn, ADMIN_STREAM)


async def seed(engine: AsyncEngine, *, pepper: str, state_dir: str) -> bool:
    """Seed if organisation 1 is known and nobody seeded yet; True once seeded (by anyone)."""
    async with engine.connect() as conn:
        if await seeded(conn):
            return True
        if await queries.get_org(conn, HOST_ORG_ID) is None:
            return False
    pending = _pending(state_dir)
    now = datetime.now(UTC)
    actor = Actor.system()

    async def work(conn: AsyncConnection) -> bool:
        if await seeded(conn):
            return False
        appends = [Append(stream_id=role_stream(r.id), stream_type="role", expected_version=0,
                          events=(RoleCreated(role=r),), actor=actor)
                   for r in seeded_roles(now)]
        appends.append(Append(stream_id=DEFAULT_ROLE_STREAM, stream_type="admin_setting",
                              expected_version=0, events=(DefaultRoleChanged(role_id=3),),
                              actor=actor))
        admin = UserState(id=ADMIN_ID, uuid=ADMIN_STREAM, email=SYSTEM_EMAIL,
                          org_id=HOST_ORG_ID, role_id=1, change_pw=True,
                          nids_sid=random_nids_sid(), date_created=now, date_modified=now,
                          last_pw_change=now)
        appends.append(Append(stream_id=ADMIN_STREAM, stream_type="user", expected_version=0,
                              events=(UserCreated(user=admin),), actor=actor))
        raw, key = new_key(pepper, key_id=await next_id(conn, "authkey_id_seq"),
                           user_id=ADMIN_ID, now=now, comment=ADMIN_KEY_COMMENT)
        appends.append(key_created(key, actor))
        await record(conn, appends)
        # No user_credential row: the admin's password is unusable until reset (change_pw set).
        await asyncio.to_thread(write_private, pending, raw)
        return True

    try:
        did_seed = await write(engine, work)
    except Conflict:
        did_seed = False
    if did_seed:
        pending.replace(key_path(state_dir))
        log.info("first_run.seeded", roles=6, admin_user_id=ADMIN_ID,
                 key_file=str(key_path(state_dir)))
    else:
        pending.unlink(missing_ok=True)
    return True


async def recover_pending_key(engine: AsyncEngine, *, pepper: str, state_dir: str) -> None:
    """A crash between commit and rename leaves a pending file: keep it if its key is live."""
    folder = key_path(state_dir).parent
    if not folder.is_dir():
        return
    for pending in folder.glob(f"{KEY_FILE}.pending-*"):
        raw = pending.read_text().strip()
        async with engine.connect() as conn:
            live = any(k.state.key_hmac == authkey_hmac(pepper, raw)
                       for k in await queries.keys_of(conn, ADMIN_ID))
        if live:
            pending.replace(key_path(state_dir))
            log.info("first_run.key_file_recovered")
        else:
            pending.unlink(missing_ok=True)


async def seed_when_ready(engine: AsyncEngine, *, pepper: str, state_dir: str,
                          interval_s: float = 0.2) -> None:
    """Poll until organisation 1 is in the projection, then seed (a task of the consumer)."""
    await recover_pending_key(engine, pepper=pepper, state_dir=state_dir)
    while True:
        try:
            if await seed(engine, pepper=pepper, state_dir=state_dir):
                return
        except Exception:  # the database restarting must not end the first run for good
            log.exception("first_run.failed")
            await asyncio.sleep(2)
        await asyncio.sleep(interval_s)


async def rotate_admin_key(engine: AsyncEngine, *, pepper: str, state_dir: str) -> str:
    """`python -m identity admin-key`: a new key for the admin, the previous one(s) deleted."""
    pending = _pending(state_dir)
    now = datetime.now(UTC)
    actor = Actor.system()

    async def work(conn: AsyncConnection) -> str:
        admin = await queries.get_user(conn, ADMIN_ID)
        if admin is None:
            raise LookupError("the site admin does not exist yet (is organisation 1 known?)")
        old = [k for k in await queries.keys_of(conn, ADMIN_ID)
               if k.state.comment == ADMIN_KEY_COMMENT]
        raw, key = new_key(pepper, key_id=await next_id(conn, "authkey_id_seq"),
                           user_id=ADMIN_ID, now=now, comment=ADMIN_KEY_COMMENT)
        await record(conn, [*(key_deleted(k, actor) for k in old), key_created(key, actor)])
        await asyncio.to_thread(write_private, pending, raw)
        return raw

    try:
        raw = await write(engine, work)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    pending.replace(key_path(state_dir))
    return raw
