"""Routes of the audit service: MISP's log search (`admin/logs/index`, `admin/audit_logs/index`),
an event's log (`logs/event_index`) and the platform's own `/api/v1/audit/...` (top API users,
chain verification)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request

from audit.adapters import queries
from audit.adapters.keys import SigningKeyError, public_pem, verification_key
from audit.adapters.store import last_verification
from audit.domain.checkpoint import key_id, public_raw
from audit.domain.search import (
    EMPTY_POST,
    SearchError,
    parse_audit_filters,
    parse_log_filters,
    parse_time,
)
from audit.handlers.integrity import (
    VerifyLimits,
    choose_range,
    published_checkpoints,
    record_verification,
    verify,
)
from audit.settings import TOPIC_PATTERN, AuditSettings
from misp_contracts.events.audit import AUDIT_CHECKPOINT_TOPIC
from misp_contracts.numbers import whole_number
from misp_contracts.topics import CATALOGUE
from misp_platform.app import EngineDep, SettingsDep
from misp_platform.auth import CurrentPrincipal, Principal, SiteAdmin, require_perm
from misp_platform.consistency import consistency_of
from misp_platform.misp import (
    BadRequest,
    NamedParams,
    NotFound,
    misp_record,
    read_body,
    render_value,
)
from misp_platform.misp.paging import paging

Auditor = Annotated[Principal, Depends(require_perm("perm_audit"))]

misp_router = APIRouter(tags=["logs"])
router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

TOP_DEFAULT, TOP_MAX = 10, 1000


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
    query = parse_log_filters(await _filters(request, named), _now())
    await log_caught_up(request)
    async with engine.connect() as conn:
        rows = await queries.log_rows(conn, query, principal)
    return [misp_record("Log", row) for row in rows]


@misp_router.api_route("/admin/audit_logs/index", methods=["GET", "POST"])
async def audit_logs_index(request: Request, principal: Auditor, engine: EngineDep,
                           named: NamedParams) -> list[dict[str, Any]]:
    """MISP's newer `admin/audit_logs/index`: id DESC, 60 per page, JSON change diffs."""
    query = parse_audit_filters(await _filters(request, named), _now())
    await log_caught_up(request)
    async with engine.connect() as conn:
        rows = await queries.audit_log_rows(conn, query, principal)
    out = []
    for r in rows:
        audit = render_value({
            "id": r["id"], "created": r["created"], "user_id": r["user_id"],
            "org_id": r["org_id"] or 0, "authkey_id": r["authkey_id"] or 0, "ip": r["ip"],
            "request_type": r["request_type"], "request_id": r["request_id"],
            "action": r["action"], "model": r["model"], "model_id": r["model_id"],
            "model_title": r["title"], "event_id": None, "title": r["title"]})
        audit["change"] = r["change_json"]
        out.append({"AuditLog": audit,
                    "User": render_value({"id": r["user_id"], "email": r["email"],
                                          "org_id": r["org_id"] or 0}),
                    "Organisation": render_value({"id": r["org_id"] or 0,
                                                  "name": r["org_name"] or r["org"],
                                                  "uuid": r["org_uuid"]})})
    return out


EVENT_INDEX_LIMIT = 60  # MISP's LogsController pages by 60
INVALID_EVENT = "Invalid event."


async def _event_index(request: Request, principal: Principal, engine: Any, event_id: str,
                       org: str | None, named: dict[str, str]) -> dict[str, Any]:
    number = whole_number(event_id)
    if not number:
        raise NotFound(INVALID_EVENT)
    page = paging(named, request.query_params, default_limit=EVENT_INDEX_LIMIT)
    await log_caught_up(request)
    async with engine.connect() as conn:
        rows = await queries.event_log_rows(conn, number, principal, org=org,
                                            offset=page.offset, limit=page.limit)
    if rows is None:
        raise NotFound(INVALID_EVENT)
    return {"Log": [render_value(row) for row in rows]}


@misp_router.api_route("/logs/event_index/{event_id}", methods=["GET", "POST"])
async def event_index(request: Request, event_id: str, principal: CurrentPrincipal,
                      engine: EngineDep, named: NamedParams) -> dict[str, Any]:
    """MISP's `logs/event_index/{id}[/{org}]`: the log rows of one event the caller may see,
    newest first, 60 a page, as `{"Log": [...]}`; an event the caller may not see (or that the
    log does not know) is MISP's 404 "Invalid event."."""
    return await _event_index(request, principal, engine, event_id, None, named)


@misp_router.api_route("/logs/event_index/{event_id}/{org}", methods=["GET", "POST"])
async def event_index_of_org(request: Request, event_id: str, org: str,
                             principal: CurrentPrincipal, engine: EngineDep,
                             named: NamedParams) -> dict[str, Any]:
    """The same, only the rows of the organisation named `org`."""
    return await _event_index(request, principal, engine, event_id, org, named)


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
    now = _now()
    since = parse_time(params["since"], now) if params.get("since") else None
    until = parse_time(params["until"], now) if params.get("until") else None
    action = str(params["action"])[:20] if params.get("action") else None
    async with engine.connect() as conn:
        rows = await queries.top_api_users(conn, limit=limit, since=since, until=until,
                                           action=action)
    return [{"ip": r["ip"], "email": r["email"], "count": str(r["c"])} for r in rows]


def checkpoint_topic() -> str:
    """Where verify reads the checkpoints' published copies (a test names its own topic)."""
    return AUDIT_CHECKPOINT_TOPIC


CheckpointTopic = Annotated[str, Depends(checkpoint_topic)]


@router.get("/public-key")
async def public_key(_principal: CurrentPrincipal, settings: SettingsDep) -> dict[str, Any]:
    """The key that verifies the signed checkpoints (Ed25519, PEM), published so that anyone
    who holds the log or its Kafka copy can check it without the signing secret."""
    assert isinstance(settings, AuditSettings)
    try:
        key = verification_key(settings.key_path, settings.verify_key)
    except SigningKeyError as exc:
        raise NotFound(str(exc)) from None
    return {"algorithm": "Ed25519", "key_id": key_id(public_raw(key)),
            "public_key_pem": public_pem(key)}


VERIFY_PARAMS = ("db_only", "full", "since", "since_checkpoint")
FLAGS = {"1": True, "true": True, "0": False, "false": False, "": False}


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "").strip().lower()
    if value not in FLAGS:
        raise BadRequest(f"Invalid value for {name}: 1 or 0 is expected.")
    return FLAGS[value]


def _verify_range_params(params: dict[str, str]) -> tuple[bool, int | None, datetime | None]:
    """`full`, `since_checkpoint` (a checkpoint number), `since` (a time: the newest checkpoint
    created by then), at most one of them."""
    unknown = sorted(set(params) - set(VERIFY_PARAMS))
    if unknown:
        raise BadRequest(f"Invalid parameter: {', '.join(unknown)}. Valid parameters: "
                         f"{', '.join(VERIFY_PARAMS)}.")
    full = _flag(params, "full")
    named = [n for n in ("since", "since_checkpoint") if params.get(n)]
    if len(named) + full > 1:
        raise BadRequest("Choose one of full, since and since_checkpoint.")
    number = None
    if params.get("since_checkpoint"):
        number = whole_number(params["since_checkpoint"])
        if not number:
            raise BadRequest("Invalid since_checkpoint: a checkpoint number is expected.")
    moment = None
    if params.get("since"):
        try:
            moment = parse_time(params["since"], _now())
        except SearchError:
            raise BadRequest(f"Invalid since: {params['since'][:100]} (a timestamp, an age "
                             "such as 1d, or a date is expected).") from None
    return full, number, moment


@router.get("/verify")
async def verify_log(request: Request, _admin: SiteAdmin, engine: EngineDep,
                     settings: SettingsDep, topic: CheckpointTopic) -> dict[str, Any]:
    """Check the hash chains against the signed checkpoints, and the checkpoints against their
    copies on Kafka; reports the first broken link, what was covered, and the last full
    verification (`last_full`: its report, when and by what it ran).

    A request's cost is bounded: with no range named, the whole log when it is small, else the
    entries after a recent signed checkpoint (its heads trusted, its signature verified: `full`
    false, `since_checkpoint`, `not_covered_entries`). `?since_checkpoint=N` or `?since=<time>`
    choose the range, `?full=1` the whole log; a range of more entries than a request verifies
    is a 400 (the `audit_verify` job verifies the whole log in the background).
    `?db_only=1` skips Kafka (as the command's `audit verify --db-only`)."""
    assert isinstance(settings, AuditSettings)
    params = dict(request.query_params)
    full, number, moment = _verify_range_params(params)
    db_only = _flag(params, "db_only")
    try:
        public = public_raw(verification_key(settings.key_path, settings.verify_key))
    except SigningKeyError as exc:
        return {"ok": False, "checkpoint_problem": str(exc), "first_broken": None}
    async with engine.connect() as conn:
        since = await choose_range(conn, VerifyLimits(), full=full, since_checkpoint=number,
                                   since_time=moment)
    published = []
    if not db_only:
        try:
            published = await published_checkpoints(settings.kafka_bootstrap_servers, topic)
        except (KafkaError, OSError, TimeoutError) as exc:  # unverified is not verified
            return {"ok": False, "compared_with_kafka": False, "first_broken": None,
                    "checkpoint_problem": f"the checkpoints on Kafka could not be read ({exc}); "
                                          "?db_only=1 verifies without them"}
    started = _now()
    report = await verify(engine, public, published=published, since=since)
    async with engine.begin() as conn:
        await record_verification(conn, report, started_at=started, ran_by="api",
                                  compared_with_kafka=not db_only)
        last = await last_verification(conn)
    return {**report.as_dict(), "compared_with_kafka": not db_only, "last_full": last}
