"""MISP's `users/statistics/{page}` from identity's own data: the user and organisation figures
of the `data`, `orgs` and `users` pages. The figures MISP takes from events, attributes,
correlations, proposals, threads and posts are left out (and the pages made of them only are not
found): this product holds none of them, and a zero would claim it counted them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from identity.adapters.ports import Counted, UnitOfWork
from identity.domain.errors import NotAllowedError, NotFoundError
from misp_platform.auth import Principal

# MISP's pages whose figures come from events, tags, sightings or galaxies.
EVENT_PAGES = ("tags", "attributehistogram", "sightings", "galaxyMatrix")
INVALID_PAGE = "Invalid page"
DISABLED = "This feature is currently disabled."
HIDE_ORGS = "Security.hide_organisation_index_from_users"
ORG_FIELDS = ("id", "name", "description", "local", "contacts", "type", "sector", "nationality")


def not_held(page: str) -> str:
    return (f"The {page} statistics are computed from events, which this product does not "
            "hold.")


def _starts(now: datetime) -> tuple[datetime, datetime]:
    """The first instants of this month and of this year (UTC)."""
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return month, month.replace(month=1)


def _page(counted: Counted) -> dict[str, dict[str, int]]:
    return {"data": {"total": counted.total, "month": counted.month, "year": counted.year}}


async def _organisations(uow: UnitOfWork, caller: Principal,
                         scope: str) -> dict[str, dict[str, Any]]:
    """The `orgs` page: `{name: {id, name, ..., userCount?, logo?}}` by name, case-insensitively
    (MISP's keys; userCount only for an organisation with users, as MISP's grouped count)."""
    local = True if scope == "local" else False if scope == "external" else None
    async with uow.reads() as q:
        if (await q.settings([HIDE_ORGS]))[HIDE_ORGS] and not caller.is_site_admin:
            raise NotAllowedError(DISABLED)
        rows = await q.organisations_with_user_counts(local=local)
    out: dict[str, dict[str, Any]] = {}
    for organisation, users in sorted(rows, key=lambda row: row[0].name.lower()):
        entry: dict[str, Any] = {f: getattr(organisation, f) for f in ORG_FIELDS}
        entry["id"] = str(organisation.id)
        if users:
            entry["userCount"] = str(users)
        if organisation.logo_sha256:
            entry["logo"] = True
        out[organisation.name] = entry
    return out


async def statistics(uow: UnitOfWork, caller: Principal, page: str,
                     named: dict[str, str] | None = None, *,
                     now: datetime | None = None) -> dict[str, Any]:
    """`data`: `{"stats": {...}}` with MISP's user and organisation counts, as strings like
    MISP's; `orgs` (named `scope`: local by default, external, or any other word for all);
    `users`: `{"user"|"org_local"|"org_external": {"data": {total, month, year}}}`."""
    if page in EVENT_PAGES:
        raise NotFoundError(not_held(page))
    if page == "orgs":
        return await _organisations(uow, caller, (named or {}).get("scope", "local"))
    if page not in ("data", "users"):
        raise NotFoundError(INVALID_PAGE)
    month, year = _starts(now or datetime.now(UTC))
    async with uow.reads() as q:
        figures = await q.figures(month=month, year=year)
        if page == "users":
            return {"user": _page(figures.users), "org_local": _page(figures.local_orgs),
                    "org_external": _page(figures.external_orgs)}
        hidden = (await q.settings([HIDE_ORGS]))[HIDE_ORGS]
        if hidden and not caller.is_site_admin:
            # MISP counts the caller's own organisation only.
            own = await q.organisation(caller.org_id)
            org_count, local_count = int(own is not None), int(own is not None and own.local)
        else:
            org_count = figures.local_orgs.total + figures.external_orgs.total
            local_count = figures.local_orgs.total
    users = figures.users.total
    stats = {
        "user_count": users,
        "user_count_pgp": figures.users_with_gpgkey,
        "org_count": org_count,
        "local_org_count": local_count,
        "average_user_per_org": round(users / local_count, 1) if local_count else 0,
    }
    return {"stats": {name: str(value) for name, value in stats.items()}}
