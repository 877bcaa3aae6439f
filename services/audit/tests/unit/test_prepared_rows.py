"""Rows mapped ahead of their batch: taken when the batch finds the settings they were mapped
under, mapped again when a setting changed in between."""

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
    mapped = prepared.rows[envelope.id][1]
    assert prepared.take(envelope, LogSettings()) is mapped
    assert prepared.rows == {}


def test_a_row_mapped_under_other_settings_is_mapped_again() -> None:
    prepared, envelope = PreparedRows(settings=LogSettings()), event()
    prepared.prepare(envelope)
    now = LogSettings(log_client_ip=True)
    row = prepared.take(envelope, now)
    assert row is not None and row.ip == "198.51.100.7"
    assert row == to_log_row(envelope, now)
    assert prepared.rows == {}


def test_nothing_is_mapped_ahead_before_the_first_batch_tells_the_settings() -> None:
    prepared, envelope = PreparedRows(), event()
    prepared.prepare(envelope)
    assert prepared.rows == {}
    assert prepared.take(envelope, LogSettings()) == to_log_row(envelope, LogSettings())
