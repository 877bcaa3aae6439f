"""Reads and writes of the mailer's tables (in the caller's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, exists, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mailer.adapters.tables import mail, mail_request, mail_user
from mailer.domain.model import MailSettings, Recipient
from misp_contracts.access import RoleFlags
from misp_contracts.events.identity import UserState
from misp_platform.auth.principals import principal_authkey, principal_role
from misp_platform.eventstore import EventStore
from misp_platform.server_settings import all_settings
from misp_platform.versions import is_newer

store = EventStore("mailer")


# ---- projections -------------------------------------------------------------------------------


async def save_user(conn: AsyncConnection, user: UserState, version: int | None = None) -> None:
    """Insert or update, unless the row reflects a newer version of the user already."""
    values = {"email": user.email, "org_id": user.org_id, "role_id": user.role_id,
              "disabled": user.disabled, "autoalert": user.autoalert,
              "contactalert": user.contactalert, "gpgkey": user.gpgkey or None,
              "version": version, "deleted": False, "updated_at": text("now()")}
    await _upsert_newer(conn, user.id, values)


async def delete_user(conn: AsyncConnection, user_id: int, *, email: str = "", org_id: int = 0,
                      version: int | None = None) -> None:
    """A tombstone: a replayed (older) creation cannot make the user a recipient again."""
    await _upsert_newer(conn, user_id, {"email": email, "org_id": org_id, "version": version,
                                        "deleted": True, "updated_at": text("now()")})


async def _upsert_newer(conn: AsyncConnection, user_id: int, values: dict[str, Any]) -> None:
    stmt = pg_insert(mail_user).values(id=user_id, **values)
    changed = values if not values.get("deleted") else {
        "deleted": True, "version": values["version"], "updated_at": values["updated_at"]}
    await conn.execute(stmt.on_conflict_do_update(index_elements=[mail_user.c.id],
                                                  set_=changed, where=is_newer(stmt, mail_user)))


async def load_settings(conn: AsyncConnection) -> MailSettings:
    """The server settings as published (misp_platform.server_settings), over the defaults."""
    return MailSettings(await all_settings(conn))


def _recipient(row: Any) -> Recipient:
    return Recipient(email=row.email, user_id=row.id, org_id=row.org_id, gpgkey=row.gpgkey,
                     disabled=row.disabled)


async def user(conn: AsyncConnection, user_id: int) -> Recipient | None:
    row = (await conn.execute(select(mail_user).where(
        mail_user.c.id == user_id, mail_user.c.deleted.is_(False)))).first()
    return None if row is None else _recipient(row)


async def user_version(conn: AsyncConnection, user_id: int) -> int | None:
    """The version of the user's stream the projection holds (a deleted user's too; 0 for a row
    older than versions), or None when it has never seen the user."""
    found = (await conn.execute(select(mail_user.c.version).where(
        mail_user.c.id == user_id))).first()
    return None if found is None else (found.version or 0)


async def users(conn: AsyncConnection, *, org_ids: Sequence[int] | None = None,
                autoalert: bool | None = None, contactalert: bool | None = None,
                include_disabled: bool = False) -> list[Recipient]:
    stmt = select(mail_user).where(mail_user.c.deleted.is_(False)).order_by(mail_user.c.id)
    if org_ids is not None:
        stmt = stmt.where(mail_user.c.org_id.in_(list(org_ids)))
    if autoalert is not None:
        stmt = stmt.where(mail_user.c.autoalert.is_(autoalert))
    if contactalert is not None:
        stmt = stmt.where(mail_user.c.contactalert.is_(contactalert))
    if not include_disabled:
        stmt = stmt.where(mail_user.c.disabled.is_(False))
    return [_recipient(r) for r in await conn.execute(stmt)]


async def user_count(conn: AsyncConnection) -> int:
    """The rows of the users projection (deleted users' tombstones too)."""
    return int((await conn.execute(select(func.count()).select_from(mail_user))).scalar_one())


async def role_flags(conn: AsyncConnection, *, user_ids: Sequence[int] | None = None,
                     org_ids: Sequence[int] | None = None) -> dict[int, RoleFlags]:
    """The admin flags of these users' roles (by id, or every user of `org_ids`): their role as
    the mailer's projection of users has it, its flags from the principals projection that every
    service runs. A user whose role is not known (yet) is missing: the rules treat them as
    neither plain nor admin."""
    stmt = (select(mail_user.c.id, principal_role.c.perm_site_admin, principal_role.c.perm_admin)
            .select_from(mail_user.join(principal_role,
                                        (principal_role.c.role_id == mail_user.c.role_id)
                                        & principal_role.c.deleted.is_(False)))
            .where(mail_user.c.deleted.is_(False)))
    if user_ids is not None:
        stmt = stmt.where(mail_user.c.id.in_(list(user_ids)))
    if org_ids is not None:
        stmt = stmt.where(mail_user.c.org_id.in_(list(org_ids)))
    return {r.id: RoleFlags(perm_site_admin=r.perm_site_admin, perm_admin=r.perm_admin)
            for r in await conn.execute(stmt)}


async def expiring_authkeys(conn: AsyncConnection, *, after: int, until: int,
                            kind: str) -> list[Any]:
    """The keys of enabled, undeleted users (principals projection) that expire in
    `(after, until]` and have no mail request `<kind>:<key id>:<expiration>` yet, soonest
    first: `authkey_id, expiration, authkey_start, authkey_end, user_id`."""
    k = principal_authkey.c
    request_id = (kind + ":" + k.authkey_id.cast(mail_request.c.id.type) + ":"
                  + k.expiration.cast(mail_request.c.id.type))
    return list((await conn.execute(
        select(k.authkey_id, k.expiration, k.authkey_start, k.authkey_end, k.user_id)
        .join(mail_user, mail_user.c.id == k.user_id)
        .where(and_(k.deleted.is_(False), k.expiration > after, k.expiration <= until,
                    mail_user.c.disabled.is_(False), mail_user.c.deleted.is_(False),
                    ~exists().where(mail_request.c.id == request_id)))
        .order_by(k.expiration, k.authkey_id))).all())


# ---- requests and the queue --------------------------------------------------------------------


async def claim_request(conn: AsyncConnection, request_id: str, kind: str,
                        actor_user_id: int | None) -> bool:
    """Record a request; False when it was recorded before (a redelivered command)."""
    stmt = pg_insert(mail_request).values(id=request_id, kind=kind, actor_user_id=actor_user_id)
    done = await conn.execute(stmt.on_conflict_do_nothing().returning(mail_request.c.id))
    return done.first() is not None


async def finish_request(conn: AsyncConnection, request_id: str, mails: int,
                         skipped: list[dict[str, Any]]) -> None:
    await conn.execute(mail_request.update().where(mail_request.c.id == request_id)
                       .values(mails=mails, skipped=skipped))


async def request_row(conn: AsyncConnection, request_id: str) -> Any:
    return (await conn.execute(select(mail_request).where(
        mail_request.c.id == request_id))).first()


async def insert_mails(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(pg_insert(mail).on_conflict_do_nothing(), list(rows))


CLAIM = text("""
    UPDATE mail SET lease_until = now() + make_interval(secs => :lease),
                    attempts = attempts + 1
    WHERE id IN (SELECT id FROM mail
                 WHERE status = 'pending' AND next_attempt_at <= now()
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED)
    RETURNING id, request_id, message_id, kind, action, recipient, user_id, sender, subject,
              encrypted, signed, raw, attempts, actor
""")


async def claim_due(conn: AsyncConnection, *, limit: int, lease_s: float) -> list[Any]:
    rows = list(await conn.execute(CLAIM, {"lease": lease_s, "n": limit}))
    return sorted(rows, key=lambda r: str(r.request_id))


async def mark_sent(conn: AsyncConnection, mail_ids: Sequence[str]) -> None:
    """These mails went out: one statement for all of them."""
    if mail_ids:
        await conn.execute(mail.update().where(mail.c.id.in_(list(mail_ids))).values(
            status="sent", raw=None, sent_at=text("now()"), lease_until=None, last_error=None))


async def mark_retry(conn: AsyncConnection, mail_id: str, delay_s: float, error: str) -> None:
    await conn.execute(mail.update().where(mail.c.id == mail_id).values(
        next_attempt_at=text(f"now() + interval '{float(delay_s):.3f} seconds'"),
        lease_until=None, last_error=error))


async def mark_failed(conn: AsyncConnection, mail_id: str, error: str) -> None:
    await conn.execute(mail.update().where(mail.c.id == mail_id).values(
        status="failed", raw=None, lease_until=None, last_error=error))


async def mail_counts(conn: AsyncConnection, request_id: str | None = None) -> dict[str, int]:
    """Mails by status (pending, sent, failed): a request's, or all of them."""
    stmt = select(mail.c.status, func.count().label("n")).group_by(mail.c.status)
    if request_id is not None:
        stmt = stmt.where(mail.c.request_id == request_id)
    return {r.status: int(r.n) for r in await conn.execute(stmt)}


async def mails_of(conn: AsyncConnection, *, request_id: str | None = None,
                   status: str | None = None, limit: int = 100) -> list[Any]:
    stmt = select(mail.c.id, mail.c.request_id, mail.c.message_id, mail.c.kind, mail.c.action,
                  mail.c.recipient, mail.c.user_id, mail.c.subject, mail.c.encrypted,
                  mail.c.signed, mail.c.status, mail.c.attempts, mail.c.last_error,
                  mail.c.created_at, mail.c.sent_at).order_by(mail.c.created_at.desc())
    if request_id is not None:
        stmt = stmt.where(mail.c.request_id == request_id)
    if status is not None:
        stmt = stmt.where(mail.c.status == status)
    return list(await conn.execute(stmt.limit(limit)))
