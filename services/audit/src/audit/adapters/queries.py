"""Read queries behind the log searches, an event's log and the top API users (reads: the
writes are the store's, store.py), scoped as MISP scopes the log; and the users' orgs the
projection fills in. An email substring is matched in the list of the log's emails (log_email,
kept by a trigger: migration 0009), whose rows the btree on log_entry (email, id) then reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, column, false, func, or_, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from audit.domain.search import Condition, Query
from misp_platform.auth import Principal

LOG_COLUMNS = ("id", "title", "created", "model", "model_id", "action", "user_id", "change",
               "email", "org", "description", "ip")
EXTRA_COLUMNS = ("org_id", "authkey_id", "request_id", "request_type", "change_json")

log_entry = table("log_entry", *(column(c) for c in (*LOG_COLUMNS, *EXTRA_COLUMNS)))
principal_org = table("principal_org", column("org_id"), column("name"), column("uuid"))
principal_user = table("principal_user", column("user_id"), column("org_id"))
log_email = table("log_email", column("email"))


def _like(col: ColumnElement[Any], patterns: tuple[Any, ...]) -> ColumnElement[bool]:
    return or_(*(col.ilike(v, escape="\\") for v in patterns))


def _condition(cond: Condition) -> ColumnElement[bool]:
    col = log_entry.c[cond.column]
    if cond.op == "in":
        return col.in_(list(cond.values))
    if cond.op == "like":
        if cond.column == "email":  # log_email's trigger is on log_entry (migration 0009)
            return col.in_(select(log_email.c.email).where(_like(log_email.c.email,
                                                                 cond.values)))
        return _like(col, cond.values)
    if cond.op == "ge":
        return col >= cond.values[0]
    return col <= cond.values[0]


def _scope(principal: Principal) -> ColumnElement[bool] | None:
    """MISP's scoping: site admin everything, org admin their org's rows, others their own.

    An org's rows are found by its id, never its name (a renamed org keeps them, an org of the
    same name gets none). A row with no org id that names a user (a failed authentication
    logged before its user's org was known) is that user's org's.
    """
    if principal.is_site_admin:
        return None
    if principal.is_org_admin:
        if not principal.org_id:
            return false()
        members = select(principal_user.c.user_id).where(
            principal_user.c.org_id == principal.org_id)
        return or_(log_entry.c.org_id == principal.org_id,
                   and_(log_entry.c.org_id.is_(None), log_entry.c.user_id != 0,
                        log_entry.c.user_id.in_(members)))
    return log_entry.c.user_id == principal.user_id


def _where(query: Query, principal: Principal) -> list[ColumnElement[bool]]:
    clauses = [_condition(c) for c in query.conditions]
    scope = _scope(principal)
    if scope is not None:
        clauses.append(scope)
    return clauses


def _id_order(query: Query) -> ColumnElement[int]:
    """Order by id; with a substring filter on a trigram index, `id + 0` so the planner keeps it.

    Otherwise PostgreSQL may walk the primary key hoping to meet LIMIT matching rows early,
    which for a selective pattern means reading most of the table. Through log_email it
    estimates the matching rows well enough to choose (the emails matched, their rows each).
    """
    if any(c.op == "like" and c.column != "email" for c in query.conditions):
        return log_entry.c.id + 0
    return log_entry.c.id


async def _plan_for_email_patterns(conn: AsyncConnection, query: Query) -> None:
    """An email substring search is planned for its own patterns in this transaction: a generic
    plan of a prepared statement (psycopg prepares a statement run 5 times) cannot tell one
    matching email from thousands, and the wrong one of its two plans reads the whole log."""
    if any(c.op == "like" and c.column == "email" for c in query.conditions):
        await conn.execute(text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)"))


async def log_rows(conn: AsyncConnection, query: Query,
                   principal: Principal) -> list[dict[str, Any]]:
    """`admin/logs/index`: the MISP `Log` columns of the rows the caller may see, in id order."""
    await _plan_for_email_patterns(conn, query)
    stmt = (select(*(log_entry.c[c] for c in LOG_COLUMNS))
            .where(and_(*_where(query, principal)))
            .order_by(_id_order(query))
            .limit(query.limit).offset(query.offset))
    rows = (await conn.execute(stmt)).all()
    return [row._asdict() for row in rows]


async def audit_log_rows(conn: AsyncConnection, query: Query,
                         principal: Principal) -> list[dict[str, Any]]:
    """`admin/audit_logs/index`: every column of the rows the caller may see, newest first, with
    their org's name and uuid (`org_name`, `org_uuid`) from the principals projection."""
    org = principal_org.alias("o")
    await _plan_for_email_patterns(conn, query)
    stmt = (select(*(log_entry.c[c] for c in (*LOG_COLUMNS, *EXTRA_COLUMNS)),
                   org.c.name.label("org_name"), org.c.uuid.label("org_uuid"))
            .select_from(log_entry.outerjoin(org, org.c.org_id == log_entry.c.org_id))
            .where(and_(*_where(query, principal)))
            .order_by(_id_order(query).desc())
            .limit(query.limit).offset(query.offset))
    rows = (await conn.execute(stmt)).all()
    return [row._asdict() for row in rows]


async def top_api_users(conn: AsyncConnection, *, limit: int, since: datetime | None = None,
                        until: datetime | None = None,
                        action: str | None = None) -> list[dict[str, Any]]:
    """Log rows per (ip, email), most first: `{"ip", "email", "c"}` (c: the count)."""
    count = func.count(log_entry.c.id).label("c")
    stmt = (select(log_entry.c.ip, log_entry.c.email, count)
            .where(log_entry.c.ip.is_not(None))
            .group_by(log_entry.c.ip, log_entry.c.email)
            .order_by(count.desc(), log_entry.c.ip, log_entry.c.email).limit(limit))
    if since is not None:
        stmt = stmt.where(log_entry.c.created >= since)
    if until is not None:
        stmt = stmt.where(log_entry.c.created <= until)
    if action is not None:
        stmt = stmt.where(log_entry.c.action == action)
    rows = (await conn.execute(stmt)).all()
    return [row._asdict() for row in rows]


async def org_ids_of_users(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, int]:
    """The org id of each of these users the principals projection knows in an org."""
    rows = await conn.execute(text(
        "SELECT user_id, org_id FROM principal_user WHERE user_id = ANY(:u) AND org_id > 0"),
        {"u": list(user_ids)})
    return {row.user_id: row.org_id for row in rows}


EVENT_LOG_COLUMNS = ("title", "created", "model", "model_id", "action", "change", "org", "email")


def _event_rows(event_id: int) -> ColumnElement[bool]:
    return and_(log_entry.c.model == "Event", log_entry.c.model_id == event_id)


async def event_log_rows(conn: AsyncConnection, event_id: int, principal: Principal, *,
                         org: str | None, offset: int,
                         limit: int) -> list[dict[str, Any]] | None:
    """`logs/event_index`: the `Event` rows of one event, newest first; None when the caller may
    not see the event. This product holds no events, so the log is what knows one: a site admin
    sees every event it has rows of, anyone else the events their organisation has rows of (the
    org that created or changed it, which MISP always lets see it). As in MISP, a caller who is
    no site admin gets the email of a row only when its user is of the caller's organisation."""
    seen = _event_rows(event_id)
    if not principal.is_site_admin:
        seen = and_(seen, log_entry.c.org_id == principal.org_id)
    if (await conn.execute(select(log_entry.c.id).where(seen).limit(1))).first() is None:
        return None
    email: Any = log_entry.c.email
    if not principal.is_site_admin:
        members = select(principal_user.c.user_id).where(
            principal_user.c.org_id == principal.org_id)
        email = case((log_entry.c.user_id.in_(members), log_entry.c.email), else_="")
    stmt = (select(*(log_entry.c[c] for c in EVENT_LOG_COLUMNS if c != "email"),
                   email.label("email"))
            .where(_event_rows(event_id), *(() if org is None else (log_entry.c.org == org,)))
            .order_by(log_entry.c.id.desc()).limit(limit).offset(offset))
    return [row._asdict() for row in (await conn.execute(stmt)).all()]
