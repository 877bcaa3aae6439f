"""The organisation aggregate's rules and the logo checks, without I/O."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime

import pytest

from misp_contracts.events.orgs import (
    OrganisationCreated,
    OrganisationDeleted,
    OrganisationMerged,
    OrganisationUpdated,
)
from orgs.domain.errors import (
    InvalidLogoError,
    OrganisationInUseError,
    OrganisationNotFoundError,
    OrganisationRefusedError,
    OrganisationValidationError,
)
from orgs.domain.logo import check_png
from orgs.domain.model import (
    DELETED,
    MERGING,
    clean_fields,
    decide_complete_merge,
    decide_create,
    decide_delete,
    decide_edit,
    decide_restore,
    decide_start_merge,
    replay,
    stream_id_of,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def png(width: int = 48, height: int = 48, *, crc_ok: bool = True) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", crc if crc_ok or kind != b"IHDR" else crc ^ 1)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x00" * (width * 4) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def org(org_id: int = 5, name: str = "Acme"):  # type: ignore[no-untyped-def]
    return replay([decide_create({"name": name}, org_id=org_id, created_by=9, now=NOW)])


def test_a_new_organisation_is_local_with_a_lower_case_uuid_and_its_creator() -> None:
    body = {"name": " Acme ", "uuid": "5D6C4F0E-5B0A-4D8E-9A51-0B6F3C2E7A10"}
    event = decide_create(clean_fields(body, creating=True), org_id=7, created_by=3, now=NOW)
    assert event.organisation.name == "Acme"
    assert event.organisation.uuid == "5d6c4f0e-5b0a-4d8e-9a51-0b6f3c2e7a10"
    assert event.organisation.local is True and event.organisation.created_by == 3


@pytest.mark.parametrize(("body", "field"), [
    ({}, "name"), ({"name": "  "}, "name"), ({"name": ["x"]}, "name"),
    ({"name": "a", "uuid": "not-a-uuid"}, "uuid"), ({"name": "a", "uuid": 5}, "uuid"),
    ({"name": "a", "local": "maybe"}, "local"),
    ({"name": "a", "restricted_to_domain": {"a": 1}}, "restricted_to_domain"),
    ({"name": "x" * 256}, "name"),
])
def test_bad_fields_are_refused_with_cakes_error_shape(body: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(OrganisationValidationError) as refused:
        clean_fields(body, creating=True)
    assert field in refused.value.errors


def test_restricted_domains_come_as_a_list_or_one_per_line_and_local_as_misp_spells_it() -> None:
    fields = clean_fields({"name": "a", "restricted_to_domain": "a.test\r\n\nb.test ",
                           "local": "0"}, creating=True)
    assert fields["restricted_to_domain"] == ["a.test", "b.test"] and fields["local"] is False


def test_an_edit_carries_only_the_changed_fields_and_ignores_the_others() -> None:
    events = decide_edit(org(), clean_fields({"name": "Acme 2", "sector": "Energy",
                                              "id": "99", "created_by": "1"}, creating=False),
                         now=NOW)
    assert len(events) == 1 and isinstance(events[0], OrganisationUpdated)
    assert events[0].changes == {"name": ("Acme", "Acme 2"), "sector": ("", "Energy")}
    assert events[0].organisation.id == 5 and events[0].organisation.created_by == 9
    assert decide_edit(org(), {"name": "Acme"}, now=NOW) == []


def test_delete_is_refused_while_users_remain_and_for_the_host_organisation() -> None:
    with pytest.raises(OrganisationRefusedError) as refused:
        decide_delete(org(), user_count=1, target_of_running_merge=False)
    assert refused.value.message == "Could not delete Organisation"
    assert isinstance(refused.value, OrganisationInUseError)
    assert refused.value.errors == {"id": [
        "The organisation still has 1 user(s): delete them or move them to another "
        "organisation first."]}
    with pytest.raises(OrganisationRefusedError):
        decide_delete(org(1), user_count=0, target_of_running_merge=False)
    assert isinstance(decide_delete(org(), user_count=0, target_of_running_merge=False),
                      OrganisationDeleted)


def test_a_deleted_organisation_is_not_found() -> None:
    gone = replay([decide_create({"name": "a"}, org_id=5, created_by=0, now=NOW),
                   OrganisationDeleted(org_id=5, uuid="u", name="a")])
    assert gone is not None and gone.status == DELETED
    with pytest.raises(OrganisationNotFoundError):
        decide_edit(gone, {"name": "b"}, now=NOW)


def test_merge_refuses_itself_an_unknown_target_and_a_second_merge() -> None:
    source, target = org(5, "S"), org(6, "T")
    with pytest.raises(OrganisationRefusedError):
        decide_start_merge(source, source, merge_id="m")
    with pytest.raises(OrganisationRefusedError):
        decide_start_merge(source, None, merge_id="m")
    started = decide_start_merge(source, target, merge_id="m")
    assert source is not None
    merging = replay([decide_create({"name": "S"}, org_id=5, created_by=0, now=NOW), started])
    assert merging is not None and merging.status == MERGING
    with pytest.raises(OrganisationRefusedError):
        decide_start_merge(merging, target, merge_id="m2")
    with pytest.raises(OrganisationRefusedError):
        decide_delete(merging, user_count=0, target_of_running_merge=False)


def test_a_merge_completes_once_when_no_user_is_left() -> None:
    source, target = org(5, "S"), org(6, "T")
    assert target is not None
    started = decide_start_merge(source, target, merge_id="m")
    merging = replay([decide_create({"name": "S"}, org_id=5, created_by=0, now=NOW), started])
    assert decide_complete_merge(merging, target.ref, merge_id="m", users_left=1,
                                 users_moved=0) == []
    done = decide_complete_merge(merging, target.ref, merge_id="m", users_left=0, users_moved=2)
    assert [type(e) for e in done] == [OrganisationMerged, OrganisationDeleted]
    assert isinstance(done[1], OrganisationDeleted) and done[1].merged_into == 6
    after = replay([decide_create({"name": "S"}, org_id=5, created_by=0, now=NOW), started, *done])
    assert decide_complete_merge(after, target.ref, merge_id="m", users_left=0,
                                 users_moved=2) == []  # a redelivery changes nothing
    assert decide_restore(after, name="S", now=NOW) is None  # identity moves late users


def test_a_plainly_deleted_organisation_can_be_restored_with_its_id_and_uuid() -> None:
    first = decide_create({"name": "a"}, org_id=5, created_by=0, now=NOW)
    gone = replay([first, OrganisationDeleted(org_id=5, uuid=first.organisation.uuid, name="a")])
    back = decide_restore(gone, name="a", now=NOW)
    assert isinstance(back, OrganisationCreated) and back.reason == "restored"
    assert back.organisation.uuid == first.organisation.uuid


def test_stream_ids_are_fixed_per_integer_id() -> None:
    assert stream_id_of(1) == stream_id_of(1) != stream_id_of(2)


def test_a_png_is_accepted_by_content_with_its_dimensions() -> None:
    logo = check_png(png(48, 32), max_bytes=10_000, max_width=64, max_height=64)
    assert (logo.width, logo.height) == (48, 32) and len(logo.sha256) == 64


@pytest.mark.parametrize(("data", "why"), [
    (b"", "No logo"),
    (b"GIF89a" + b"\x00" * 50, "must be a PNG"),
    (png(crc_ok=False), "damaged"),
    (png()[:-12], "truncated"),
    (png(100, 10), "at most 64x64"),
    (png() + b"\x00" * 10_000, "too large"),
])
def test_anything_else_is_refused_with_the_reason(data: bytes, why: str) -> None:
    with pytest.raises(InvalidLogoError, match=why):
        check_png(data, max_bytes=5_000, max_width=64, max_height=64)
