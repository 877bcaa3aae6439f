"""MISP's log search filters (`admin/logs/index`, `admin/audit_logs/index`), parsed and checked.

Pure: the result is a list of conditions on known columns with plain values; the adapter turns
them into parameterised SQL. Anything a client sends that is not understood is a `SearchError`
(answered 400), never a surprise for the database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from audit.domain.mapping import MAX_TEXT
from misp_contracts.numbers import whole_number
from misp_platform.errors import BadRequestError

DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
MAX_PAGE = 1_000_000
MAX_VALUES = 100  # per filter (OR list)
AUDIT_DEFAULT_LIMIT = 60
INT_MAX = 2**63 - 1

LOG_TEXT = ("title", "model", "action", "change", "email", "org", "description", "ip")
LOG_INT = ("id", "model_id", "user_id")
LOG_FIELDS = frozenset((*LOG_TEXT, *LOG_INT, "created", "page", "limit"))

AUDIT_FIELDS = frozenset(("ip", "user", "request_id", "authkey_id", "model", "model_id",
                          "event_id", "model_title", "action", "org", "created",
                          "request_type", "page", "limit"))

EMPTY_POST = ("Either specify the search terms in the url, or POST a json with the filter "
              "parameters.")

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S",
                 "%Y/%m/%d", "%d-%m-%Y")


class SearchError(BadRequestError):
    """A filter the server cannot honour: answered 400 with this message (the platform's
    BadRequestError kind, which misp_platform.misp answers as MISP's BadRequest)."""


Op = Literal["in", "like", "ge", "le"]


@dataclass(frozen=True)
class Condition:
    """`column op values`: `in` = any of, `like` = any of the patterns (case-insensitive)."""

    column: str
    op: Op
    values: tuple[Any, ...]


@dataclass
class Query:
    conditions: list[Condition] = field(default_factory=list)
    page: int = 1
    limit: int = DEFAULT_LIMIT

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def _values(name: str, raw: Any) -> list[Any]:
    """A filter value as a list: a list (OR), an `a||b` string, or one scalar."""
    if isinstance(raw, list):
        items = raw
    elif isinstance(raw, str):
        items = raw.split("||") if "||" in raw else [raw]
    else:
        items = [raw]
    if len(items) > MAX_VALUES:
        raise SearchError(f"Too many values for {name} (at most {MAX_VALUES}).")
    out = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, bool | dict | list):
            raise SearchError(f"Invalid value for {name}.")
        out.append(item)
    return out


def _int(name: str, value: Any, *, minimum: int = 0, maximum: int = INT_MAX) -> int:
    try:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            number = int(value)
        else:
            number = int(str(value).strip())
    except (TypeError, ValueError):
        raise SearchError(f"Invalid value for {name}: an integer is expected.") from None
    if number < minimum or number > maximum:
        raise SearchError(f"Invalid value for {name}: {minimum} to {maximum} is allowed.")
    return number


def text_condition(column: str, name: str, raw: Any) -> Condition | None:
    values = [str(v) for v in _values(name, raw)]
    if not values:
        return None
    if any(len(v) > MAX_TEXT for v in values):
        raise SearchError(f"Invalid value for {name}: too long.")
    likes = [v for v in values if v.startswith("%") or v.endswith("%")]
    if likes and len(likes) != len(values):
        # Mixed exact and LIKE values: every value as a pattern (an exact one matches itself).
        likes = [_escape_like(v) if v not in likes else v for v in values]
    if likes:
        return Condition(column, "like", tuple(likes))
    return Condition(column, "in", tuple(values))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def int_condition(column: str, name: str, raw: Any) -> Condition | None:
    values = [_int(name, v) for v in _values(name, raw)]
    return Condition(column, "in", tuple(values)) if values else None


def parse_time(value: Any, now: datetime) -> datetime:
    """A unix timestamp, an age (`1d`, `12h`, `30m`, `2w`, `45s`) or a date/datetime."""
    if isinstance(value, bool):
        raise SearchError("Invalid created value.")
    if isinstance(value, int | float):
        stamp = float(value)
    else:
        text = str(value).strip()
        age = _AGE.match(text)
        if age:
            seconds = int(age.group(1)) * _AGE_UNITS[age.group(2)]
            if seconds > 100 * 365 * 86400:
                raise SearchError(f"Invalid created value: {text}")
            return now - timedelta(seconds=seconds)
        if re.fullmatch(r"\d+(\.\d+)?", text):
            stamp = float(text)
        else:
            for fmt in _DATE_FORMATS:
                try:
                    return datetime.strptime(text, fmt).replace(tzinfo=UTC)
                except ValueError:
                    continue
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise SearchError(f"Invalid created value: {text[:100]}") from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if not 0 <= stamp < 253402300800:  # up to 9999-12-31
        raise SearchError(f"Invalid created value: {value}")
    return datetime.fromtimestamp(stamp, UTC)


def created_conditions(column: str, raw: Any, now: datetime) -> list[Condition]:
    if isinstance(raw, str) and "||" in raw:
        raw = raw.split("||")
    if isinstance(raw, list):
        values = [v for v in raw if v is not None]
        if not values:
            return []
        if len(values) == 1:
            return [Condition(column, "ge", (parse_time(values[0], now),))]
        if len(values) != 2:
            raise SearchError("Invalid created value: one value or a [from, to] pair.")
        start, end = parse_time(values[0], now), parse_time(values[1], now)
        return [Condition(column, "ge", (min(start, end),)),
                Condition(column, "le", (max(start, end),))]
    if raw is None or raw == "":
        return []
    return [Condition(column, "ge", (parse_time(raw, now),))]


def _paging(filters: Mapping[str, Any], default_limit: int) -> tuple[int, int]:
    page = _int("page", filters["page"], minimum=1, maximum=MAX_PAGE) \
        if filters.get("page") not in (None, "") else 1
    limit = _int("limit", filters["limit"], minimum=1, maximum=MAX_LIMIT) \
        if filters.get("limit") not in (None, "") else default_limit
    return page, limit


def _check_known(filters: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(k for k in filters if k not in known)
    if unknown:
        raise SearchError(f"Invalid filter: {', '.join(unknown[:10])}. Valid filters: "
                          f"{', '.join(sorted(known))}.")


def parse_log_filters(filters: Mapping[str, Any], now: datetime) -> Query:
    """`admin/logs/index` filters (§2.4): id, title, created, model, model_id, action, user_id,
    change, email, org, description, ip, page, limit."""
    _check_known(filters, LOG_FIELDS)
    page, limit = _paging(filters, DEFAULT_LIMIT)
    query = Query(page=page, limit=limit)
    for name, raw in filters.items():
        if name in ("page", "limit") or raw is None:
            continue
        if name == "created":
            query.conditions += created_conditions("created", raw, now)
        elif name in LOG_INT:
            cond = int_condition(name, name, raw)
            if cond:
                query.conditions.append(cond)
        else:
            cond = text_condition(name, name, raw)
            if cond:
                query.conditions.append(cond)
    return query


def parse_audit_filters(filters: Mapping[str, Any], now: datetime) -> Query:
    """`admin/audit_logs/index` filters: ip, user, request_id, authkey_id, model, model_id,
    event_id, model_title, action, org, created, request_type, page, limit."""
    _check_known(filters, AUDIT_FIELDS)
    page, limit = _paging(filters, AUDIT_DEFAULT_LIMIT)
    query = Query(page=page, limit=limit)
    columns = {"ip": "ip", "request_id": "request_id", "model": "model",
               "model_title": "title", "action": "action"}
    for name, raw in filters.items():
        if name in ("page", "limit") or raw is None:
            continue
        cond: Condition | None = None
        if name == "created":
            query.conditions += created_conditions("created", raw, now)
        elif name in columns:
            cond = text_condition(columns[name], name, raw)
        elif name in ("authkey_id", "model_id"):
            cond = int_condition(name, name, raw)
        elif name == "request_type":
            cond = Condition("request_type", "in", tuple(
                _int(name, v, maximum=2) for v in _values(name, raw)))
        elif name == "event_id":
            # No event is ever logged by the administration plane: only 0 / none matches.
            cond = Condition("model_id", "in", (-1,)) if any(
                _int(name, v) for v in _values(name, raw)) else None
        elif name in ("user", "org"):
            values = _values(name, raw)
            numbers = [v for v in values if whole_number(v) is not None]
            column_id, column_text = (("user_id", "email") if name == "user"
                                      else ("org_id", "org"))
            if numbers and len(numbers) == len(values):
                cond = Condition(column_id, "in", tuple(_int(name, v) for v in numbers))
            elif values:
                cond = text_condition(column_text, name, values)
        if cond is not None and cond.values:
            query.conditions.append(cond)
    return query
