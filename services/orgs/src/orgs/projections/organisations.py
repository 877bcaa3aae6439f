"""The `organisation` read model, written in the same transaction as each append."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from orgs.adapters.tables import organisation
from orgs.domain.model import DELETED, Organisation, stream_id_of

_STATE_COLUMNS = ("uuid", "name", "description", "type", "nationality", "sector", "contacts",
                  "local", "restricted_to_domain", "landingpage", "created_by", "date_created",
                  "date_modified", "logo_sha256")


async def save(conn: AsyncConnection, org: Organisation, *,
               logo: bytes | bool | None = False) -> None:
    """Upsert the row of `org` (after its new events); `logo`: bytes to store, None to remove,
    False to leave the stored image alone. A deleted organisation loses its logo."""
    values = {c: getattr(org.state, c) for c in _STATE_COLUMNS}
    values["restricted_to_domain"] = list(org.state.restricted_to_domain)
    row = {"id": org.state.id, "stream_id": stream_id_of(org.state.id), "version": org.version,
           "status": org.status, "merged_into": org.merged_into, **values}
    if org.status == DELETED:
        row["logo"] = None
        row["logo_sha256"] = None
    elif logo is not False:
        row["logo"] = logo
    stmt = pg_insert(organisation).values(**row)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[organisation.c.id],
        set_={k: stmt.excluded[k] for k in row if k != "id"}))


async def set_status(conn: AsyncConnection, org_id: int, status: str) -> None:
    await conn.execute(update(organisation).where(organisation.c.id == org_id)
                       .values(status=status))
