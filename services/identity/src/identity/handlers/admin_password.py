"""`python -m identity admin-password`: a temporary password for the site admin, so that the
first login can happen in a browser (the web console), where it must be changed at once.

The site admin is seeded with no password (first_run.py) and `change_pw` set. This sets a random
temporary one (argon2-hashed in `user_credential`, like any password; never in an event or a log),
keeps `change_pw` set, records who did it (`UserPasswordReset`, an operator action), and writes
the password to `<state_dir>/admin.password` (mode 0600) for the operator. With `only_first`, an
admin who already has a password is left alone (what `make up` runs at every start).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries
from identity.adapters.passwords import hash_password
from identity.adapters.store import record, store_password, write
from identity.handlers.first_run import ADMIN_ID, write_private
from misp_contracts.envelope import Actor
from misp_contracts.events.base import REDACTED, changes_between
from misp_contracts.events.identity import UserPasswordReset, UserUpdated
from misp_platform.eventstore import Append

PASSWORD_FILE = "admin.password"


def password_path(state_dir: str) -> Path:
    return Path(state_dir) / PASSWORD_FILE


def temporary_password() -> str:
    """24 random URL-safe characters: longer than any password policy's length, and MISP's
    default complexity rule accepts any password of 16 characters or more."""
    return secrets.token_urlsafe(18)


async def set_temporary_password(engine: AsyncEngine, *, state_dir: str,
                                 only_first: bool = False) -> str | None:
    """The new temporary password, or None when `only_first` and the admin has one already."""
    if only_first:  # what `make up` runs at every start: no argon2 hash when nothing is set
        async with engine.connect() as conn:
            if await queries.password_hash(conn, ADMIN_ID):
                return None
    password = temporary_password()
    password_hash = await hash_password(password)
    now = datetime.now(UTC)
    actor = Actor.system()

    async def work(conn: AsyncConnection) -> bool:
        loaded = await queries.get_user(conn, ADMIN_ID)
        if loaded is None:
            raise LookupError("the site admin does not exist yet (is organisation 1 known?)")
        if only_first and await queries.password_hash(conn, ADMIN_ID):
            return False
        current = loaded.state
        new = current.model_copy(update={"change_pw": True, "date_modified": now,
                                         "last_pw_change": now})
        changes = changes_between(current.model_dump(mode="json"), new.model_dump(mode="json"))
        changes["password"] = (REDACTED, REDACTED)
        await record(conn, [Append(
            stream_id=loaded.stream_id, stream_type="user", expected_version=loaded.version,
            events=(UserUpdated(user=new, changes=changes),
                    UserPasswordReset(title=f"Temporary password set for the site admin "
                                            f"({current.email}) by the operator",
                                      user_id=current.id, email=current.email,
                                      org_id=current.org_id)),
            actor=actor)])
        await store_password(conn, ADMIN_ID, password_hash)
        return True

    if not await write(engine, work):
        return None
    await asyncio.to_thread(write_private, password_path(state_dir), password)
    return password
