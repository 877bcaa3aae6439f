"""Routes of the audit service: MISP's log search (`admin/logs/index`, `admin/audit_logs/index`)
and the platform's own `/api/v1/audit/...` (top API users, chain verification)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request
from sqlalchemy import and_, column, false, func, or_, select, table
from sqlalchemy.sql.elements import ColumnElement

from audit.adapters.keys import SigningKeyError, load_key
from audit.domain.search import (
    EMPTY_POST,
    Condition,
    Query,
    SearchError,
    parse_audit_filters,
    parse_log_filters,
    parse_time,
)
from audit.handlers.integrity import public_of, published_checkpoints, verify
from audit.settings import TOPIC_PATTERN, AuditSettings
from misp_contracts.events.audit import AUDIT_CHECKPOINT_TOPIC
from misp_contracts.topics import CATALOGUE
from misp_platform.app import EngineDep, SettingsDep
from misp_platform.auth import Principal, SiteAdmin, require_perm
from misp_platform.consistency import consistency_of
from misp_platform.misp import BadRequest, NamedParams, misp_record, read_body, render_value

LOG_COLUMNS = ("id", "title", "created", "model", "model_id", "action", "user_id", "change",
               "email", "org", "description", "ip")
EXTRA_COLUMNS = ("org_id", "authkey_id", "request_id", "request_type", "change_json")

log_entry = table("log_entry", *(column(c) for c in (*LOG_COLUMNS, *EXTRA_COLUMNS)))
principal_org = table("principal_org", column("org_id"), column("name"), column("uuid"))
principal_user = table("principal_user", column("user_id"), column("org_id"))

Auditor = Annotated[Principal, Depends(require_perm("perm_audit"))]

misp_router = APIRouter(tags=["logs"])
router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

TOP_DEFAULT, TOP_MAX = 10, 1000


def _condition(cond: Condition) -> ColumnElement[bool]:
    col = log_entry.c[cond.column]
    if cond.op == "in":
        return col.in_(list(cond.values))
    if cond.op == "like":
        return or_(*(col.ilike(v, escape="\\") for v in cond.values))
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


async def _filters(request: Request, named: dict[str, str]) -> dict[str, Any]:
    if request.method == "POST":
        body = await read_body(request)
        filters = body or dict(named)
        if not filters:
            raise BadRequest(EMPTY_POST)
        return filters
    return {**dict(request.query_params), **named}


def _now() -> datetime:
    return datetime.now(UTC)


def _id_order(query: Query) -> ColumnElement[int]:
    """Order by id; with a substring filter, `id + 0` so the planner keeps the trigram index.

    Otherwise PostgreSQL may walk the primary key hoping to meet LIMIT matching rows early,
    which for a selective pattern means reading most of the table.
    """
    if any(c.op == "like" for c in query.conditions):
        return log_entry.c.id + 0
    return log_entry.c.id


def logged_topics() -> list[str]:
    """The catalogue's topics the audit log is made of (its consumer's pattern)."""
    pattern = re.compile(TOPIC_PATTERN)
    return [t.name for t in CATALOGUE if pattern.match(t.name)]


async def log_caught_up(request: Request) -> None:
    """Wait (bounded) until the log holds every event Kafka held when the search came in, so a
    client finds the action it was just told succeeded, whichever service did it."""
    consistency = consistency_of(request.app)
    if consistency is not None:
        await consistency.caught_up(request.app.state.settings.main_group, logged_topics())


@misp_router.api_route("/admin/logs/index", methods=["GET", "POST"])
async def logs_index(request: Request, principal: Auditor, engine: EngineDep,
                     named: NamedParams) -> list[dict[str, Any]]:
    """MISP's `admin/logs/index`: rows in id order, `[{"Log": {...}}]`."""
    try:
        query = parse_log_filters(await _filters(request, named), _now())
    except SearchError as exc:
        raise BadRequest(str(exc)) from None
    await log_caught_up(request)
    stmt = (select(*(log_entry.c[c] for c in LOG_COLUMNS)).where(and_(*_where(query, principal)))
            .order_by(_id_order(query)).limit(query.limit).offset(query.offset))
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [misp_record("Log", row._asdict()) for row in rows]


@misp_router.api_route("/admin/audit_logs/index", methods=["GET", "POST"])
async def audit_logs_index(request: Request, principal: Auditor, engine: EngineDep,
                           named: NamedParams) -> list[dict[str, Any]]:
    """MISP's newer `admin/audit_logs/index`: id DESC, 60 per page, JSON change diffs."""
    try:
        query = parse_audit_filters(await _filters(request, named), _now())
    except SearchError as exc:
        raise BadRequest(str(exc)) from None
    await log_caught_up(request)
    org = principal_org.alias("o")
    stmt = (select(*(log_entry.c[c] for c in (*LOG_COLUMNS, *EXTRA_COLUMNS)),
                   org.c.name.label("org_name"), org.c.uuid.label("org_uuid"))
            .select_from(log_entry.outerjoin(org, org.c.org_id == log_entry.c.org_id))
            .where(and_(*_where(query, principal)))
            .order_by(_id_order(query).desc()).limit(query.limit).offset(query.offset))
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    out = []
    for r in rows:
        audit = render_value({
            "id": r.id, "created": r.created, "user_id": r.user_id, "org_id": r.org_id or 0,
            "authkey_id": r.authkey_id or 0, "ip": r.ip, "request_type": r.request_type,
            "request_id": r.request_id, "action": r.action, "model": r.model,
            "model_id": r.model_id, "model_title": r.title, "event_id": None, "title": r.title})
        audit["change"] = r.change_json
        out.append({"AuditLog": audit,
                    "User": render_value({"id": r.user_id, "email": r.email,
                                          "org_id": r.org_id or 0}),
                    "Organisation": render_value({"id": r.org_id or 0,
                                                  "name": r.org_name or r.org,
                                                  "uuid": r.org_uuid})})
    return out


@router.get("/top_api_users")
async def top_api_users(request: Request, _admin: SiteAdmin, engine: EngineDep,
                        named: NamedParams) -> list[dict[str, Any]]:
    """The book's "top API users": log rows per (ip, email), most first, over a period.

    Filters (query string or named params): `limit` (10), `since` / `until` (a timestamp, an
    age such as `7d`, or a date), `action` (e.g. `auth`; default every action).
    """
    params = {**dict(request.query_params), **named}
    unknown = sorted(set(params) - {"limit", "since", "until", "action"})
    if unknown:
        raise BadRequest(f"Invalid filter: {', '.join(unknown)}. Valid filters: action, limit, "
                         "since, until.")
    try:
        limit = int(params.get("limit") or TOP_DEFAULT)
    except ValueError:
        raise BadRequest("Invalid value for limit: an integer is expected.") from None
    if not 1 <= limit <= TOP_MAX:
        raise BadRequest(f"Invalid value for limit: 1 to {TOP_MAX} is allowed.")
    count = func.count(log_entry.c.id).label("c")
    stmt = (select(log_entry.c.ip, log_entry.c.email, count)
            .where(log_entry.c.ip.is_not(None))
            .group_by(log_entry.c.ip, log_entry.c.email)
            .order_by(count.desc(), log_entry.c.ip, log_entry.c.email).limit(limit))
    try:
        now = _now()
        if params.get("since"):
            stmt = stmt.where(log_entry.c.created >= parse_time(params["since"], now))
        if params.get("until"):
            stmt = stmt.where(log_entry.c.created <= parse_time(params["until"], now))
    except SearchError as exc:
        raise BadRequest(str(exc)) from None
    if params.get("action"):
        stmt = stmt.where(log_entry.c.action == str(params["action"])[:20])
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [{"ip": r.ip, "email": r.email, "count": str(r.c)} for r in rows]


def checkpoint_topic() -> str:
    """Where verify reads the checkpoints' published copies (a test names its own topic)."""
    return AUDIT_CHECKPOINT_TOPIC


CheckpointTopic = Annotated[str, Depends(checkpoint_topic)]


@router.get("/verify")
async def verify_log(request: Request, _admin: SiteAdmin, engine: EngineDep,
                     settings: SettingsDep, topic: CheckpointTopic) -> dict[str, Any]:
    """Check the hash chains against the signed checkpoints, and the checkpoints against their
    copies on Kafka; reports the first broken link. `?db_only=1` skips Kafka (as the command's
    `audit verify --db-only`)."""
    assert isinstance(settings, AuditSettings)
    try:
        public = public_of(load_key(settings.key_path))
    except SigningKeyError as exc:
        return {"ok": False, "checkpoint_problem": str(exc), "first_broken": None}
    db_only = request.query_params.get("db_only") in ("1", "true")
    published = []
    if not db_only:
        try:
            published = await published_checkpoints(settings.kafka_bootstrap_servers, topic)
        except (KafkaError, OSError, TimeoutError) as exc:  # unverified is not verified
            return {"ok": False, "compared_with_kafka": False, "first_broken": None,
                    "checkpoint_problem": f"the checkpoints on Kafka could not be read ({exc}); "
                                          "?db_only=1 verifies without them"}
    report = await verify(engine, public, published=published)
    return {**report.as_dict(), "compared_with_kafka": not db_only}
