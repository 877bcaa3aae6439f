"""The `organisation` read model: the row an organisation makes after its events. Pure; the
store (adapters/store.py) writes it in the same transaction as each append."""

from __future__ import annotations

from typing import Any

from orgs.domain.model import DELETED, Organisation, stream_id_of

STATE_COLUMNS = ("uuid", "name", "description", "type", "nationality", "sector", "contacts",
                 "local", "restricted_to_domain", "landingpage", "created_by", "date_created",
                 "date_modified", "logo_sha256")


def read_model_row(org: Organisation, *, logo: bytes | None, keep_logo: bool) -> dict[str, Any]:
    """The row of `org`: `logo` is the image to store (None removes it) unless `keep_logo`, and
    then the row has no `logo` key (the stored image stays). A deleted organisation has none."""
    values = {c: getattr(org.state, c) for c in STATE_COLUMNS}
    values["restricted_to_domain"] = list(org.state.restricted_to_domain)
    row = {"id": org.state.id, "stream_id": stream_id_of(org.state.id), "version": org.version,
           "status": org.status, "merged_into": org.merged_into, **values}
    if org.status == DELETED:
        row["logo"] = None
        row["logo_sha256"] = None
    elif not keep_logo:
        row["logo"] = logo
    return row
