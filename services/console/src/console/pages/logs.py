"""Logs: MISP's log browser and search (admin/logs/index, newest first, searched by every field
of the API's Log search), the audit logs (admin/audit_logs/index) and the book's "top API users"
(the audit's api/v1/audit/top_api_users).

The API answers admin/logs/index in id order, oldest first (MISP's REST has no ORDER BY),
while admin/audit_logs/index answers the same rows newest first with most of the same filters
(its change as JSON). So the browser reads admin/audit_logs/index; a search by a field only the
Log search has (change, description) reads admin/logs/index: all of it when it is short, else it
finds the last page by probing and reads that backwards.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.feeds import FEEDS
from console.pages.common import api, page_number, viewer_of
from console.viewer import Viewer
from console.web import query_string, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_PROBE_PAGE = 10**7
FIRST_CHUNK = 1000  # a search asks this many rows first; past it, it probes
# MISP's log search form, as the API's Log filters name them (audit.domain.search LOG_FIELDS).
LOG_SEARCH = (
    ("email", "Email"), ("org", "Organisation"), ("action", "Action"), ("model", "Model"),
    ("model_id", "Model id"), ("title", "Title"), ("change", "Change"), ("ip", "IP address"),
    ("description", "Description"), ("user_id", "User id"),
)
TIME_FIELDS = ("created_from", "created_to")
SEARCH_NAMES = tuple(name for name, _ in LOG_SEARCH) + TIME_FIELDS
# A substring search (the book: "the search is a sub-string search"); the others are exact.
SUBSTRING = frozenset(("email", "org", "title", "change", "ip", "description"))
NUMERIC = frozenset(("model_id", "user_id"))
# The Log filters admin/audit_logs/index also has, and its name for each.
AUDIT_NAME = {"email": "user", "user_id": "user", "org": "org", "action": "action",
              "model": "model", "model_id": "model_id", "title": "model_title", "ip": "ip",
              "created": "created"}
# MISP's log actions (the book's search drop-down) and this platform's own.
ACTIONS = ("add", "edit", "delete", "login", "login_fail", "logout", "auth", "auth_fail",
           "auth_alert", "change_pw", "password_reset", "forgot", "email", "admin_email",
           "enable", "disable", "registration", "acceptRegistrations",
           "discardRegistrations", "reset_auth_key", "serverSettingsEdit", "merge", "update",
           "error", "warning", "security", "scheduled", "request", "publish")
AUDIT_SEARCH = (
    ("user", "User (email or id)"), ("org", "Organisation (name or id)"), ("action", "Action"),
    ("model", "Model"), ("model_id", "Model id"), ("model_title", "Title"), ("ip", "IP address"),
    ("request_id", "Request id"), ("authkey_id", "Auth key id"),
)
AUDIT_SUBSTRING = frozenset(("user", "org", "model_title", "ip"))
REQUEST_TYPES = (("", "Any"), ("0", "Browser"), ("1", "API"), ("2", "Command line"))

Fetch = Callable[[int, int], Awaitable[list[dict[str, Any]]]]


def _like(value: str) -> str:
    return f"%{value}%"


def log_filters(values: Mapping[str, str]) -> dict[str, str]:
    """The API's Log filters from the search form: text fields as substrings, `created` as a
    `from||to` range (one end open when only the other is given)."""
    out: dict[str, str] = {}
    for name, _ in LOG_SEARCH:
        value = (values.get(name) or "").strip()
        if not value:
            continue
        if name in NUMERIC and not value.isdigit():
            continue
        out[name] = _like(value) if name in SUBSTRING else value
    created = created_range(values.get("created_from"), values.get("created_to"))
    if created:
        out["created"] = created
    return out


def created_range(start: str | None, end: str | None) -> str:
    """`from||to` (a datetime-local's `2026-12-04T10:00`), `from` alone, or `0||to`."""
    start, end = (start or "").strip(), (end or "").strip()
    if start and end:
        return f"{start}||{end}"
    if end:
        return f"0||{end}"
    return start


def audit_filters_of(log: Mapping[str, str]) -> dict[str, str] | None:
    """The same search on admin/audit_logs/index, or None when it has a filter that one lacks."""
    if any(name not in AUDIT_NAME for name in log):
        return None
    if "email" in log and "user_id" in log:
        return None  # one `user` filter there
    return {AUDIT_NAME[name]: value for name, value in log.items()}


async def newest_first(fetch: Fetch, page: int, size: int) -> tuple[list[dict[str, Any]], bool]:
    """Page `page` (of `size` rows, newest first) of a list the API pages oldest first:
    `fetch(page, limit)` answers its pages. Finds the last page by doubling then halving (a few
    calls), then reads the rows of the wanted slice backwards. Returns (rows, has_next)."""
    head = await fetch(1, FIRST_CHUNK)
    if len(head) < FIRST_CHUNK:  # all of it in one answer: the usual search
        every = list(reversed(head))
        start = (page - 1) * size
        return every[start:start + size], len(every) > start + size
    seen: dict[int, list[dict[str, Any]]] = {}

    async def at(number: int) -> list[dict[str, Any]]:
        if number not in seen:
            seen[number] = await fetch(number, size)
        return seen[number]

    if not await at(1):
        return [], False
    low, high = 1, 1  # low: a full page; high: past it
    while len(await at(high)) == size and high < MAX_PROBE_PAGE:
        low, high = high, high * 2
    if len(await at(high)) == size or await at(high):
        last = high
    else:
        while high - low > 1:
            middle = (low + high) // 2
            probe = await at(middle)
            if len(probe) == size:
                low = middle
            elif probe:
                low = high = middle
            else:
                high = middle
        last = low
    total = (last - 1) * size + len(await at(last))
    end = total - (page - 1) * size
    if end <= 0:
        return [], False
    start = max(0, end - size)
    rows: list[dict[str, Any]] = []
    for number in range(start // size + 1, (end - 1) // size + 2):
        rows.extend(await at(number))
    first = (start // size) * size
    return list(reversed(rows[start - first:end - first])), start > 0


def log_rows(body: Any, name: str = "Log") -> list[dict[str, Any]]:
    return [item[name] for item in body if isinstance(item, dict)
            and isinstance(item.get(name), dict)] if isinstance(body, list) else []


def part(item: Any, name: str) -> dict[str, Any]:
    """`item[name]` when it is an object, else {}."""
    value = item.get(name) if isinstance(item, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


def as_log(item: Mapping[str, Any]) -> dict[str, Any]:
    """An admin/audit_logs/index row with the Log's fields (its change as text lines)."""
    audit, user, org = (part(item, name) for name in ("AuditLog", "User", "Organisation"))
    return {"id": audit.get("id"), "created": audit.get("created"),
            "email": user.get("email") or "SYSTEM", "org": org.get("name") or "SYSTEM",
            "action": audit.get("action"), "model": audit.get("model"),
            "model_id": audit.get("model_id"), "title": audit.get("title"),
            "change": "; ".join(change_lines(audit.get("change"))), "ip": audit.get("ip")}


async def log_page(request: Request, viewer: Viewer, filters: dict[str, str],
                   page: int) -> tuple[list[dict[str, Any]], bool]:
    """A page of log rows, newest first, for these API filters."""
    audit = audit_filters_of(filters)
    if audit is not None:
        body = await api(request, viewer, "GET", "/admin/audit_logs/index",
                         params={**audit, "page": page, "limit": PAGE_SIZE})
        rows = [as_log(item) for item in body if isinstance(item, dict)] \
            if isinstance(body, list) else []
        return rows, len(rows) == PAGE_SIZE

    async def fetch(number: int, limit: int) -> list[dict[str, Any]]:
        return log_rows(await api(request, viewer, "GET", "/admin/logs/index",
                                  params={**filters, "page": number, "limit": limit}))

    return await newest_first(fetch, page, PAGE_SIZE)


def live_feed(feed: str) -> str | None:
    """The console's live stream of `feed` (live.py), when it has that feed."""
    return f"/console/live/{feed}" if feed in FEEDS else None


def _search_values(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {name: request.query_params.get(name, "").strip()[:500] for name in names}


@router.get("/admin/logs/index")
@router.get("/admin/logs/search")
@router.get("/admin/logs")
async def logs_index(request: Request) -> Response:
    viewer = await viewer_of(request)
    values = _search_values(request, SEARCH_NAMES)
    page = page_number(request)
    rows, has_next = await log_page(request, viewer, log_filters(values), page)
    fragment = request.query_params.get("fragment") == "1"
    shown = {k: v for k, v in values.items() if v}
    refresh = "/admin/logs/index" + query_string({**shown, "page": str(page), "fragment": "1"})
    return render(request, "logs/_table.html" if fragment else "logs/index.html", viewer=viewer,
                  rows=rows, page=page, has_next=has_next, values=values, shown=shown,
                  fields=LOG_SEARCH, actions=ACTIONS, live=live_feed("logs"),
                  refresh=refresh, title="Logs")


def change_lines(change: Any) -> list[str]:
    """An audit log's JSON change, one `field: old → new` (or `field: value`) per line."""
    if isinstance(change, str):
        try:
            change = json.loads(change)
        except ValueError:
            return [change] if change else []
    if not isinstance(change, dict):
        return [] if change in (None, "", []) else [json.dumps(change)]
    lines = []
    for key, value in change.items():
        if isinstance(value, list) and len(value) == 2:
            lines.append(f"{key}: {_short(value[0])} → {_short(value[1])}")
        else:
            lines.append(f"{key}: {_short(value)}")
    return lines


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "…"


@router.get("/admin/audit_logs/index")
@router.get("/admin/audit_logs")
async def audit_logs_index(request: Request) -> Response:
    viewer = await viewer_of(request)
    names = (*(n for n, _ in AUDIT_SEARCH), "request_type", *TIME_FIELDS)
    values = _search_values(request, names)
    filters: dict[str, Any] = {}
    for name, _ in AUDIT_SEARCH:
        value = values[name]
        if value:
            filters[name] = _like(value) if name in AUDIT_SUBSTRING and not value.isdigit() \
                else value
    if values["request_type"] in ("0", "1", "2"):
        filters["request_type"] = values["request_type"]
    created = created_range(values["created_from"], values["created_to"])
    if created:
        filters["created"] = created
    page = page_number(request)
    body = await api(request, viewer, "GET", "/admin/audit_logs/index",
                     params={**filters, "page": page, "limit": PAGE_SIZE})
    rows = [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []
    return render(request, "logs/audit.html", viewer=viewer, rows=rows, page=page,
                  has_next=len(rows) == PAGE_SIZE, values=values, fields=AUDIT_SEARCH,
                  actions=ACTIONS, request_types=REQUEST_TYPES, change_lines=change_lines,
                  title="Audit logs")


TOP_FILTERS = ("limit", "since", "until", "action")


@router.get("/console/logs/top_api_users")
async def top_api_users(request: Request) -> Response:
    """The book's "Get top API users": log rows per (ip, email), most first."""
    viewer = await viewer_of(request)
    values = _search_values(request, TOP_FILTERS)
    params = {k: v for k, v in values.items() if v}
    body = await api(request, viewer, "GET", "/api/v1/audit/top_api_users", params=params)
    rows = [r for r in body if isinstance(r, dict)] if isinstance(body, list) else []
    return render(request, "logs/top.html", viewer=viewer, rows=rows, values=values,
                  title="Top API users")
