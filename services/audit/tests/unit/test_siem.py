"""The SIEM record built directly is the contract model's document, field for field."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit.domain.chain import GENESIS, Entry
from audit.domain.mapping import SYSTEM, LogRow, LogSettings, to_log_row
from audit.domain.siem import siem_document, siem_record
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import UserState, UserUpdated

ACTOR = Actor(user_id=1, email="admin@org.test", org_id=2, org_name="Org", authkey_id=3,
              client_ip="192.0.2.9")


def entry_for(row: LogRow, created: datetime) -> Entry:
    return Entry(id=42, source_event_id=str(uuid.uuid4()), source_type="misp.x.v1",
                 chain="misp.x.v1:0", seq=3, prev_hash=GENESIS, hash="ab" * 32,
                 created=created, model=row.model, model_id=row.model_id, action=row.action,
                 user_id=row.user_id, title=row.title, change=row.change, email=row.email,
                 org=row.org, description=row.description, ip=row.ip, org_id=row.org_id,
                 authkey_id=row.authkey_id, request_id=row.request_id,
                 request_type=row.request_type, change_json=row.change_json)


def user_row(settings: LogSettings) -> LogRow:
    event = UserUpdated(user=UserState(id=5, uuid=str(uuid.uuid4()), email="u@x.test",
                                       org_id=2, role_id=3),
                        changes={"email": ("old@x.test", "u@x.test")})
    envelope = Envelope(source="/identity", type=UserUpdated.type, subject="5", actor=ACTOR,
                        data=event.model_dump(mode="json"))
    row = to_log_row(envelope, settings)
    assert row is not None
    return row


BASE = user_row(LogSettings())
ROWS = {
    "a user edit": BASE,
    "with the client IP": user_row(LogSettings(log_client_ip=True)),
    "by the system, no ids": replace(BASE, email=SYSTEM, org="SYSTEM", user_id=0, org_id=None,
                                     target_user_id=None, target_email=None),
    "a failed login": replace(BASE, action="auth_fail", outcome="failure", ip="198.51.100.1",
                              target_user_id=None, target_email="who@x.test"),
    "a server setting": replace(BASE, model="Server", action="serverSettingsEdit",
                                title="Server setting changed: ü"),
}


@pytest.mark.parametrize("name", ROWS)
@pytest.mark.parametrize("created", [
    datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    datetime(2026, 3, 4, 5, 6, 7, 120000, tzinfo=UTC),
    datetime(2026, 3, 4, 5, 6, 7, 5, tzinfo=timezone(timedelta(hours=-3))),
])
def test_the_document_is_the_models_dump(name: str, created: datetime) -> None:
    row = ROWS[name]
    entry = entry_for(row, created)
    expected = siem_record(entry, row).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert siem_document(entry, row) == expected
