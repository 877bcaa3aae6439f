"""Versioned projections: each projected row keeps the version of the stream it reflects, and
an older event (a redelivery, a replay, a dead letter applied late) never overwrites a newer row.

Rows written before versions were kept, and events without one, carry NULL: they are always
overwritten, and always overwrite (the order of arrival decides, as it did before).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, or_
from sqlalchemy.dialects.postgresql import Insert


def is_newer(stmt: Insert, table: Table) -> ColumnElement[bool]:
    """The `ON CONFLICT DO UPDATE ... WHERE` of an upsert into a versioned projection: the
    incoming row wins only when it is of a newer version of its stream than the stored one."""
    excluded: Any = stmt.excluded
    return or_(excluded.version.is_(None), table.c.version.is_(None),
               excluded.version > table.c.version)
