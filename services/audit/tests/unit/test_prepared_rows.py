"""Rows mapped ahead of their batch: taken when the batch finds the settings they were mapped
under, mapped again when a setting changed in between; a SIEM record made from parts made ahead
is the record made at once."""

from __future__ import annotations

import uuid

from audit.domain.mapping import LogSettings, to_log_row
from audit.projections.log import PreparedRows
from audit.testing import envelope_of
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import UserState, UserUpdated


def event() -> Envelope:
    return envelope_of(UserUpdated(user=UserState(id=7, uuid=str(uuid.uuid4()),
                                                  email="u@x.test", org_id=1, role_id=3),
                                   changes={"email": ("a@x.test", "u@x.test")}),
                       actor=Actor(user_id=1, email="admin@x.test", org_id=1,
                                   client_ip="198.51.100.7"))


def test_a_row_mapped_ahead_is_taken_under_the_same_settings() -> None:
    prepared, envelope = PreparedRows(settings=LogSettings()), event()
    prepared.prepare(envelope)
    _settings, mapped, siem = prepared.rows[envelope.id]
    assert mapped is not None and siem is not None  # its SIEM record's parts made ahead too
    assert prepared.take(envelope, LogSettings()) == (mapped, siem)
    assert prepared.rows == {}


def test_a_row_mapped_under_other_settings_is_mapped_again() -> None:
    prepared, envelope = PreparedRows(settings=LogSettings()), event()
    prepared.prepare(envelope)
    now = LogSettings(log_client_ip=True)
    row, siem = prepared.take(envelope, now)
    assert row is not None and row.ip == "198.51.100.7" and siem is None
    assert row == to_log_row(envelope, now)
    assert prepared.rows == {}


def test_nothing_is_mapped_ahead_before_the_first_batch_tells_the_settings() -> None:
    prepared, envelope = PreparedRows(), event()
    prepared.prepare(envelope)
    assert prepared.rows == {}
    assert prepared.take(envelope, LogSettings()) == (to_log_row(envelope, LogSettings()), None)


def test_a_siem_record_from_parts_made_ahead_is_the_one_made_at_once() -> None:
    from datetime import UTC, datetime

    from audit.domain.chain import GENESIS, Entry
    from audit.projections.log import _siem_message, _siem_parts

    envelope = event()
    row = to_log_row(envelope, LogSettings())
    assert row is not None
    entry = Entry(id=9, source_event_id=envelope.id, source_type=envelope.type, chain="c:0",
                  seq=3, prev_hash=GENESIS, hash="f" * 64, created=row.created.astimezone(UTC),
                  model=row.model, model_id=row.model_id, action=row.action,
                  user_id=row.user_id, title=row.title, change=row.change, email=row.email,
                  org=row.org, description=row.description, ip=row.ip, org_id=row.org_id,
                  authkey_id=row.authkey_id, request_id=row.request_id,
                  request_type=row.request_type, change_json=row.change_json)
    ahead = _siem_message(entry, row, envelope, "t", _siem_parts(row, envelope))
    at_once = _siem_message(entry, row, envelope, "t")
    assert ahead == at_once and ahead.key == "9"
    assert ("ce_subject", "9") in ahead.headers
    assert datetime.now(UTC) > entry.created
