"""Read-model queries behind the index, view, logo and merge endpoints (reads: the writes are
the store's, store.py), and the lookup of the organisation an URL names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.numbers import whole_number
from orgs.adapters.tables import DELETED, org_member, org_merge, organisation
from orgs.domain.model import UUID_RE

_user_count = (select(func.count()).select_from(org_member)
               .where(org_member.c.org_id == organisation.c.id,
                      org_member.c.deleted.is_(False))
               .correlate(organisation).scalar_subquery().label("user_count"))
_creator_email = (select(org_member.c.email).where(org_member.c.user_id
                                                   == organisation.c.created_by)
                  .correlate(organisation).scalar_subquery().label("created_by_email"))
_COLUMNS = [c for c in organisation.c if c.name != "logo"]
_SEARCHED = ("name", "description", "nationality", "sector", "type", "contacts", "uuid")


async def find_id(conn: AsyncConnection, key: str | int, *, by_name: bool = False,
                  include_deleted: bool = False) -> int | None:
    """The id of the organisation an URL names: an integer id, a uuid, or (view) a name."""
    text = str(key).strip()
    live = organisation.c.status != DELETED
    conditions: list[Any] = []
    if (number := whole_number(text)) is not None:
        conditions.append(organisation.c.id == number)
    elif UUID_RE.fullmatch(text):
        conditions.append(organisation.c.uuid == text.lower())
    if by_name:
        names = {text, text.replace("+", " ")}
        conditions.append(func.lower(organisation.c.name).in_([n.lower() for n in names]))
    for condition in conditions:
        stmt = select(organisation.c.id).where(condition)
        if not include_deleted:
            stmt = stmt.where(live)
        found = (await conn.execute(stmt.limit(1))).scalar()
        if found is not None:
            return int(found)
    return None


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_organisations(conn: AsyncConnection, *, scope: str, search: str | None,
                             offset: int, limit: int) -> Sequence[Any]:
    stmt = select(*_COLUMNS, _user_count, _creator_email).where(organisation.c.status != DELETED)
    if scope == "local":
        stmt = stmt.where(organisation.c.local.is_(True))
    elif scope == "external":
        stmt = stmt.where(organisation.c.local.is_(False))
    if search:
        pattern = _like(search)
        stmt = stmt.where(or_(
            *(organisation.c[name].ilike(pattern) for name in _SEARCHED),
            cast(organisation.c.restricted_to_domain, String).ilike(pattern)))
    stmt = stmt.order_by(func.lower(organisation.c.name), organisation.c.id) \
        .limit(limit).offset(offset)
    return (await conn.execute(stmt)).all()


async def get_organisation(conn: AsyncConnection, org_id: int) -> Any | None:
    return (await conn.execute(select(*_COLUMNS, _user_count, _creator_email).where(
        and_(organisation.c.id == org_id, organisation.c.status != DELETED)))).first()


async def get_logo(conn: AsyncConnection, org_id: int) -> Any | None:
    return (await conn.execute(select(organisation.c.logo, organisation.c.logo_sha256).where(
        organisation.c.id == org_id, organisation.c.status != DELETED))).first()


async def get_merge(conn: AsyncConnection, merge_id: str) -> Any | None:
    return (await conn.execute(select(org_merge).where(org_merge.c.merge_id == merge_id))).first()
