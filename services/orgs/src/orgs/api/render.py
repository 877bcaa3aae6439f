"""Organisations in MISP's JSON shapes (ids as strings, booleans, `YYYY-MM-DD HH:MM:SS`)."""

from __future__ import annotations

from typing import Any

from misp_platform.misp import misp_record

LOGO_PATH = "/api/v1/orgs/organisations/{id}/logo.png"


def logo_url(org_id: int) -> str:
    return LOGO_PATH.format(id=org_id)


def organisation_fields(row: Any, *, user_count: int, site_admin: bool,
                        created_by_email: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "date_created": row.date_created,
        "date_modified": row.date_modified,
        "description": row.description,
        "type": row.type,
        "nationality": row.nationality,
        "sector": row.sector,
        "created_by": row.created_by,
        "uuid": row.uuid,
        "contacts": row.contacts,
        "local": row.local,
        "restricted_to_domain": list(row.restricted_to_domain or []),
        "landingpage": row.landingpage,
        "user_count": user_count,
    }
    if site_admin:
        fields["created_by_email"] = created_by_email or ""
    else:
        del fields["created_by"]
    # Not in MISP: where the logo is (null without one).
    fields["logo_url"] = logo_url(row.id) if row.logo_sha256 else None
    return fields


def organisation_record(row: Any, **kwargs: Any) -> dict[str, Any]:
    return misp_record("Organisation", organisation_fields(row, **kwargs))
